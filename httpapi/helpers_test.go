package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

// allowedReturn is the absolute return URL prefix every test flow allows.
const allowedReturn = "https://app.example/settings"

// retention is the server's retention in every env.
const retention = time.Hour

// env is the HTTP API of a real keeper on a real SQLite file, with a real
// connect flow and proxy, against a real emulator. The server and the flow
// reach the store through faults, so a test can make it fail.
type env struct {
	t      *testing.T
	srv    *emulator.Server
	store  *sqlite.Store
	faults *faultStore
	ring   *seal.Keyring
	k      *keeper.Keeper
	flow   *connect.Flow
	api    *httpapi.Server
	ts     *httptest.Server
	logs   *logtest.Buffer
	reg    *prometheus.Registry
	// ready is what Config.Ready returns (nil: ready), degraded what
	// Config.Degraded returns.
	ready, degraded atomic.Pointer[error]
	// client validates every request and response against the contract
	// and follows no redirects.
	client *http.Client
	// Keys with each scope.
	admin, tokens, proxyKey tokenkeeper.Secret
	secrets                 *secretSet
}

// envOptions change an env before it starts.
type envOptions struct {
	flowSecret string // the connect flow's client secret; "" means the right one
	emulator   emulator.Config
}

func newEnv(t *testing.T, opts ...func(*envOptions)) *env {
	t.Helper()
	var o envOptions
	o.emulator.AutoApprove = true
	for _, f := range opts {
		f(&o)
	}
	srv, err := emulator.NewServer(o.emulator)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{t: t, srv: srv, logs: &logtest.Buffer{}, reg: prometheus.NewRegistry(), secrets: &secretSet{}}
	e.store, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tokenkeeper.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	e.faults = &faultStore{Store: e.store}
	keyset, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := seal.Parse(keyset)
	if err != nil {
		t.Fatal(err)
	}
	e.ring = seal.NewKeyring(ks)
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client := emulator.DemoClient()
	prov := tokenkeeper.CustomProvider(srv.URL+"/oauth/authorize", srv.URL+"/oauth/token", srv.APIURL)
	e.k, err = keeper.New(keeper.Config{
		Store: e.store, Sealer: e.ring, Provider: prov, ClientID: client.ID,
		ClientSecret: tokenkeeper.NewSecret(client.Secret), Now: srv.Now, Logger: log,
		DrainGrace: 20 * time.Millisecond, DrainWait: 200 * time.Millisecond,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		RefreshTimeout: 1500 * time.Millisecond, LeaseTTL: 3 * time.Second, MaxAttempts: 2,
		FailureCooldown: 200 * time.Millisecond, RefreshRate: 10000, RefreshBurst: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.k.Close() })
	secret := client.Secret
	if o.flowSecret != "" {
		secret = o.flowSecret
	}
	e.flow, err = connect.New(connect.Config{
		Provider: prov, ClientID: client.ID, ClientSecret: tokenkeeper.NewSecret(secret),
		RedirectURL: client.RedirectURIs[0], Scopes: []string{"users:read"},
		Store: e.faults, Sealer: e.ring, Keeper: e.k, AllowedReturnURLs: []string{allowedReturn},
		Now: srv.Now, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(srv.APIURL)
	px := &proxy.Proxy{Target: target, Logger: log,
		Transport: func(id tokenkeeper.ConnectionID) http.RoundTripper { return e.k.Transport(id, nil) }}
	public, _ := url.Parse("https://tk.example/base")
	e.api, err = httpapi.New(httpapi.Config{
		Keeper: e.k, Flow: e.flow, Proxy: px, Store: e.faults, APIKeys: e.faults, Audit: e.faults,
		PublicURL: public, Retention: retention,
		Webhooks: &webhook.Endpoints{Store: e.faults, Log: e.faults, Sealer: e.ring, Now: srv.Now, Logger: log},
		Events:   e.faults,
		Ready: func(context.Context) error {
			if err := e.ready.Load(); err != nil {
				return *err
			}
			return nil
		},
		Degraded: func(context.Context) error {
			if err := e.degraded.Load(); err != nil {
				return *err
			}
			return nil
		},
		Registerer: e.reg, Gatherer: e.reg, Logger: log, Now: srv.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.ts = httptest.NewServer(e.api)
	t.Cleanup(e.ts.Close)
	e.client = &http.Client{
		Transport:     &contractTransport{t: t, base: http.DefaultTransport},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	e.admin = e.newKey(t, "admin", tokenkeeper.ScopeAdmin)
	e.tokens = e.newKey(t, "tokens", tokenkeeper.ScopeTokens)
	e.proxyKey = e.newKey(t, "proxy", tokenkeeper.ScopeProxy)
	// Registered last, so it runs first: while the store is open.
	t.Cleanup(e.checkLeaks)
	return e
}

// newKey stores a new API key with scopes and returns it.
func (e *env) newKey(t testing.TB, name string, scopes ...tokenkeeper.Scope) tokenkeeper.Secret {
	t.Helper()
	key, rec, err := tokenkeeper.NewAPIKey(name, scopes, e.srv.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	e.secrets.add("api key", key.Reveal())
	return key
}

// response is what the server answered.
type response struct {
	status int
	header http.Header
	body   []byte
}

// decode decodes the JSON body into v.
func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d response %q: %v", r.status, r.body, err)
	}
}

// code returns the error body's code.
func (r *response) code(t testing.TB) tokenkeeper.Code {
	t.Helper()
	var b httpapi.ErrorBody
	r.decode(t, &b)
	return b.Error.Code
}

// req is one request to the API.
type req struct {
	method, path string
	key          tokenkeeper.Secret // zero: no Authorization
	body         any                // nil, a string (sent as is) or a value to encode
	header       map[string]string  // set after the defaults
}

// do sends rq through the contract-checking client.
func (e *env) do(t testing.TB, rq req) *response {
	t.Helper()
	r, err := e.send(tctx(t), rq)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send is do for any goroutine: it returns what would fail the test. ctx
// should come from tctx.
func (e *env) send(ctx context.Context, rq req) (*response, error) {
	var body io.Reader
	switch b := rq.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	r, err := http.NewRequestWithContext(ctx, rq.method, e.ts.URL+rq.path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if !rq.key.IsZero() {
		r.Header.Set("Authorization", "Bearer "+rq.key.Reveal())
	}
	for k, v := range rq.header {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	resp, err := e.client.Do(r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", rq.method, rq.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// want fails the test unless r has status and, for an error, code.
func want(t testing.TB, r *response, status int, code tokenkeeper.Code) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if code != "" {
		if got := r.code(t); got != code {
			t.Fatalf("code %q, want %q; body %s", got, code, r.body)
		}
	}
}

// apiClient returns an httpapi.Client with key, through the contract
// checks.
func (e *env) apiClient(key tokenkeeper.Secret) *httpapi.Client {
	base, _ := url.Parse(e.ts.URL)
	return &httpapi.Client{BaseURL: base, APIKey: key, HTTPClient: e.client}
}

// logLines returns the captured log records whose msg is msg.
func (e *env) logLines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// errorsAs is errors.As, kept here so tests read plainly.
func errorsAs(err error, target any) bool { return errors.As(err, target) }
