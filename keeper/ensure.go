package keeper

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// ensure brings e's token up to date for flight f and returns it: it reads
// the store, decides whether a refresh is due, honours the promise of the
// current token, takes the lease and refreshes.
func (k *Keeper) ensure(ctx context.Context, e *entry, f *flight) (*cached, error) {
	// wait is ctx, also ended by Close: for the waits before anything is
	// sent. Once a request may be sent, only ctx counts.
	wait, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(k.stopping, cancel)()
	for round := 0; ; round++ {
		if round > 100 {
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "connection %s: no stable token after %d rounds", e.id, round)
		}
		rec, err := k.cfg.Store.GetConnection(ctx, e.id)
		if err != nil {
			return nil, k.storeError(e.id, "read", err)
		}
		if err := usable(rec); err != nil {
			e.publish(nil, versionOf(rec))
			return nil, err
		}
		c, err := k.cachedFrom(rec)
		if err != nil {
			return nil, err
		}
		now := k.now()
		due, urgent := k.due(f, rec, c, now)
		if !due {
			k.noteAdopted(e, f, c, now)
			return c, nil
		}
		// A refusal (a 401 reported to Invalidate) of the current token asks
		// for this refresh, unless an operator forces one anyway.
		f.refused = !f.force && c != nil && f.isStale(c.token.Value)
		// A refresh in flight anywhere (the marker) is about to kill the
		// current token, or has: serve it no more.
		live := c != nil && rec.Pending.IsZero()
		if live {
			e.publish(c, versionOf(rec)) // keep serving within the promise while we wait
		} else {
			e.publish(nil, versionOf(rec))
		}
		// A failed refresh (recorded as degraded) set a cooldown; a marker left
		// by a crash did not, and gets its one more attempt at once.
		if rec.Degraded() && now.Before(rec.NextRefreshAt) {
			// A failed refresh set a cooldown, honouring the provider's
			// Retry-After: no attempt before it, not even an operator's.
			if live && !f.force && now.Before(c.token.ExpiresAt) && !f.isStale(c.token.Value) {
				return c, nil
			}
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable,
				"connection %s: refreshing is failing (%s); next try at %s", e.id, rec.LastError, rec.NextRefreshAt.UTC().Format(time.RFC3339))
		}
		if f.refused && k.keepRefused(e, rec, c, now) {
			f.kept = true // the token issued for the last refusal is refused too
			return c, nil
		}
		if !urgent && c != nil {
			// The handoff: a token is never killed while it is promised.
			if d := c.token.ExpiresAt.Add(k.grace(c.lifetime)).Sub(now); d > 0 {
				if err := sleep(wait, d, f.urgent); err != nil {
					return nil, k.ctxError(e.id, err)
				}
				continue // re-read: another process may have refreshed
			}
			k.drain(wait, e, c.generation, f.urgent)
		}
		c2, again, err := k.leaseAndRefresh(ctx, wait, e, f, rec)
		if err != nil && tokenkeeper.ErrorCode(err) == tokenkeeper.CodeUnavailable && !f.force && !k.closed.Load() {
			// A degraded connection still serves its live token: the failed
			// refresh extended its promise to the next try.
			if c := e.cur.Load(); c != nil && k.now().Before(c.token.ExpiresAt) && !f.isStale(c.token.Value) {
				return c, nil
			}
		}
		if err != nil || !again {
			return c2, err
		}
	}
}

// due reports whether rec needs a refresh for flight f, and whether it is
// urgent (the current token's promise no longer holds).
func (k *Keeper) due(f *flight, rec *tokenkeeper.Record, c *cached, now time.Time) (due, urgent bool) {
	switch {
	case f.force:
		return true, true
	case c == nil:
		return true, true // no token: nothing is promised
	case !rec.Pending.IsZero():
		// A refresh was sent, or is about to be. If its holder lives, the
		// current token dies with its answer: wait for it (AcquireLease
		// finds the lease held). If not, nobody knows the outcome: resolve
		// before serving. Scheduled refreshes are only sent once the
		// promise has ended; a marker within the promise is an operator's
		// forced refresh or one a 401 asked for, elsewhere.
		return true, true
	case f.isStale(c.token.Value):
		return true, true
	case f.keepAlive:
		// Only if the refresh token is still old: a refresh since the
		// keep-alive scan listed it makes this flight moot.
		return issuedAt(rec).Before(now.Add(-k.cfg.KeepAlive)), false
	case !now.Before(c.token.ExpiresAt):
		return true, false
	}
	return false, false
}

