package webui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/webui"
)

// pages are the dashboard's pages a session reaches by GET.
var pages = []string{"/ui/", "/ui/connections", "/ui/connections/acme", "/ui/webhooks"}

func TestServer_NoSession(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, p := range pages {
		r := b.get(p)
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.header.Get("Location"); !strings.HasPrefix(loc, "/base/ui/login?next=") {
			t.Errorf("GET %s: Location %q, want the login page", p, loc)
		}
	}
	// An action without a session does nothing and goes to the login page.
	e.connect("acme")
	for _, p := range []string{"/ui/connections/acme/refresh", "/ui/connections/acme/disconnect", "/ui/connections/acme/connect-link", "/ui/connect-link", "/ui/logout", "/ui/webhooks/test"} {
		r := b.do("POST", p, url.Values{"csrf": {"x"}, "confirm": {"yes"}, "connection_id": {"newco"}})
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.header.Get("Location"); loc != "/base/ui/login" {
			t.Errorf("POST %s: Location %q", p, loc)
		}
	}
	rec, err := e.store.GetConnection(context.Background(), "acme")
	if err != nil || rec.State != tokenkeeper.StateActive || rec.Generation != 1 {
		t.Errorf("after the refused actions: %v %v", rec, err)
	}
	// A forged cookie is no session.
	b.cookies["tokenkeeper_ui"] = &http.Cookie{Name: "tokenkeeper_ui", Value: "1.AAAA"}
	wantStatus(t, b.get("/ui/"), http.StatusSeeOther)
}

func TestServer_Login(t *testing.T) {
	e := newEnv(t)
	t.Run("OK", func(t *testing.T) {
		b := e.browser()
		r := b.login(e.admin)
		wantStatus(t, r, http.StatusSeeOther)
		c := b.cookies["tokenkeeper_ui"]
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/base/ui" || c.MaxAge != int(8*time.Hour/time.Second) || c.Secure {
			t.Fatalf("session cookie %+v", c)
		}
		if strings.Contains(c.Value, e.admin.Reveal()) {
			t.Error("the cookie holds the key")
		}
		r = b.get("/ui/")
		wantStatus(t, r, http.StatusOK)
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
		}
		csp := r.header.Get("Content-Security-Policy")
		if strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") || r.header.Get("Referrer-Policy") == "" {
			t.Errorf("headers %v", r.header)
		}
		audit, _ := e.store.ListAudit(context.Background(), tokenkeeper.AuditFilter{})
		if len(audit) != 1 || audit[0].Action != "ui.login" {
			t.Errorf("audit %+v", audit)
		}
	})
	for _, tt := range []struct {
		name   string
		key    func() tokenkeeper.Secret
		status int
		says   string
	}{
		{"Malformed", func() tokenkeeper.Secret { return tokenkeeper.NewSecret("hunter2") }, http.StatusUnauthorized, "not a tokenkeeper API key"},
		{"Wrong", func() tokenkeeper.Secret {
			k := e.admin.Reveal()
			return tokenkeeper.NewSecret(k[:len(k)-4] + "aaaa")
		}, http.StatusUnauthorized, "not valid"},
		{"Unknown", func() tokenkeeper.Secret {
			k, _, _ := tokenkeeper.NewAPIKey("x", []tokenkeeper.Scope{tokenkeeper.ScopeAdmin}, time.Now())
			return k
		}, http.StatusUnauthorized, "not valid"},
		{"Revoked", func() tokenkeeper.Secret { return e.revoked }, http.StatusUnauthorized, "not valid"},
		{"NotAdmin", func() tokenkeeper.Secret { return e.tokensKey }, http.StatusForbidden, "admin scope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := e.browser()
			r := b.login(tt.key())
			wantStatus(t, r, tt.status)
			if !strings.Contains(r.body, tt.says) || b.cookies["tokenkeeper_ui"] != nil {
				t.Errorf("page %s; cookies %v", r.body, b.cookies)
			}
			wantStatus(t, b.get("/ui/"), http.StatusSeeOther)
		})
	}
	t.Run("ForgedLoginCSRF", func(t *testing.T) {
		b := e.browser()
		b.get("/ui/login")
		r := b.do("POST", "/ui/login", url.Values{"csrf": {"forged"}, "key": {e.admin.Reveal()}})
		wantStatus(t, r, http.StatusForbidden)
		delete(b.cookies, "tokenkeeper_ui_login")
		r = b.do("POST", "/ui/login", url.Values{"key": {e.admin.Reveal()}})
		wantStatus(t, r, http.StatusForbidden)
	})
	t.Run("NextStaysHere", func(t *testing.T) {
		for next, want := range map[string]string{
			"/connections?state=active": "/base/ui/connections?state=active",
			"//evil.example/":           "/base/ui/",
			"https://evil.example/":     "/base/ui/",
			"/\\evil.example":           "/base/ui/",
		} {
			b := e.browser()
			page := b.get("/ui/login?next=" + url.QueryEscape(next))
			r := b.do("POST", "/ui/login", url.Values{"csrf": {csrf(t, page.body)}, "key": {e.admin.Reveal()}, "next": {next}})
			if loc := r.header.Get("Location"); loc != want {
				t.Errorf("next %q: Location %q, want %q", next, loc, want)
			}
		}
	})
	t.Run("SecureOverHTTPS", func(t *testing.T) {
		e := newEnv(t, func(o *envOptions) { o.public = "https://tk.example" })
		b := e.browser()
		b.login(e.admin)
		if c := b.cookies["tokenkeeper_ui"]; c == nil || !c.Secure || c.Path != "/ui" {
			t.Errorf("cookie %+v", c)
		}
	})
}

