package webui_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzServer_Session: no cookie value a browser sends is a session unless
// this service sealed it, and none makes the server fail.
func FuzzServer_Session(f *testing.F) {
	for _, seed := range []string{"", ".", "1.", "1.AAAA", "x.y.z", "%zz.AAAA", "1." + strings.Repeat("A", 120),
		"0.AQID", "1.____", "..", "1.AAAA.BBBB"} {
		f.Add(seed)
	}
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, value string) {
		b := e.browserFor(t)
		b.cookies["tokenkeeper_ui"] = &http.Cookie{Name: "tokenkeeper_ui", Value: url.QueryEscape(value)}
		if r := b.get("/ui/connections"); r.status != http.StatusSeeOther {
			t.Fatalf("cookie %q: %d", value, r.status)
		}
	})
}

// FuzzServer_LoginNext: after a login the browser goes to a path under
// /ui of this host, whatever next said.
func FuzzServer_LoginNext(f *testing.F) {
	for _, seed := range []string{"/", "/connections?state=active", "//evil.example", "/\\evil.example", "https://evil.example/",
		"/login", "\\\\evil", "/%2F%2Fevil.example", "javascript:alert(1)", "/ui/../../x", "/\tx", " /x"} {
		f.Add(seed)
	}
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, next string) {
		b := e.browserFor(t)
		page := b.get("/ui/login")
		r := b.do("POST", "/ui/login", url.Values{"csrf": {csrf(t, page.body)}, "key": {e.admin.Reveal()}, "next": {next}})
		loc := r.header.Get("Location")
		u, err := url.Parse(loc)
		if r.status != http.StatusSeeOther || err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(loc, "/base/ui/") ||
			strings.ContainsAny(loc, "\\\r\n") {
			t.Fatalf("next %q: %d, Location %q", next, r.status, loc)
		}
	})
}
