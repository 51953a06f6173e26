package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// micros returns t as unix microseconds, or 0 for the zero time.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// microsAfter returns t as unix microseconds rounded up, or 0 for the zero
// time: the bound of a strictly-before filter on stored (whole
// microsecond) times, since for a whole number of microseconds m, m < t
// exactly when m < microsAfter(t). micros would truncate t down and miss
// the microsecond just before a bound with a sub-microsecond part.
func microsAfter(t time.Time) int64 {
	m := micros(t)
	if t.Nanosecond()%1000 != 0 {
		m++
	}
	return m
}

// fromMicros is the inverse of micros: a UTC time, or the zero time for 0.
func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

// blob returns b for a BLOB column: NULL for no bytes.
func blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// unblob is the inverse of blob: nil for no bytes.
func unblob(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// jsonText returns v as JSON text, or NULL when v has no elements (nil and
// empty read back the same: nil).
func jsonText(v any, n int) (any, error) {
	if n == 0 {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// unjson decodes JSON text into a new T, or returns the zero T for NULL.
func unjson[T any](s sql.NullString) (T, error) {
	var v T
	if !s.Valid || s.String == "" {
		return v, nil
	}
	err := json.Unmarshal([]byte(s.String), &v)
	return v, err
}

// connectionColumns are the columns scanRecord reads, in its order.
const connectionColumns = `id, provider, subject, scopes, state, degraded_since,
	generation, created_at, updated_at, last_refresh_at, next_refresh_at,
	last_error, metadata,
	access_token, access_token_key, refresh_token, refresh_token_key,
	token_expiry, token_expires_at, token_scope,
	pending_since, pending_owner, pending_unknown,
	lease_owner, lease_fence, lease_expires_at`

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanRecord reads one row of connectionColumns.
func scanRecord(row scanner) (*tokenkeeper.Record, error) {
	var (
		r                                                    tokenkeeper.Record
		scopes, metadata                                     sql.NullString
		degraded, created, updated, lastRefresh, nextRefresh int64
		expiry, expiresAt, pendingSince, leaseExpires        int64
	)
	err := row.Scan(&r.ID, &r.Provider, &r.Subject, &scopes, &r.State, &degraded,
		&r.Generation, &created, &updated, &lastRefresh, &nextRefresh,
		&r.LastError, &metadata,
		&r.Tokens.AccessToken.Ciphertext, &r.Tokens.AccessToken.KeyID,
		&r.Tokens.RefreshToken.Ciphertext, &r.Tokens.RefreshToken.KeyID,
		&expiry, &expiresAt, &r.Tokens.Scope,
		&pendingSince, &r.Pending.Owner, &r.Pending.Unknown,
		&r.Lease.Owner, &r.Lease.Fence, &leaseExpires)
	if err != nil {
		return nil, err
	}
	if r.Scopes, err = unjson[[]string](scopes); err != nil {
		return nil, fmt.Errorf("connection %s: scopes: %w", r.ID, err)
	}
	if r.Metadata, err = unjson[map[string]string](metadata); err != nil {
		return nil, fmt.Errorf("connection %s: metadata: %w", r.ID, err)
	}
	if len(r.Scopes) == 0 {
		r.Scopes = nil
	}
	if len(r.Metadata) == 0 {
		r.Metadata = nil
	}
	r.DegradedSince = fromMicros(degraded)
	r.CreatedAt = fromMicros(created)
	r.UpdatedAt = fromMicros(updated)
	r.LastRefreshAt = fromMicros(lastRefresh)
	r.NextRefreshAt = fromMicros(nextRefresh)
	r.Tokens.AccessToken.Ciphertext = unblob(r.Tokens.AccessToken.Ciphertext)
	r.Tokens.RefreshToken.Ciphertext = unblob(r.Tokens.RefreshToken.Ciphertext)
	r.Tokens.Expiry = fromMicros(expiry)
	r.Tokens.ExpiresAt = fromMicros(expiresAt)
	r.Pending.Since = fromMicros(pendingSince)
	r.Lease.ExpiresAt = fromMicros(leaseExpires)
	return &r, nil
}

// recordArgs returns the values of rec's columns that writes set, in the
// order of writeColumns: all but id and the lease. It returns CodeInvalid
// if a text field of rec, the id included, is not valid UTF-8 or holds a
// NUL byte.
func recordArgs(rec *tokenkeeper.Record) ([]any, error) {
	if err := checkRecordText(rec); err != nil {
		return nil, err
	}
	scopes, err := jsonText(rec.Scopes, len(rec.Scopes))
	if err != nil {
		return nil, fmt.Errorf("scopes: %w", err)
	}
	metadata, err := jsonText(rec.Metadata, len(rec.Metadata))
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	t := &rec.Tokens
	return []any{rec.Provider, rec.Subject, scopes, string(rec.State), micros(rec.DegradedSince),
		rec.Generation, micros(rec.CreatedAt), micros(rec.UpdatedAt),
		micros(rec.LastRefreshAt), micros(rec.NextRefreshAt),
		rec.LastError, metadata,
		blob(t.AccessToken.Ciphertext), t.AccessToken.KeyID,
		blob(t.RefreshToken.Ciphertext), t.RefreshToken.KeyID,
		micros(t.Expiry), micros(t.ExpiresAt), t.Scope,
		micros(rec.Pending.Since), rec.Pending.Owner, rec.Pending.Unknown,
	}, nil
}

// writeColumns are the columns recordArgs fills, in its order.
var writeColumns = []string{"provider", "subject", "scopes", "state", "degraded_since",
	"generation", "created_at", "updated_at", "last_refresh_at", "next_refresh_at",
	"last_error", "metadata",
	"access_token", "access_token_key", "refresh_token", "refresh_token_key",
	"token_expiry", "token_expires_at", "token_scope",
	"pending_since", "pending_owner", "pending_unknown"}

// checkRecordText returns a CodeInvalid error naming the first text field
// of rec (but the Lease, which writes ignore) that checkText refuses.
// Stores hand back what they were given, and neither SQLite's JSON (Scopes
// and Metadata go through encoding/json, which would replace the bytes with
// U+FFFD) nor PostgreSQL's text (which refuses them) can keep such bytes.
func checkRecordText(rec *tokenkeeper.Record) error { return rec.CheckText() }

// checkText returns a CodeInvalid error naming the field name unless v is
// valid UTF-8 without NUL bytes. SQLite's text could keep a NUL, but
// PostgreSQL's cannot, and both stores must accept the same text (see
// tokenkeeper.Store).
func checkText(name, v string) error { return tokenkeeper.CheckStoredText(name, v) }
