package keeper_test

// This file lets a test run keepers in other processes: the test binary
// re-executes itself with -test.run=^TestHelperProcess$ and the child's
// configuration in the environment. A child talks to its parent in lines on
// stdout ("READY", "STEP sending", "CLOCK <ns>", "RESULT ...") and takes
// commands on stdin ("STOP"). It exits when its stdin closes before STOP:
// a child never outlives its parent.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// helperEnv holds a child's childConfig as JSON; it is absent in a normal
// test run.
const helperEnv = "TOKENKEEPER_HELPER"

// childConfig is everything a child process needs to build its keeper.
type childConfig struct {
	Mode string // "load" or "crash"

	URL          string // the emulator's authorisation server and control plane
	APIURL       string
	DB           string // the SQLite file shared with the parent
	Keyset       []byte // the seal keyset (JSON)
	ClientID     string
	ClientSecret string
	Conn         tokenkeeper.ConnectionID
	Owner        string

	DrainGrace, DrainWait, RefreshTimeout, LeaseTTL time.Duration
	ScheduleInterval                                time.Duration

	// Load mode: the goroutines calling Token and the API, and the longest
	// pause (random, from zero) each takes between two calls.
	Workers int
	Pause   time.Duration

	// Crash mode: the refresh step at which the child announces itself
	// ("leased", right after the lease is taken and before the marker, or a
	// keeper.SetHook step: "sending", "received", "committed"), and whether
	// it then stops there until killed.
	Step  string
	Block bool
}

// TestHelperProcess is the body of a child process; in a normal run it does
// nothing.
func TestHelperProcess(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		return
	}
	os.Exit(runChild(raw))
}

// childOut writes protocol lines to stdout, one at a time.
type childOut struct{ mu sync.Mutex }

func (o *childOut) line(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

func runChild(raw string) int {
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "child: bad %s: %v\n", helperEnv, err)
		return 2
	}
	// A child is never left behind, whatever the parent does.
	time.AfterFunc(2*time.Minute, func() {
		fmt.Fprintln(os.Stderr, "child: still running after 2 minutes; exiting")
		os.Exit(3)
	})
	out := &childOut{}
	cmds := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()

	ctx := context.Background()
	clk := &clockFollower{url: cfg.URL + "/_emulator/clock", client: &http.Client{Timeout: 5 * time.Second}}
	if err := clk.poll(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "child: read the emulator clock: %v\n", err)
		return 2
	}
	clk.announce = func(off int64) { out.line("CLOCK %d", off) }
	out.line("CLOCK %d", clk.offset.Load())
	go clk.follow(ctx, 10*time.Millisecond)

	store, err := sqlite.Open(ctx, cfg.DB)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: open the store: %v\n", err)
		return 2
	}
	ks, err := seal.Parse(cfg.Keyset)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: parse the keyset: %v\n", err)
		return 2
	}
	// stop announces step and, for a crash child, stops there until killed.
	stop := func(step string) {
		if step != cfg.Step {
			return
		}
		out.line("STEP %s", step)
		if cfg.Block {
			<-make(chan struct{})
		}
	}
	var st tokenkeeper.Store = store
	if cfg.Step == "leased" {
		st = &leaseHookStore{Store: store, acquired: func() { stop("leased") }}
	}
	k, err := keeper.New(keeper.Config{
		Store:            st,
		Sealer:           seal.NewKeyring(ks),
		Provider:         tokenkeeper.CustomProvider(cfg.URL+"/oauth/authorize", cfg.URL+"/oauth/token", cfg.APIURL),
		ClientID:         cfg.ClientID,
		ClientSecret:     tokenkeeper.NewSecret(cfg.ClientSecret),
		Owner:            cfg.Owner,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Now:              clk.Now,
		DrainGrace:       cfg.DrainGrace,
		DrainWait:        cfg.DrainWait,
		RefreshTimeout:   cfg.RefreshTimeout,
		LeaseTTL:         cfg.LeaseTTL,
		ScheduleInterval: cfg.ScheduleInterval,
		BackoffBase:      10 * time.Millisecond,
		BackoffMax:       50 * time.Millisecond,
		FailureCooldown:  200 * time.Millisecond,
		RefreshRate:      10000,
		RefreshBurst:     1000,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: keeper.New: %v\n", err)
		return 2
	}
	keeper.SetHook(k, func(step string, _ tokenkeeper.ConnectionID) { stop(step) })

	switch cfg.Mode {
	case "load":
		return childLoad(cfg, k, clk, out, cmds)
	case "crash":
		return childCrash(cfg, k, out, cmds)
	}
	fmt.Fprintf(os.Stderr, "child: unknown mode %q\n", cfg.Mode)
	return 2
}

// clockFollower is the emulator's clock in another process: the wall clock
// plus the emulator's offset, polled from GET /_emulator/clock. It lags the
// emulator by about one poll; the parent waits for every child's CLOCK line
// before it relies on a jump.
//
// A caller that checks a token against the clock and then uses it does both
// within one clockEpoch ([clockFollower.enter], [clockFollower.leave]). A jump
// starts a new clockEpoch at once, but is announced only once the calls of the
// old clockEpoch have ended: then no call checked minutes before a promise ends
// can reach the provider after the parent's jump past that end. Once the
// jump is announced, the processes see the promise end by real time, as if
// time had flowed.
type clockFollower struct {
	url      string
	client   *http.Client
	offset   atomic.Int64
	announce func(int64) // called with each new offset; set before follow
	polls    atomic.Int64
	errors   atomic.Int64

	mu  sync.Mutex
	cur *clockEpoch
}

