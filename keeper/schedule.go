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
	if k.cfg.Retention > 0 {
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { k.pruneLoop(ctx) })
		defer wg.Wait()
		defer cancel()
	}
	t := time.NewTicker(k.cfg.ScheduleInterval)
	defer t.Stop()
	for tick := 0; ; tick++ {
		if tick%60 == 0 && k.cfg.KeepAlive > 0 {
			k.keepAlive(ctx)
		}
		k.refreshHot()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// refreshHot starts a flight for each hot connection whose promise has
// ended. The flight itself waits for the drain grace.
func (k *Keeper) refreshHot() {
	now := k.now()
	k.entries.Range(func(_, v any) bool {
		e := v.(*entry)
		if e.used.Load() && e.used.Swap(false) {
			e.lastUsed.Store(now.UnixNano())
		}
		c := e.cur.Load()
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

// keepAlive starts a flight for each active connection whose refresh token
// is older than KeepAlive.
func (k *Keeper) keepAlive(ctx context.Context) {
	cutoff := k.now().Add(-k.cfg.KeepAlive)
	var after tokenkeeper.ConnectionID
	for ctx.Err() == nil {
		page, err := k.cfg.Store.ListConnections(ctx, tokenkeeper.ConnectionFilter{
			State: tokenkeeper.StateActive, LastRefreshBefore: cutoff, After: after, Limit: 200,
		})
		if err != nil {
			k.log.Warn("keep-alive: cannot list connections", "error", err)
			return
		}
		for _, rec := range page {
			after = rec.ID
			k.log.Info("keep-alive: refreshing an old refresh token", "connection", rec.ID, "last_refresh", rec.LastRefreshAt)
			k.startKeepAlive(k.entry(rec.ID))
		}
		if len(page) < 200 {
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
// the token it replaces.
func (k *Keeper) startKeepAlive(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.flight != nil {
		return
	}
	f := newFlight()
	f.keepAlive = true
	k.launch(e, f)
}
