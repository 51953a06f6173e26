package httpapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// newLink makes a connect link through the API.
func (e *env) newLink(t testing.TB, id tokenkeeper.ConnectionID, returnTo string) httpapi.ConnectSession {
	t.Helper()
	r := e.do(t, req{method: "POST", path: "/v1/connect-sessions", key: e.admin,
		body: httpapi.ConnectSessionRequest{ConnectionID: id, ReturnTo: returnTo}})
	want(t, r, http.StatusCreated, "")
	var s httpapi.ConnectSession
	r.decode(t, &s)
	token, ok := strings.CutPrefix(s.URL, "https://tk.example/base/connect/")
	if !ok {
		t.Fatalf("link URL %q is not under PublicURL/connect/", s.URL)
	}
	e.secrets.add("link", token)
	return s
}

// linkPath is the server's path of a link URL (PublicURL's /base prefix is
// a reverse proxy's).
func linkPath(link httpapi.ConnectSession) string {
	return strings.TrimPrefix(link.URL, "https://tk.example/base")
}

// browser is what a browser carries from /connect/{token} to the callback.
type browser struct {
	binding  string
	callback url.Values // the provider's redirect query
}

// open opens a link as a browser would and consents at the emulator
// (auto-approve), returning the binding cookie and the redirect's query.
func (e *env) open(t testing.TB, link httpapi.ConnectSession) browser {
	t.Helper()
	r := e.do(t, req{method: "POST", path: linkPath(link)})
	want(t, r, http.StatusSeeOther, "")
	var b browser
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "tokenkeeper_binding" {
			b.binding = c.Value
		}
	}
	if b.binding == "" {
		t.Fatalf("no binding cookie in %q", r.header.Values("Set-Cookie"))
	}
	e.secrets.add("binding", b.binding)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode/100 != 3 {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	b.callback = loc.Query()
	e.secrets.add("state", b.callback.Get("state"))
	e.secrets.add("code", b.callback.Get("code"))
	return b
}

// finish calls the callback with b's query and cookie.
func (e *env) finish(t testing.TB, b browser) *response {
	t.Helper()
	h := map[string]string{}
	if b.binding != "" {
		h["Cookie"] = "tokenkeeper_binding=" + b.binding
	}
	return e.do(t, req{method: "GET", path: "/oauth/callback?" + b.callback.Encode(), header: h})
}

// connect connects id through the API, as a user's browser would.
func (e *env) connect(t testing.TB, id tokenkeeper.ConnectionID) {
	t.Helper()
	r := e.finish(t, e.open(t, e.newLink(t, id, "")))
	want(t, r, http.StatusOK, "")
	e.harvest(t)
}

func TestServer_ConnectSessions(t *testing.T) {
	e := newEnv(t)
	t.Run("OK", func(t *testing.T) {
		before := e.srv.Now()
		r := e.do(t, req{method: "POST", path: "/v1/connect-sessions", key: e.admin,
			body: map[string]any{"connection_id": "acme", "return_to": "/done", "expires_in": 120}})
		want(t, r, http.StatusCreated, "")
		var s httpapi.ConnectSession
		r.decode(t, &s)
		if s.ConnectionID != "acme" || !strings.HasPrefix(s.URL, "https://tk.example/base/connect/") {
			t.Errorf("session %+v", s)
		}
		if d := s.ExpiresAt.Sub(before); d < 119*time.Second || d > 121*time.Second {
			t.Errorf("expires_at is %s after the request, want 120s", d)
		}
		e.secrets.add("link", strings.TrimPrefix(s.URL, "https://tk.example/base/connect/"))
	})
	for _, tt := range []struct {
		name string
		body any
	}{
		{"BadID", map[string]any{"connection_id": "a b"}},
		{"NoID", map[string]any{}},
		{"ReturnNotAllowed", map[string]any{"connection_id": "acme", "return_to": "https://evil.example/"}},
		{"ExpiresInZeroOrLess", map[string]any{"connection_id": "acme", "expires_in": -1}},
		{"ExpiresInTooLong", map[string]any{"connection_id": "acme", "expires_in": 604801}},
		{"ExpiresInFraction", map[string]any{"connection_id": "acme", "expires_in": 1.5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, req{method: "POST", path: "/v1/connect-sessions", key: e.admin, body: tt.body})
			want(t, r, http.StatusBadRequest, tokenkeeper.CodeInvalid)
		})
	}
}

