package keeper

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// refreshLeased runs the refresh of rec while holding lease: the marker,
// the attempts with backoff, and the settling of the outcome. wait (ctx,
// also ended by Close) bounds the wait for the rate limit before the first
// attempt, when nothing has been sent; after that only ctx counts. asked is
// when the AcquireLease that granted lease was called.
func (k *Keeper) refreshLeased(ctx, wait context.Context, e *entry, f *flight, lease tokenkeeper.Lease, asked time.Time, rec *tokenkeeper.Record, lockWait time.Duration) (*cached, error) {
	lh := k.holdLease(e.id, lease, asked)
	defer lh.stop()

	refresh, err := k.open(rec, tokenkeeper.FieldRefreshToken)
	if err != nil {
		return nil, err
	}
	if refresh.IsZero() {
		return nil, k.settleDead(e, lh, rec, "no refresh token is stored", nil)
	}
	// A marker left by an earlier attempt (ours, or a process that died)
	// means that attempt's outcome is unknown.
	unknown := !rec.Pending.IsZero()
	if unknown {
		k.log.Warn("refresh: an earlier refresh's outcome is unknown; one more attempt with the stored refresh token",
			"connection", e.id, "pending_since", rec.Pending.Since, "pending_owner", rec.Pending.Owner)
	}
	if until, paused := k.paused(); paused {
		// The provider refuses our client: send nothing, keep the token.
		why := *k.rejectedWhy.Load()
		return nil, k.settleFailed(e, lh, rec, unknown, result{class: classClient, code: "paused",
			err: tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "%s; refreshing is paused", why)}, time.Until(until))
	}
	var last result
	limit, extra := k.cfg.MaxAttempts, false
	for attempt := 1; attempt <= limit; attempt++ {
		if attempt == 1 {
			if err := k.limiter.Wait(wait); err != nil {
				return nil, k.ctxError(e.id, err) // nothing was sent
			}
		} else if err := k.limiter.Wait(ctx); err != nil {
			break
		}
		if lh.lost.Load() {
			if attempt == 1 {
				return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "connection %s: lease lost before sending; nothing was sent", e.id)
			}
			break
		}
		// The marker is durable before the request leaves.
		marked, err := k.mark(ctx, e.id, lh, rec, unknown)
		if err != nil {
			if attempt == 1 {
				return nil, err // nothing was sent
			}
			break
		}
		rec = marked
		if !lh.valid() {
			// The lease may have run out since it was last renewed (a stall:
			// a GC pause, SIGSTOP, a slow renewal): another process may hold
			// it and be refreshing. Send nothing; the marker tells the next
			// holder that this attempt's outcome is unknown, and it was in
			// fact never sent.
			k.log.Warn("refresh: lease not surely held any more; nothing sent", "connection", e.id)
			if attempt == 1 {
				return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "connection %s: lease ran out before sending; nothing was sent", e.id)
			}
			break
		}
		k.step("sending", e.id)
		sentAt := k.now()
		start := time.Now()
		last = k.exchange(ctx, refresh)
		roundTrip := time.Since(start)
		k.step("received", e.id)
		if last.class == classOK {
			if f.refused {
				// Noted before the commit publishes it: a caller may report
				// it refused as soon as it can get it.
				e.refusal.note(tokenkeeper.NewSecret(last.tok.AccessToken), k.now())
			}
			// Nothing but sealing between the response and the commit.
			c, err := k.commit(e, lh, rec, refresh, last.tok, sentAt)
			k.metrics.attempt(last.class, roundTrip)
			k.logAttempt(e.id, attempt, time.Since(start), lockWait, last)
			return c, err
		}
		k.metrics.attempt(last.class, roundTrip)
		k.logAttempt(e.id, attempt, time.Since(start), lockWait, last)
		switch last.class {
		case classDead:
			return nil, k.settleDead(e, lh, rec, deadReason(unknown, last), last.err)
		case classClient:
			return nil, k.settleClientRejected(e, lh, rec, unknown, last)
		case classRejected:
			return nil, k.settleFailed(e, lh, rec, unknown, last, 0)
		case classLost, classServer:
			// Nobody knows whether the provider rotated (a 5xx does not
			// prove it did not), so the current access token may be dead.
			unknown = true
			e.publish(nil, versionOf(rec))
			if last.class == classLost && !extra && attempt == limit {
				// A lost response always gets exactly one more attempt with
				// the stored refresh token: it succeeds if the request never
				// took effect, or ends in invalid_grant. Only one.
				limit++
			}
			extra = extra || last.class == classLost
		}
		if last.retryAfter > k.cfg.MaxRetryAfter {
			return nil, k.settleFailed(e, lh, rec, unknown, last, last.retryAfter)
		}
		if attempt < limit {
			if err := sleep(ctx, max(last.retryAfter, k.backoff(attempt)), nil); err != nil {
				break
			}
		}
	}
	return nil, k.settleFailed(e, lh, rec, unknown, last, last.retryAfter)
}

