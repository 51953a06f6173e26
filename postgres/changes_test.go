package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/postgres"
)

// feed follows s's changes into a channel until t ends.
func feed(t *testing.T, s *postgres.Store) <-chan tokenkeeper.Change {
	t.Helper()
	ch := make(chan tokenkeeper.Change, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.WatchChanges(ctx, func(c tokenkeeper.Change) { ch <- c }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchChanges: %v", err)
		}
	})
	if c := next(t, ch); c.ID != "" || c.Down {
		t.Fatalf("first change %+v, want the zero Change (listening started)", c)
	}
	return ch
}

func next(t *testing.T, ch <-chan tokenkeeper.Change) tokenkeeper.Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported within 10 s")
		return tokenkeeper.Change{}
	}
}

func quiet(t *testing.T, ch <-chan tokenkeeper.Change, what string) {
	t.Helper()
	select {
	case c := <-ch:
		t.Fatalf("%s reported %+v, want nothing", what, c)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestWatchChanges: every committed write that moves a connection's
// generation, its creation and its deletion reach a feed on another store
// (another replica) of the same schema, with the version written; writes
// of the lease alone, writes that fail, and writes in another schema do
// not.
func TestWatchChanges(t *testing.T) {
	schema := newSchema(t)
	writer := openURL(t, schemaURL(schema, nil))
	ch := feed(t, openURL(t, schemaURL(schema, nil)))
	other, _ := open(t) // another schema of the same database
	ctx := t.Context()

	rec := newRecord("c1")
	create(t, writer, rec)
	c := next(t, ch)
	if c.ID != "c1" || c.Generation != 1 || !c.CreatedAt.Equal(rec.CreatedAt) || c.Deleted {
		t.Fatalf("create: %+v", c)
	}

	lease, _, err := writer.AcquireLease(ctx, "c1", "o", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.RenewLease(ctx, "c1", lease, time.Minute); err != nil {
		t.Fatal(err)
	}
	quiet(t, ch, "lease writes")

	next2 := *rec
	next2.Generation = 2
	if err := writer.UpdateLeased(ctx, &next2, 1, lease); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.ID != "c1" || c.Generation != 2 {
		t.Fatalf("update: %+v", c)
	}
	stale := *rec
	stale.Generation = 3
	wantCode(t, "update with an old generation", writer.UpdateConnection(ctx, &stale, 1), tokenkeeper.CodeConflict)
	if err := writer.ReleaseLease(ctx, "c1", lease); err != nil {
		t.Fatal(err)
	}
	create(t, other, newRecord("elsewhere"))
	quiet(t, ch, "a failed write, a release and another schema's write")

	if err := writer.DeleteConnection(ctx, "c1", 0); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.ID != "c1" || c.Generation != 2 || !c.Deleted {
		t.Fatalf("delete: %+v", c)
	}
}

// TestWatchChanges_Restored: a feed whose connection is terminated says it
// is down, listens again and says so with the zero Change, then carries
// changes again.
func TestWatchChanges_Restored(t *testing.T) {
	schema := newSchema(t)
	writer := openURL(t, schemaURL(schema, nil))
	ch := feed(t, openURL(t, schemaURL(schema, nil)))
	var n int
	err := writer.Pool().QueryRow(t.Context(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN %'`+
		` AND query LIKE '%' || left(md5(current_schema()), 16) || '%'`).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminated %d listeners, %v; want 1", n, err)
	}
	if c := next(t, ch); !c.Down || c.Err == nil {
		t.Fatalf("after the break: %+v, want Down with the reason", c)
	}
	if c := next(t, ch); c.ID != "" || c.Down {
		t.Fatalf("after the feed came back: %+v, want the zero Change", c)
	}
	create(t, writer, newRecord("c2"))
	if c := next(t, ch); c.ID != "c2" {
		t.Fatalf("after the feed came back: %+v", c)
	}
}

// TestPing: Ping answers on a live store.
func TestPing(t *testing.T) {
	s, _ := open(t)
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestWatchChanges_ProbeFails: a listening connection that receives nothing
// (here: probes sent elsewhere; in life, LISTEN through a transaction-mode
// pooler) is found by the feed's first probe: it reports itself down, with
// the reason, and never says it started.
func TestWatchChanges_ProbeFails(t *testing.T) {
	s, _ := open(t)
	s.SetFeedTimings(200*time.Millisecond, 300*time.Millisecond, 50*time.Millisecond)
	s.SetProbeChannel("nobody_listens_here")
	ch := make(chan tokenkeeper.Change, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.WatchChanges(ctx, func(c tokenkeeper.Change) { ch <- c }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchChanges: %v", err)
		}
	}()
	c := next(t, ch)
	if !c.Down || c.Err == nil || !strings.Contains(c.Err.Error(), "receives nothing") {
		t.Fatalf("first report %+v, want Down with the reason", c)
	}
	if c := next(t, ch); !c.Down {
		t.Fatalf("after retrying: %+v, want Down again (never started)", c)
	}
}

// TestWatchChanges_BusyPool: a probe that cannot be sent because every
// connection of the pool is in use (a burst of slow store calls) says nothing
// about the feed: it neither goes down nor restarts (which would make every
// keeper drop every cached token just when the database is busiest), and it
// still carries changes afterwards.
func TestWatchChanges_BusyPool(t *testing.T) {
	schema := newSchema(t)
	s := openURL(t, schemaURL(schema, map[string]string{"pool_max_conns": "1"}))
	s.SetFeedTimings(200*time.Millisecond, 300*time.Millisecond, 50*time.Millisecond)
	ch := feed(t, s)
	c, err := s.Pool().Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // several probes' worth of a saturated pool
	c.Release()
	quiet(t, ch, "a busy pool")
	create(t, openURL(t, schemaURL(schema, nil)), newRecord("c1"))
	if c := next(t, ch); c.ID != "c1" {
		t.Fatalf("after the pool was free again: %+v, want c1's creation", c)
	}
}
