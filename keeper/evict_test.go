package keeper_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// TestKeeper_EvictsIdleEntries: memory holds the connections in use. An
// entry made by a connect (and never asked for a token) is evicted at the
// next tick, one asked for stays while it is used, and one idle for twice
// its token lifetime is evicted; eviction itself refreshes nothing, and an
// evicted connection's next Token reads the store.
func TestKeeper_EvictsIdleEntries(t *testing.T) {
	e := newEnv(t, scheduled)
	for i := range 5 {
		e.connect(tokenkeeper.ConnectionID(fmt.Sprint("c", i)))
	}
	if n := keeper.Entries(e.k); n != 5 {
		t.Fatalf("%d entries after 5 connects", n)
	}
	e.mustToken("c0")
	run(t, e.k)
	waitFor(t, "the never-used entries to go", func() bool { return keeper.Entries(e.k) == 1 })
	ticks()
	if n := keeper.Entries(e.k); n != 1 {
		t.Fatalf("%d entries, want the one in use", n)
	}
	// Idle for more than twice the lifetime: evicted, and nothing refreshed.
	if _, err := e.srv.Advance(3 * time.Hour); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle entry to go", func() bool { return keeper.Entries(e.k) == 0 })
	ticks()
	if n := e.refreshes("ok"); n != 0 {
		t.Fatalf("%d refreshes, want 0: eviction refreshes nothing", n)
	}
	tok := e.mustToken("c0") // expired by now: one refresh, on demand
	if e.api(tok.Value) != 200 || e.refreshes("ok") != 1 {
		t.Fatalf("after eviction: api %d, %d refreshes", e.api(tok.Value), e.refreshes("ok"))
	}
	if v := e.violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
}

// TestKeeper_KeepAlivePaged: a keep-alive scan that finds many old refresh
// tokens holds one page of them in memory at a time (waiting for a page's
// refreshes before it lists the next), and still refreshes each exactly
// once.
func TestKeeper_KeepAlivePaged(t *testing.T) {
	e := newEnv(t, scheduled)
	const conns, page = 120, 10
	for i := range conns {
		e.connect(tokenkeeper.ConnectionID(fmt.Sprintf("c%03d", i)))
	}
	e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{Min: emulator.Duration(5 * time.Millisecond), Max: emulator.Duration(5 * time.Millisecond)}}})
	cfg := fastConfig()
	cfg.KeepAlive = time.Hour
	cfg.ScheduleInterval = 10 * time.Millisecond
	k := e.keeperOverStore(e.store, cfg) // a keeper of its own: no entries from the connects
	keeper.SetKeepAlivePageSize(k, page)
	if _, err := e.srv.Advance(2 * time.Hour); err != nil {
		t.Fatal(err)
	}
	var most atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if n := int64(keeper.Entries(k)); n > most.Load() {
				most.Store(n)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	run(t, k)
	waitFor(t, "every keep-alive refresh", func() bool { return e.refreshes("ok") == conns })
	cancel()
	wg.Wait()
	ticks()
	if n := e.refreshes("ok"); n != conns {
		t.Fatalf("%d keep-alive refreshes, want exactly %d", n, conns)
	}
	// A page in flight, and the page before it until the next tick evicts it.
	if m := most.Load(); m > 2*page {
		t.Fatalf("up to %d connections in memory during the scan, want at most %d (two pages)", m, 2*page)
	}
	if v := e.violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
}
