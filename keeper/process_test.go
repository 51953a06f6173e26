package keeper_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// TestKeeper_TwoProcesses runs two keeper processes on one SQLite file
// against the emulator, each with the scheduler and 100 goroutines calling
// Token and then, at once, the API with the token. The parent walks the
// emulator's clock through 20 promises. The provider must see exactly one
// refresh per promise, every API call must succeed, and no rule may be
// broken: no concurrent refresh, no reuse, no stale access token.
func TestKeeper_TwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two child processes")
	}
	const (
		conn    = "acme"
		cycles  = 20
		workers = 100
		// drainGrace is how long a superseded token must stay usable for
		// calls already on their way, in another process included. On a
		// busy 2-core machine with -race, a call can take 100ms from the
		// check of its token to the provider.
		drainGrace = 250 * time.Millisecond
		// lead: the clock jumps to this long before each promise ends, and
		// the children catch up on it before the promise ends by real time,
		// so that every process sees the promise end at the same instant.
		lead = 250 * time.Millisecond
		// pause bounds the random pause of each worker between two calls,
		// so that 200 workers leave the machine some idle time: a saturated
		// machine measures its run queue, not the keeper.
		pause = 100 * time.Millisecond
	)
	start := time.Now()
	e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) { c.DrainGrace = drainGrace })
	e.connect(conn)

	base := e.childBase("load", "", conn)
	base.DrainGrace, base.DrainWait = drainGrace, 200*time.Millisecond
	base.RefreshTimeout, base.LeaseTTL = 1500*time.Millisecond, 3*time.Second
	base.ScheduleInterval = 20 * time.Millisecond
	base.Workers, base.Pause = workers, pause
	var kids []*childProc
	for _, name := range []string{"a", "b"} {
		cfg := base
		cfg.Owner = "child-" + name
		kids = append(kids, startChild(t, name, cfg))
	}
	for _, c := range kids {
		c.expect("READY", 30*time.Second)
	}
	apiOK := func() int64 { return e.srv.Report().Counters["api"]["ok"] }
	pollChildren(t, 10*time.Second, func() string { return "the children to call the API" },
		func() bool { return apiOK() >= 2*workers }, kids...)

	offset := emulatorOffset(t, e)
	late := 0
	for cycle := 1; cycle <= cycles; cycle++ {
		rec := e.record(conn)
		promise := rec.Tokens.ExpiresAt
		// Jump to just before the promise ends. The children catch up (each
		// after its calls in flight from before the jump) while the promise
		// still runs, so the promise ends by real time, at the same instant
		// in every process, and the drain grace is real time too.
		if d := promise.Add(-lead).Sub(e.srv.Now()); d > 0 {
			if _, err := e.srv.Advance(d); err != nil {
				t.Fatal(err)
			}
			offset += d
		}
		pollChildren(t, 10*time.Second,
			func() string {
				return fmt.Sprintf("cycle %d: the children to follow the clock to offset %s", cycle, offset)
			},
			func() bool {
				for _, c := range kids {
					if c.clock.Load() < int64(offset) {
						return false
					}
				}
				return true
			}, kids...)
		if !e.srv.Now().Before(promise) {
			late++ // the drain grace may still cover it; reported below
		}
		before := apiOK()
		pollChildren(t, 10*time.Second,
			func() string { return fmt.Sprintf("cycle %d: API calls with token %d", cycle, cycle) },
			func() bool { return apiOK() >= before+workers/2 }, kids...)
		pollChildren(t, 10*time.Second,
			func() string { return fmt.Sprintf("cycle %d: refresh %d and its commit", cycle, cycle) },
			func() bool {
				r := e.record(conn)
				return e.srv.Report().Authorisations[0].Refreshes >= cycle && r.Pending.IsZero() && r.Tokens.ExpiresAt.After(promise)
			}, kids...)
		if n := e.srv.Report().Authorisations[0].Refreshes; n != cycle {
			t.Fatalf("cycle %d: the provider saw %d refreshes, want exactly %d (one per promise)", cycle, n, cycle)
		}
	}
	if late > 0 {
		t.Logf("%d of %d times the children caught up on the clock only after the promise had ended", late, cycles)
	}

	for _, c := range kids {
		c.send("STOP")
	}
	var total, excused int64
	for _, c := range kids {
		line := c.expect("RESULT ", 30*time.Second)
		var r loadResult
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &r); err != nil {
			c.fatalf("bad result %q: %v", line, err)
		}
		if err := c.wait(10 * time.Second); err != nil {
			c.fatalf("exit: %v", err)
		}
		refreshed := strings.Count(c.stderr.String(), `msg="refresh attempt"`)
		t.Logf("child %s: %d API calls ok, %d tokens past their promise not used, %d refresh attempts, slowest check-to-answer %s, %d slower than the drain grace, least slack before a refresh %s, %d clock polls",
			c.name, r.OK, r.Expired, refreshed, r.MaxLatency.Round(time.Millisecond), r.Slow, r.MinSlack.Round(time.Millisecond), r.ClockPolls)
		if r.Bad != 0 || r.NetErrs != 0 || r.TokenErrs != 0 {
			t.Errorf("child %s: %d API calls refused (the last: status %d, %s after a check %s before the promise ended), %d failed in transport, %d Token errors; first error: %s%s",
				c.name, r.Bad, r.BadStatus, r.BadLatency, r.BadMargin, r.NetErrs, r.TokenErrs, r.FirstErr, c.stderrTail())
		}
		if r.OK < workers {
			t.Errorf("child %s: only %d successful API calls", c.name, r.OK)
		}
		total += r.OK
		excused += r.Excused
	}
	if excused > 0 {
		t.Logf("%d refused calls excused: each was answered after the earliest moment a refresh could be made (the promise's end plus the %s drain grace), on a machine too busy for this test's grace", excused, drainGrace)
	}

	rep := e.srv.Report()
	if n := rep.Authorisations[0].Refreshes; n != cycles {
		t.Errorf("the provider saw %d refreshes over %d promises, want exactly one per promise", n, cycles)
	}
	if diff := cmp.Diff(map[string]int64{"ok": cycles}, rep.Counters["refresh_token"]); diff != "" {
		t.Errorf("refresh outcomes (-want +got):\n%s", diff)
	}
	wantAPI, wantViolations := map[string]int64{"ok": total}, map[string]int{}
	if excused > 0 {
		wantAPI["invalid_token"], wantViolations["stale_access_token"] = excused, int(excused)
	}
	if diff := cmp.Diff(wantAPI, rep.Counters["api"]); diff != "" {
		t.Errorf("API outcomes at the provider (-want +got); the children counted %d ok and %d excused:\n%s", total, excused, diff)
	}
	if diff := cmp.Diff(wantViolations, rep.ViolationCounts, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("violations (-want +got): only the excused calls may be stale:\n%s", diff)
	}
	t.Logf("%d promises, %d refreshes, %d API calls in %s", cycles, rep.Authorisations[0].Refreshes, total, time.Since(start).Round(time.Millisecond))
}

