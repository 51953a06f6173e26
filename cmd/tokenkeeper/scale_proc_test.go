package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// The processes, clients and measurements of the scale benchmarks (scale_bench_test.go):
// every tokenkeeper measured is a process of its own, so that its CPU time and resident
// memory are its own, not the load generator's or the emulator's (which run in the test
// process).

// benchOnly skips t unless TOKENKEEPER_BENCH=1: the scale benchmarks start processes,
// seed up to millions of rows and run for minutes, so they are never part of the
// default test run.
func benchOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("TOKENKEEPER_BENCH") != "1" {
		t.Skip("a scale benchmark: set TOKENKEEPER_BENCH=1 to run it")
	}
}

// benchInt reads the integer setting name from the environment, def if unset.
func benchInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// Child mode: the test binary re-executed as `tokenkeeper serve` with keeper settings
// that serve has no flag for (the refresh rate limit and the concurrency cap).
const (
	childEnv     = "TOKENKEEPER_BENCH_CHILD" // JSON array of serve's arguments
	childRateEnv = "TOKENKEEPER_BENCH_REFRESH_RATE"
	childConcEnv = "TOKENKEEPER_BENCH_MAX_CONCURRENT"
	childProfEnv = "TOKENKEEPER_BENCH_CPUPROFILE" // a file for the child's CPU profile
	childBareEnv = "TOKENKEEPER_BENCH_BARE"       // "1": the baseline server instead of serve
)

// TestScaleChild is not a test: it is `tokenkeeper serve` in a child process of a scale
// benchmark. It runs only when the benchmark sets childEnv.
func TestScaleChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("the child process of the scale benchmarks")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitUsage)
	}
	if os.Getenv(childBareEnv) == "1" {
		fmt.Fprintln(os.Stderr, serveBare(args[2])) // args: serve --listen ADDR ...
		os.Exit(exitError)
	}
	rate, _ := strconv.ParseFloat(os.Getenv(childRateEnv), 64)
	conc, _ := strconv.Atoi(os.Getenv(childConcEnv))
	if path := os.Getenv(childProfEnv); path != "" {
		if f, err := os.Create(path); err == nil { // closed by the exit, after StopCPUProfile
			pprof.StartCPUProfile(f)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := serveWithKeeper(ctx, args, os.Stdout, os.Stderr, func(c *keeper.Config) {
		if rate > 0 {
			c.RefreshRate, c.RefreshBurst = rate, int(rate)
		}
		if conc > 0 {
			c.MaxConcurrentRefreshes = conc
		}
	})
	stop()
	pprof.StopCPUProfile() // nothing if no profile runs
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitError)
	}
	os.Exit(exitOK)
}

// serveWithKeeper is runServe with the keeper's configuration adjusted by adjust.
func serveWithKeeper(ctx context.Context, args []string, stdout, stderr io.Writer, adjust func(*keeper.Config)) error {
	s := newSettings("tokenkeeper serve", groupStore|groupKeys|groupProvider|groupServe)
	if _, err := s.parse(args[1:]); err != nil {
		return err
	}
	if err := errors.Join(s.requireClient(), s.requirePublicURL()); err != nil {
		return err
	}
	kf, err := loadKeyFile(s)
	if err != nil {
		return err
	}
	log := newLogger(stderr, s.logFormat, s.logLevel)
	svc, err := startService(ctx, s, kf, log, serviceOptions{keeper: adjust})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tokenkeeper serving on %s (public URL %s)\n", svc.url, s.public)
	return svc.wait(ctx)
}

