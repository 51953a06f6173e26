package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

// store is what the tests need of a store.
type store interface {
	tokenkeeper.Store
	tokenkeeper.EventLog
	tokenkeeper.WebhookStore
}

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Now().UTC().Truncate(time.Microsecond)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is a store, a sealer, a clock and captured logs.
type env struct {
	t     *testing.T
	path  string
	store store
	ring  *seal.Keyring
	clock *clock
	logs  *logtest.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "tk.db"), clock: newClock(), logs: &logtest.Buffer{}}
	e.store = e.open()
	raw, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := seal.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	e.ring = seal.NewKeyring(ks)
	return e
}

// open opens the env's SQLite file (again: a restart).
func (e *env) open() store {
	s, err := sqlite.Open(context.Background(), e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (e *env) endpoints(s store) *webhook.Endpoints {
	return &webhook.Endpoints{Store: s, Log: s, Sealer: e.ring, Now: e.clock.Now, Logger: e.logger()}
}

// dispatcher returns a dispatcher on s with no jitter and short timeouts.
func (e *env) dispatcher(s store, change func(*webhook.Config)) *webhook.Dispatcher {
	e.t.Helper()
	cfg := webhook.Config{
		Store: s, Sealer: e.ring, Now: e.clock.Now, Logger: e.logger(),
		Timeout: 2 * time.Second, MinBackoff: time.Second, MaxBackoff: time.Minute,
		Jitter: func(time.Duration) time.Duration { return 0 },
	}
	if change != nil {
		change(&cfg)
	}
	d, err := webhook.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// recorder returns a Recorder on s.
func (e *env) recorder(s store) *webhook.Recorder {
	r, err := webhook.NewRecorder(s, webhook.RecorderConfig{Logger: e.logger()})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// runOnce runs one batch or fails t.
func runOnce(t *testing.T, d *webhook.Dispatcher) int {
	t.Helper()
	n, err := d.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// received is one request a receiver got.
type received struct {
	id     string
	status int
}

// receiver is a webhook receiver that checks every signature with the
// independent verifier and can be taken down (it answers 503).
type receiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server

	mu     sync.Mutex
	down   bool
	got    []received
	bodies [][]byte
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	status := http.StatusNoContent
	if r.down {
		status = http.StatusServiceUnavailable
	} else {
		verifyFromSpec(r.t, r.secret, req.Header, body)
		r.bodies = append(r.bodies, body)
	}
	r.got = append(r.got, received{id: req.Header.Get("webhook-id"), status: status})
	w.WriteHeader(status)
}

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// delivered returns how many times each event id was answered with a
// 2xx.
func (r *receiver) delivered() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, g := range r.got {
		if g.status < 300 {
			out[g.id]++
		}
	}
	return out
}

// register makes an endpoint for r on s and remembers its secret.
func (r *receiver) register(e *env, s store) *tokenkeeper.WebhookEndpoint {
	ep, secret, err := e.endpoints(s).Create(r.t.Context(), r.srv.URL+"/hook")
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.secret = secret.Reveal()
	r.mu.Unlock()
	return ep
}

// emit records n state events (a webhook each) through a Recorder, and
// returns their ids.
func emit(t *testing.T, e *env, s store, n int) []string {
	t.Helper()
	rec := e.recorder(s)
	var ids []string
	for i := range n {
		ev := tokenkeeper.Event{Type: tokenkeeper.EventDegraded, ConnectionID: tokenkeeper.ConnectionID(string(rune('a'+i%26)) + "-conn"),
			Subject: "urn:pleo:company:x", Reason: "token endpoint: 503", Time: e.clock.Now(), Generation: int64(i + 1)}
		rec.Handle(t.Context(), ev)
		ids = append(ids, string(tokenkeeper.StateEventID(ev.ConnectionID, ev.Generation, ev.Type)))
	}
	return ids
}

// listDeliveries returns ListDeliveries(f) or fails t.
func listDeliveries(t *testing.T, s store, f tokenkeeper.DeliveryFilter) []*tokenkeeper.Delivery {
	t.Helper()
	ds, err := s.ListDeliveries(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// httpRedirect answers every request with a 307 to url.
func httpRedirect(url string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, url, http.StatusTemporaryRedirect)
	})
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

var sortStrings = cmpopts.SortSlices(func(a, b string) bool { return a < b })
