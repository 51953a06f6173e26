package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// The scale-out benchmarks of issue 5 (docs/benchmarks.md, "Scale-out (issue 5)"). They
// run only with TOKENKEEPER_BENCH=1:
//
//	TOKENKEEPER_BENCH=1 go test -run '^TestScale_' -v -timeout 120m ./cmd/tokenkeeper
//
// Each tokenkeeper is a process of its own (the built command, or this test binary in
// child mode where serve has no flag for a keeper setting); the emulator and the load
// generator run in the test process. Settings (environment):
//
//	TOKENKEEPER_BENCH_ROUNDS          interleaved rounds of the API and startup benchmarks (6 and 3)
//	TOKENKEEPER_BENCH_SECONDS         length of one API load run (5s)
//	TOKENKEEPER_BENCH_WORKERS         concurrent clients of the API benchmark (32)
//	TOKENKEEPER_BENCH_BURST           connections in a burst with the rate limit raised (10000)
//	TOKENKEEPER_BENCH_BURST_DEFAULT   connections in a burst with the default rate limit (1000)
//	TOKENKEEPER_BENCH_BURST_ROUNDS    rounds of the burst benchmark (2)
//	TOKENKEEPER_BENCH_STARTUP_SIZES   stored connections of the startup benchmark (0,100000,1000000)
//	TOKENKEEPER_BENCH_IDLE            idle time after ready before the second RSS reading (12s)
//	TOKENKEEPER_BENCH_TOUCHED_SIZES   stored and served connections of TestScale_Touched (100000)
//	TOKENKEEPER_BENCH_KEEPALIVE_SIZES connections due of TestScale_KeepAlive (10000,100000)
//	TOKENKEEPER_BENCH_KEEPALIVE_WINDOW how long TestScale_KeepAlive samples (1m)
//	TOKENKEEPER_BENCH_CPUPROFILE      a file for a CPU profile of the child serve (one child run)
//
// Every line of figures starts with "SCALE ".