func TestServer_SessionEnds(t *testing.T) {
	t.Run("KeyRevoked", func(t *testing.T) {
		e := newEnv(t)
		b := e.loggedIn()
		wantStatus(t, b.get("/ui/"), http.StatusOK)
		id, _ := tokenkeeper.ParseAPIKey(e.admin)
		if err := e.store.RevokeAPIKey(context.Background(), id, time.Now()); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, b.get("/ui/"), http.StatusSeeOther)
	})
	t.Run("Expired", func(t *testing.T) {
		now := time.Now()
		e := newEnv(t, func(o *envOptions) {
			o.cfg = func(c *webui.Config) { c.Now = func() time.Time { return now }; c.SessionTTL = time.Hour }
		})
		b := e.loggedIn()
		wantStatus(t, b.get("/ui/"), http.StatusOK)
		now = now.Add(time.Hour)
		wantStatus(t, b.get("/ui/"), http.StatusSeeOther)
	})
	t.Run("Logout", func(t *testing.T) {
		e := newEnv(t)
		b := e.loggedIn()
		page := b.get("/ui/")
		r := b.do("POST", "/ui/logout", url.Values{"csrf": {csrf(t, page.body)}})
		wantStatus(t, r, http.StatusSeeOther)
		if b.cookies["tokenkeeper_ui"] != nil {
			t.Error("the session cookie survived the logout")
		}
		wantStatus(t, b.get("/ui/"), http.StatusSeeOther)
	})
}

// TestServer_CSRF: every POST of a session needs the session's token, and
// a same-origin browser; otherwise 403 and nothing happens.
func TestServer_CSRF(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	b := e.loggedIn()
	other := e.loggedIn()
	token := csrf(t, b.get("/ui/connections/acme").body)
	otherToken := csrf(t, other.get("/ui/").body)
	if token == otherToken {
		t.Fatal("two sessions share a CSRF token")
	}
	actions := []string{"/ui/connections/acme/refresh", "/ui/connections/acme/disconnect", "/ui/connections/acme/connect-link", "/ui/connect-link", "/ui/logout", "/ui/webhooks/test"}
	for _, tt := range []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"Missing", url.Values{"confirm": {"yes"}}, nil},
		{"Forged", url.Values{"csrf": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "confirm": {"yes"}}, nil},
		{"AnotherSessions", url.Values{"csrf": {otherToken}, "confirm": {"yes"}}, nil},
		{"Twice", url.Values{"csrf": {token, token}, "confirm": {"yes"}}, nil},
		{"CrossOrigin", url.Values{"csrf": {token}, "confirm": {"yes"}}, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", ""}},
		{"CrossSite", url.Values{"csrf": {token}, "confirm": {"yes"}}, []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range actions {
				r := b.do("POST", p, tt.form, tt.hdr...)
				if r.status != http.StatusForbidden || !strings.Contains(r.body, "This form has expired") {
					t.Errorf("POST %s: %d\n%s", p, r.status, r.body)
				}
			}
		})
	}
	rec, err := e.store.GetConnection(context.Background(), "acme")
	if err != nil || rec.State != tokenkeeper.StateActive || rec.Generation != 1 {
		t.Errorf("after forged posts: %v %v", rec, err)
	}
	if audit, _ := e.store.ListAudit(context.Background(), tokenkeeper.AuditFilter{}); len(audit) != 2 { // two logins
		t.Errorf("audit after forged posts: %d entries", len(audit))
	}
	// With the token (and no Origin, as some browsers send none), it works.
	r := b.do("POST", "/ui/connections/acme/refresh", url.Values{"csrf": {token}}, "Origin", "", "Sec-Fetch-Site", "")
	wantStatus(t, r, http.StatusSeeOther)
}
