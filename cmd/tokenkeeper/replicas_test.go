package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
)

// Sizing of TestServe_Replicas. The issue asks for 3 replicas and 200 connections;
// the cycles and the extra random calls per step are what keeps the test near 10 s
// under -race on two cores. Most of that is the three expiry steps, about 3 s each, and
// it is wall time, not CPU: every connection expires at once, and each replica refreshes
// at most 20 a second (the default rate limit, burst 20), taken only by the replica
// holding a connection's lease, so three replicas get through 200 expiries in about 3 s.
const (
	replicaCount      = 3
	replicaConns      = 200
	replicaClients    = 100
	replicaCycles     = 3
	replicaExtraCalls = 100 // random calls per step on top of one call per connection
	replicaTokenTTL   = time.Hour
)

// replicaSteps are the clock steps of one expiry cycle, as fractions of the token
// lifetime. The keeper promises a token for 75% to 85% of its lifetime, so the steps to
// 35% and 70% stay inside every promise (no refresh may happen: 5% of an hour leaves
// three minutes for real time to drift during a cycle), and the step to 100% passes every
// promise and the provider's expiry (each connection needs exactly one refresh).
var replicaSteps = []float64{0.35, 0.35, 0.30}

// replica is one `tokenkeeper serve` started by Main in this process: a keeper of its
// own (its own owner id, cache, scheduler and listener) sharing only the database.
type replica struct {
	base   string
	stdout *logtest.Buffer
	stderr *logtest.Buffer
	cancel context.CancelFunc
	done   chan struct{}
	code   int
}

