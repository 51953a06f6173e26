package emulator_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/internal/browsertest"
)

// screenshotPath is the committed picture of the consent page, shown in the README. It is
// rewritten only when TOKENKEEPER_UPDATE_SCREENSHOTS is true.
const screenshotPath = "../docs/screenshots/emulator-consent.png"

// TestBrowser_ConsentPage drives the consent page in a real Chromium as a person would:
// it reads the page, picks a company with the mouse or the keyboard, and answers, and the
// integration's callback (an httptest server) receives the answer. Each subtest starts its
// own browser, with a fresh profile.
func TestBrowser_ConsentPage(t *testing.T) {
	browsertest.Require(t) // skip (or fail, on CI) once, not in every subtest
	cb := newCallback(t)
	client := emulator.DemoClient() // the README's client, so the screenshot matches it
	client.RedirectURIs = append([]string{cb.URL()}, client.RedirectURIs...)
	srv := startServer(t, emulator.Config{Clients: []emulator.Client{client}}) // not auto-approving

	// open starts a browser and opens a consent page for a fresh PKCE pair and the given
	// state; edit, if not nil, changes the authorise query first.
	open := func(t *testing.T, state string, edit func(url.Values)) (ctx context.Context, verifier string) {
		t.Helper()
		verifier, challenge := pkce()
		q := authorizeQuery(client, challenge) // scope "users:read export-jobs:read"
		q.Set("state", state)
		if edit != nil {
			edit(q)
		}
		ctx = browsertest.New(t)
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(srv.URL+"/oauth/authorize?"+q.Encode()))
		if err != nil {
			t.Fatalf("open the consent page: %v", err)
		}
		if resp.Status != http.StatusOK {
			t.Fatalf("consent page: status %d, want 200", resp.Status)
		}
		return ctx, verifier
	}
	// subjectOf exchanges the code the callback received and returns the subject URN
	// that GET /v1/introspect reports for the access token.
	subjectOf := func(t *testing.T, got url.Values, verifier string) string {
		t.Helper()
		tk := exchangeTokens(t, srv, client, got.Get("code"), verifier)
		var intro struct{ SubjectURN string }
		if status, _ := apiSend(t, srv, http.MethodGet, "/v1/introspect", tk.Access, "", &intro); status != http.StatusOK {
			t.Fatalf("GET /v1/introspect: status %d", status)
		}
		return intro.SubjectURN
	}

	t.Run("Approve", func(t *testing.T) {
		ctx, verifier := open(t, "approve-state", nil)

		title, err := chromedp.Run(ctx, chromedp.Title())
		if err != nil || !strings.Contains(title, "Demo Integration") {
			t.Errorf("title = %q, %v; want it to name the app, Demo Integration", title, err)
		}
		tree := axTree(t, ctx)
		if h := byRole(tree, "heading"); len(h) == 0 || !strings.Contains(h[0].Name, "Demo Integration wants to connect") {
			t.Errorf("first heading = %v, want one naming the app", h)
		}
		scopes, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
			`[...document.querySelectorAll("ul.scopes li")].map(li => li.innerText)`))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{ // the page sorts them by scope
			"See export jobs export-jobs:read", "See the people in your company users:read",
		}, scopes); diff != "" {
			t.Errorf("scopes listed (-want +got):\n%s", diff)
		}
		// Every radio button has an accessible name (from its <label>) and sits in a
		// group named by the legend; the first company is chosen.
		if g := byRole(tree, "group"); len(g) != 1 || g[0].Name != "Company to connect" {
			t.Errorf("groups = %v, want one named Company to connect", g)
		}
		if diff := cmp.Diff([]radio{
			{"Nordlys ApS", true}, {"Fjord Freight AS", false}, {"Lagom Design AB", false},
		}, radios(tree)); diff != "" {
			t.Errorf("company radio buttons (-want +got):\n%s", diff)
		}

		// Choose Fjord Freight by clicking its label's text, as a person would.
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.Search(`//label[contains(., "Fjord Freight AS")]//span`))); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]radio{
			{"Nordlys ApS", false}, {"Fjord Freight AS", true}, {"Lagom Design AB", false},
		}, radios(axTree(t, ctx))); diff != "" {
			t.Errorf("after clicking Fjord Freight's label (-want +got):\n%s", diff)
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("approve"))); err != nil {
			t.Fatal(err)
		}
		got := cb.wait(t, ctx)
		if got.Get("state") != "approve-state" || got.Get("code") == "" || got.Has("error") {
			t.Fatalf("callback got %v, want a code and state=approve-state", got)
		}
		if subj := subjectOf(t, got, verifier); subj != "urn:pleo:company:"+companyFjord {
			t.Errorf("subjectURN = %q, want Fjord Freight's urn:pleo:company:%s", subj, companyFjord)
		}
	})

	t.Run("Keyboard", func(t *testing.T) {
		ctx, verifier := open(t, "keyboard-state", nil)
		// Tab reaches the radio group at its chosen button; ArrowDown moves the choice to
		// the next company; Tab reaches Approve; Enter presses it.
		steps := []struct {
			key, want string // the key, and the focused element afterwards
		}{
			{kb.Tab, "radio " + companyNordlys},
			{kb.ArrowDown, "radio " + companyFjord},
			{kb.Tab, "button approve"},
		}
		for _, s := range steps {
			if err := chromedp.Do(ctx, chromedp.KeyEvent(s.key)); err != nil {
				t.Fatal(err)
			}
			focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](
				`(e => e.type === "radio" ? "radio " + e.value : e.localName + " " + e.id)(document.activeElement)`))
			if err != nil {
				t.Fatal(err)
			}
			if focused != s.want {
				t.Fatalf("after key %q the focus is on %q, want %q", s.key, focused, s.want)
			}
		}
		if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Enter)); err != nil {
			t.Fatal(err)
		}
		got := cb.wait(t, ctx)
		if got.Get("state") != "keyboard-state" || got.Get("code") == "" {
			t.Fatalf("callback got %v, want a code and state=keyboard-state", got)
		}
		if subj := subjectOf(t, got, verifier); subj != "urn:pleo:company:"+companyFjord {
			t.Errorf("subjectURN = %q, want Fjord Freight's, chosen with ArrowDown", subj)
		}
	})

	t.Run("Deny", func(t *testing.T) {
		ctx, _ := open(t, "deny-state", nil)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("deny"))); err != nil {
			t.Fatal(err)
		}
		got := cb.wait(t, ctx)
		if got.Get("error") != "access_denied" || got.Get("state") != "deny-state" || got.Has("code") {
			t.Errorf("callback got %v, want error=access_denied, state=deny-state and no code", got)
		}
	})

	t.Run("Subject", func(t *testing.T) {
		ctx, verifier := open(t, "subject-state", func(q url.Values) {
			q.Set("urn_pleo_params_oauth_subject", "urn:pleo:company:"+companyLagom)
		})
		if diff := cmp.Diff([]radio{
			{"Nordlys ApS", false}, {"Fjord Freight AS", false}, {"Lagom Design AB", true},
		}, radios(axTree(t, ctx))); diff != "" {
			t.Errorf("company radio buttons (-want +got):\n%s", diff)
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("approve"))); err != nil {
			t.Fatal(err)
		}
		if subj := subjectOf(t, cb.wait(t, ctx), verifier); subj != "urn:pleo:company:"+companyLagom {
			t.Errorf("subjectURN = %q, want Lagom Design's", subj)
		}
	})

	t.Run("ErrorPage", func(t *testing.T) {
		// The unregistered redirect URI is on the callback server, so a redirect to it
		// would be recorded.
		bad := cb.srv.URL + "/not-registered"
		ctx := browsertest.New(t)
		_, challenge := pkce()
		q := authorizeQuery(client, challenge)
		q.Set("redirect_uri", bad)
		authorizeURL := srv.URL + "/oauth/authorize?" + q.Encode()
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(authorizeURL))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.Status)
		}
		if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || loc != authorizeURL {
			t.Errorf("location = %q, %v; want the browser to stay on %s", loc, err, authorizeURL)
		}
		alerts := byRole(axTree(t, ctx), "alert")
		if len(alerts) != 1 {
			t.Fatalf("alerts = %v, want one", alerts)
		}
		msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[role="alert"]`)))
		if err != nil || !strings.Contains(msg, "The redirect_uri is not registered for this client") {
			t.Errorf("alert text = %q, %v; want it to say the redirect_uri is not registered", msg, err)
		}
		if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("form, button").length`)); err != nil || n != 0 {
			t.Errorf("the error page has %d forms or buttons (%v), want none", n, err)
		}
		if hits := cb.hits(bad); hits != 0 {
			t.Errorf("the unregistered redirect URI was requested %d times, want never", hits)
		}
	})

	t.Run("Layout", func(t *testing.T) {
		// The README's screenshot names the demo client's usual redirect URI; the page is
		// only looked at, never answered.
		ctx, _ := open(t, "layout-state", func(q url.Values) { q.Set("redirect_uri", client.RedirectURIs[1]) })
		// At the default window the page fits without scrolling; on a phone it scrolls
		// down but never sideways.
		size := func() (w, h int) {
			t.Helper()
			s, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](
				`[document.documentElement.scrollWidth - innerWidth, document.documentElement.scrollHeight - innerHeight]`))
			if err != nil {
				t.Fatal(err)
			}
			return s[0], s[1]
		}
		if w, h := size(); w > 0 || h > 0 {
			t.Errorf("at %dx%d the page overflows by %dx%d px", browsertest.ViewportWidth, browsertest.ViewportHeight, w, h)
		}
		if browsertest.UpdateScreenshots() {
			if err := browsertest.SaveScreenshot(ctx, screenshotPath); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", screenshotPath)
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(360, 740, chromedp.EmulateMobile)); err != nil {
			t.Fatal(err)
		}
		if w, _ := size(); w > 0 {
			t.Errorf("at 360 px wide the page scrolls sideways by %d px", w)
		}
	})
}