// emulatorOffset reads how far the emulator's clock has travelled.
func emulatorOffset(t testing.TB, e *env) time.Duration {
	t.Helper()
	resp, err := http.Get(e.srv.URL + "/_emulator/clock")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st emulator.ClockState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return time.Duration(st.Offset)
}

// loadResult is what a load child reports when stopped.
type loadResult struct {
	OK  int64 // API calls answered 200
	Bad int64 // API calls answered anything else, with time to spare (see Excused)
	// Excused counts the refused calls whose answer came after the earliest
	// moment a refresh could be made (the promise's end plus the drain
	// grace; negative slack): on a machine too busy for the test's drain
	// grace, a call can take longer than the grace, and the keeper
	// promises nothing past it. They are logged, and not failures.
	Excused    int64
	BadStatus  int           // the last such status
	NetErrs    int64         // API calls that failed in transport
	TokenErrs  int64         // Token calls that failed
	FirstErr   string        // the first Token or transport error
	Expired    int64         // tokens found past their promise before use, and so not used
	MaxLatency time.Duration // from the promise check to the API's answer
	Slow       int64         // calls whose answer came more than the drain grace after the check
	// MinSlack is the least, over the calls, of the time left until the
	// earliest refresh (the promise's end plus the drain grace) when the
	// answer came. A call whose slack is negative could have been stale.
	MinSlack time.Duration
	hasSlack bool
	// BadLatency and BadMargin are, for the last refused call, the time
	// from the check to the answer and how long the promise still had to
	// run at the check.
	BadLatency, BadMargin time.Duration
	ClockPolls            int64
	ClockErrors           int64
}

