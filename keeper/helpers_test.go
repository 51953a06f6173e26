package keeper_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/logtest"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// env is one keeper on a real SQLite file, against a real emulator.
type env struct {
	t      testing.TB
	srv    *emulator.Server
	path   string
	store  *sqlite.Store
	ring   *seal.Keyring
	keyset []byte
	k      *keeper.Keeper
	logs   *syncBuffer
	events *eventLog
	client emulator.Client
}

type option func(*keeper.Config, *emulator.Config)

// fast makes refresh timings test-sized.
func fast(c *keeper.Config, _ *emulator.Config) {
	c.DrainGrace = 20 * time.Millisecond
	c.DrainWait = 200 * time.Millisecond
	c.BackoffBase = 10 * time.Millisecond
	c.BackoffMax = 50 * time.Millisecond
	c.RefreshTimeout = 1500 * time.Millisecond
	c.LeaseTTL = 3 * time.Second
	c.FailureCooldown = 200 * time.Millisecond
	c.ClientRejectedCooldown = 200 * time.Millisecond
	c.RefreshRate = 10000
	c.RefreshBurst = 1000
}

func newEnv(t testing.TB, opts ...option) *env {
	t.Helper()
	var ecfg emulator.Config
	ecfg.AutoApprove = true
	kcfg := keeper.Config{}
	fast(&kcfg, &ecfg)
	for _, o := range opts {
		o(&kcfg, &ecfg)
	}
	srv, err := emulator.NewServer(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{t: t, srv: srv, path: filepath.Join(t.TempDir(), "tokenkeeper.db"), logs: &syncBuffer{}, events: &eventLog{}, client: emulator.DemoClient()}
	e.store = e.openStore()
	e.keyset, err = seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := seal.Parse(e.keyset)
	if err != nil {
		t.Fatal(err)
	}
	e.ring = seal.NewKeyring(ks)
	e.k = e.newKeeper(kcfg)
	return e
}

func (e *env) openStore() *sqlite.Store {
	s, err := sqlite.Open(context.Background(), e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// newKeeper returns another keeper on the same store and emulator.
func (e *env) newKeeper(cfg keeper.Config) *keeper.Keeper {
	cfg.Store = e.store
	cfg.Sealer = e.ring
	cfg.Provider = tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL)
	cfg.ClientID = e.client.ID
	cfg.ClientSecret = tokenkeeper.NewSecret(e.client.Secret)
	cfg.Now = e.srv.Now
	cfg.Events = e.events
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k, err := keeper.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { k.Close() })
	return k
}

// grant runs the authorization code flow against the emulator (auto-approve)
// and returns what the connect flow would hand the keeper.
func (e *env) grant(id tokenkeeper.ConnectionID, subject string) tokenkeeper.Grant {
	e.t.Helper()
	verifier := oauth2.GenerateVerifier()
	sum := sha256.Sum256([]byte(verifier))
	stateBytes := make([]byte, 32)
	_, _ = rand.Read(stateBytes)
	state := base64.RawURLEncoding.EncodeToString(stateBytes)
	q := url.Values{
		"response_type": {"code"}, "client_id": {e.client.ID}, "redirect_uri": {e.client.RedirectURIs[0]},
		"scope": {"users:read"}, "state": {state},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	if subject != "" {
		q.Set("urn_pleo_params_oauth_subject", subject)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(e.srv.URL + "/oauth/authorize?" + q.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != state {
		e.t.Fatalf("authorize: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cfg := oauth2.Config{ClientID: e.client.ID, ClientSecret: e.client.Secret, RedirectURL: e.client.RedirectURIs[0],
		Endpoint: oauth2.Endpoint{TokenURL: e.srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}}
	sent := e.srv.Now()
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatal(err)
	}
	return tokenkeeper.Grant{
		ConnectionID: id, Provider: tokenkeeper.ProviderCustom, Scopes: []string{"users:read"},
		Tokens: tokenkeeper.TokenSet{
			AccessToken: tokenkeeper.NewSecret(tok.AccessToken), RefreshToken: tokenkeeper.NewSecret(tok.RefreshToken),
			Expiry: sent.Add(time.Duration(tok.ExpiresIn) * time.Second),
		},
	}
}

// connect connects id through the env's keeper.
func (e *env) connect(id tokenkeeper.ConnectionID) {
	e.t.Helper()
	if _, err := e.k.Connect(context.Background(), e.grant(id, "")); err != nil {
		e.t.Fatal(err)
	}
}

// token calls Token with a test deadline.
func (e *env) token(k *keeper.Keeper, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return k.Token(ctx, id)
}

func (e *env) mustToken(id tokenkeeper.ConnectionID) tokenkeeper.AccessToken {
	e.t.Helper()
	t, err := e.token(e.k, id)
	if err != nil {
		e.t.Fatalf("Token(%s): %v", id, err)
	}
	return t
}

// api calls GET /v1/introspect with the token and returns the status.
func (e *env) api(tok tokenkeeper.Secret) int {
	req, _ := http.NewRequest(http.MethodGet, e.srv.APIURL+"/v1/introspect", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Errorf("api: %v", err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// expire moves the emulator clock past the promise of the current token.
func (e *env) expire(id tokenkeeper.ConnectionID) {
	e.t.Helper()
	tok, err := keeper.LoadToken(context.Background(), e.k, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if d := tok.ExpiresAt.Sub(e.srv.Now()); d > 0 {
		if _, err := e.srv.Advance(d + time.Millisecond); err != nil {
			e.t.Fatal(err)
		}
	}
}

// counter returns the emulator's count of outcome for the refresh grant.
func (e *env) refreshes(outcome string) int64 {
	return e.srv.Report().Counters["refresh_token"][outcome]
}

// violations returns the emulator's violations as "rule (lost_response)".
func (e *env) violations() []string {
	var out []string
	for _, v := range e.srv.Report().Violations {
		s := v.Rule
		if v.LostResponse {
			s += " (lost response)"
		}
		out = append(out, s)
	}
	return out
}

func (e *env) faults(f emulator.Faults) {
	e.t.Helper()
	if err := e.srv.SetFaults(f); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) record(id tokenkeeper.ConnectionID) *tokenkeeper.Record {
	e.t.Helper()
	r, err := e.store.GetConnection(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer = logtest.Buffer

// eventLog records events.
type eventLog struct {
	mu     sync.Mutex
	events []tokenkeeper.Event
}

func (l *eventLog) Handle(_ context.Context, e tokenkeeper.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) types() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, string(e.Type))
	}
	return out
}

func (l *eventLog) last(t tokenkeeper.EventType) (tokenkeeper.Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.events) - 1; i >= 0; i-- {
		if l.events[i].Type == t {
			return l.events[i], true
		}
	}
	return tokenkeeper.Event{}, false
}

// logLines returns the captured log records that have msg.
func (e *env) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

var _ = fmt.Sprint
