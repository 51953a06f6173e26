package keeper

import (
	"context"
	"math"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Coherence across processes. A token's promise already keeps every process
// from serving a token past the moment a scheduled refresh may replace it.
// What the promise cannot cover is a write that breaks it: an operator's
// forced refresh, a refresh a 401 asked for, a disconnect or reconnect, a
// dead grant, all made by another process. With a store that is a
// [tokenkeeper.ChangeFeed] (PostgreSQL), each such commit reaches every
// keeper within milliseconds, and the keeper drops its cached token for
// that connection: the next Token reads the store again. A break in the
// feed (the zero Change) drops every cached token, since changes may have
// been missed while it was down.

// watch follows the store's change feed until ctx ends.
func (k *Keeper) watch(ctx context.Context, feed tokenkeeper.ChangeFeed) {
	for ctx.Err() == nil {
		err := feed.WatchChanges(ctx, k.onChange)
		if err == nil || ctx.Err() != nil {
			return
		}
		k.log.Error("change feed: cannot follow the store's changes; other processes' forced refreshes and disconnects reach this one only when its cached tokens' promises end", "error", err)
		if sleep(ctx, time.Minute, nil) != nil {
			return
		}
	}
}

// onChange applies one change of the feed to the cache.
func (k *Keeper) onChange(c tokenkeeper.Change) {
	if c.Down {
		k.feedUp.Store(false)
		k.log.Error("change feed: down; other replicas' forced refreshes and disconnects reach this one only when its cached tokens' promises end, until it is back", "error", c.Err)
		return
	}
	if c.ID == "" {
		if !k.feedUp.Swap(true) {
			k.log.Info("change feed: listening")
		}
		k.metrics.feedResync()
		k.entries.Range(func(_, v any) bool {
			v.(*entry).forget()
			return true
		})
		return
	}
	v, ok := k.entries.Load(c.ID)
	if !ok {
		return // nothing cached
	}
	ver := version{created: c.CreatedAt.UnixNano(), gen: c.Generation}
	if c.Deleted {
		ver.gen = math.MaxInt64 // no read of that record can be newer
	}
	if v.(*entry).supersede(ver) {
		k.metrics.feedDrop()
	}
}

// supersede drops the cached token if it is older than v, a version
// committed elsewhere, and wakes whoever waits for the connection's lease
// holder. It reports whether a token was dropped.
func (e *entry) supersede(v version) bool {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	e.wakeLocked()
	if !e.floor.before(v) {
		return false // this process published it (or newer) itself
	}
	e.floor = v
	return e.dropLocked()
}

// forget drops the cached token whatever its version: the next Token reads
// the store.
func (e *entry) forget() {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	e.wakeLocked()
	e.dropLocked()
}

func (e *entry) dropLocked() bool {
	old := e.cur.Swap(nil)
	if old == nil {
		return false
	}
	if old.timer != nil {
		old.timer.Stop()
	}
	old.live.Store(false)
	return true
}

// changed returns a channel closed at the next change the feed reports for
// the connection.
func (e *entry) changed() <-chan struct{} {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	if e.wake == nil {
		e.wake = make(chan struct{})
	}
	return e.wake
}

func (e *entry) wakeLocked() {
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
}