// paused reports whether refreshing is paused because the provider
// rejected the client credentials, and until when. Once the pause ends,
// exactly one caller claims the probe (and the pause is extended for the
// others); a success ends the pause.
func (k *Keeper) paused() (time.Time, bool) {
	until := k.rejectedUntil.Load()
	if until == 0 {
		return time.Time{}, false
	}
	now := time.Now()
	if now.UnixNano() < until {
		return time.Unix(0, until), true
	}
	next := now.Add(k.cfg.ClientRejectedCooldown)
	if k.rejectedUntil.CompareAndSwap(until, next.UnixNano()) {
		return time.Time{}, false // this caller probes
	}
	return next, true
}

// mark writes the outcome-unknown marker, fenced by the lease. Nothing has
// been sent when it fails.
func (k *Keeper) mark(ctx context.Context, id tokenkeeper.ConnectionID, lh *leaseHolder, rec *tokenkeeper.Record, unknown bool) (*tokenkeeper.Record, error) {
	marked, err := k.leasedUpdate(ctx, id, lh, rec, func(r *tokenkeeper.Record) {
		r.Pending = tokenkeeper.Pending{Since: k.stamp(), Owner: k.cfg.Owner, Unknown: unknown}
	})
	if err != nil && !errors.Is(err, errAgain) {
		return nil, k.storeError(id, "mark refresh pending", err)
	}
	return marked, err
}

// leasedUpdate applies change to base and writes it, fenced by the lease.
// If a write made without the lease (metadata) moved the generation, it
// re-reads and applies change to the fresh record, as long as the token
// set is still the one base holds and the lease is still ours; otherwise
// it returns errAgain.
func (k *Keeper) leasedUpdate(ctx context.Context, id tokenkeeper.ConnectionID, lh *leaseHolder, base *tokenkeeper.Record, change func(*tokenkeeper.Record)) (*tokenkeeper.Record, error) {
	for try := 0; ; try++ {
		next := *base
		change(&next)
		err := k.writeLeased(ctx, &next, base.Generation, lh.lease())
		if err == nil {
			return &next, nil
		}
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict || try >= 5 {
			return nil, err
		}
		cur, gerr := k.cfg.Store.GetConnection(ctx, id)
		if gerr != nil {
			return nil, gerr
		}
		if !bytes.Equal(cur.Tokens.RefreshToken.Ciphertext, base.Tokens.RefreshToken.Ciphertext) ||
			cur.Lease.Fence != lh.lease().Fence || cur.Lease.Owner != k.cfg.Owner {
			return nil, errAgain
		}
		base = cur
	}
}

// backoff returns the full-jitter delay before attempt+1: uniform in
// [0, min(BackoffMax, BackoffBase x 2^(attempt-1))].
func (k *Keeper) backoff(attempt int) time.Duration {
	ceil := k.cfg.BackoffBase << min(attempt-1, 20)
	if ceil <= 0 || ceil > k.cfg.BackoffMax {
		ceil = k.cfg.BackoffMax
	}
	return rand.N(ceil + 1)
}

func deadReason(unknown bool, r result) string {
	if unknown {
		return "refresh response lost: an earlier refresh's outcome was unknown, and the provider then rejected the stored refresh token (" + r.code + ")"
	}
	return "the provider rejected the refresh token (" + r.code + "): the grant was revoked or expired"
}

