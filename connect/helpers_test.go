package connect_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/logtest"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// The first seeded company of the emulator, which auto-approve consents for.
const (
	companyNordlys = "urn:pleo:company:8d1c3f52-6a4e-4a11-9c0b-1f2e3d4c5b6a"
	companyFjord   = "urn:pleo:company:2b7e9a10-44f3-4c2d-8e5f-a0b1c2d3e4f5"
)

// testScopes are what every test flow asks for.
var testScopes = []string{"users:read", "export-jobs:read"}

// fakeKeeper is a connect.Keeper of function fields that records every
// call. A nil field succeeds: Connect returns a connection made from the
// grant (its subject included), its Generation counting the grants seen for
// the id.
type fakeKeeper struct {
	ConnectFunc func(ctx context.Context, g tokenkeeper.Grant) (*tokenkeeper.Connection, error)

	mu     sync.Mutex
	grants []tokenkeeper.Grant
}

var _ connect.Keeper = (*fakeKeeper)(nil)

func (k *fakeKeeper) Connect(ctx context.Context, g tokenkeeper.Grant) (*tokenkeeper.Connection, error) {
	k.mu.Lock()
	k.grants = append(k.grants, g)
	var gen int64
	for _, prev := range k.grants {
		if prev.ConnectionID == g.ConnectionID {
			gen++
		}
	}
	k.mu.Unlock()
	if k.ConnectFunc != nil {
		return k.ConnectFunc(ctx, g)
	}
	return &tokenkeeper.Connection{
		ID: g.ConnectionID, Provider: g.Provider, Subject: g.Subject, Scopes: g.Scopes,
		State: tokenkeeper.StateActive, Generation: gen,
	}, nil
}

// Grants returns the grants Connect was given, in order.
func (k *fakeKeeper) Grants() []tokenkeeper.Grant {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]tokenkeeper.Grant(nil), k.grants...)
}

// clock is a settable clock for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is a Flow wired to a real emulator, a real SQLite store and a real
// sealer, with a fake keeper.
type env struct {
	srv    *emulator.Server
	store  *sqlite.Store
	sealer tokenkeeper.Sealer
	keeper *fakeKeeper
	clock  *clock
	logs   *syncBuffer
	dir    string // holds the database
	cfg    connect.Config
	flow   *connect.Flow
}

