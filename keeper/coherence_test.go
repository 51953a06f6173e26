package keeper_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/pgtest"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/postgres"
)

// pgPair is two keepers (two replicas, each with its own pool and change
// feed) on one throwaway PostgreSQL database, against the env's emulator.
type pgPair struct {
	e      *env
	url    string
	a, b   *keeper.Keeper
	aStore *postgres.Store
}

func newPGPair(t testing.TB) *pgPair {
	t.Helper()
	e := newEnv(t)
	url := pgtest.Database(t, "keeper")
	open := func() *postgres.Store {
		s, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	cfg := keeper.Config{}
	fast(&cfg, nil)
	sa, sb := open(), open()
	cfg.Owner = "replica-a"
	a := e.keeperOverStore(sa, cfg)
	cfg.Owner = "replica-b"
	b := e.keeperOverStore(sb, cfg)
	return &pgPair{e: e, url: url, a: a, b: b, aStore: sa}
}

// dropped waits until k holds no cached token for id or one other than old,
// and returns how long that took from since.
func dropped(t testing.TB, k *keeper.Keeper, id tokenkeeper.ConnectionID, old tokenkeeper.Secret, since time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, ok := keeper.CachedToken(k, id)
		if !ok || !c.Value.Equal(old) {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the other replica still caches the replaced token 5 s after the commit", id)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// TestKeeper_Coherence_Postgres: on PostgreSQL, a write that breaks a
// token's promise in one replica (an operator's forced refresh, a
// disconnect, a reconnect) makes the other replica stop serving the token
// it cached at once, through the store's change feed, where without the
// feed it would serve it until its promise ended. After the feed breaks
// (its backend is terminated), it listens again and every cached token is
// read again.
func TestKeeper_Coherence_Postgres(t *testing.T) {
	p := newPGPair(t)
	ctx := t.Context()
	const id = "coherent"
	if _, err := p.a.Connect(ctx, p.e.grant(id, "")); err != nil {
		t.Fatal(err)
	}
	old, err := p.e.token(p.b, id)
	if err != nil {
		t.Fatal(err)
	}

	// A forced refresh in A: B drops the old token and hands out the new one.
	start := time.Now()
	fresh, err := p.a.Refresh(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("forced refresh: B dropped the old token %s after A's Refresh returned", dropped(t, p.b, id, old.Value, time.Now()).Round(time.Microsecond))
	_ = start
	got, err := p.e.token(p.b, id)
	if err != nil || !got.Value.Equal(fresh.Value) {
		t.Fatalf("B after A's forced refresh: %v, same as A's new token: %v", err, err == nil && got.Value.Equal(fresh.Value))
	}

	// A break of B's feed: B listens again, and reads everything again.
	terminateListeners(t, p.url)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := keeper.CachedToken(p.b, id); !ok {
			break // the resync dropped it
		}
		if time.Now().After(deadline) {
			t.Fatal("B kept its cached token after its change feed broke and came back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	got, err = p.e.token(p.b, id)
	if err != nil || !got.Value.Equal(fresh.Value) {
		t.Fatalf("B after its feed came back: %v", err)
	}
	// The restored feed still carries changes.
	fresh2, err := p.a.Refresh(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	dropped(t, p.b, id, fresh.Value, time.Now())
	if got, err := p.e.token(p.b, id); err != nil || !got.Value.Equal(fresh2.Value) {
		t.Fatalf("B after a refresh over the restored feed: %v", err)
	}

	// A disconnect in A: B refuses at once, without waiting for the promise.
	if err := p.a.Disconnect(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	dropped(t, p.b, id, fresh2.Value, time.Now())
	if _, err := p.e.token(p.b, id); tokenkeeper.ErrorCode(err) == "" || err == nil {
		t.Fatalf("B after A's disconnect: %v, want an error", err)
	}
	if v := p.e.violations(); len(v) > 0 {
		t.Fatalf("violations: %v", v)
	}
}

// terminateListeners ends every backend of url's database that is waiting
// for notifications: the change feeds' connections.
func terminateListeners(t testing.TB, url string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(context.Background(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN %'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no listening backend to terminate")
	}
}

// BenchmarkCoherenceWindow measures, on PostgreSQL, how long after one
// replica's forced refresh commits the other replica stops serving the
// token it replaced (the "discard immediately" window across replicas).
// ns/op is not meaningful; see the p50/p99/max metrics, in microseconds.
//
//	go test ./keeper -run '^$' -bench CoherenceWindow -benchtime 200x
func BenchmarkCoherenceWindow(b *testing.B) {
	p := newPGPair(b)
	ctx := context.Background()
	const id = "window"
	if _, err := p.a.Connect(ctx, p.e.grant(id, "")); err != nil {
		b.Fatal(err)
	}
	var commitToDrop, callToDrop []time.Duration
	for b.Loop() {
		old, err := p.e.token(p.b, id)
		if err != nil {
			b.Fatal(err)
		}
		called := time.Now()
		if _, err := p.a.Refresh(ctx, id); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		d := dropped(b, p.b, id, old.Value, committed)
		commitToDrop = append(commitToDrop, d)
		callToDrop = append(callToDrop, committed.Sub(called)+d)
	}
	slices.Sort(commitToDrop)
	slices.Sort(callToDrop)
	q := func(ds []time.Duration, f float64) float64 {
		return float64(ds[min(len(ds)-1, int(f*float64(len(ds))))].Microseconds())
	}
	b.ReportMetric(q(commitToDrop, 0.5), "p50-commit-to-drop-µs")
	b.ReportMetric(q(commitToDrop, 0.99), "p99-commit-to-drop-µs")
	b.ReportMetric(q(commitToDrop, 1), "max-commit-to-drop-µs")
	b.ReportMetric(q(callToDrop, 0.5), "p50-refresh-call-to-drop-µs")
	if v := p.e.violations(); len(v) > 0 {
		b.Fatalf("violations: %v", v)
	}
}
