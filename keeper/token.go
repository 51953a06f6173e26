package keeper

import (
	"context"
	"errors"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Token returns a valid access token for the connection id, with the time
// until which it is promised valid ([tokenkeeper.AccessToken]).
//
// If the token in memory is within its promise, Token returns it at once,
// without locks shared with other connections and without allocating; on
// the real clock (Config.Now nil) it reads no clock either: a timer clears
// each token's live flag just before its promise ends.
// Otherwise it joins (or starts) the connection's one refresh in flight and
// waits for it, or for ctx. A caller that gives up does not stop the
// refresh: it completes and is persisted for the next caller.
//
// Errors: [tokenkeeper.CodeNotFound] for an unknown connection,
// [tokenkeeper.CodeReconnectRequired] once the grant is dead or the
// connection disconnected, [tokenkeeper.CodeUnavailable] while the provider
// or the store fails (retry later) or after Close, and ctx's error if ctx
// ends first.
func (k *Keeper) Token(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
	if v, ok := k.entries.Load(id); ok {
		e := v.(*entry)
		if c := e.cur.Load(); c != nil {
			if c.live.Load() { // set until just before the promise ends
				if !e.used.Load() {
					e.used.Store(true)
				}
				return c.token, nil
			}
			now := k.now()
			if now.Before(c.token.ExpiresAt) {
				e.touch(now)
				return c.token, nil
			}
		}
	}
	return k.tokenSlow(ctx, id)
}

func (k *Keeper) tokenSlow(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
	if err := id.Validate(); err != nil {
		return tokenkeeper.AccessToken{}, err
	}
	e := k.entry(id)
	e.touch(k.now())
	c, err := k.await(ctx, e, nil, false)
	if err != nil {
		return tokenkeeper.AccessToken{}, err
	}
	return c.token, nil
}

// Invalidate reports that stale, a token handed out for id, was refused by
// the provider (a 401), and returns a fresh token. It refreshes only if
// stale is still the connection's current token, so a storm of 401s costs
// one refresh; if the token already changed (here, or in another process:
// the store is read again), it returns the new one. This breaks the
// promise of stale, which a 401 shows is dead already.
//
// Refusals that a refresh cannot cure are bounded (Config.RejectCooldown):
// if stale is the token that was handed out in place of an earlier refused
// one less than RejectCooldown ago, and is still current and within its
// promise, Invalidate makes no refresh and returns stale itself, with a nil
// error. A caller that gets back the token it reported must not retry with
// it: the provider refuses it for a reason a refresh does not fix. The
// refresh not made is counted in tokenkeeper_refreshes_suppressed_total
// (concurrent reports share one), and one warning is logged per cooldown.
// An operator's [Keeper.Refresh] and the scheduler are not bounded by
// this.
//
// Errors are those of [Keeper.Token].
func (k *Keeper) Invalidate(ctx context.Context, id tokenkeeper.ConnectionID, stale tokenkeeper.Secret) (tokenkeeper.AccessToken, error) {
	if err := id.Validate(); err != nil {
		return tokenkeeper.AccessToken{}, err
	}
	e := k.entry(id)
	if c := e.cur.Load(); c != nil && !c.token.Value.Equal(stale) && k.now().Before(c.token.ExpiresAt) {
		return c.token, nil // a newer token is already here
	}
	c, err := k.await(ctx, e, &stale, false)
	if err != nil {
		return tokenkeeper.AccessToken{}, err
	}
	return c.token, nil
}

// Refresh forces a refresh of the connection now, whatever its current
// token's promise: an operator's action. It still honours a cooldown set
// by a failed refresh (which includes the provider's Retry-After) and a
// pause after the provider rejected the client credentials, failing with
// [tokenkeeper.CodeUnavailable]. It returns the new token.
//
// Errors are those of [Keeper.Token].
func (k *Keeper) Refresh(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
	if err := id.Validate(); err != nil {
		return tokenkeeper.AccessToken{}, err
	}
	c, err := k.await(ctx, k.entry(id), nil, true)
	if err != nil {
		return tokenkeeper.AccessToken{}, err
	}
	return c.token, nil
}

// await joins or starts the connection's flight and waits for its result.
// stale, if set, is a token proven dead; force asks for a refresh whatever
// the current token.
//
// A Token or Invalidate caller that waited for a refresh it did not run
// (another caller's flight, or another owner's lease) adds one observation
// to tokenkeeper_lease_wait_seconds: the sum of those waits.
func (k *Keeper) await(ctx context.Context, e *entry, stale *tokenkeeper.Secret, force bool) (*cached, error) {
	var waited time.Duration
	others := false
	defer func() {
		if others && !force {
			k.metrics.waited(waited)
		}
	}()
	for round := 0; ; round++ {
		if round == 4 {
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "connection %s: no fresh token after %d refreshes", e.id, round)
		}
		f, started, err := k.join(e, stale, force)
		if err == errEvicted {
			e = k.entry(e.id)
			round--
			continue
		}
		if err != nil {
			return nil, err
		}
		joined := time.Now()
		select {
		case <-f.done:
		case <-ctx.Done():
			if !started {
				waited, others = waited+time.Since(joined), true
			}
			return nil, ctx.Err()
		}
		switch {
		case !started:
			waited, others = waited+time.Since(joined), true
		case f.heldWait > 0: // our flight waited on another owner's lease
			waited, others = waited+f.heldWait, true
		}
		if f.err != nil {
			return nil, f.err
		}
		c := f.c
		// A forced flight that started before our request may have ended
		// with the very token we report stale, or an operator's refresh may
		// have joined a flight that did not refresh: go again. A flight
		// that kept the refused token on purpose (Config.RejectCooldown)
		// answers for it.
		if c == nil || (stale != nil && c.token.Value.Equal(*stale) && !f.kept) || (force && !f.force) {
			if k.closed.Load() {
				return nil, errClosed()
			}
			continue
		}
		if !k.now().Before(c.token.ExpiresAt) && stale == nil && !force {
			continue // the flight gave us a token that is already due
		}
		return c, nil
	}
}

