// Package browsertest starts a real, headless Chromium for tests and hands back a chromedp
// context that drives one tab of it.
//
// The browser is Debian's chromium (apt-get install chromium), or whatever
// TOKENKEEPER_CHROMIUM names. Where none is found, New skips the test with a message that
// says how to install one, so `go test ./...` passes on a fresh laptop; under CI=true it
// fails the test instead, so a CI machine that lost its browser cannot go green by
// skipping every browser test.
//
// Every browser runs with a fresh profile in t.TempDir(), with the flags a closed network
// needs (no background networking, no QUIC, no component updates, no sync), and is stopped
// when the test ends. Nothing here is shared between tests, so browser tests may run in
// parallel; each costs one Chromium process tree.
package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/chromedp"
)

// Environment variables read by this package.
const (
	// EnvChromium names the browser to run: a path, or a program name looked up on PATH.
	// When set, it is the only candidate.
	EnvChromium = "TOKENKEEPER_CHROMIUM"
	// EnvUpdateScreenshots, when true ("1", "true"), makes tests write the screenshots that
	// are committed under docs/screenshots. Unset, tests never write into the repository.
	EnvUpdateScreenshots = "TOKENKEEPER_UPDATE_SCREENSHOTS"
)

// Timeout bounds each browser a test starts with New, from start to the last action. It
// is a guard against a hung page, not a speed assertion.
const Timeout = 60 * time.Second

// The viewport of every tab New opens, in CSS pixels (window.innerWidth and innerHeight).
// A screenshot of a page that fits is this size.
const (
	ViewportWidth  = 800
	ViewportHeight = 900
)

// candidates are the program names tried on PATH when EnvChromium is unset, in order.
var candidates = []string{"chromium", "chromium-browser", "google-chrome"}

// closedNetworkFlags are the Chromium flags our machines need on top of chromedp's
// defaults. Without the background-networking flags Chromium keeps dialling Google's
// hosts, which a closed network refuses, many at a time; --no-sandbox is needed as root
// (CI runs as root); --disable-gpu because there is no GPU.
var closedNetworkFlags = []chromedp.ExecAllocatorOption{
	chromedp.Headless,
	chromedp.NoSandbox,
	chromedp.DisableGPU,
	chromedp.NoFirstRun,
	chromedp.Flag("disable-quic", true),
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.WindowSize(ViewportWidth, ViewportHeight),
}

// New starts a headless Chromium for t and returns a context for a blank tab in it. Pass
// the context to chromedp.Do and chromedp.Run. The browser, its profile directory and the
// context end when t does (t.Cleanup), or after Timeout, whichever comes first.
//
// Without a browser, New calls t.Skip, or t.Fatal when the environment variable CI is
// true (see Lookup). A browser that is found but fails to start always fails the test.
// New must be called from the test's goroutine; the returned context belongs to t and
// must not be shared with parallel subtests (call New in each).
func New(t testing.TB) context.Context {
	t.Helper()
	path := Require(t)

	out := &tailBuffer{max: 8 << 10}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], closedNetworkFlags...)
	opts = append(opts,
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(out),
	)
	timeoutCtx, cancelTimeout := context.WithTimeout(context.Background(), Timeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(timeoutCtx, opts...)
	logs := &testLog{t: t}
	ctx, cancelTab := chromedp.NewContext(allocCtx,
		chromedp.WithLogf(logs.logf), chromedp.WithErrorf(logs.logf))
	t.Cleanup(func() {
		// Close gracefully, so that Chromium's helper processes are gone before t.TempDir
		// removes the profile; a killed browser can leave them writing into it.
		// Past Timeout the close fails at once and cancelTab kills the browser instead.
		if err := chromedp.Cancel(ctx); err != nil && timeoutCtx.Err() == nil {
			t.Logf("browsertest: closing %s: %v", path, err)
		}
		cancelTab()
		cancelAlloc()
		cancelTimeout()
		logs.stop()
		if t.Failed() && out.Len() > 0 {
			t.Logf("browsertest: output of %s (the end of it):\n%s", path, out.String())
		}
	})
	// Start the browser now, so that a browser that cannot start fails here and not in
	// the test's first action. The window size includes the browser's frame even when
	// headless, so the page's viewport is set exactly too.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(ViewportWidth, ViewportHeight)); err != nil {
		t.Fatalf("browsertest: start %s: %v\n%s", path, err, out.String())
	}
	return ctx
}

