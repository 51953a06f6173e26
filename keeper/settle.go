package keeper

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// settleDead ends the connection after invalid_grant: reconnect_required,
// tokens wiped, no retries. It re-reads the store first, because a changed
// refresh token means a lost race, not a dead grant.
func (k *Keeper) settleDead(ctx context.Context, e *entry, lh *leaseHolder, rec *tokenkeeper.Record, reason string, cause error) error {
	cur, err := k.cfg.Store.GetConnection(ctx, e.id)
	if err != nil {
		return k.storeError(e.id, "re-read after invalid_grant", err)
	}
	if !bytes.Equal(cur.Tokens.RefreshToken.Ciphertext, rec.Tokens.RefreshToken.Ciphertext) || cur.State != tokenkeeper.StateActive {
		k.log.Warn("refresh: invalid_grant, but the stored refresh token changed meanwhile: a lost race, not a dead grant", "connection", e.id)
		return errAgain
	}
	next := *cur
	next.State = tokenkeeper.StateReconnectRequired
	next.Tokens = tokenkeeper.SealedTokenSet{} // the dead tokens are wiped
	next.Pending = tokenkeeper.Pending{}
	next.LastError = reason
	next.NextRefreshAt = time.Time{}
	next.DegradedSince = time.Time{}
	if err := k.writeLeased(ctx, &next, cur.Generation, lh.lease()); err != nil {
		// The marker stays; the next attempt meets invalid_grant again and
		// settles then. Nothing is lost: the grant is dead either way.
		k.log.Error("refresh: cannot record reconnect_required", "connection", e.id, "error", err)
	}
	e.cur.Store(nil)
	k.log.Error("refresh: connection needs reconnecting", "connection", e.id, "reason", reason)
	k.emit(ctx, tokenkeeper.EventReconnectRequired, &next, reason)
	if cause == nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "connection %s needs reconnecting: %s", e.id, reason)
	}
	return tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "connection %s needs reconnecting: %s: %w", e.id, reason, cause)
}

// settleClientRejected pauses all refreshing under the client after
// invalid_client or unauthorized_client, and raises the alert. The
// connection is kept: it works again once the credentials are fixed.
func (k *Keeper) settleClientRejected(ctx context.Context, e *entry, lh *leaseHolder, rec *tokenkeeper.Record, unknown bool, r result) error {
	why := fmt.Sprintf("the provider rejected the client credentials (%s)", r.code)
	k.rejectedWhy.Store(&why)
	k.rejectedUntil.Store(time.Now().Add(k.cfg.ClientRejectedCooldown).UnixNano())
	k.log.Error("ALERT: the provider rejects this integration's client credentials; refreshing is paused for every connection until they are fixed",
		"connection", e.id, "error_code", r.code, "status", r.status, "probe_after", k.cfg.ClientRejectedCooldown)
	k.emit(ctx, tokenkeeper.EventClientRejected, rec, why)
	return k.settleFailed(ctx, e, lh, rec, unknown, r, k.cfg.ClientRejectedCooldown)
}

// settleFailed records a refresh that failed without killing the grant:
// the connection is degraded, keeps its token until the cooldown (if that
// token is known to be alive), and is tried again after it.
func (k *Keeper) settleFailed(ctx context.Context, e *entry, lh *leaseHolder, rec *tokenkeeper.Record, unknown bool, r result, cooldown time.Duration) error {
	now := k.stamp()
	cooldown = max(cooldown, k.cfg.FailureCooldown)
	next := *rec
	next.LastError = failReason(r)
	next.NextRefreshAt = truncate(now.Add(cooldown))
	if unknown {
		// The marker stays: whoever tries next knows the outcome is unknown,
		// and the current access token may be dead, so nothing is promised.
		next.Pending = tokenkeeper.Pending{Since: rec.Pending.Since, Owner: k.cfg.Owner, Unknown: true}
	} else {
		next.Pending = tokenkeeper.Pending{}
		// Nothing rotated: the old token lives until the provider's expiry.
		// Extend its promise to the next try (never shrink it).
		promise := truncate(now.Add(cooldown - k.cfg.DrainGrace))
		if latest := next.Tokens.Expiry.Add(-2 * k.cfg.DrainGrace); promise.After(latest) {
			promise = truncate(latest)
		}
		if promise.After(next.Tokens.ExpiresAt) {
			next.Tokens.ExpiresAt = promise
		}
	}
	wasDegraded := rec.Degraded()
	if !wasDegraded {
		next.DegradedSince = now
	}
	if err := k.writeLeased(ctx, &next, rec.Generation, lh.lease()); err != nil {
		k.log.Error("refresh: cannot record the failure", "connection", e.id, "error", err)
	} else if c, err := k.cachedFrom(&next); err == nil && c != nil && !unknown {
		e.cur.Store(c)
	} else if unknown {
		e.cur.Store(nil)
	}
	if !wasDegraded {
		k.emit(ctx, tokenkeeper.EventDegraded, &next, next.LastError)
	}
	return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "connection %s: refresh failed (%s); next try after %s: %w",
		e.id, next.LastError, cooldown.Round(time.Millisecond), r.err)
}

func failReason(r result) string {
	switch r.class {
	case classServer:
		return fmt.Sprintf("the token endpoint failed with %d; the outcome is unknown", r.status)
	case classBusy:
		return "the token endpoint is rate limiting (429)"
	case classLost:
		return "the token response was lost; the outcome is unknown"
	case classNotSent:
		return "the token endpoint could not be reached"
	case classClient:
		return fmt.Sprintf("the provider rejected the client credentials (%s)", r.code)
	case classRejected:
		if r.code != "" {
			return fmt.Sprintf("the token endpoint refused the refresh (%d %s)", r.status, r.code)
		}
		return fmt.Sprintf("the token endpoint refused the refresh (%d)", r.status)
	}
	return "refresh failed"
}

// logAttempt writes the one record per refresh attempt that rule 8 of
// Pleo's lifecycle pages asks for. It never holds a token.
func (k *Keeper) logAttempt(id tokenkeeper.ConnectionID, attempt int, took, lockWait time.Duration, r result) {
	attrs := []any{"connection", id, "attempt", attempt, "duration", took, "lock_wait", lockWait, "outcome", r.class.String()}
	if r.status != 0 {
		attrs = append(attrs, "status", r.status)
	}
	if r.code != "" {
		attrs = append(attrs, "error_code", r.code)
	}
	if r.retryAfter > 0 {
		attrs = append(attrs, "retry_after", r.retryAfter)
	}
	if r.class == classOK {
		k.log.Info("refresh attempt", attrs...)
		return
	}
	attrs = append(attrs, "reason", failReason(r), "error", r.err)
	k.log.Warn("refresh attempt", attrs...)
}

func (k *Keeper) emit(ctx context.Context, t tokenkeeper.EventType, rec *tokenkeeper.Record, reason string) {
	if k.cfg.Events == nil {
		return
	}
	k.cfg.Events.Handle(ctx, tokenkeeper.Event{Type: t, ConnectionID: rec.ID, Subject: rec.Subject, Reason: reason, Time: k.stamp()})
}