// join returns the connection's flight, starting one if none runs
// (started).
func (k *Keeper) join(e *entry, stale *tokenkeeper.Secret, force bool) (f *flight, started bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead.Load() {
		return nil, false, errEvicted
	}
	f = e.flight
	if f == nil {
		f = newFlight()
		f.force = force
		started = true
	}
	if stale != nil {
		// Before a new flight runs, so that its first decision counts it.
		f.markStale(*stale)
	}
	if started && !k.launch(e, f) {
		return nil, false, errClosed()
	}
	if force && !f.force {
		// An operator's refresh does not ride on a flight that may decide
		// not to refresh; it waits for that one to end and starts its own.
		return f, started, nil
	}
	if force {
		f.urgentOnce.Do(func() { close(f.urgent) })
	}
	return f, started, nil
}

// fly runs a flight to its end and publishes the result.
func (k *Keeper) fly(e *entry, f *flight) {
	defer k.flights.Done()
	ctx, cancel := context.WithTimeout(k.base, k.flightDeadline())
	defer cancel()
	c, err := k.ensure(ctx, e, f)
	if c != nil {
		e.publish(c, c.ver)
	}
	e.mu.Lock()
	if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound {
		// Do not keep unknown ids in memory. Marked dead under e.mu, as
		// evict does: a caller still holding e starts no flight on it.
		e.dead.Store(true)
		k.entries.CompareAndDelete(e.id, e)
	}
	f.err, f.c = err, c
	e.flight = nil
	e.mu.Unlock()
	close(f.done)
}

// launch starts flight f for e, which must have none; e.mu is held. It
// returns false after Close.
func (k *Keeper) launch(e *entry, f *flight) bool {
	k.life.Lock()
	defer k.life.Unlock()
	if k.closed.Load() {
		return false
	}
	e.flight = f
	k.flights.Add(1) // under life, so never concurrent with Close's Wait
	go k.fly(e, f)
	return true
}

// flightDeadline bounds a whole flight: waits, attempts and the commit.
func (k *Keeper) flightDeadline() time.Duration {
	return time.Duration(k.cfg.MaxAttempts+2)*(k.cfg.RefreshTimeout+k.cfg.BackoffMax) + k.cfg.DrainWait + 2*k.cfg.LeaseTTL
}

// errEvicted is join's answer for an entry evicted meanwhile: take the
// map's entry for the id again.
var errEvicted = errors.New("keeper: entry evicted")

func errClosed() error {
	return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "keeper is closed")
}
