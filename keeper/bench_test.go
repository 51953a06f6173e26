package keeper_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// The benchmarks measure the goals of the keeper issue (docs/benchmarks.md
// records the figures): the cached Token path against
// oauth2.ReuseTokenSource, its allocations and its parallel scaling; and
// the keeper's own CPU per refresh with the network excluded. Compare
// figures from one run, as ratios; never assert them in a test.
//
// The keepers here are built as in production, not as the tests build
// them: the real clock (Now nil), no event handler, and a JSON logger at
// Info that formats the one record per attempt and discards it.

// manyConnections is the number of connections of
// Keeper_Token_Cached/ParallelManyConnections.
const manyConnections = 1000

// benchKeeper returns a keeper on store against e's emulator, configured as
// in production except for an unlimited refresh rate. hc nil means the
// default HTTP client.
func benchKeeper(b *testing.B, e *env, store tokenkeeper.Store, hc *http.Client) *keeper.Keeper {
	b.Helper()
	k, err := keeper.New(keeper.Config{
		Store:        store,
		Sealer:       e.ring,
		Provider:     tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL),
		ClientID:     e.client.ID,
		ClientSecret: tokenkeeper.NewSecret(e.client.Secret),
		Logger:       slog.New(slog.NewJSONHandler(io.Discard, nil)),
		HTTPClient:   hc,
		RefreshRate:  math.Inf(1), // the limiter must not pace a benchmark
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close() })
	return k
}

// connectAll connects every id through k, with grants from e's emulator,
// and checks that Token serves each from memory.
func connectAll(b *testing.B, e *env, k *keeper.Keeper, ids ...tokenkeeper.ConnectionID) {
	b.Helper()
	ctx := context.Background()
	for _, id := range ids {
		if _, err := k.Connect(ctx, e.grant(id, "")); err != nil {
			b.Fatal(err)
		}
		if _, err := k.Token(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeeper_Token_Cached measures Token when the connection's token
// is within its promise: the path every API call takes. Serial and
// Parallel share one connection; in ParallelManyConnections each goroutine
// starts at its own place among manyConnections connections and walks
// through all of them, so the lookup works on a map of realistic size.
// Compare with BenchmarkReuseTokenSource, run beside it.
func BenchmarkKeeper_Token_Cached(b *testing.B) {
	e := newEnv(b)
	k := benchKeeper(b, e, e.store, nil)
	ctx := context.Background()
	id := tokenkeeper.ConnectionID("bench-cached")
	connectAll(b, e, k, id)

	b.Run("Serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Token(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := k.Token(ctx, id); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	var many []tokenkeeper.ConnectionID // connected once, on the first run
	connectMany := func(b *testing.B) {
		if many == nil {
			many = make([]tokenkeeper.ConnectionID, manyConnections)
			for i := range many {
				many[i] = tokenkeeper.ConnectionID(fmt.Sprintf("bench-many-%04d", i))
			}
			connectAll(b, e, k, many...)
		}
	}
	// SerialManyConnections is the serial baseline of ParallelManyConnections:
	// the same walk over 1,000 entries, so the two differ only in callers.
	b.Run("SerialManyConnections", func(b *testing.B) {
		connectMany(b)
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			if _, err := k.Token(ctx, many[i]); err != nil {
				b.Fatal(err)
			}
			if i++; i == manyConnections {
				i = 0
			}
		}
	})
	b.Run("ParallelManyConnections", func(b *testing.B) {
		connectMany(b)
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(manyConnections/8)) % manyConnections
			for pb.Next() {
				if _, err := k.Token(ctx, many[i]); err != nil {
					b.Error(err)
					return
				}
				if i++; i == manyConnections {
					i = 0
				}
			}
		})
	})
}