// serveBare is the baseline of the token API benchmark: a bare net/http server on addr
// that answers every POST /v1/connections/{id}/token carrying an Authorization header
// with a constant body of the size of tokenkeeper's answer. It is the most this machine
// does for such a call through the same client, with the same process layout.
func serveBare(addr string) error {
	body := []byte(`{"access_token":"` + strings.Repeat("x", 43) + `","token_type":"Bearer","expires_at":"2026-11-26T13:00:00.123456Z","expires_in":2880}` + "\n")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /v1/connections/{id}/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" || r.PathValue("id") == "" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// buildTokenkeeper builds the tokenkeeper command once for a benchmark.
func buildTokenkeeper(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tokenkeeper")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// benchEnv is what every process of a benchmark shares: the emulator it uses as the
// provider, the key file, and the binaries.
type benchEnv struct {
	emu     *emulator.Server
	keyFile string
	bin     string // the tokenkeeper command
	dir     string
}

func newBenchEnv(t *testing.T, emuCfg emulator.Config) *benchEnv {
	t.Helper()
	emuCfg.AutoApprove = true
	emuCfg.Clients = []emulator.Client{grantClient}
	emu, err := emulator.NewServer(emuCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	env := &benchEnv{emu: emu, dir: t.TempDir()}
	env.keyFile = filepath.Join(env.dir, "keyset.json")
	mainOK(t, "keys", "generate", "--out", env.keyFile)
	return env
}

// mainOK runs tokenkeeper's Main in this process and returns its stdout.
func mainOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Main(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("tokenkeeper %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// prepareStore creates the schema of store and an admin API key, which it returns.
func prepareStore(t *testing.T, store string) string {
	t.Helper()
	mainOK(t, "migrate", "--store", store)
	var created struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(mainOK(t, "apikeys", "create", "--store", store, "--name", "bench", "--scopes", "admin", "--json")), &created); err != nil {
		t.Fatal(err)
	}
	return created.Key
}

// serveArgs are the arguments of `tokenkeeper serve` on addr and store.
func (env *benchEnv) serveArgs(addr, store string) []string {
	return []string{"serve", "--listen", addr, "--public-url", "http://" + addr, "--store", store, "--key-file", env.keyFile,
		"--provider", "custom", "--auth-url", env.emu.URL + "/oauth/authorize", "--token-url", env.emu.URL + "/oauth/token",
		"--api-url", env.emu.APIURL, "--allowed-return-url", "https://app.example/", "--log-level", "info"}
}

// proc is one tokenkeeper process.
type proc struct {
	cmd     *exec.Cmd
	base    string
	started time.Time
	logPath string
	done    chan struct{}
}

// start runs `tokenkeeper serve` on store: the built binary, or, with extraEnv, this
// test binary in child mode (TestScaleChild).
func (env *benchEnv) start(t *testing.T, store string, child bool, extraEnv ...string) *proc {
	t.Helper()
	addr := freeAddr(t)
	args := env.serveArgs(addr, store)
	var cmd *exec.Cmd
	if child {
		raw, _ := json.Marshal(args)
		cmd = exec.Command(os.Args[0], "-test.run=^TestScaleChild$")
		extraEnv = append(extraEnv, childEnv+"="+string(raw))
	} else {
		cmd = exec.Command(env.bin, args...)
	}
	cmd.Env = append(os.Environ(), "TOKENKEEPER_CLIENT_ID="+grantClient.ID, "TOKENKEEPER_CLIENT_SECRET="+grantClient.Secret, "TOKENKEEPER_BENCH=")
	cmd.Env = append(cmd.Env, extraEnv...)
	p := &proc{cmd: cmd, base: "http://" + addr, done: make(chan struct{})}
	f, err := os.CreateTemp(env.dir, "serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p.logPath = f.Name()
	cmd.Stdout, cmd.Stderr = f, f
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// waitReady polls /readyz every 2ms and returns the time from exec to its first 200.
func (p *proc) waitReady(t *testing.T) time.Duration {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := p.started.Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			log, _ := os.ReadFile(p.logPath)
			t.Fatalf("tokenkeeper exited before it was ready:\n%s", log)
		default:
		}
		resp, err := c.Get(p.base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.started)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%s was not ready within 5 minutes", p.base)
	return 0
}

// stop sends SIGTERM and waits for the process to exit.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Errorf("%s did not stop within 60s of SIGTERM; killing it", p.base)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// memKB returns the process's VmRSS and VmHWM (peak RSS) in KiB.
func (p *proc) memKB(t *testing.T) (rss, hwm int) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.Atoi(f[1])
		case "VmHWM:":
			hwm, _ = strconv.Atoi(f[1])
		}
	}
	return rss, hwm
}

// pidCPU returns the CPU time so far of process pid (user + system), 0 if it is gone.
func pidCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count fields after it. utime
	// and stime are fields 14 and 15.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// cpu returns the process's CPU time so far (user + system, /proc/PID/stat, in clock
// ticks of 10ms: USER_HZ is 100 on Linux).
func (p *proc) cpu(t *testing.T) time.Duration {
	t.Helper()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	return pidCPU(p.cmd.Process.Pid)
}

// loadResult is what a run of token calls measured.
type loadResult struct {
	calls, failed int
	elapsed       time.Duration
	lat           []time.Duration
	firstErr      string
}

func (r loadResult) perSecond() float64 { return float64(r.calls) / r.elapsed.Seconds() }

// quantile returns the q quantile of the latencies (sorted in place).
func (r loadResult) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	slices.Sort(r.lat)
	return r.lat[min(len(r.lat)-1, int(q*float64(len(r.lat))))]
}

// benchClient is the load generator's HTTP client: keep-alive, enough idle connections
// for every worker.
func benchClient() *http.Client {
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}}
}

// tokenCall makes one POST /v1/connections/{id}/token.
func tokenCall(c *http.Client, base, apiKey, id string) error {
	req, _ := http.NewRequest("POST", base+"/v1/connections/"+id+"/token", nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %d %.200s", id, resp.StatusCode, body)
	}
	return err
}

// runCalls runs workers goroutines making token calls: next returns the base URL and
// connection of call i, or ok false when there are no more. Stop ends the run early.
func runCalls(c *http.Client, apiKey string, workers int, next func(i int) (base, id string, ok bool)) loadResult {
	var (
		i      atomic.Int64
		mu     sync.Mutex
		res    loadResult
		wg     sync.WaitGroup
		failed atomic.Int64
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			var lat []time.Duration
			for {
				base, id, ok := next(int(i.Add(1) - 1))
				if !ok {
					break
				}
				t0 := time.Now()
				if err := tokenCall(c, base, apiKey, id); err != nil {
					if failed.Add(1) == 1 {
						mu.Lock()
						res.firstErr = err.Error()
						mu.Unlock()
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.calls = len(res.lat)
	res.failed = int(failed.Load())
	return res
}

// timeWait counts the IPv4 sockets in TIME_WAIT whose remote port is port: on the
// client's side of a connection, each is a connection that was closed after use
// instead of kept for the next request.
func timeWait(port string) int {
	data, _ := os.ReadFile("/proc/net/tcp")
	n := 0
	want, _ := strconv.Atoi(port)
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "06" {
			continue
		}
		_, hexPort, _ := strings.Cut(f[2], ":")
		if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == want {
			n++
		}
	}
	return n
}

// loadAvg returns /proc/loadavg's first three fields.
func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// median returns the median of xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Sorted(slices.Values(xs))
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// benchDuration reads a duration setting, def if unset.
func benchDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}
