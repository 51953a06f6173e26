package proxy_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// env is a keeper on a real SQLite file against a real emulator, with a
// proxy in front of the emulator's API. Its cleanup fails the test if the
// emulator's ledger holds a violation or a token reached a log.
type env struct {
	t     testing.TB
	srv   *emulator.Server
	store *sqlite.Store
	ring  *seal.Keyring
	k     *keeper.Keeper
	logs  *logtest.Buffer // the keeper's and the proxy's
	sent  *recorder       // what the keeper's Transport sent to the emulator
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{t: t, srv: srv, logs: &logtest.Buffer{}, sent: &recorder{}}
	e.store, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tokenkeeper.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	keyset, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := seal.Parse(keyset)
	if err != nil {
		t.Fatal(err)
	}
	e.ring = seal.NewKeyring(ks)
	e.k = e.newKeeper()
	t.Cleanup(e.check) // runs before the closes above
	return e
}

// newKeeper returns a keeper on the env's store and emulator, with
// test-sized timings.
func (e *env) newKeeper() *keeper.Keeper {
	client := emulator.DemoClient()
	k, err := keeper.New(keeper.Config{
		Store: e.store, Sealer: e.ring,
		Provider:     tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL),
		ClientID:     client.ID,
		ClientSecret: tokenkeeper.NewSecret(client.Secret),
		Now:          e.srv.Now,
		Logger:       slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DrainGrace:   20 * time.Millisecond, DrainWait: 200 * time.Millisecond,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		RefreshTimeout: 1500 * time.Millisecond, LeaseTTL: 3 * time.Second,
		FailureCooldown: 200 * time.Millisecond, ClientRejectedCooldown: 200 * time.Millisecond,
		RefreshRate: 10000, RefreshBurst: 1000,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { k.Close() })
	return k
}

// connect runs the authorization code flow with PKCE against the emulator
// (auto-approve) and hands the grant to the env's keeper.
func (e *env) connect(id tokenkeeper.ConnectionID) {
	e.t.Helper()
	client := emulator.DemoClient()
	scopes := []string{"users:read", "export-jobs:read", "export-jobs:write"}
	cfg := oauth2.Config{ClientID: client.ID, ClientSecret: client.Secret, RedirectURL: client.RedirectURIs[0], Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + "/oauth/authorize", TokenURL: e.srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}}
	verifier := oauth2.GenerateVerifier()
	sum := sha256.Sum256([]byte(verifier))
	state := rand.Text()
	authURL := cfg.AuthCodeURL(state, oauth2.SetAuthURLParam("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:])),
		oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != state || loc.Query().Get("code") == "" {
		e.t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	sentAt := e.srv.Now()
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = e.k.Connect(context.Background(), tokenkeeper.Grant{
		ConnectionID: id, Provider: tokenkeeper.ProviderCustom, Scopes: scopes,
		Tokens: tokenkeeper.TokenSet{
			AccessToken:  tokenkeeper.NewSecret(tok.AccessToken),
			RefreshToken: tokenkeeper.NewSecret(tok.RefreshToken),
			Expiry:       sentAt.Add(time.Duration(tok.ExpiresIn) * time.Second),
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// proxy returns a front server that proxies /connections/{id}/proxy/... to
// the emulator's API through the env's keeper. opts may change the Proxy.
func (e *env) proxy(opts ...func(*proxy.Proxy)) *httptest.Server {
	e.t.Helper()
	target, err := url.Parse(e.srv.APIURL)
	if err != nil {
		e.t.Fatal(err)
	}
	p := &proxy.Proxy{
		Target:    target,
		Transport: func(id tokenkeeper.ConnectionID) http.RoundTripper { return e.k.Transport(id, e.sent) },
		Logger:    slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(p)
	}
	return frontServer(e.t, p)
}

// check fails the test if the emulator recorded a violation, or if a token
// the keeper sent appears in a log.
func (e *env) check() {
	if r := e.srv.Report(); len(r.Violations) > 0 || len(r.ViolationCounts) > 0 {
		e.t.Errorf("the emulator recorded violations: %+v", r.Violations)
	}
	logs := e.logs.String()
	for _, s := range e.sent.all() {
		if tok := strings.TrimPrefix(s.Auth, "Bearer "); tok != "" && strings.Contains(logs, tok) {
			e.t.Error("a token reached the logs")
		}
	}
}

// expire moves the emulator's clock (the keeper's too) past the provider's
// expiry of every token issued so far.
func (e *env) expire() {
	e.t.Helper()
	if _, err := e.srv.Advance(emulator.DefaultAccessTokenTTL + time.Minute); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) refreshes() int64 { return e.srv.Report().Counters["refresh_token"]["ok"] }

func (e *env) apiCount(outcome string) int64 {
	return e.srv.Report().Counters[emulator.EndpointAPI][outcome]
}

func (e *env) faults(f emulator.Faults) {
	e.t.Helper()
	if err := e.srv.SetFaults(f); err != nil {
		e.t.Fatal(err)
	}
}
