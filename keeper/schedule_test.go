package keeper_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// scheduled makes Run tick every 10ms, with keep-alive off.
func scheduled(c *keeper.Config, _ *emulator.Config) {
	c.ScheduleInterval = 10 * time.Millisecond
	c.KeepAlive = -1
}

// run starts k.Run and returns a function that stops it and returns Run's
// result.
func run(t *testing.T, k *keeper.Keeper) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	var stopped atomic.Bool
	stop = func() error {
		if stopped.Swap(true) {
			return nil
		}
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// cachedToken returns the token Token serves from memory, without waiting
// on a refresh: its context is already cancelled.
func cachedToken(k *keeper.Keeper, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return k.Token(ctx, id)
}

// ticks lets the scheduler run several times (a negative check needs
// time to pass; 20 intervals of 10ms).
func ticks() { time.Sleep(200 * time.Millisecond) }

func TestKeeper_Run(t *testing.T) {
	t.Run("HotRefreshedAhead", func(t *testing.T) {
		e := newEnv(t, scheduled)
		e.connect("acme")
		old := e.mustToken("acme") // a use makes the connection hot
		run(t, e.k)
		e.expire("acme")
		waitFor(t, "the scheduler to refresh the hot connection", func() bool { return e.refreshes("ok") == 1 })
		waitFor(t, "the new token in memory", func() bool {
			tok, err := cachedToken(e.k, "acme")
			return err == nil && !tok.Value.Equal(old.Value)
		})
		tok, err := cachedToken(e.k, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if e.api(tok.Value) != 200 {
			t.Fatal("the API refused the proactively refreshed token")
		}
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d refreshes, want 1", n)
		}
		if v := e.violations(); len(v) != 0 {
			t.Fatalf("violations: %v", v)
		}
	})

	t.Run("ColdNeverAsked", func(t *testing.T) {
		e := newEnv(t, scheduled)
		e.connect("cold")
		e.connect("hot")
		e.mustToken("hot")
		coldGen := e.record("cold").Generation
		run(t, e.k)
		// Past both promises: connected together, their promises end
		// within 12.75 minutes.
		if _, err := e.srv.Advance(13 * time.Minute); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the hot connection's refresh", func() bool { return e.refreshes("ok") == 1 })
		ticks()
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d refreshes, want 1: the cold connection was refreshed proactively", n)
		}
		if gen := e.record("cold").Generation; gen != coldGen {
			t.Fatalf("cold connection's generation moved %d -> %d", coldGen, gen)
		}
		// On demand it refreshes.
		e.mustToken("cold")
		if n := e.refreshes("ok"); n != 2 {
			t.Fatalf("%d refreshes after asking the cold connection, want 2", n)
		}
	})

	t.Run("ColdNotAskedWithinLifetime", func(t *testing.T) {
		e := newEnv(t, scheduled)
		e.connect("stale")
		e.mustToken("stale") // used once, at T0
		coldGen := e.record("stale").Generation
		if _, err := e.srv.Advance(10 * time.Minute); err != nil {
			t.Fatal(err)
		}
		e.connect("hot")
		e.mustToken("hot") // used at T0+10m
		run(t, e.k)
		// T0+23m: "stale" was last asked 23 minutes ago, more than its
		// 15 minute lifetime; "hot" 13 minutes ago, within it, and past
		// its promise.
		if _, err := e.srv.Advance(13 * time.Minute); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the hot connection's refresh", func() bool { return e.refreshes("ok") == 1 })
		ticks()
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d refreshes, want 1: a connection not asked within a lifetime was refreshed", n)
		}
		if gen := e.record("stale").Generation; gen != coldGen {
			t.Fatalf("generation moved %d -> %d", coldGen, gen)
		}
	})

	t.Run("KeepAlive", func(t *testing.T) {
		e := newEnv(t, scheduled)
		e.connect("acme")
		var scans atomic.Int32
		fs := &faultyStore{Store: e.store}
		fs.ListFunc = func(ctx context.Context, f tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
			if !f.LastRefreshBefore.IsZero() {
				scans.Add(1)
			}
			return e.store.ListConnections(ctx, f)
		}
		cfg := fastConfig()
		cfg.KeepAlive = time.Hour
		cfg.ScheduleInterval = 5 * time.Millisecond // a keep-alive scan every 300ms
		k := e.keeperOverStore(fs, cfg)
		before := e.record("acme")
		if _, err := e.srv.Advance(2 * time.Hour); err != nil {
			t.Fatal(err)
		}
		run(t, k)
		waitFor(t, "the keep-alive refresh", func() bool { return e.refreshes("ok") == 1 })
		after := scans.Load()
		waitFor(t, "two more keep-alive scans", func() bool { return scans.Load() >= after+2 })
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d keep-alive refreshes, want exactly 1", n)
		}
		rec := e.record("acme")
		if !rec.LastRefreshAt.After(before.LastRefreshAt.Add(time.Hour)) || rec.Generation <= before.Generation || !rec.Pending.IsZero() {
			t.Fatalf("record after keep-alive: last refresh %v (was %v), generation %d (was %d)", rec.LastRefreshAt, before.LastRefreshAt, rec.Generation, before.Generation)
		}
		if len(e.logLines("keep-alive: refreshing an old refresh token")) != 1 {
			t.Fatal("want one keep-alive log line")
		}
		tok, err := e.token(k, "acme")
		if err != nil || e.api(tok.Value) != 200 {
			t.Fatalf("after keep-alive: %v", err)
		}
		if v := e.violations(); len(v) != 0 {
			t.Fatalf("violations: %v", v)
		}
	})

	t.Run("ReturnsNilOnCancel", func(t *testing.T) {
		e := newEnv(t, scheduled)
		e.connect("acme")
		e.mustToken("acme")
		stop := run(t, e.k)
		ticks()
		if err := stop(); err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	})

	t.Run("CloseWaitsForRefresh", func(t *testing.T) {
		e := newEnv(t, scheduled)
		e.connect("acme")
		e.mustToken("acme")
		before := e.record("acme").Generation
		e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{Min: emulator.Duration(300 * time.Millisecond), Max: emulator.Duration(300 * time.Millisecond)}}})
		stop := run(t, e.k)
		e.expire("acme")
		waitFor(t, "the scheduled refresh to be sent", func() bool { return !e.record("acme").Pending.IsZero() })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if err := e.k.Close(); err != nil {
			t.Fatal(err)
		}
		// Close returned: the refresh in flight finished and is stored.
		rec := e.record("acme")
		if !rec.Pending.IsZero() || rec.Generation != before+2 {
			t.Fatalf("after Close: pending %+v, generation %d, want none and %d", rec.Pending, rec.Generation, before+2)
		}
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d refreshes, want 1", n)
		}
		stored, err := keeper.LoadToken(context.Background(), e.k, "acme")
		if err != nil || e.api(stored.Value) != 200 {
			t.Fatalf("the stored token does not work: %v", err)
		}
		if _, err := e.k.Refresh(context.Background(), "acme"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable {
			t.Fatalf("Refresh after Close: %v, want unavailable", err)
		}
	})
}
