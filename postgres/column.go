package postgres

import (
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenkeeper/tokenkeeper"
)

// ts returns t for a timestamptz column: '-infinity' for the zero time,
// otherwise t truncated to the microsecond. Truncating here, rather than
// leaving it to the server, keeps the stored value the same whether pgx
// sends it in binary (which truncates) or as text (which the server rounds).
func ts(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	}
	return pgtype.Timestamptz{Time: t.Truncate(time.Microsecond), Valid: true}
}

// tsAfter returns t rounded up to the microsecond, for a timestamptz
// column: the bound of a strictly-before filter on stored (whole
// microsecond) times, since for a whole number of microseconds m, m < t
// exactly when m < tsAfter(t). Truncating would miss the microsecond just
// before a bound with a sub-microsecond part. The zero time is '-infinity',
// before which nothing is.
func tsAfter(t time.Time) pgtype.Timestamptz {
	v := ts(t)
	if !t.IsZero() && !v.Time.Equal(t) {
		v.Time = v.Time.Add(time.Microsecond)
	}
	return v
}

// fromTS is the inverse of ts: a UTC time, or the zero time for
// '-infinity' (or NULL).
func fromTS(v pgtype.Timestamptz) time.Time {
	if !v.Valid || v.InfinityModifier != pgtype.Finite {
		return time.Time{}
	}
	return v.Time.UTC()
}

// bytea returns b for a bytea column: NULL for no bytes, so that nil and
// empty read back the same (nil).
func bytea(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// connectionColumns are the columns scanRecord reads, in its order.
const connectionColumns = `id, provider, subject, scopes, state, degraded_since,
	generation, created_at, updated_at, last_refresh_at, next_refresh_at,
	last_error, metadata,
	access_token, access_token_key, refresh_token, refresh_token_key,
	token_expiry, token_expires_at, token_scope,
	pending_since, pending_owner, pending_unknown,
	lease_owner, lease_fence, lease_expires_at`

// scanRecord reads one row of connectionColumns, followed by the columns
// of extra, if any.
func scanRecord(row pgx.Row, extra ...any) (*tokenkeeper.Record, error) {
	var (
		r                                                    tokenkeeper.Record
		degraded, created, updated, lastRefresh, nextRefresh pgtype.Timestamptz
		expiry, expiresAt, pendingSince, leaseExpires        pgtype.Timestamptz
	)
	err := row.Scan(append([]any{&r.ID, &r.Provider, &r.Subject, &r.Scopes, &r.State, &degraded,
		&r.Generation, &created, &updated, &lastRefresh, &nextRefresh,
		&r.LastError, &r.Metadata,
		&r.Tokens.AccessToken.Ciphertext, &r.Tokens.AccessToken.KeyID,
		&r.Tokens.RefreshToken.Ciphertext, &r.Tokens.RefreshToken.KeyID,
		&expiry, &expiresAt, &r.Tokens.Scope,
		&pendingSince, &r.Pending.Owner, &r.Pending.Unknown,
		&r.Lease.Owner, &r.Lease.Fence, &leaseExpires}, extra...)...)
	if err != nil {
		return nil, err
	}
	if len(r.Scopes) == 0 {
		r.Scopes = nil
	}
	if len(r.Metadata) == 0 {
		r.Metadata = nil
	}
	if len(r.Tokens.AccessToken.Ciphertext) == 0 {
		r.Tokens.AccessToken.Ciphertext = nil
	}
	if len(r.Tokens.RefreshToken.Ciphertext) == 0 {
		r.Tokens.RefreshToken.Ciphertext = nil
	}
	r.DegradedSince = fromTS(degraded)
	r.CreatedAt = fromTS(created)
	r.UpdatedAt = fromTS(updated)
	r.LastRefreshAt = fromTS(lastRefresh)
	r.NextRefreshAt = fromTS(nextRefresh)
	r.Tokens.Expiry = fromTS(expiry)
	r.Tokens.ExpiresAt = fromTS(expiresAt)
	r.Pending.Since = fromTS(pendingSince)
	r.Lease.ExpiresAt = fromTS(leaseExpires)
	return &r, nil
}

// writeColumns are the columns recordArgs fills, in its order: all but the
// id and the lease.
var writeColumns = []string{"provider", "subject", "scopes", "state", "degraded_since",
	"generation", "created_at", "updated_at", "last_refresh_at", "next_refresh_at",
	"last_error", "metadata",
	"access_token", "access_token_key", "refresh_token", "refresh_token_key",
	"token_expiry", "token_expires_at", "token_scope",
	"pending_since", "pending_owner", "pending_unknown"}

// recordArgs returns the values of rec's writeColumns, in their order. It
// returns CodeInvalid if a text field of rec, the id included, cannot be
// stored (checkRecordText).
func recordArgs(rec *tokenkeeper.Record) ([]any, error) {
	if err := checkRecordText(rec); err != nil {
		return nil, err
	}
	var scopes, metadata any // NULL for none: nil and empty read back as nil
	if len(rec.Scopes) > 0 {
		scopes = rec.Scopes
	}
	if len(rec.Metadata) > 0 {
		metadata = rec.Metadata
	}
	t := &rec.Tokens
	return []any{rec.Provider, rec.Subject, scopes, string(rec.State), ts(rec.DegradedSince),
		rec.Generation, ts(rec.CreatedAt), ts(rec.UpdatedAt),
		ts(rec.LastRefreshAt), ts(rec.NextRefreshAt),
		rec.LastError, metadata,
		bytea(t.AccessToken.Ciphertext), t.AccessToken.KeyID,
		bytea(t.RefreshToken.Ciphertext), t.RefreshToken.KeyID,
		ts(t.Expiry), ts(t.ExpiresAt), t.Scope,
		ts(rec.Pending.Since), rec.Pending.Owner, rec.Pending.Unknown,
	}, nil
}

// checkRecordText returns a CodeInvalid error naming the first text field
// of rec (but the Lease, which writes ignore) that checkText refuses.
func checkRecordText(rec *tokenkeeper.Record) error { return rec.CheckText() }

// checkText returns a CodeInvalid error naming the field name unless v can
// be stored as text: valid UTF-8 without NUL bytes. PostgreSQL's text (and
// jsonb) refuses both, with an error that would not name the field.
func checkText(name, v string) error { return tokenkeeper.CheckStoredText(name, v) }

// storable reports whether v passes checkText. A lookup by a key that is
// not storable finds nothing, as it would in a store that compares bytes,
// rather than failing with the server's encoding error.
func storable(v string) bool { return checkText("", v) == nil }
