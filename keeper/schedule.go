package keeper

import (
	"context"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Run refreshes ahead of expiry until ctx ends, then returns nil.
//
//   - Hot connections (asked for a token within the last token lifetime)
//     are refreshed when their promise ends (about 80% of the lifetime,
//     plus the drain grace), so callers never wait on the token endpoint
//     beyond the short handoff.
//   - Cold connections are refreshed on demand, by [Keeper.Token].
//   - A keep-alive refreshes every active connection whose refresh token is
//     older than KeepAlive, so that refresh tokens never expire unnoticed.
//   - With Config.Retention set, [Keeper.Prune] runs every PruneInterval
//     (the first time shortly after Run starts), in its own goroutine so
//     that a long prune never delays a refresh. Run waits for it to stop.
//
// Every refresh goes through the same rate limit, concurrency cap, lease
// and promise as on-demand ones. Run may be called in several processes on
// one store: the lease makes each refresh happen once, and a prune deletes
// a connection only if nobody wrote it since it was listed. Call Run once
// per Keeper.
func (k *Keeper) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if k.cfg.Retention > 0 {
		wg.Go(func() { k.pruneLoop(ctx) })
	}
	if k.cfg.KeepAlive > 0 {
		wg.Go(func() { k.keepAliveLoop(ctx) })
	}
	t := time.NewTicker(k.cfg.ScheduleInterval)
	defer t.Stop()
	for {
		k.refreshHot()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// keepAliveLoop runs the keep-alive scan now and then every 60 schedule
// intervals, one scan at a time, until ctx ends.
func (k *Keeper) keepAliveLoop(ctx context.Context) {
	t := time.NewTicker(60 * k.cfg.ScheduleInterval)
	defer t.Stop()
	for {
		k.keepAlive(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// idleEviction is the least time an entry stays in memory unused (see
// refreshHot).
const idleEviction = 10 * time.Minute

// refreshHot starts a flight for each hot connection whose promise has
// ended. The flight itself waits for the drain grace. It also evicts the
// entries nobody asked for a token for in twice their token lifetime (at
// least idleEviction), and those never asked for (made for a keep-alive, an
// operator's refresh, a connect) once their flight is over: memory holds
// the connections in use, not every connection ever touched. An evicted
// connection's next Token reads the store (no refresh, if its token is
// still promised).
func (k *Keeper) refreshHot() {
	now := k.now()
	k.entries.Range(func(_, v any) bool {
		e := v.(*entry)
		if e.used.Load() && e.used.Swap(false) {
			e.lastUsed.Store(now.UnixNano())
		}
		c := e.cur.Load()
		idle := idleEviction
		if c != nil {
			idle = max(idle, 2*c.lifetime)
		}
		if last := e.lastUsed.Load(); last == 0 || now.UnixNano()-last > int64(idle) {
			if k.evict(e) {
				return true
			}
		}
		if c != nil && c.live.Load() && !now.Before(c.token.ExpiresAt.Add(-liveMargin)) {
			// The live flag's timer runs on the monotonic clock, the promise
			// on the wall clock: after a wall-clock step, this tick catches
			// up.
			c.live.Store(false)
		}
		if c == nil || now.Before(c.token.ExpiresAt) {
			return true
		}
		if now.UnixNano()-e.lastUsed.Load() > int64(c.lifetime) {
			return true // cold: refreshed on demand
		}
		if k.startFlight(e) {
			// The plan is the record's NextRefreshAt: the promise plus the
			// grace (the flight waits out the grace itself).
			k.metrics.late(now.Sub(c.token.ExpiresAt.Add(k.grace(c.lifetime))))
		}
		return true
	})
}

// keepAlive refreshes each active connection whose refresh token is older
// than KeepAlive, a page at a time: it waits for a page's flights before it
// lists the next, so a scan that finds a million old tokens (after a long
// outage, or an import) holds a page of them in memory, not a million. The
// flights go through the rate limit like any refresh, so a long scan takes
// as long as the limit says; the hot schedule runs meanwhile.
func (k *Keeper) keepAlive(ctx context.Context) {
	cutoff := k.now().Add(-k.cfg.KeepAlive)
	var after tokenkeeper.ConnectionID
	for ctx.Err() == nil {
		page, err := k.cfg.Store.ListConnections(ctx, tokenkeeper.ConnectionFilter{
			State: tokenkeeper.StateActive, LastRefreshBefore: cutoff, After: after, Limit: k.keepAlivePage,
		})
		if err != nil {
			k.log.Warn("keep-alive: cannot list connections", "error", err)
			return
		}
		var flights []*flight
		for _, rec := range page {
			after = rec.ID
			k.log.Info("keep-alive: refreshing an old refresh token", "connection", rec.ID, "last_refresh", rec.LastRefreshAt)
			f := k.startKeepAlive(k.entry(rec.ID))
			if f == nil && !k.closed.Load() {
				// The scheduler evicted the new entry (never used, no flight
				// yet) in between: take the map's entry again.
				f = k.startKeepAlive(k.entry(rec.ID))
			}
			if f != nil {
				flights = append(flights, f)
			}
		}
		for _, f := range flights {
			select {
			case <-f.done:
			case <-ctx.Done():
				return
			}
		}
		if len(page) < k.keepAlivePage {
			return
		}
	}
}

// startFlight starts e's flight if none runs, without waiting for it, and
// reports whether it did.
func (k *Keeper) startFlight(e *entry) bool {
	_, started, err := k.join(e, nil, false)
	return err == nil && started
}

// startKeepAlive forces a refresh of e that still honours the promise of
// the token it replaces, and returns its flight (the one already running,
// if any; nil after Close or if e was evicted meanwhile).
func (k *Keeper) startKeepAlive(e *entry) *flight {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead.Load() {
		return nil
	}
	if e.flight != nil {
		return e.flight
	}
	f := newFlight()
	f.keepAlive = true
	if !k.launch(e, f) {
		return nil
	}
	return f
}
