package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// TestScale_StoreQueries times, on stores of 0, 100,000 and 1,000,000 connections, the
// store queries a running serve makes on its own whatever the traffic: the keep-alive
// scan's first page (every 60s), the retention query (every --prune-interval) and
// CountConnections (the connections gauge, on a /metrics scrape at most every 5s).
// Their time includes the database's side, which the startup benchmark's CPU figures
// (tokenkeeper's process only) do not see. None of the seeded connections is due for
// either scan, as in a healthy store. The median of 5 calls is reported.
func TestScale_StoreQueries(t *testing.T) {
	benchOnly(t)
	sizes := []int{0, 100_000, 1_000_000}
	if v := os.Getenv("TOKENKEEPER_BENCH_STARTUP_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			var n int
			if _, err := fmt.Sscan(f, &n); err != nil {
				t.Fatalf("TOKENKEEPER_BENCH_STARTUP_SIZES: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	env := newBenchEnv(t, emulator.Config{})
	keys, err := seal.Load(env.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, n := range sizes {
			store := fmt.Sprintf("sqlite:%s/queries-%d.db", env.dir, n)
			if kind == "postgres" {
				store = postgresStore(t)
			}
			prepareStore(t, store)
			now := time.Now()
			seedStore(t, store, keys, seedPlan{n: n, id: connID, now: now})
			s := newSettings("bench", groupStore)
			s.store = store
			st, err := openStore(ctx, s, existingStore)
			if err != nil {
				t.Fatal(err)
			}
			queries := []struct {
				name string
				run  func() error
			}{
				{"keep-alive page", func() error {
					_, err := st.ListConnections(ctx, tokenkeeper.ConnectionFilter{State: tokenkeeper.StateActive,
						LastRefreshBefore: now.Add(-7 * 24 * time.Hour), Limit: 200})
					return err
				}},
				{"retention page", func() error {
					_, err := st.ListConnections(ctx, tokenkeeper.ConnectionFilter{State: tokenkeeper.StateDisconnected,
						UpdatedBefore: now.Add(-defaultRetention), Limit: 100})
					return err
				}},
				{"count", func() error { _, err := st.CountConnections(ctx); return err }},
			}
			var line []string
			for _, q := range queries {
				var ds []float64
				for range 5 {
					t0 := time.Now()
					if err := q.run(); err != nil {
						t.Fatalf("%s: %v", q.name, err)
					}
					ds = append(ds, float64(time.Since(t0).Microseconds())/1000)
				}
				line = append(line, fmt.Sprintf("%s %.2f ms", q.name, median(ds)))
			}
			st.Close()
			t.Logf("SCALE queries %s %d: %s", kind, n, strings.Join(line, ", "))
			if kind == "sqlite" {
				os.Remove(strings.TrimPrefix(store, "sqlite:"))
			}
		}
	}
}