// leaseHolder renews a lease in the background while a refresh runs.
type leaseHolder struct {
	k    *Keeper
	id   tokenkeeper.ConnectionID
	cur  atomic.Pointer[tokenkeeper.Lease]
	lost atomic.Bool
	// base and granted track, on the local monotonic clock, when the
	// latest grant of the lease (acquisition or renewal) was asked for:
	// the store set its expiry LeaseTTL after a moment no earlier than
	// that, so the lease surely lasts until granted + LeaseTTL whatever
	// the clocks say.
	base    time.Time
	granted atomic.Int64 // nanoseconds since base
	done    chan struct{}
	ended   chan struct{}
}

// holdLease starts renewing l, which an AcquireLease called at asked
// granted.
func (k *Keeper) holdLease(id tokenkeeper.ConnectionID, l tokenkeeper.Lease, asked time.Time) *leaseHolder {
	h := &leaseHolder{k: k, id: id, base: asked, done: make(chan struct{}), ended: make(chan struct{})}
	h.cur.Store(&l)
	go h.renew()
	return h
}

func (h *leaseHolder) lease() tokenkeeper.Lease { return *h.cur.Load() }

// grant records a grant of the lease asked for at asked.
func (h *leaseHolder) grant(asked time.Time) {
	d := int64(asked.Sub(h.base))
	for {
		old := h.granted.Load()
		if d <= old || h.granted.CompareAndSwap(old, d) {
			return
		}
	}
}

// left returns how long the lease surely lasts from now: its last grant
// plus LeaseTTL, on the local monotonic clock.
func (h *leaseHolder) left() time.Duration {
	return time.Duration(h.granted.Load()) + h.k.cfg.LeaseTTL - time.Since(h.base)
}

// valid reports whether the lease is surely held for as long as a request
// sent now can take: not lost, and lasting at least RefreshTimeout (plus a
// margin) from now, whatever the clocks say. A request that reached the
// provider is processed whatever the client does later (cancelling it
// proves nothing), so the lease must outlast the whole request: otherwise
// another holder could take over and present the same refresh token while
// this request is still at the provider. Renewals come every third of
// LeaseTTL, and LeaseTTL is at least twice RefreshTimeout, so a holder that
// is not stalled always passes; one that stalled (a GC pause, SIGSTOP,
// renewals failing against a database that went away) sends nothing.
func (h *leaseHolder) valid() bool {
	return !h.lost.Load() && h.left() >= h.k.cfg.RefreshTimeout+2*leaseMargin
}

func (h *leaseHolder) renew() {
	defer close(h.ended)
	t := time.NewTicker(h.k.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.k.cfg.LeaseTTL/3)
		asked := time.Now()
		l, err := h.k.cfg.Store.RenewLease(ctx, h.id, h.lease(), h.k.cfg.LeaseTTL)
		cancel()
		switch {
		case err == nil:
			h.cur.Store(&l)
			h.grant(asked)
		case tokenkeeper.ErrorCode(err) == tokenkeeper.CodeConflict:
			if !h.lost.Swap(true) {
				h.k.log.Warn("refresh: lease lost while refreshing (this process stalled, or could not renew it); its writes are fenced off", "connection", h.id)
			}
		default:
			h.k.log.Warn("refresh: lease renewal failed; will retry", "connection", h.id, "error", err)
		}
	}
}

// replace installs a lease re-acquired (asked for at asked) after the old
// one was lost.
func (h *leaseHolder) replace(l tokenkeeper.Lease, asked time.Time) {
	h.cur.Store(&l)
	h.grant(asked)
	h.lost.Store(false)
}

// stop ends the renewals and releases the lease.
func (h *leaseHolder) stop() {
	close(h.done)
	<-h.ended
	h.k.release(h.id, h.lease())
}

func (k *Keeper) release(id tokenkeeper.ConnectionID, l tokenkeeper.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.LeaseTTL/3)
	defer cancel()
	if err := k.cfg.Store.ReleaseLease(ctx, id, l); err != nil {
		k.log.Warn("refresh: lease release failed; it will expire", "connection", id, "error", err)
	}
}