// leaseAndRefresh takes the lease (waiting for another holder), re-reads,
// and refreshes. again means: go round, the world changed.
//
// The concurrency cap is taken before the lease, so that a keeper holds
// (and renews) at most MaxConcurrentRefreshes leases at once; it is given
// back while waiting for another process's lease. The rate limit is taken
// only after the lease, by the holder (see refreshLeased): a keeper never
// spends its limit on a connection another process is refreshing, so N
// processes refresh a mass expiry N times as fast as one.
func (k *Keeper) leaseAndRefresh(ctx, wait context.Context, e *entry, f *flight, rec *tokenkeeper.Record) (c *cached, again bool, err error) {
	select {
	case k.sem <- struct{}{}:
	case <-wait.Done():
		return nil, false, k.ctxError(e.id, wait.Err())
	}
	slot := true
	giveBack := func() {
		if slot {
			slot = false
			<-k.sem
		}
	}
	defer giveBack()
	if err := wait.Err(); err != nil { // select picks at random when both are ready
		return nil, false, k.ctxError(e.id, err)
	}
	waitStart := time.Now()
	lease, fresh, err := k.cfg.Store.AcquireLease(ctx, e.id, k.cfg.Owner, k.cfg.LeaseTTL)
	if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeUnavailable && fresh != nil && fresh.Lease.Owner != k.cfg.Owner {
		// Another process refreshes: wait for it to finish, then re-read.
		giveBack()
		held := time.Now()
		err := k.waitForHolder(wait, e.id, fresh)
		f.heldWait += time.Since(held)
		if err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	if err != nil {
		return nil, false, k.storeError(e.id, "acquire lease", err)
	}
	lockWait := time.Since(waitStart)
	if fresh.Generation != rec.Generation || !bytes.Equal(fresh.Tokens.RefreshToken.Ciphertext, rec.Tokens.RefreshToken.Ciphertext) {
		// The re-read after taking the lease: someone refreshed (or wrote)
		// meanwhile. Decide again on what is there now.
		k.release(e.id, lease)
		return nil, true, nil
	}
	c, err = k.refreshLeased(ctx, wait, e, f, lease, waitStart, fresh, lockWait)
	if errors.Is(err, errAgain) {
		return nil, true, nil
	}
	return c, false, err
}

// waitForHolder polls until the lease holder in rec lets go (its refresh
// committed or failed, or its lease ran out). rec comes from an
// AcquireLease that found the lease held, so on the local clock the lease
// ends within LeaseTTL unless renewed; each renewal seen moves that bound.
// ExpiresAt only shortens the wait when it is plausible (see lease.go): a
// skewed clock costs at most one lease period, and when the wait ends,
// AcquireLease decides.
func (k *Keeper) waitForHolder(ctx context.Context, id tokenkeeper.ConnectionID, rec *tokenkeeper.Record) error {
	seen := rec.Lease
	deadline := k.leaseDeadline(seen, time.Now())
	interval := 20 * time.Millisecond
	changed := k.entry(id).changed() // the change feed, if the store has one, ends the wait early
	for {
		d := min(interval+rand.N(interval), max(time.Until(deadline), time.Millisecond))
		if err := sleep(ctx, d, changed); err != nil {
			return k.ctxError(id, err)
		}
		changed = k.entry(id).changed() // armed before the read: a change during it is not missed
		cur, err := k.cfg.Store.GetConnection(ctx, id)
		if err != nil {
			return k.storeError(id, "read", err)
		}
		if cur.Generation != rec.Generation || cur.Lease.Fence != rec.Lease.Fence || cur.Lease.Owner == "" {
			return nil
		}
		now := time.Now()
		if !cur.Lease.ExpiresAt.Equal(seen.ExpiresAt) {
			seen = cur.Lease // renewed since the last look: held until at most LeaseTTL from now
			deadline = k.leaseDeadline(seen, now)
		}
		if !now.Before(deadline) {
			return nil // not renewed for a lease period: ask AcquireLease
		}
		interval = min(2*interval, 250*time.Millisecond)
	}
}

// drain waits, up to DrainWait, for the keeper's own HTTP calls still in
// flight with the token of generation gen, and refuses new ones.
func (k *Keeper) drain(ctx context.Context, e *entry, gen int64, urgent <-chan struct{}) {
	done := e.uses.close(gen)
	t := time.NewTimer(k.cfg.DrainWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		k.log.Warn("refresh: calls with the old token still in flight after the drain wait", "connection", e.id)
	case <-urgent:
	case <-ctx.Done():
	}
}

// sleep waits d, or until wake is closed (nil never is), or ctx ends.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