// childLoad runs the scheduler and cfg.Workers goroutines that each loop:
// Token, then at once the API with it, never past its promise. It reports
// its counts when told to STOP.
func childLoad(cfg childConfig, k *keeper.Keeper, clk *clockFollower, out *childOut, cmds <-chan string) int {
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = k.Run(runCtx) }()

	api := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 2 * cfg.Workers, MaxIdleConnsPerHost: cfg.Workers, IdleConnTimeout: time.Minute},
	}
	var (
		res     loadResult
		mu      sync.Mutex // guards res
		ok, bad atomic.Int64
		netErrs atomic.Int64
		tokErrs atomic.Int64
		expired atomic.Int64
		slow    atomic.Int64
		excused atomic.Int64
		stopped atomic.Bool
		wg      sync.WaitGroup
	)
	note := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	for range cfg.Workers {
		wg.Go(func() {
			for !stopped.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				tok, err := k.Token(ctx, cfg.Conn)
				cancel()
				if err != nil {
					tokErrs.Add(1)
					note(func() {
						if res.FirstErr == "" {
							res.FirstErr = "Token: " + err.Error()
						}
					})
					time.Sleep(5 * time.Millisecond)
					continue
				}
				// The check and the call belong to one epoch of the clock: a
				// jump is acknowledged only after the calls checked before
				// it have ended, as if time had flowed.
				ep, now := clk.enter()
				checked := time.Now()
				margin := tok.ExpiresAt.Sub(now)
				if margin <= 0 {
					clk.leave(ep)
					expired.Add(1) // past its promise: get a new one
					continue
				}
				status, err := childIntrospect(api, cfg.APIURL, tok.Value)
				took := time.Since(checked)
				clk.leave(ep)
				if took > cfg.DrainGrace {
					slow.Add(1)
				}
				slack := margin + cfg.DrainGrace - took
				note(func() {
					res.MaxLatency = max(res.MaxLatency, took)
					if !res.hasSlack || slack < res.MinSlack {
						res.MinSlack, res.hasSlack = slack, true
					}
				})
				switch {
				case err != nil:
					netErrs.Add(1)
					note(func() {
						if res.FirstErr == "" {
							res.FirstErr = "API: " + err.Error()
						}
					})
				case status == http.StatusOK:
					ok.Add(1)
				case slack < 0:
					excused.Add(1)
				default:
					bad.Add(1)
					note(func() { res.BadStatus, res.BadLatency, res.BadMargin = status, took, margin })
				}
				if cfg.Pause > 0 {
					time.Sleep(rand.N(cfg.Pause))
				}
			}
		})
	}
	out.line("READY")
	for cmd := range cmds {
		if cmd == "STOP" {
			stopped.Store(true)
			wg.Wait()
			stopRun()
			<-runDone
			_ = k.Close()
			mu.Lock()
			res.OK, res.Bad, res.NetErrs, res.TokenErrs, res.Expired, res.Slow = ok.Load(), bad.Load(), netErrs.Load(), tokErrs.Load(), expired.Load(), slow.Load()
			res.Excused = excused.Load()
			res.ClockPolls, res.ClockErrors = clk.polls.Load(), clk.errors.Load()
			b, _ := json.Marshal(res)
			mu.Unlock()
			out.line("RESULT %s", b)
			return 0
		}
	}
	fmt.Fprintln(os.Stderr, "child: stdin closed before STOP; exiting")
	return 2
}

// childIntrospect calls GET /v1/introspect with tok and returns the status.
func childIntrospect(c *http.Client, apiURL string, tok tokenkeeper.Secret) (int, error) {
	req, err := http.NewRequest(http.MethodGet, apiURL+"/v1/introspect", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
