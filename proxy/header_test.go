package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

func TestProxy_Forward_Headers(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Add("Set-Cookie", "session=upstream; HttpOnly")
		h.Set("X-Upstream", "yes")
		h.Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, `{"ok":true}`)
		h.Set("X-Checksum", "abc")
		h.Set(http.TrailerPrefix+"Set-Cookie", "late=upstream") // an undeclared trailer
	})
	p := &proxy.Proxy{
		Target:    up.url(t, "/api"),
		Transport: func(id tokenkeeper.ConnectionID) http.RoundTripper { return e.k.Transport(id, nil) },
	}
	front := frontServer(t, p)

	req := newRequest(t, http.MethodGet, front.URL+"/connections/acme/proxy/v2/employees?limit=5&after=abc", nil)
	req.Host = "evil.example"
	for k, v := range map[string]string{
		"Authorization":       "Bearer the-callers-own",
		"Proxy-Authorization": "Basic Y2FsbGVyOnNlY3JldA==",
		"Cookie":              "session=caller",
		"X-Forwarded-For":     "10.1.2.3",
		"X-Forwarded-Host":    "internal.example",
		"X-Forwarded-Proto":   "https",
		"X-Forwarded-Port":    "8443",
		"X-Forwarded-Server":  "internal-lb",
		"Forwarded":           "for=10.1.2.3;host=internal.example",
		"X-Real-Ip":           "10.1.2.3",
		"X-Request-Id":        "req-1",
		"Accept":              "application/json",
	} {
		req.Header.Set(k, v)
	}
	resp, body := do(t, req)
	if resp.StatusCode != http.StatusOK || string(body) != `{"ok":true}` {
		t.Fatalf("status %d, body %s; want the upstream's 200", resp.StatusCode, body)
	}

	got := up.requests()
	if len(got) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(got))
	}
	r := got[0]
	if want := up.Listener.Addr().String(); r.Host != want {
		t.Errorf("upstream Host %q, want the target's %q", r.Host, want)
	}
	if want := "/api/v2/employees?limit=5&after=abc"; r.RequestURI != want {
		t.Errorf("upstream request URI %q, want %q", r.RequestURI, want)
	}
	cur, err := e.k.Token(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("Authorization") != "Bearer "+cur.Value.Reveal() || len(r.Header.Values("Authorization")) != 1 {
		t.Error("upstream did not get exactly the keeper's token (values redacted)")
	}
	// Every header the caller sent that upstream must not see, and every
	// trace of the caller's or the proxy's internal addresses.
	for name, vv := range r.Header {
		switch http.CanonicalHeaderKey(name) {
		case "Proxy-Authorization", "Cookie", "Forwarded", "X-Real-Ip":
			t.Errorf("upstream got %s", name)
		}
		if strings.HasPrefix(http.CanonicalHeaderKey(name), "X-Forwarded-") {
			t.Errorf("upstream got %s", name)
		}
		for _, v := range vv {
			if strings.Contains(v, "10.1.2.3") || strings.Contains(v, "internal") || strings.Contains(v, "evil.example") ||
				strings.Contains(v, "caller") || strings.Contains(v, front.Listener.Addr().String()) {
				t.Errorf("upstream header %s reveals %q", name, v)
			}
		}
	}
	if diff := cmp.Diff([]string{"req-1", "application/json"}, []string{r.Header.Get("X-Request-Id"), r.Header.Get("Accept")}); diff != "" {
		t.Errorf("ordinary headers not forwarded (-want +got):\n%s", diff)
	}

	if v := resp.Header.Values("Set-Cookie"); len(v) != 0 {
		t.Errorf("the caller got Set-Cookie %q", v)
	}
	if v := resp.Trailer.Values("Set-Cookie"); len(v) != 0 {
		t.Errorf("the caller got a Set-Cookie trailer %q", v)
	}
	if resp.Header.Get("X-Upstream") != "yes" || resp.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("upstream header %q and trailer %q not passed on", resp.Header.Get("X-Upstream"), resp.Trailer.Get("X-Checksum"))
	}
}