// TestScale_TokenAPI measures POST /v1/connections/{id}/token with 1, 2 and 3 serve
// replicas on one PostgreSQL database: the replicas all run for the whole benchmark, and
// in each round the same load generator spreads its calls over the first 1, 2 and 3 of
// them in turn. Every call is a cache hit (the tokens are fresh).
func TestScale_TokenAPI(t *testing.T) {
	benchOnly(t)
	rounds := benchInt(t, "TOKENKEEPER_BENCH_ROUNDS", 6)
	runFor := benchDuration(t, "TOKENKEEPER_BENCH_SECONDS", 5*time.Second)
	workers := benchInt(t, "TOKENKEEPER_BENCH_WORKERS", 32)
	const conns = 1000
	env := newBenchEnv(t, emulator.Config{})
	env.bin = buildTokenkeeper(t)
	store := postgresStore(t)
	apiKey := prepareStore(t, store)
	keys, err := seal.Load(env.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	seedStore(t, store, keys, seedPlan{n: conns, id: connID, now: time.Now()})
	ids := make([]string, conns)
	for i := range ids {
		ids[i] = connID(i)
	}
	var reps []*proc
	for range 3 {
		p := env.start(t, store, false)
		p.waitReady(t)
		reps = append(reps, p)
	}
	bare := env.start(t, store, true, childBareEnv+"=1")
	bare.waitReady(t)
	c := benchClient()
	for _, p := range reps { // warm every replica's cache and API key cache
		res := runCalls(c, apiKey, 8, func(i int) (string, string, bool) {
			return p.base, ids[i%conns], i < conns
		})
		if res.failed > 0 {
			t.Fatalf("warm-up: %d calls failed; the first: %s", res.failed, res.firstErr)
		}
	}
	t.Logf("SCALE api: %d connections, %d workers, %s per run, %d rounds; load before: %s", conns, workers, runFor, rounds, loadAvg())
	perSec := map[int][]float64{}
	ratio := map[int][]float64{}
	var bareSec, bareRatio []float64
	for round := 1; round <= rounds; round++ {
		var base float64
		{
			deadline := time.Now().Add(runFor)
			res := runCalls(c, apiKey, workers, func(i int) (string, string, bool) {
				return bare.base, ids[i%conns], time.Now().Before(deadline)
			})
			if res.failed > 0 {
				t.Fatalf("baseline: %d calls failed; the first: %s", res.failed, res.firstErr)
			}
			bareSec = append(bareSec, res.perSecond())
			t.Logf("SCALE api round %d baseline (bare net/http, 1 process): %.0f req/s, p50 %s, p99 %s",
				round, res.perSecond(), res.quantile(0.5).Round(time.Microsecond), res.quantile(0.99).Round(time.Microsecond))
		}
		for n := 1; n <= 3; n++ {
			cpu0 := make([]time.Duration, n)
			for i := range n {
				cpu0[i] = reps[i].cpu(t)
			}
			deadline := time.Now().Add(runFor)
			rng := rand.New(rand.NewPCG(uint64(round), uint64(n)))
			ids := slicesShuffled(ids, rng)
			res := runCalls(c, apiKey, workers, func(i int) (string, string, bool) {
				return reps[i%n].base, ids[i%conns], time.Now().Before(deadline)
			})
			if res.failed > 0 {
				t.Fatalf("%d replicas: %d calls failed; the first: %s", n, res.failed, res.firstErr)
			}
			var cpu time.Duration
			for i := range n {
				cpu += reps[i].cpu(t) - cpu0[i]
			}
			rps := res.perSecond()
			if n == 1 {
				base = rps
				bareRatio = append(bareRatio, rps/bareSec[len(bareSec)-1])
			}
			perSec[n] = append(perSec[n], rps)
			ratio[n] = append(ratio[n], rps/base)
			t.Logf("SCALE api round %d replicas %d: %.0f req/s, p50 %s, p99 %s, ratio to 1 replica %.2f, tokenkeeper CPU %.1f µs/req (%d calls)",
				round, n, rps, res.quantile(0.5).Round(time.Microsecond), res.quantile(0.99).Round(time.Microsecond), rps/base,
				float64(cpu.Microseconds())/float64(res.calls), res.calls)
		}
	}
	t.Logf("SCALE api median baseline: %.0f req/s; 1 replica / baseline %.2f (ratios %s)", median(bareSec), median(bareRatio), fmtFloats(bareRatio))
	for n := 1; n <= 3; n++ {
		t.Logf("SCALE api median replicas %d: %.0f req/s, ratio to 1 replica %.2f (ratios %s)", n, median(perSec[n]), median(ratio[n]), fmtFloats(ratio[n]))
	}
	t.Logf("SCALE api: load after: %s", loadAvg())
}

// TestScale_RefreshBurst measures a burst of connections whose tokens have all expired:
// a client asks for every connection's token once (64 at a time), and each call makes
// one refresh at the emulator. It runs one keeper (one serve process) on SQLite and on
// PostgreSQL, with the default refresh rate limit (20/s) and with it raised, and reports
// the refreshes per second and tokenkeeper's CPU time per refresh (the emulator and the
// clients run in the test process, so the CPU time is tokenkeeper's alone).
func TestScale_RefreshBurst(t *testing.T) {
	benchOnly(t)
	rounds := benchInt(t, "TOKENKEEPER_BENCH_BURST_ROUNDS", 2)
	burst := benchInt(t, "TOKENKEEPER_BENCH_BURST", 10_000)
	burstDefault := benchInt(t, "TOKENKEEPER_BENCH_BURST_DEFAULT", 1000)
	const workers = 64
	type variant struct {
		name       string
		n          int
		rate, conc string // "" means the keeper's default
	}
	variants := []variant{
		{"raised rate", burst, "1000000", ""},
		{"raised rate, 32 concurrent", burst, "1000000", "32"},
		{"default rate", burstDefault, "", ""},
	}
	t.Logf("SCALE burst: %d rounds; load before: %s", rounds, loadAvg())
	for round := 1; round <= rounds; round++ {
		for _, v := range variants {
			for _, kind := range []string{"sqlite", "postgres"} {
				t.Run(fmt.Sprintf("round%d/%s/%s", round, kind, strings.ReplaceAll(v.name, " ", "_")), func(t *testing.T) {
					env := newBenchEnv(t, emulator.Config{})
					store := "sqlite:" + env.dir + "/tk.db"
					if kind == "postgres" {
						store = postgresStore(t)
					}
					apiKey := prepareStore(t, store)
					keys, err := seal.Load(env.keyFile)
					if err != nil {
						t.Fatal(err)
					}
					grants := emulatorGrants(t, env.emu.Emulator, v.n)
					seedStore(t, store, keys, seedPlan{n: v.n, id: connID, expired: true, now: time.Now(),
						tokens: func(i int) seedToken { return grants[i] }})
					var extra []string
					if v.rate != "" {
						extra = append(extra, childRateEnv+"="+v.rate)
					}
					if v.conc != "" {
						extra = append(extra, childConcEnv+"="+v.conc)
					}
					p := env.start(t, store, true, extra...)
					p.waitReady(t)
					time.Sleep(time.Second) // let the first scheduler tick and keep-alive scan pass
					emuPort := env.emu.URL[strings.LastIndexByte(env.emu.URL, ':')+1:]
					tw0 := timeWait(emuPort)
					cpu0 := p.cpu(t)
					pg0 := backendsCPU(t, store)
					res := runCalls(benchClient(), apiKey, workers, func(i int) (string, string, bool) {
						return p.base, connID(i), i < v.n
					})
					cpu := p.cpu(t) - cpu0
					_, hwm := p.memKB(t)
					closed := timeWait(emuPort) - tw0
					pgCPU := backendsCPU(t, store).minus(pg0)
					if res.failed > 0 {
						t.Fatalf("%d calls failed; the first: %s", res.failed, res.firstErr)
					}
					rep := env.emu.Report()
					total := 0
					for _, a := range rep.Authorisations {
						total += a.Refreshes
					}
					if total != v.n || len(rep.ViolationCounts) != 0 {
						t.Fatalf("the emulator counted %d refreshes for %d connections, violations %v", total, v.n, rep.ViolationCounts)
					}
					t.Logf("SCALE burst round %d %s %s: %d refreshes in %s: %.0f refreshes/s, call p50 %s p99 %s, tokenkeeper CPU %.0f µs/refresh, peak RSS %d MiB, %d connections to the emulator closed after use (TIME_WAIT)%s",
						round, kind, v.name, total, res.elapsed.Round(time.Millisecond), float64(total)/res.elapsed.Seconds(),
						res.quantile(0.5).Round(time.Millisecond), res.quantile(0.99).Round(time.Millisecond),
						float64(cpu.Microseconds())/float64(total), hwm/1024, closed, pgCPU.String(total))
				})
			}
		}
	}
	t.Logf("SCALE burst: load after: %s", loadAvg())
}

// backendCPU is the CPU time of a database's PostgreSQL backends, by pid.
type backendCPU map[int]time.Duration

// backendsCPU reads the CPU time of the PostgreSQL backends connected to store's
// database (none for SQLite). The server must be on this machine.
func backendsCPU(t *testing.T, store string) backendCPU {
	t.Helper()
	kind, where, _ := parseStore(store)
	if kind != "postgres" {
		return nil
	}
	conn, err := pgx.Connect(t.Context(), where)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	out := backendCPU{}
	for _, pid := range pids {
		out[int(pid)] = pidCPU(int(pid))
	}
	return out
}

// minus returns the CPU time the backends of b spent since before (backends that
// were not there before count from zero; backends gone since are lost).
func (b backendCPU) minus(before backendCPU) backendCPU {
	if b == nil {
		return nil
	}
	out := backendCPU{}
	for pid, d := range b {
		out[pid] = d - before[pid]
	}
	return out
}

// String formats the backends' CPU time per refresh, "" for none.
func (b backendCPU) String(refreshes int) string {
	if b == nil {
		return ""
	}
	var sum time.Duration
	for _, d := range b {
		sum += d
	}
	return fmt.Sprintf(", PostgreSQL backends CPU %.0f µs/refresh (%d backends)", float64(sum.Microseconds())/float64(refreshes), len(b))
}

// TestScale_Startup measures, for SQLite and PostgreSQL stores holding 0, 100,000 and
// 1,000,000 connections, the time from exec of `tokenkeeper serve` to its first
// /readyz 200, the resident memory then and after an idle spell (which includes the
// first keep-alive scan and the first retention run, 10s after start), the CPU time of
// the idle spell, and the time of a /metrics scrape (the connections gauge counts
// the store; three scrapes, 5.5s apart so that each counts). The stores are seeded once; each round starts every configuration in
// turn.
func TestScale_Startup(t *testing.T) {
	benchOnly(t)
	rounds := benchInt(t, "TOKENKEEPER_BENCH_ROUNDS", 3)
	idle := benchDuration(t, "TOKENKEEPER_BENCH_IDLE", 12*time.Second)
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
	env.bin = buildTokenkeeper(t)
	keys, err := seal.Load(env.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	type config struct {
		kind, store string
		n           int
	}
	var configs []config
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, n := range sizes {
			store := fmt.Sprintf("sqlite:%s/startup-%d.db", env.dir, n)
			if kind == "postgres" {
				store = postgresStore(t)
			}
			prepareStore(t, store)
			seedStore(t, store, keys, seedPlan{n: n, id: connID, now: time.Now()})
			t.Logf("SCALE startup store %s %d connections: %s on disk", kind, n, storeSize(t, store))
			configs = append(configs, config{kind, store, n})
		}
	}
	t.Logf("SCALE startup: %d rounds, idle %s; load before: %s", rounds, idle, loadAvg())
	type sample struct{ ready, rss, rssIdle, hwm, idleCPU, scrape, scrapeCPU []float64 }
	samples := make([]sample, len(configs))
	for round := 1; round <= rounds; round++ {
		for ci, cf := range configs {
			p := env.start(t, cf.store, false)
			ready := p.waitReady(t)
			rss, _ := p.memKB(t)
			cpu0 := p.cpu(t)
			time.Sleep(idle)
			rssIdle, hwm := p.memKB(t)
			idleCPU := p.cpu(t) - cpu0
			// Three scrapes, each after the gauge's 5s cache has expired: the median time,
			// and tokenkeeper's CPU time per scrape.
			var scrapes []float64
			cpuS := p.cpu(t)
			for k := range 3 {
				if k > 0 {
					time.Sleep(5500 * time.Millisecond)
				}
				scrapes = append(scrapes, float64(timeGet(t, p.base+"/metrics").Microseconds())/1000)
			}
			scrapeCPU := (p.cpu(t) - cpuS) / 3
			scrape := time.Duration(median(scrapes) * float64(time.Millisecond))
			p.stop(t)
			s := &samples[ci]
			s.ready = append(s.ready, float64(ready.Microseconds())/1000)
			s.rss = append(s.rss, float64(rss)/1024)
			s.rssIdle = append(s.rssIdle, float64(rssIdle)/1024)
			s.hwm = append(s.hwm, float64(hwm)/1024)
			s.idleCPU = append(s.idleCPU, float64(idleCPU.Milliseconds()))
			s.scrape = append(s.scrape, float64(scrape.Microseconds())/1000)
			s.scrapeCPU = append(s.scrapeCPU, float64(scrapeCPU.Milliseconds()))
			t.Logf("SCALE startup round %d %s %d: ready %s, RSS %.1f MiB at ready, %.1f MiB after %s idle (peak %.1f MiB), idle CPU %s, /metrics %s (median of 3, %s CPU each)",
				round, cf.kind, cf.n, ready.Round(time.Millisecond), float64(rss)/1024, float64(rssIdle)/1024, idle, float64(hwm)/1024,
				idleCPU, scrape.Round(time.Millisecond), scrapeCPU)
		}
	}
	for ci, cf := range configs {
		s := samples[ci]
		t.Logf("SCALE startup median %s %d: ready %.0f ms, RSS %.1f MiB at ready, %.1f MiB idle, peak %.1f MiB, idle CPU %.0f ms, /metrics %.1f ms, %.0f ms CPU per scrape",
			cf.kind, cf.n, median(s.ready), median(s.rss), median(s.rssIdle), median(s.hwm), median(s.idleCPU), median(s.scrape), median(s.scrapeCPU))
	}
	t.Logf("SCALE startup: load after: %s", loadAvg())
}

// timeGet times one GET of u.
func timeGet(t *testing.T, u string) time.Duration {
	t.Helper()
	t0 := time.Now()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	return time.Since(t0)
}

// storeSize reports the size of a store on disk.
func storeSize(t *testing.T, store string) string {
	t.Helper()
	kind, where, _ := parseStore(store)
	if kind == "sqlite" {
		var total int64
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(where + suffix); err == nil {
				total += fi.Size()
			}
		}
		return fmt.Sprintf("%d MiB", total>>20)
	}
	conn, err := pgx.Connect(t.Context(), where)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var size string
	if err := conn.QueryRow(t.Context(), "SELECT pg_size_pretty(pg_database_size(current_database()))").Scan(&size); err != nil {
		t.Fatal(err)
	}
	return size
}

func slicesShuffled(ids []string, rng *rand.Rand) []string {
	out := append([]string(nil), ids...)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func fmtFloats(xs []float64) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%.2f", x)
	}
	return b.String()
}