func TestServer_Connect(t *testing.T) {
	e := newEnv(t)
	t.Run("OK", func(t *testing.T) {
		link := e.newLink(t, "acme", "")
		// A link checker's HEAD, and a link preview's GET, spend nothing:
		// GET is a page whose button POSTs.
		head := e.do(t, req{method: "HEAD", path: linkPath(link)})
		want(t, head, http.StatusOK, "")
		if len(head.header.Values("Set-Cookie")) != 0 || head.header.Get("Location") != "" {
			t.Errorf("HEAD answered %v", head.header)
		}
		for range 2 {
			page := e.do(t, req{method: "GET", path: linkPath(link)})
			want(t, page, http.StatusOK, "")
			if len(page.header.Values("Set-Cookie")) != 0 || !strings.Contains(string(page.body), `<form method="post"`) {
				t.Errorf("GET answered %v %s", page.header, page.body)
			}
		}
		r := e.do(t, req{method: "POST", path: linkPath(link)})
		want(t, r, http.StatusSeeOther, "")
		loc, _ := url.Parse(r.header.Get("Location"))
		if !strings.HasPrefix(loc.String(), e.srv.URL+"/oauth/authorize?") || loc.Query().Get("code_challenge_method") != "S256" {
			t.Errorf("Location %q is not the provider's authorize endpoint with PKCE", loc)
		}
		cookies := (&http.Response{Header: r.header}).Cookies()
		if len(cookies) != 1 {
			t.Fatalf("cookies %v", cookies)
		}
		c := cookies[0]
		if c.Name != "tokenkeeper_binding" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode ||
			c.Path != "/base/oauth/callback" || c.MaxAge < 600 || c.MaxAge > 1800 || len(c.Value) < 43 {
			t.Errorf("binding cookie %+v", c)
		}
		if len(r.body) != 0 {
			t.Errorf("the redirect has a body: %q", r.body)
		}
		// A second open of the same link: it is single-use.
		again := e.do(t, req{method: "POST", path: linkPath(link)})
		want(t, again, http.StatusNotFound, "")
		if !strings.Contains(string(again.body), "link_unknown") || !strings.HasPrefix(again.header.Get("Content-Type"), "text/html") {
			t.Errorf("second open: %s", again.body)
		}
	})
	t.Run("Unknown", func(t *testing.T) {
		r := e.do(t, req{method: "POST", path: "/connect/nope"})
		want(t, r, http.StatusNotFound, "")
		if !strings.Contains(string(r.body), "unknown or was already used") {
			t.Errorf("page: %s", r.body)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		link := e.newLink(t, "acme", "")
		if _, err := e.srv.Advance(16 * time.Minute); err != nil {
			t.Fatal(err)
		}
		r := e.do(t, req{method: "POST", path: linkPath(link)})
		want(t, r, http.StatusGone, "")
		if !strings.Contains(string(r.body), "link_expired") {
			t.Errorf("page: %s", r.body)
		}
	})
	t.Run("ExpiredWithReturn", func(t *testing.T) {
		link := e.newLink(t, "acme", allowedReturn+"?tab=pleo")
		if _, err := e.srv.Advance(16 * time.Minute); err != nil {
			t.Fatal(err)
		}
		r := e.do(t, req{method: "POST", path: linkPath(link)})
		want(t, r, http.StatusFound, "")
		if got, wantLoc := r.header.Get("Location"), allowedReturn+"?tab=pleo&code=link_expired&connection_id=acme&status=error"; got != wantLoc {
			t.Errorf("Location %q, want %q", got, wantLoc)
		}
	})
	t.Run("StoreFails", func(t *testing.T) {
		link := e.newLink(t, "acme", "")
		restore := e.faults.inject("TakeSession", errUnavailable)
		r := e.do(t, req{method: "POST", path: linkPath(link)})
		restore()
		want(t, r, http.StatusServiceUnavailable, "")
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		restore = e.faults.inject("TakeSession", errInternal)
		r = e.do(t, req{method: "POST", path: linkPath(link)})
		restore()
		want(t, r, http.StatusInternalServerError, "")
		if strings.Contains(string(r.body), "sector 7") {
			t.Errorf("the page shows the cause: %s", r.body)
		}
	})
}

// TestServer_ConnectConcurrent: a link previewed many times at once is
// still usable, and of many POSTs at once exactly one is sent on.
func TestServer_ConnectConcurrent(t *testing.T) {
	e := newEnv(t)
	link := e.newLink(t, "acme", "")
	const n = 8
	statuses := make(chan int, 2*n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r, err := e.send(tctx(t), req{method: "GET", path: linkPath(link)})
			if err != nil {
				t.Error(err)
				return
			}
			statuses <- r.status
		})
	}
	wg.Wait()
	for range n {
		wg.Go(func() {
			r, err := e.send(tctx(t), req{method: "POST", path: linkPath(link)})
			if err != nil {
				t.Error(err)
				return
			}
			statuses <- r.status
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusOK] != n || count[http.StatusSeeOther] != 1 || count[http.StatusNotFound] != n-1 {
		t.Errorf("statuses %v; want %d previews (200), one open (303) and %d refusals (404)", count, n, n-1)
	}
}

func TestServer_Callback(t *testing.T) {
	e := newEnv(t)
	t.Run("OKPage", func(t *testing.T) {
		r := e.finish(t, e.open(t, e.newLink(t, "acme", "")))
		want(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.body), "acme") || !strings.Contains(string(r.body), "Connected") {
			t.Errorf("page: %s", r.body)
		}
		cleared := false
		for _, c := range (&http.Response{Header: r.header}).Cookies() {
			cleared = cleared || (c.Name == "tokenkeeper_binding" && c.MaxAge < 0 && c.Path == "/base/oauth/callback")
		}
		if !cleared {
			t.Errorf("the binding cookie is not cleared: %q", r.header.Values("Set-Cookie"))
		}
		conn, err := e.store.GetConnection(t.Context(), "acme")
		if err != nil || conn.State != tokenkeeper.StateActive {
			t.Fatalf("connection after the flow: %v, %v", conn, err)
		}
	})
	t.Run("OKRedirectKeepsQuery", func(t *testing.T) {
		ret := allowedReturn + "/pleo?tab=integrations&status=stale&x=a%20b#top"
		r := e.finish(t, e.open(t, e.newLink(t, "beta", ret)))
		want(t, r, http.StatusFound, "")
		wantLoc := allowedReturn + "/pleo?tab=integrations&x=a%20b&connection_id=beta&status=connected#top"
		if got := r.header.Get("Location"); got != wantLoc {
			t.Errorf("Location %q, want %q", got, wantLoc)
		}
	})
	t.Run("WrongBrowser", func(t *testing.T) {
		b := e.open(t, e.newLink(t, "gamma", "/after"))
		b.binding = ""
		r := e.finish(t, b)
		want(t, r, http.StatusForbidden, "")
		if !strings.Contains(string(r.body), "wrong_browser") {
			t.Errorf("page: %s", r.body)
		}
	})
	t.Run("Replay", func(t *testing.T) {
		b := e.open(t, e.newLink(t, "delta", ""))
		want(t, e.finish(t, b), http.StatusOK, "")
		r := e.finish(t, b)
		want(t, r, http.StatusBadRequest, "")
		if !strings.Contains(string(r.body), "state_unknown") {
			t.Errorf("page: %s", r.body)
		}
	})
	t.Run("ErrorWithReturn", func(t *testing.T) {
		b := e.open(t, e.newLink(t, "eps", "/after?a=1"))
		b.callback = url.Values{"state": b.callback["state"], "error": {"access_denied"}}
		r := e.finish(t, b)
		want(t, r, http.StatusFound, "")
		if got := r.header.Get("Location"); got != "/after?a=1&code=denied&connection_id=eps&status=error" {
			t.Errorf("Location %q", got)
		}
	})
	t.Run("StoreFails", func(t *testing.T) {
		for _, tt := range []struct {
			err    error
			status int
		}{{errUnavailable, http.StatusServiceUnavailable}, {errInternal, http.StatusInternalServerError}} {
			b := e.open(t, e.newLink(t, "zeta", ""))
			restore := e.faults.inject("TakeSession", tt.err)
			r := e.finish(t, b)
			restore()
			want(t, r, tt.status, "")
		}
	})
}

// TestServer_CallbackClientRejected: the provider refuses tokenkeeper's
// own client credentials at the code exchange, which is not the user's
// fault: 502, not 401.
func TestServer_CallbackClientRejected(t *testing.T) {
	e := newEnv(t, func(o *envOptions) { o.flowSecret = "wrong-secret" })
	r := e.finish(t, e.open(t, e.newLink(t, "acme", "")))
	want(t, r, http.StatusBadGateway, "")
	if !strings.Contains(string(r.body), "exchange_failed") {
		t.Errorf("page: %s", r.body)
	}
}

var _ = emulator.DemoClient