// Require returns the browser New would run. Without one, it skips t with a message
// that says how to install one, or fails t when the environment variable CI is true (see
// Lookup). A test whose subtests each call New can call Require first, so that it skips
// once, before any set-up.
func Require(t testing.TB) (path string) {
	t.Helper()
	path, fail, msg := Lookup(os.Getenv, exec.LookPath)
	if path == "" {
		if fail {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// Lookup finds the browser New runs, and decides what a test does without one. It is a
// pure function of its arguments (getenv is os.Getenv, lookPath is exec.LookPath in
// New), so the decision is testable without a browser.
//
// If EnvChromium is set, it is the only candidate; otherwise the names in candidates
// are tried on PATH. When one resolves, Lookup returns its path and fail is false. When
// none does, path is empty, msg says what was tried and how to install a browser, and
// fail reports whether the environment variable CI holds a true value ("true", "1", as
// strconv.ParseBool reads it): on CI a browser test must fail rather than skip.
func Lookup(getenv func(string) string, lookPath func(string) (string, error)) (path string, fail bool, msg string) {
	tried := candidates
	if v := getenv(EnvChromium); v != "" {
		tried = []string{v}
	}
	var errs []error
	for _, name := range tried {
		p, err := lookPath(name)
		if err == nil {
			return p, false, ""
		}
		errs = append(errs, err)
	}
	msg = "Chromium not found; install Debian's chromium (apt-get install chromium) or set " + EnvChromium
	if v := getenv(EnvChromium); v != "" {
		msg += fmt.Sprintf(" to a browser that exists (it is set, but %v)", errors.Join(errs...))
	} else {
		msg += fmt.Sprintf(" (looked on PATH for %v)", candidates)
	}
	if ci, _ := strconv.ParseBool(getenv("CI")); ci {
		return "", true, msg + "; CI is true, so the test fails instead of skipping"
	}
	return "", false, msg
}

// UpdateScreenshots reports whether EnvUpdateScreenshots asks tests to rewrite the
// committed screenshots.
func UpdateScreenshots() bool {
	v, _ := strconv.ParseBool(os.Getenv(EnvUpdateScreenshots))
	return v
}

// SaveScreenshot writes a PNG of the whole page of ctx's tab (beyond the viewport, if the
// page is taller) to path, creating its directory. It returns the error of the capture or
// of the write.
func SaveScreenshot(ctx context.Context, path string) error {
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 means PNG
	if err != nil {
		return fmt.Errorf("capture screenshot: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("save screenshot: %w", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return fmt.Errorf("save screenshot: %w", err)
	}
	return nil
}

// testLog forwards chromedp's log lines to t.Logf until the test's cleanup stops it:
// t.Logf after a test has finished panics, and chromedp may log from its goroutines.
type testLog struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("chromedp: "+format, args...)
	}
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// tailBuffer keeps the last max bytes written to it; it holds the browser's output for
// the log of a failed test. Safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if over := len(b.b) - b.max; over > 0 {
		b.b = append(b.b[:0], b.b[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.b)
}

// String returns the output kept, without the lines about D-Bus: there is no D-Bus on
// a test machine, and Chromium complains of it at length, hiding what matters.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out strings.Builder
	for line := range strings.Lines(string(b.b)) {
		if !strings.Contains(line, ":ERROR:dbus/") {
			out.WriteString(line)
		}
	}
	return out.String()
}

// AXNode is one node of a page's accessibility tree as the browser computed it: what a
// screen reader announces. A form control's Name comes from its <label>, aria-label or
// aria-labelledby, so an empty Name on a control is an accessibility bug.
type AXNode struct {
	Role string // "radio", "button", "heading", "group", ...
	Name string // the accessible name
	// Props holds the node's states and attributes ("checked", "focusable", "level",
	// ...): a JSON string value unquoted, any other value as its JSON text ("true", "1").
	Props map[string]string
}

// AccessibilityTree returns the nodes of the accessibility tree of ctx's tab that are not
// ignored, in the order the browser lists them (document order).
func AccessibilityTree(ctx context.Context) ([]AXNode, error) {
	res, err := chromedp.Call(ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		return nil, fmt.Errorf("accessibility tree: %w", err)
	}
	var out []AXNode
	for _, n := range res.Nodes {
		if n.Ignored {
			continue
		}
		node := AXNode{Role: axText(n.Role), Name: axText(n.Name), Props: make(map[string]string)}
		for _, p := range n.Properties {
			node.Props[string(p.Name)] = axText(p.Value)
		}
		out = append(out, node)
	}
	return out, nil
}

func axText(v *accessibility.Value) string {
	if v == nil || len(v.Value) == 0 {
		return ""
	}
	var s string
	if err := json.Unmarshal(v.Value, &s); err == nil {
		return s
	}
	return string(v.Value)
}