// clockEpoch counts the calls checked against one clock offset.
type clockEpoch struct {
	off    int64
	n      int
	closed bool
	done   chan struct{} // closed once closed and n is 0
}

// enter starts a call in the current clockEpoch and returns it with the time by
// its offset.
func (c *clockFollower) enter() (*clockEpoch, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		c.cur = &clockEpoch{off: c.offset.Load(), done: make(chan struct{})}
	}
	c.cur.n++
	return c.cur, time.Now().Add(time.Duration(c.cur.off))
}

// leave ends a call begun with enter.
func (c *clockFollower) leave(ep *clockEpoch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ep.n--
	if ep.closed && ep.n == 0 {
		close(ep.done)
	}
}

// jump moves to offset off and waits for the calls of the old clockEpoch.
func (c *clockFollower) jump(off int64) {
	c.mu.Lock()
	c.offset.Store(off)
	old := c.cur
	c.cur = &clockEpoch{off: off, done: make(chan struct{})}
	if old != nil {
		old.closed = true
		if old.n == 0 {
			close(old.done)
		}
	}
	c.mu.Unlock()
	if old != nil {
		<-old.done
	}
}

func (c *clockFollower) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *clockFollower) poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var st emulator.ClockState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return fmt.Errorf("decode the clock: %w", err)
	}
	c.polls.Add(1)
	// The offset only moves forward.
	if off := int64(st.Offset); off > c.offset.Load() {
		c.jump(off)
		if c.announce != nil {
			c.announce(off)
		}
	}
	return nil
}

func (c *clockFollower) follow(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.poll(ctx); err != nil {
			c.errors.Add(1)
		}
	}
}

// childProc is a running child process, seen from the parent.
type childProc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *syncBuffer
	lines  chan string  // protocol lines but CLOCK; closed at the child's exit
	clock  atomic.Int64 // the last emulator clock offset the child reported
	exited chan struct{}
	err    error // from Wait; read after exited is closed
	once   sync.Once
}

// startChild starts the test binary as a child running cfg. t.Cleanup kills
// it.
func startChild(t testing.TB, name string, cfg childConfig) *childProc {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &childProc{t: t, name: name, stderr: &syncBuffer{}, lines: make(chan string, 1024), exited: make(chan struct{})}
	c.clock.Store(-1)
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.timeout=3m")
	c.cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	c.cmd.Stderr = c.stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start child %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if off, ok := strings.CutPrefix(line, "CLOCK "); ok {
				var n int64
				if _, err := fmt.Sscan(off, &n); err == nil {
					c.clock.Store(n)
				}
				continue
			}
			select {
			case c.lines <- line:
			default: // nobody reads: drop
			}
		}
		close(c.lines)
		c.err = c.cmd.Wait() // only after stdout is read to its end
		close(c.exited)
	}()
	t.Cleanup(c.kill)
	return c
}

// kill ends the child with SIGKILL (if it still runs) and waits for it.
func (c *childProc) kill() {
	c.once.Do(func() {
		_ = c.stdin.Close()
		_ = c.cmd.Process.Kill()
	})
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.t.Errorf("child %s did not exit 10s after SIGKILL", c.name)
	}
}

// send writes a command line to the child's stdin.
func (c *childProc) send(cmd string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		c.fatalf("send %q: %v", cmd, err)
	}
}

// expect returns the next line that starts with prefix, logging the lines
// before it.
func (c *childProc) expect(prefix string, within time.Duration) string {
	c.t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				<-c.exited
				c.fatalf("exited (%v) before it said %q", c.err, prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
			c.t.Logf("child %s: %s", c.name, line)
		case <-deadline.C:
			c.fatalf("did not say %q within %s", prefix, within)
		}
	}
}

// wait waits for the child to exit by itself and returns Wait's error.
func (c *childProc) wait(within time.Duration) error {
	c.t.Helper()
	select {
	case <-c.exited:
		return c.err
	case <-time.After(within):
		c.fatalf("did not exit within %s", within)
		return nil
	}
}

func (c *childProc) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("child %s: %s%s", c.name, fmt.Sprintf(format, args...), c.stderrTail())
}

// stderrTail is the end of the child's stderr, for failure messages.
func (c *childProc) stderrTail() string {
	s := c.stderr.String()
	const limit = 16 << 10
	if len(s) > limit {
		s = "..." + s[len(s)-limit:]
	}
	return fmt.Sprintf("\n--- child %s stderr ---\n%s--- end of child %s stderr ---", c.name, s, c.name)
}

// childBase returns the part of a childConfig that names e's emulator,
// store, keyset and client.
func (e *env) childBase(mode, owner string, conn tokenkeeper.ConnectionID) childConfig {
	return childConfig{
		Mode: mode, URL: e.srv.URL, APIURL: e.srv.APIURL, DB: e.path, Keyset: e.keyset,
		ClientID: e.client.ID, ClientSecret: e.client.Secret, Conn: conn, Owner: owner,
	}
}

// pollChildren polls cond every few milliseconds until it holds, failing with
// what (and the children's stderr) after within.
func pollChildren(t testing.TB, within time.Duration, what func() string, cond func() bool, children ...*childProc) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %s waiting for %s", within, what())
			for _, c := range children {
				msg += c.stderrTail()
			}
			t.Fatal(msg)
		}
		time.Sleep(3 * time.Millisecond)
	}
}
