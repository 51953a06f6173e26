package webhook_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/postgres"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

// postgresURL makes a throwaway database on the test server
// ($TOKENKEEPER_TEST_POSTGRES_URL, or the local one with trust auth),
// dropped when t ends, and returns its URL. It skips t if no server is
// reachable, unless CI is true.
func postgresURL(t *testing.T) string {
	t.Helper()
	base := cmp.Or(os.Getenv("TOKENKEEPER_TEST_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		var ne net.Error
		var pe *pgconn.PgError
		if !errors.As(err, &pe) && (errors.As(err, &ne) || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded)) {
			msg := "PostgreSQL not reachable (" + err.Error() + "); start it or set TOKENKEEPER_TEST_POSTGRES_URL"
			if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
				t.Fatal(msg + " (CI is true: not skipping)")
			}
			t.Skip(msg)
		}
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	name := "tk_webhook_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}

// openPostgres opens a store (a replica's) on the database at dbURL.
func openPostgres(t *testing.T, dbURL string) store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitDelivered waits until s has no pending delivery.
func waitDelivered(t *testing.T, s store) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds, err := s.ListDeliveries(t.Context(), tokenkeeper.DeliveryFilter{State: tokenkeeper.DeliveryPending, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries still pending after 30s: %+v", ds[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDispatcher_PostgresReplicas: two dispatchers, each on its own pool
// (two replicas), on one database deliver each event to each endpoint
// exactly once, and share the work.
func TestDispatcher_PostgresReplicas(t *testing.T) {
	dbURL := postgresURL(t)
	e := newEnv(t)
	a, b := openPostgres(t, dbURL), openPostgres(t, dbURL)
	r1, r2 := newReceiver(t), newReceiver(t)
	r1.register(e, a)
	r2.register(e, b)
	ids := emit(t, e, a, 100)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	for i, s := range []store{a, b} {
		d := e.dispatcher(s, func(c *webhook.Config) {
			c.Owner = "replica-" + strconv.Itoa(i)
			c.Batch = 5
			c.PollInterval = 10 * time.Millisecond
			c.Registerer = regs[i]
		})
		wg.Go(func() { d.Run(ctx) })
	}
	waitDelivered(t, a)
	cancel()
	wg.Wait()
	for _, r := range []*receiver{r1, r2} {
		got := r.delivered()
		for _, id := range ids {
			if got[id] != 1 {
				t.Errorf("event %s delivered %d times to one endpoint, want 1", id, got[id])
			}
		}
		if len(r.got) != len(ids) {
			t.Errorf("a receiver got %d requests for %d events", len(r.got), len(ids))
		}
	}
	// Each replica counts its own attempts: together, one per delivery.
	var total float64
	for i, reg := range regs {
		n := attempts(t, reg)
		t.Logf("replica-%d made %v attempts", i, n)
		total += n
	}
	if total != 200 {
		t.Errorf("the replicas made %v attempts in all, want 200", total)
	}
}

// attempts returns the sum of tokenkeeper_webhook_attempts_total in reg.
func attempts(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "tokenkeeper_webhook_attempts_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestDispatcher_PostgresRestart: on PostgreSQL too, what was enqueued
// while no dispatcher ran, and what a dead dispatcher had claimed, goes
// out after a restart.
func TestDispatcher_PostgresRestart(t *testing.T) {
	dbURL := postgresURL(t)
	e := newEnv(t)
	s := openPostgres(t, dbURL)
	r := newReceiver(t)
	r.register(e, s)
	ids := emit(t, e, s, 6)
	dead, err := s.ClaimDeliveries(t.Context(), "dead", e.clock.Now(), 300*time.Millisecond, 2)
	if err != nil || len(dead) != 2 {
		t.Fatalf("claim: %v, %d", err, len(dead))
	}
	s.Close()
	s = openPostgres(t, dbURL)
	d := e.dispatcher(s, nil)
	if n := runOnce(t, d); n != 4 {
		t.Fatalf("claimed %d, want 4", n)
	}
	time.Sleep(400 * time.Millisecond)
	if n := runOnce(t, d); n != 2 {
		t.Fatalf("claimed %d after the dead claim expired, want 2", n)
	}
	got := r.delivered()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("event %s delivered %d times, want 1", id, got[id])
		}
	}
}