// BenchmarkReuseTokenSource is the baseline of BenchmarkKeeper_Token_Cached:
// oauth2.ReuseTokenSource holding a valid token, as x/oauth2 users cache one.
func BenchmarkReuseTokenSource(b *testing.B) {
	src := oauth2.StaticTokenSource(&oauth2.Token{
		AccessToken: "pat_" + strings.Repeat("x", 43), TokenType: "Bearer",
		RefreshToken: "prt_" + strings.Repeat("x", 43), Expiry: time.Now().Add(24 * time.Hour),
	})
	ts := oauth2.ReuseTokenSource(nil, src)
	if _, err := ts.Token(); err != nil { // fill the cache
		b.Fatal(err)
	}
	b.Run("Serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ts.Token(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ts.Token(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// handlerTransport serves requests with h in-process, through an httptest
// recorder: a token request costs what the emulator's handler costs, and no
// socket is used. The request's host is ignored.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	if req.Body != nil {
		req.Body.Close()
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// BenchmarkKeeper_Refresh_CPU measures one forced refresh (Keeper.Refresh,
// an operator's refresh) with the network excluded: the keeper's HTTP
// client serves the emulator's handler in-process. Each refresh reads the
// record, takes the store lease, writes the pending marker, sends the
// request, seals and commits the new pair, and releases the lease: four
// SQLite write transactions, each committed with an fsync
// (synchronous=FULL).
//
//   - disk: the SQLite file in the test's temporary directory.
//   - tmpfs: the SQLite file on /dev/shm, where fsync returns at once;
//     disk minus tmpfs is the cost of the disk and its fsyncs.
//   - emulator: the same token request straight to the handler, without the
//     keeper (building the request, and decoding the answer to chain the
//     rotated refresh token): the emulator's share of the two above.
//
// cpu-ns/op is the process's user plus system CPU time per refresh
// (getrusage), all goroutines included, and sys-ns/op its system part (the
// kernel's share: file writes and fsync); ns/op is wall time.
func BenchmarkKeeper_Refresh_CPU(b *testing.B) {
	b.Run("disk", func(b *testing.B) {
		e := newEnv(b)
		benchRefresh(b, e, e.store)
	})
	b.Run("tmpfs", func(b *testing.B) {
		dir, err := os.MkdirTemp("/dev/shm", "keeper-bench-")
		if err != nil {
			b.Skipf("no tmpfs at /dev/shm: %v", err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		e := newEnv(b)
		store, err := sqlite.Open(context.Background(), filepath.Join(dir, "tokenkeeper.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { store.Close() })
		benchRefresh(b, e, store)
	})
	b.Run("emulator", func(b *testing.B) {
		e := newEnv(b)
		h := e.srv.Emulator.Handler()
		refresh := e.grant("bench-refresh", "").Tokens.RefreshToken.Reveal()
		endpoint := e.srv.URL + "/oauth/token"
		user, pass := url.QueryEscape(e.client.ID), url.QueryEscape(e.client.Secret)
		start := startCPU()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {refresh},
			}.Encode()))
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(user, pass) // RFC 6749 section 2.3.1
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var tr struct {
				RefreshToken string `json:"refresh_token"`
			}
			if err := json.NewDecoder(rec.Body).Decode(&tr); rec.Code != http.StatusOK || err != nil || tr.RefreshToken == "" {
				b.Fatalf("refresh: status %d, decode error %v", rec.Code, err)
			}
			refresh = tr.RefreshToken
		}
		b.StopTimer()
		reportCPU(b, start)
	})
}

// benchRefresh forces b.N refreshes of one connection through a keeper on
// store whose HTTP client calls e's emulator in-process.
func benchRefresh(b *testing.B, e *env, store tokenkeeper.Store) {
	b.Helper()
	hc := &http.Client{Transport: handlerTransport{e.srv.Emulator.Handler()}}
	k := benchKeeper(b, e, store, hc)
	ctx := context.Background()
	id := tokenkeeper.ConnectionID("bench-refresh")
	connectAll(b, e, k, id)
	before := e.refreshes("ok")
	start := startCPU()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := k.Refresh(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCPU(b, start)
	if got := e.refreshes("ok") - before; got != int64(b.N) {
		b.Fatalf("the emulator counted %d refreshes, want %d", got, b.N)
	}
}

// cpuTime returns the user and system CPU time of the process so far.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// cpuStart is the CPU time at the start of a measurement.
type cpuStart struct{ user, sys time.Duration }

func startCPU() cpuStart {
	u, s := cpuTime()
	return cpuStart{u, s}
}

// reportCPU reports the process CPU time since start per op, as cpu-ns/op
// (user and system) and sys-ns/op (system only).
func reportCPU(b *testing.B, start cpuStart) {
	if b.N == 0 {
		return
	}
	u, s := cpuTime()
	b.ReportMetric(float64(u-start.user+s-start.sys)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(s-start.sys)/float64(b.N), "sys-ns/op")
}