// TestServe_Replicas is the multi-replica proof of the scale-out issue: 3 serve replicas
// on one PostgreSQL database, 200 connections, 100 concurrent clients taking tokens from
// random replicas and using them at the emulator's API (or calling through a random
// replica's proxy), across several expiry cycles of the shared clock. Every expiry gets
// exactly one refresh per connection, the emulator's ledger has no violation, and every
// client request succeeds.
//
// The clock moves only between steps, once every call of the step has returned: a jump
// past a token's promise while a client holds that token between /token and its use
// would model a client that sat on a token for longer than the drain grace (which the
// design says no protocol can protect), not a replica bug.
func TestServe_Replicas(t *testing.T) {
	started := time.Now()
	store := postgresStore(t)
	dir := t.TempDir()
	addrs := make([]string, replicaCount)
	var redirects []string
	for i := range addrs {
		addrs[i] = freeAddr(t)
		redirects = append(redirects, "http://"+addrs[i]+"/oauth/callback")
	}
	emu, err := emulator.NewServer(emulator.Config{
		AutoApprove: true,
		Clients: []emulator.Client{{ID: "replicas-client", Secret: "replicas-secret-0123456789",
			RedirectURIs: redirects, Name: "Replicas"}},
		AccessTokenTTL: replicaTokenTTL,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })

	mainRun := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &out, &errb); code != 0 {
			t.Fatalf("tokenkeeper %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
		}
		return out.String()
	}
	keyFile := dir + "/keyset.json"
	mainRun("keys", "generate", "--out", keyFile)
	var created struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(mainRun("apikeys", "create", "--store", store, "--name", "replicas", "--scopes", "admin", "--json")), &created); err != nil || created.Key == "" {
		t.Fatalf("apikeys create --json: %v (key %q)", err, created.Key)
	}
	apiKey := created.Key
	t.Setenv("TOKENKEEPER_CLIENT_ID", "replicas-client")
	t.Setenv("TOKENKEEPER_CLIENT_SECRET", "replicas-secret-0123456789")

	// Start the replicas together, as an orchestrator would.
	replicas := make([]*replica, replicaCount)
	for i := range replicas {
		r := &replica{base: "http://" + addrs[i], stdout: &logtest.Buffer{}, stderr: &logtest.Buffer{}, done: make(chan struct{})}
		replicas[i] = r
		ctx, cancel := context.WithCancel(withSeams(context.Background(), testSeams{now: emu.Now, keyPoll: time.Second}))
		r.cancel = cancel
		args := []string{"serve", "--listen", addrs[i], "--public-url", r.base, "--store", store, "--key-file", keyFile,
			"--provider", "custom", "--auth-url", emu.URL + "/oauth/authorize", "--token-url", emu.URL + "/oauth/token",
			"--api-url", emu.APIURL, "--allowed-return-url", "https://app.example/settings", "--log-level", "info"}
		go func() { r.code = Main(ctx, args, r.stdout, r.stderr); close(r.done) }()
		t.Cleanup(func() {
			cancel()
			select {
			case <-r.done:
			case <-time.After(15 * time.Second):
				t.Errorf("replica %d did not stop within 15s of cancellation", i)
			}
		})
	}
	// dump puts every replica's log and the emulator's report in the test output: what a
	// failure needs to be explained.
	dumped := false
	dump := func() {
		if dumped {
			return
		}
		dumped = true
		for i, r := range replicas {
			t.Logf("replica %d (%s) log:\n%s", i, r.base, r.stderr)
		}
		rep, _ := json.MarshalIndent(emu.Report(), "", "  ")
		t.Logf("emulator report:\n%s", rep)
	}
	for i, r := range replicas {
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(r.stdout.String(), "\n") {
			select {
			case <-r.done:
				t.Fatalf("replica %d exited %d before listening:\n%s", i, r.code, r.stderr)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d printed nothing within 20s:\n%s", i, r.stderr)
			}
		}
	}
	t.Logf("3 replicas up after %s", time.Since(started).Round(time.Millisecond))

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
		Timeout: 30 * time.Second}
	do := func(method, u, bearer string, body any, out any) (int, []byte, error) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, u, rd)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return resp.StatusCode, data, err
		}
		if out != nil && resp.StatusCode/100 == 2 {
			if err := json.Unmarshal(data, out); err != nil {
				return resp.StatusCode, data, err
			}
		}
		return resp.StatusCode, data, nil
	}

	// Connect 200 connections, each through a replica in turn, a few browsers at a time.
	ids := make([]string, replicaConns)
	for i := range ids {
		ids[i] = fmt.Sprintf("conn-%03d", i)
	}
	connect := func(i int) error {
		base := replicas[i%replicaCount].base
		var sess struct {
			URL string `json:"url"`
		}
		code, data, err := do("POST", base+"/v1/connect-sessions", apiKey,
			map[string]string{"connection_id": ids[i], "return_to": "https://app.example/settings/pleo"}, &sess)
		if err != nil || code != http.StatusCreated {
			return fmt.Errorf("%s: POST /v1/connect-sessions: %d %s %v", ids[i], code, data, err)
		}
		jar, _ := cookiejar.New(nil)
		var landed *url.URL
		browser := &http.Client{Jar: jar, Transport: client.Transport, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == "app.example" {
				landed = req.URL
				return http.ErrUseLastResponse
			}
			return nil
		}}
		resp, err := browser.PostForm(sess.URL, nil)
		if err != nil {
			return fmt.Errorf("%s: follow the connect link: %v", ids[i], err)
		}
		resp.Body.Close()
		if landed == nil || landed.Query().Get("status") != "connected" {
			return fmt.Errorf("%s: the connect flow ended at %s (%d), landed at %v", ids[i], resp.Request.URL, resp.StatusCode, landed)
		}
		return nil
	}
	{
		var wg sync.WaitGroup
		errs := make(chan error, replicaConns)
		next := atomic.Int64{}
		for range 8 {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < replicaConns; i = int(next.Add(1) - 1) {
					if err := connect(i); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			dump()
			t.Fatal(err)
		}
	}
	if n := len(emu.Report().Authorisations); n != replicaConns {
		t.Fatalf("the emulator has %d authorisations after connecting %d connections", n, replicaConns)
	}
	t.Logf("%d connections made after %s", replicaConns, time.Since(started).Round(time.Millisecond))

	// The clients: each call takes a random replica. A token call uses the token at the
	// emulator's API at once, and first checks that the clock is still inside the promise.
	type call struct {
		conn  string
		seed  uint64
		proxy bool
	}
	var failures atomic.Int64
	var failMu sync.Mutex
	var failed []string
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 20 {
			failMu.Lock()
			failed = append(failed, fmt.Sprintf(format, args...))
			failMu.Unlock()
		}
	}
	var calls, tokenCalls, proxyCalls atomic.Int64
	var slowest atomic.Int64 // the slowest call of the step, in nanoseconds
	work := make(chan call)
	var stepWG, clientsWG sync.WaitGroup
	// one makes call c through a random replica.
	one := func(c call) {
		defer stepWG.Done()
		began := time.Now()
		defer func() {
			d := int64(time.Since(began))
			for cur := slowest.Load(); d > cur && !slowest.CompareAndSwap(cur, d); cur = slowest.Load() {
			}
		}()
		rng := rand.New(rand.NewPCG(c.seed, 0))
		r := replicas[rng.IntN(replicaCount)]
		calls.Add(1)
		if c.proxy {
			proxyCalls.Add(1)
			code, data, err := do("GET", r.base+"/v1/connections/"+c.conn+"/proxy/v2/employees", apiKey, nil, nil)
			if err != nil || code != http.StatusOK {
				fail("%s via %s: GET proxy/v2/employees: %d %.200s %v", c.conn, r.base, code, data, err)
			}
			return
		}
		tokenCalls.Add(1)
		var tr tokenResponse
		code, data, err := do("POST", r.base+"/v1/connections/"+c.conn+"/token", apiKey, nil, &tr)
		if err != nil || code != http.StatusOK || tr.AccessToken == "" {
			fail("%s via %s: POST token: %d %.200s %v", c.conn, r.base, code, data, err)
			return
		}
		if now := emu.Now(); !now.Before(tr.ExpiresAt) {
			fail("%s via %s: the token's expires_at %s is not after the clock %s", c.conn, r.base, tr.ExpiresAt, now)
		}
		code, data, err = do("GET", emu.APIURL+"/v2/employees", tr.AccessToken, nil, nil)
		if err != nil || code != http.StatusOK {
			fail("%s via %s: GET /v2/employees at the emulator with the token served: %d %.200s %v", c.conn, r.base, code, data, err)
		}
	}
	for range replicaClients {
		clientsWG.Go(func() {
			for c := range work {
				one(c)
			}
		})
	}
	stopClients := sync.OnceFunc(func() { close(work); clientsWG.Wait() })
	t.Cleanup(stopClients)

	// refreshes returns the emulator's refresh count of every authorisation.
	refreshes := func() (total int, per map[int]int) {
		per = map[int]int{}
		for _, a := range emu.Report().Authorisations {
			total += a.Refreshes
			per[a.Refreshes]++
		}
		return total, per
	}
	check := func(when string, cycles int) bool {
		t.Helper()
		ok := true
		if n := failures.Load(); n > 0 {
			failMu.Lock()
			t.Errorf("%s: %d client requests failed; the first:\n%s", when, n, strings.Join(failed, "\n"))
			failMu.Unlock()
			ok = false
		}
		if total, per := refreshes(); total != replicaConns*cycles || per[cycles] != replicaConns {
			t.Errorf("%s: the emulator counted %d refreshes (authorisations by refresh count: %v); want %d, exactly %d for each of the %d",
				when, total, per, replicaConns*cycles, cycles, replicaConns)
			ok = false
		}
		if rep := emu.Report(); len(rep.ViolationCounts) != 0 {
			t.Errorf("%s: the emulator recorded violations: %v", when, rep.ViolationCounts)
			ok = false
		}
		return ok
	}

	rng := rand.New(rand.NewPCG(1, 2))
	stepStart := time.Now()
	var stepTimes, stepSlowest []time.Duration
	runStep := func() {
		batch := make([]call, 0, replicaConns+replicaExtraCalls)
		for _, id := range ids {
			batch = append(batch, call{conn: id})
		}
		for range replicaExtraCalls {
			batch = append(batch, call{conn: ids[rng.IntN(len(ids))]})
		}
		rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		for i := range batch {
			batch[i].seed = rng.Uint64()
			batch[i].proxy = rng.IntN(3) == 0
		}
		stepWG.Add(len(batch))
		for _, c := range batch {
			work <- c
		}
		stepWG.Wait() // quiescence: every call of the step has returned
		stepTimes = append(stepTimes, time.Since(stepStart))
		stepSlowest = append(stepSlowest, time.Duration(slowest.Swap(0)))
		stepStart = time.Now()
	}

	// A step at the connection time, before any clock travel: tokens from the cache.
	runStep()
	if !check("before the first expiry", 0) {
		dump()
		t.FailNow()
	}
	for cycle := 1; cycle <= replicaCycles; cycle++ {
		for s, frac := range replicaSteps {
			if _, err := emu.Advance(time.Duration(frac * float64(replicaTokenTTL))); err != nil {
				t.Fatal(err)
			}
			runStep()
			want := cycle - 1
			if s == len(replicaSteps)-1 {
				want = cycle
			}
			if !check(fmt.Sprintf("cycle %d step %d", cycle, s+1), want) {
				dump()
				t.FailNow()
			}
		}
	}
	stopClients()
	t.Logf("%d calls (%d token+API, %d proxy) in %d steps; step times %v; slowest call per step %v", calls.Load(), tokenCalls.Load(), proxyCalls.Load(),
		len(stepTimes), roundAll(stepTimes), roundAll(stepSlowest))

	// Stop the replicas (SIGTERM): each drains, and nothing refreshes late.
	for i, r := range replicas {
		r.cancel()
		select {
		case <-r.done:
			if r.code != 0 {
				t.Errorf("replica %d exited %d after cancellation; want 0", i, r.code)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("replica %d did not stop within 15s", i)
		}
	}
	if !check("after the replicas stopped", replicaCycles) {
		dump()
	}
	var byReplica, warnings []int
	for _, r := range replicas {
		logs := r.stderr.String()
		byReplica = append(byReplica, strings.Count(logs, "connection refreshed"))
		warnings = append(warnings, strings.Count(logs, "level=WARN"))
	}
	t.Logf("refreshes logged by each replica: %v; warnings: %v", byReplica, warnings)
	for i, r := range replicas {
		if logs := r.stderr.String(); strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "ALERT") {
			t.Errorf("replica %d logged an error", i)
			dump()
		}
	}
	t.Logf("done in %s", time.Since(started).Round(time.Millisecond))
}

func roundAll(ds []time.Duration) []time.Duration {
	out := slices.Clone(ds)
	for i := range out {
		out[i] = out[i].Round(time.Millisecond)
	}
	return out
}
