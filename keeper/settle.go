package keeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// settleContext bounds a settling write. It is not the flight's context:
// the outcome must be recorded even if the flight ran out of time.
func (k *Keeper) settleContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(k.base, k.cfg.LeaseTTL)
}

// settleDead ends the connection after invalid_grant: reconnect_required,
// tokens wiped, no retries. It re-reads the store first, because a changed
// refresh token means a lost race, not a dead grant.
func (k *Keeper) settleDead(e *entry, lh *leaseHolder, rec *tokenkeeper.Record, reason string, cause error) error {
	ctx, cancel := k.settleContext()
	defer cancel()
	cur, err := k.cfg.Store.GetConnection(ctx, e.id)
	if err != nil {
		return k.storeError(e.id, "re-read after invalid_grant", err)
	}
	if !bytes.Equal(cur.Tokens.RefreshToken.Ciphertext, rec.Tokens.RefreshToken.Ciphertext) || cur.State != tokenkeeper.StateActive {
		k.log.Warn("refresh: invalid_grant, but the stored refresh token changed meanwhile: a lost race, not a dead grant", "connection", e.id)
		return errAgain
	}
	next, err := k.leasedUpdate(ctx, e.id, lh, cur, func(r *tokenkeeper.Record) {
		r.State = tokenkeeper.StateReconnectRequired
		r.Tokens = tokenkeeper.SealedTokenSet{} // the dead tokens are wiped
		r.Pending = tokenkeeper.Pending{}
		r.LastError = reason
		r.NextRefreshAt = time.Time{}
		r.DegradedSince = time.Time{}
	})
	switch {
	case errors.Is(err, errAgain):
		return errAgain
	case err != nil:
		// The marker stays; the next attempt meets invalid_grant again and
		// settles then. Nothing is lost: the grant is dead either way.
		k.log.Error("refresh: cannot record reconnect_required", "connection", e.id, "error", err)
		next = cur
		e.publish(nil, versionOf(cur))
	default:
		e.publish(nil, versionOf(next))
	}
	k.log.Error("refresh: connection needs reconnecting", "connection", e.id, "reason", reason)
	k.emit(ctx, tokenkeeper.EventReconnectRequired, next, reason)
	if cause == nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "connection %s needs reconnecting: %s", e.id, reason)
	}
	return tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "connection %s needs reconnecting: %s: %w", e.id, reason, cause)
}

// settleClientRejected pauses all refreshing under the client after
// invalid_client or unauthorized_client, and raises the alert. The
// connection is kept: it works again once the credentials are fixed.
func (k *Keeper) settleClientRejected(e *entry, lh *leaseHolder, rec *tokenkeeper.Record, unknown bool, r result) error {
	why := fmt.Sprintf("the provider rejected the client credentials (%s)", r.code)
	k.rejectedWhy.Store(&why)
	k.rejectedUntil.Store(time.Now().Add(k.cfg.ClientRejectedCooldown).UnixNano())
	k.log.Error("ALERT: the provider rejects this integration's client credentials; refreshing is paused for every connection until they are fixed",
		"connection", e.id, "error_code", r.code, "status", r.status, "probe_after", k.cfg.ClientRejectedCooldown)
	k.emit(context.Background(), tokenkeeper.EventClientRejected, rec, why)
	return k.settleFailed(e, lh, rec, unknown, r, k.cfg.ClientRejectedCooldown)
}

// settleFailed records a refresh that failed without killing the grant:
// the connection is degraded, keeps its token until the cooldown (if that
// token is known to be alive), and is tried again after it. The cooldown
// is FailureCooldown, cut short so that the next try comes before a live
// token expires, and never shorter than wait (a Retry-After or a pause the
// provider asked for).
func (k *Keeper) settleFailed(e *entry, lh *leaseHolder, rec *tokenkeeper.Record, unknown bool, r result, wait time.Duration) error {
	ctx, cancel := k.settleContext()
	defer cancel()
	now := k.stamp()
	cooldown := k.cfg.FailureCooldown
	if !unknown && !rec.Tokens.Expiry.IsZero() {
		grace := k.grace(rec.Tokens.Expiry.Sub(rec.LastRefreshAt))
		if left := rec.Tokens.Expiry.Add(-2 * grace).Sub(now); left < cooldown {
			cooldown = max(left, k.cfg.BackoffMax)
		}
	}
	cooldown = max(cooldown, wait)
	reason := failReason(r)
	next, err := k.leasedUpdate(ctx, e.id, lh, rec, func(n *tokenkeeper.Record) {
		n.LastError = reason
		n.NextRefreshAt = truncate(now.Add(cooldown))
		if !n.Degraded() {
			n.DegradedSince = now
		}
		if unknown {
			// The marker stays: whoever tries next knows the outcome is
			// unknown, and the current access token may be dead, so nothing
			// is promised.
			n.Pending = tokenkeeper.Pending{Since: rec.Pending.Since, Owner: k.cfg.Owner, Unknown: true}
			return
		}
		n.Pending = tokenkeeper.Pending{}
		// Nothing rotated: the old token lives until the provider's expiry.
		// Extend its promise to the next try (never shrink it).
		grace := k.grace(n.Tokens.Expiry.Sub(n.LastRefreshAt))
		promise := truncate(now.Add(cooldown - grace))
		if latest := n.Tokens.Expiry.Add(-2 * grace); promise.After(latest) {
			promise = truncate(latest)
		}
		if promise.After(n.Tokens.ExpiresAt) {
			n.Tokens.ExpiresAt = promise
		}
	})
	switch {
	case err != nil && !errors.Is(err, errAgain):
		k.log.Error("refresh: cannot record the failure", "connection", e.id, "error", err)
		if unknown {
			e.publish(nil, versionOf(rec))
		}
	case err == nil && unknown:
		e.publish(nil, versionOf(next))
	case err == nil:
		if c, cerr := k.cachedFrom(next); cerr == nil && c != nil {
			e.publish(c, versionOf(next))
		}
	}
	if err == nil && !rec.Degraded() {
		k.emit(ctx, tokenkeeper.EventDegraded, next, reason)
	}
	return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "connection %s: refresh failed (%s); next try after %s: %w",
		e.id, reason, cooldown.Round(time.Millisecond), r.err)
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
		if r.code == "paused" {
			return "refreshing is paused: the provider rejected the client credentials"
		}
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
	k.cfg.Events.Handle(ctx, tokenkeeper.Event{Type: t, ConnectionID: rec.ID, Subject: rec.Subject, Reason: reason, Time: k.stamp(), Generation: rec.Generation})
}