// newEnv starts an emulator configured by emu (the demo client registered)
// and returns a Flow for it. edit, if not nil, changes e.cfg before the Flow
// is made.
func newEnv(t testing.TB, emu emulator.Config, edit func(e *env)) *env {
	t.Helper()
	srv, err := emulator.NewServer(emu)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{srv: srv, keeper: &fakeKeeper{}, clock: newClock(), logs: &syncBuffer{}, dir: t.TempDir()}
	e.store, err = sqlite.Open(context.Background(), filepath.Join(e.dir, "tokenkeeper.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { e.store.Close() })
	data, err := seal.Generate()
	if err != nil {
		t.Fatalf("generate keyset: %v", err)
	}
	if e.sealer, err = seal.Parse(data); err != nil {
		t.Fatalf("parse keyset: %v", err)
	}
	c := emulator.DemoClient()
	e.cfg = connect.Config{
		Provider:     tokenkeeper.CustomProvider(srv.URL+"/oauth/authorize", srv.URL+"/oauth/token", srv.APIURL),
		ClientID:     c.ID,
		ClientSecret: tokenkeeper.NewSecret(c.Secret),
		RedirectURL:  c.RedirectURIs[0],
		Scopes:       testScopes,
		Store:        e.store,
		Sealer:       e.sealer,
		Keeper:       e.keeper,
		Now:          e.clock.Now,
		Logger:       slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(e)
	}
	if e.flow, err = connect.New(e.cfg); err != nil {
		t.Fatalf("connect.New: %v", err)
	}
	return e
}

// autoApprove is the emulator config most tests use.
var autoApprove = emulator.Config{AutoApprove: true}

// begin starts a flow and fails the test if it cannot.
func (e *env) begin(t testing.TB, req connect.BeginRequest) string {
	t.Helper()
	authURL, err := e.flow.Begin(context.Background(), req)
	if err != nil {
		t.Fatalf("Begin(%+v): %v", req, err)
	}
	return authURL
}

// noRedirects is an HTTP client that returns redirects instead of following
// them: the browser stand-in.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// browse plays the user's browser at authURL on an auto-approving emulator:
// it returns the query of the redirect back to the redirect URL.
func (e *env) browse(t testing.TB, authURL string) url.Values {
	t.Helper()
	resp, err := noRedirects.Get(authURL)
	if err != nil {
		t.Fatalf("GET authorize: %v", err)
	}
	defer resp.Body.Close()
	return e.redirectQuery(t, resp)
}

// redirectQuery checks that resp redirects to the redirect URL and returns
// the redirect's query.
func (e *env) redirectQuery(t testing.TB, resp *http.Response) url.Values {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("authorize: status %d, want 303; body %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, e.cfg.RedirectURL+"?") {
		t.Fatalf("authorize redirected to %q, want %s?...", loc, e.cfg.RedirectURL)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("bad Location %q: %v", loc, err)
	}
	return u.Query()
}

// run does Begin, the browser's visit and Callback, and returns the
// redirect's query and the outcome.
func (e *env) run(t testing.TB, req connect.BeginRequest) (url.Values, *connect.Result, error) {
	t.Helper()
	q := e.browse(t, e.begin(t, req))
	res, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
	return q, res, err
}

// setFaults installs emulator faults.
func (e *env) setFaults(t testing.TB, f emulator.Faults) {
	t.Helper()
	if err := e.srv.SetFaults(f); err != nil {
		t.Fatalf("set faults: %v", err)
	}
}

// violations returns the rules the flow broke, as the emulator saw it.
func (e *env) violations() []string {
	var out []string
	for _, v := range e.srv.Report().Violations {
		out = append(out, v.Rule+": "+v.Detail)
	}
	return out
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer = logtest.Buffer

// wantFlowError checks that err is a *connect.FlowError with reason and
// code, whose user message is human text, and returns it.
func wantFlowError(t testing.TB, err error, reason connect.Reason, code tokenkeeper.Code) *connect.FlowError {
	t.Helper()
	var fe *connect.FlowError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *connect.FlowError", err, err)
	}
	if fe.Reason != reason {
		t.Errorf("Reason = %q, want %q (error: %v)", fe.Reason, reason, err)
	}
	if got := tokenkeeper.ErrorCode(err); got != code {
		t.Errorf("ErrorCode = %q, want %q (error: %v)", got, code, err)
	}
	var te *tokenkeeper.Error
	if !errors.As(err, &te) || te.Message == "" {
		t.Errorf("error %v has no *tokenkeeper.Error with a message in its chain", err)
	}
	return fe
}

// noSecrets fails the test if text holds any of secrets.
func noSecrets(t testing.TB, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s holds a secret %.8s...: %s", what, s, text)
		}
	}
}

// stepTransport moves a clock forward by Step whenever a response arrives,
// so that "when the request was sent" and "when the answer came" differ.
type stepTransport struct {
	Clock *clock
	Step  time.Duration
}

func (s stepTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	s.Clock.Advance(s.Step)
	return resp, err
}

// gateIntrospect is a RoundTripper that holds every GET /v1/introspect until
// release is closed, after telling entered (once) that one arrived.
type gateIntrospect struct {
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func newGateIntrospect() *gateIntrospect {
	return &gateIntrospect{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateIntrospect) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/v1/introspect") {
		g.once.Do(func() { close(g.entered) })
		<-g.release
	}
	return http.DefaultTransport.RoundTrip(req)
}