// callback plays the integration's redirect endpoint: it records every request's path and
// query (but the browser's /favicon.ico), and shows a small page that the browser test
// waits for.
type callback struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []*url.URL
}

func newCallback(t *testing.T) *callback {
	cb := &callback{}
	cb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			http.NotFound(w, r)
			return
		}
		cb.mu.Lock()
		cb.got = append(cb.got, r.URL)
		cb.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Integration callback</title><h1 id="callback">Back at the integration</h1>`)
	}))
	t.Cleanup(cb.srv.Close)
	return cb
}

// URL is the registered redirect URI.
func (cb *callback) URL() string { return cb.srv.URL + "/oauth/callback" }

// wait waits until the browser of ctx shows the callback page at the registered redirect
// URI, and returns the query of the last request the callback received.
func (cb *callback) wait(t *testing.T, ctx context.Context) url.Values {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("callback"))); err != nil {
		t.Fatalf("waiting for the callback page: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, cb.URL()+"?") {
		t.Fatalf("location = %q, %v; want the callback %s", loc, err, cb.URL())
	}
	cb.mu.Lock()
	defer cb.mu.Unlock()
	last := cb.got[len(cb.got)-1]
	if last.Path != "/oauth/callback" {
		t.Fatalf("the callback's last request is %s, want /oauth/callback", last)
	}
	return last.Query()
}

// hits counts the requests for the path of uri.
func (cb *callback) hits(uri string) int {
	u, _ := url.Parse(uri)
	cb.mu.Lock()
	defer cb.mu.Unlock()
	n := 0
	for _, g := range cb.got {
		if g.Path == u.Path {
			n++
		}
	}
	return n
}

func axTree(t *testing.T, ctx context.Context) []browsertest.AXNode {
	t.Helper()
	tree, err := browsertest.AccessibilityTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func byRole(tree []browsertest.AXNode, role string) []browsertest.AXNode {
	var out []browsertest.AXNode
	for _, n := range tree {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}

// radio is a radio button as a screen reader announces it: the company name that starts
// its accessible name, and whether it is checked.
type radio struct {
	Company string
	Checked bool
}

func radios(tree []browsertest.AXNode) []radio {
	var out []radio
	for _, n := range byRole(tree, "radio") {
		// The name is the label's text: the company's name, then its URN.
		name, _, _ := strings.Cut(n.Name, " urn:")
		out = append(out, radio{name, n.Props["checked"] == "true"})
	}
	return out
}
