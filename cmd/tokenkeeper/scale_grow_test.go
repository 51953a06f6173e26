package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// The scale benchmarks of what grows with the connections a process has touched: the
// keeper's in-memory entries and the keep-alive scan (docs/benchmarks.md, "What grows
// with the number of connections"). Like the rest of TestScale_*, they run only with
// TOKENKEEPER_BENCH=1.

// TestScale_Touched measures what a serve process keeps per connection it has served:
// the keeper keeps an in-memory entry (with the cached access token) for every
// connection it has touched since it started, and its scheduler walks all of them
// every second. A store of N connections is seeded, one serve process is started, and
// every connection's token is asked for once; RSS and the CPU time of 10 idle seconds
// are read before and after.
func TestScale_Touched(t *testing.T) {
	benchOnly(t)
	sizes := []int{100_000}
	if v := os.Getenv("TOKENKEEPER_BENCH_TOUCHED_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			var n int
			if _, err := fmt.Sscan(f, &n); err != nil {
				t.Fatalf("TOKENKEEPER_BENCH_TOUCHED_SIZES: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	const idle = 10 * time.Second
	env := newBenchEnv(t, emulator.Config{})
	env.bin = buildTokenkeeper(t)
	keys, err := seal.Load(env.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SCALE touched: load before: %s", loadAvg())
	for _, n := range sizes {
		for _, kind := range []string{"sqlite", "postgres"} {
			store := fmt.Sprintf("sqlite:%s/touched-%d.db", env.dir, n)
			if kind == "postgres" {
				store = postgresStore(t)
			}
			apiKey := prepareStore(t, store)
			seedStore(t, store, keys, seedPlan{n: n, id: connID, now: time.Now()})
			p := env.start(t, store, false)
			p.waitReady(t)
			time.Sleep(2 * time.Second)
			rss0, _ := p.memKB(t)
			cpu0 := p.cpu(t)
			time.Sleep(idle)
			idle0 := p.cpu(t) - cpu0
			res := runCalls(benchClient(), apiKey, 32, func(i int) (string, string, bool) { return p.base, connID(i), i < n })
			if res.failed > 0 {
				t.Fatalf("%d calls failed; the first: %s", res.failed, res.firstErr)
			}
			time.Sleep(5 * time.Second)
			cpu1 := p.cpu(t)
			time.Sleep(idle)
			idle1 := p.cpu(t) - cpu1
			rss1, hwm := p.memKB(t)
			p.stop(t)
			t.Logf("SCALE touched %s %d: %d token calls in %s (%.0f/s); RSS %.1f MiB before, %.1f MiB after (peak %.1f MiB): %.0f bytes per connection served; idle CPU per %s %s before, %s after",
				kind, n, res.calls, res.elapsed.Round(time.Millisecond), res.perSecond(), float64(rss0)/1024, float64(rss1)/1024, float64(hwm)/1024,
				float64(rss1-rss0)*1024/float64(n), idle, idle0, idle1)
			if kind == "sqlite" {
				os.Remove(strings.TrimPrefix(store, "sqlite:"))
			}
		}
	}
	t.Logf("SCALE touched: load after: %s", loadAvg())
}

// TestScale_KeepAlive measures a store whose connections are all due for a keep-alive
// (cold connections whose refresh token is older than 7 days: after an import, a long
// outage, or simply many connections nobody used for a week): the scan that starts
// with the scheduler lists them 200 at a time and starts one flight, each a goroutine
// waiting for the refresh rate limit, per connection. It samples the scan's progress
// and the refreshes (their log lines), the goroutines, RSS and CPU time every 5 seconds
// for TOKENKEEPER_BENCH_KEEPALIVE_WINDOW (60s). Each connection holds a real grant of
// the emulator, and its access token expired 8 days ago, as a cold connection's has.
func TestScale_KeepAlive(t *testing.T) {
	benchOnly(t)
	sizes := []int{10_000, 100_000}
	if v := os.Getenv("TOKENKEEPER_BENCH_KEEPALIVE_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			var n int
			if _, err := fmt.Sscan(f, &n); err != nil {
				t.Fatalf("TOKENKEEPER_BENCH_KEEPALIVE_SIZES: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	window := benchDuration(t, "TOKENKEEPER_BENCH_KEEPALIVE_WINDOW", time.Minute)
	env := newBenchEnv(t, emulator.Config{})
	env.bin = buildTokenkeeper(t)
	keys, err := seal.Load(env.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SCALE keepalive: load before: %s", loadAvg())
	for _, n := range sizes {
		for _, kind := range []string{"sqlite", "postgres"} {
			store := fmt.Sprintf("sqlite:%s/keepalive-%d.db", env.dir, n)
			if kind == "postgres" {
				store = postgresStore(t)
			}
			prepareStore(t, store)
			grants := emulatorGrants(t, env.emu.Emulator, n)
			seedStore(t, store, keys, seedPlan{n: n, id: connID, old: true, now: time.Now(),
				tokens: func(i int) seedToken { return grants[i] }})
			p := env.start(t, store, false)
			ready := p.waitReady(t)
			for at := 5 * time.Second; at <= window; at += 5 * time.Second {
				time.Sleep(time.Until(p.started.Add(at)))
				rss, _ := p.memKB(t)
				cpu := p.cpu(t)
				log, _ := os.ReadFile(p.logPath)
				listed := strings.Count(string(log), "keep-alive: refreshing an old refresh token")
				refreshed := strings.Count(string(log), "connection refreshed")
				t.Logf("SCALE keepalive %s %d at %s: %d listed by the scan, %d refreshed, %s goroutines, RSS %.1f MiB, CPU %s (ready after %s)",
					kind, n, at, listed, refreshed, metricValue(t, p.base, "go_goroutines"), float64(rss)/1024, cpu, ready.Round(time.Millisecond))
			}
			p.stop(t)
			if kind == "sqlite" {
				os.Remove(strings.TrimPrefix(store, "sqlite:"))
			}
		}
	}
	t.Logf("SCALE keepalive: load after: %s", loadAvg())
}

// metricValue returns the value of an unlabelled metric from base's /metrics.
func metricValue(t *testing.T, base, name string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
