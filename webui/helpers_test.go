package webui_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
	"github.com/tokenkeeper/tokenkeeper/webui"
)

// env is the dashboard on a real SQLite store, with a real keeper and
// connect flow against the emulator.
type env struct {
	t      testing.TB
	emu    *emulator.Server
	store  *sqlite.Store
	ring   *seal.Keyring
	k      *keeper.Keeper
	flow   *connect.Flow
	ui     *webui.Server
	public *url.URL
	// admin, tokensKey and revoked are API keys: admin, tokens-only, and
	// an admin key revoked after creation.
	admin, tokensKey, revoked tokenkeeper.Secret
	// secrets are the values no page may show.
	mu      sync.Mutex
	secrets map[string]string
}

type envOptions struct {
	public string
	cfg    func(*webui.Config)
}

func newEnv(t testing.TB, opts ...func(*envOptions)) *env {
	t.Helper()
	o := envOptions{public: "http://tk.example/base"}
	for _, f := range opts {
		f(&o)
	}
	emu, err := emulator.NewServer(emulator.Config{AutoApprove: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	e := &env{t: t, emu: emu, secrets: map[string]string{}}
	e.store, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tk.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	data, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := seal.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	e.ring = seal.NewKeyring(ks)
	client := emulator.DemoClient()
	prov := tokenkeeper.CustomProvider(emu.URL+"/oauth/authorize", emu.URL+"/oauth/token", emu.APIURL)
	log := slog.New(slog.DiscardHandler)
	e.k, err = keeper.New(keeper.Config{Store: e.store, Sealer: e.ring, Provider: prov, ClientID: client.ID,
		ClientSecret: tokenkeeper.NewSecret(client.Secret), Logger: log, RefreshTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.k.Close() })
	e.flow, err = connect.New(connect.Config{Provider: prov, ClientID: client.ID, ClientSecret: tokenkeeper.NewSecret(client.Secret),
		RedirectURL: client.RedirectURIs[0], Scopes: []string{"users:read"}, Store: e.store, Sealer: e.ring, Keeper: e.k, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.public, _ = url.Parse(o.public)
	cfg := webui.Config{Store: e.store, APIKeys: e.store, Audit: e.store, Sealer: e.ring, Keeper: e.k, Flow: e.flow,
		PublicURL: e.public, Logger: log}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	e.ui, err = webui.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.admin = e.newKey("ops", tokenkeeper.ScopeAdmin)
	e.tokensKey = e.newKey("svc", tokenkeeper.ScopeTokens, tokenkeeper.ScopeProxy)
	e.revoked = e.newKey("old", tokenkeeper.ScopeAdmin)
	id, _ := tokenkeeper.ParseAPIKey(e.revoked)
	if err := e.store.RevokeAPIKey(context.Background(), id, time.Now()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) newKey(name string, scopes ...tokenkeeper.Scope) tokenkeeper.Secret {
	e.t.Helper()
	key, rec, err := tokenkeeper.NewAPIKey(name, scopes, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.CreateAPIKey(context.Background(), rec); err != nil {
		e.t.Fatal(err)
	}
	e.secret("api key "+name, key.Reveal())
	return key
}

func (e *env) secret(what, v string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if v != "" {
		e.secrets[what] = v
	}
}

// connect connects id through the flow and the emulator, as a user would,
// and records its tokens as secrets.
func (e *env) connect(id tokenkeeper.ConnectionID) {
	e.t.Helper()
	ctx := context.Background()
	authURL, err := e.flow.Begin(ctx, connect.BeginRequest{ConnectionID: id})
	if err != nil {
		e.t.Fatal(err)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		e.t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.secret("code "+string(id), loc.Query().Get("code"))
	e.secret("state "+string(id), loc.Query().Get("state"))
	if _, err := e.flow.Callback(ctx, connect.CallbackRequest{Query: loc.Query()}); err != nil {
		e.t.Fatal(err)
	}
	e.harvest(id)
}

// harvest records id's current tokens as secrets.
func (e *env) harvest(id tokenkeeper.ConnectionID) {
	e.t.Helper()
	ctx := context.Background()
	tok, err := e.k.Token(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	e.secret("access token "+string(id)+tok.ExpiresAt.String(), tok.Value.Reveal())
	rec, err := e.store.GetConnection(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	rt, err := e.ring.Open(rec.Tokens.RefreshToken, tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, string(id), tokenkeeper.FieldRefreshToken))
	if err != nil {
		e.t.Fatal(err)
	}
	e.secret("refresh token "+string(id)+tok.ExpiresAt.String(), string(rt))
}

// checkNoSecret fails t if body holds any secret seen so far.
func (e *env) checkNoSecret(t testing.TB, what, body string) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, v := range e.secrets {
		if strings.Contains(body, v) {
			t.Errorf("%s shows the %s", what, name)
		}
	}
}

// browser keeps cookies by name, as a browser on one site does, and sends
// the headers a browser sends with a same-origin form.
type browser struct {
	e       *env
	t       testing.TB
	cookies map[string]*http.Cookie
	// pages are every body seen, for the secret scan.
	pages map[string]string
}

func (e *env) browser() *browser { return e.browserFor(e.t) }

// browserFor is a browser whose failures fail t.
func (e *env) browserFor(t testing.TB) *browser {
	return &browser{e: e, t: t, cookies: map[string]*http.Cookie{}, pages: map[string]string{}}
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values, hdr ...string) resp {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "http://tk.example"+path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "http://tk.example")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			r.Header.Del(hdr[i])
		} else {
			r.Header.Set(hdr[i], hdr[i+1])
		}
	}
	for _, c := range b.cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	b.e.ui.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	out := resp{status: w.Code, header: w.Header(), body: w.Body.String()}
	b.pages[method+" "+path] = out.body
	b.e.checkNoSecret(b.t, method+" "+path, out.body)
	return out
}

func (b *browser) get(path string) resp { b.t.Helper(); return b.do("GET", path, nil) }

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the forms on a page.
func csrf(t testing.TB, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// login signs b in with key and returns the response of the POST.
func (b *browser) login(key tokenkeeper.Secret) resp {
	b.t.Helper()
	page := b.get("/ui/login")
	return b.do("POST", "/ui/login", url.Values{"csrf": {csrf(b.t, page.body)}, "key": {key.Reveal()}, "next": {"/"}})
}

// loggedIn returns a browser signed in as the admin key.
func (e *env) loggedIn() *browser {
	e.t.Helper()
	b := e.browser()
	if r := b.login(e.admin); r.status != http.StatusSeeOther || r.header.Get("Location") != "/base/ui/" {
		e.t.Fatalf("login: %d %q\n%s", r.status, r.header.Get("Location"), r.body)
	}
	return b
}

func wantStatus(t testing.TB, r resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; Location %q\n%s", r.status, status, r.header.Get("Location"), r.body)
	}
}
