package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

// FuzzProxy_Path checks, for any path a router might hand Forward, that the
// request is either refused (400 invalid, nothing sent) or sent to Target's
// scheme and host, under its path prefix, with no dot segment in any
// percent-decoding layer. Seeds are in testdata/fuzz/FuzzProxy_Path.
func FuzzProxy_Path(f *testing.F) {
	for _, s := range []string{"/v2/employees", "/../x", "/%2e%2e/x", "//evil.example", "/a%2Fb", "/a%5Cb", "http://evil", "/@evil"} {
		f.Add(s)
	}
	target := &url.URL{Scheme: "https", Host: "api.example", Path: "/base/"}
	f.Fuzz(func(t *testing.T, p string) {
		var sent *http.Request
		px := &proxy.Proxy{
			Target: target,
			Transport: func(tokenkeeper.ConnectionID) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					sent = r
					return &http.Response{StatusCode: http.StatusNoContent, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
				})
			},
		}
		w := httptest.NewRecorder()
		px.Forward(w, httptest.NewRequest(http.MethodGet, "/connections/acme/proxy", nil), "acme", p)
		if sent == nil {
			if w.Code != http.StatusBadRequest || errorCode(w.Body.Bytes()) != "invalid" {
				t.Fatalf("path %q: nothing sent, but status %d, body %s; want 400 invalid", p, w.Code, w.Body)
			}
			return
		}
		if w.Code != http.StatusNoContent {
			t.Fatalf("path %q: sent, but status %d", p, w.Code)
		}
		u := sent.URL
		if u.Scheme != "https" || u.Host != "api.example" || u.User != nil || u.Opaque != "" || sent.Host != "" {
			t.Fatalf("path %q: sent to %s (Host %q), want https://api.example", p, u, sent.Host)
		}
		// What the upstream parses from the request line.
		wire, err := url.ParseRequestURI(u.RequestURI())
		if err != nil {
			t.Fatalf("path %q: request URI %q does not parse: %v", p, u.RequestURI(), err)
		}
		if !strings.HasPrefix(wire.EscapedPath(), "/base/") || !strings.HasPrefix(path.Clean(wire.Path)+"/", "/base/") {
			t.Fatalf("path %q: sent %q, outside /base/", p, u.RequestURI())
		}
		// An upstream that decodes again (and again) still sees no way out.
		layer := wire.EscapedPath()
		for range 6 {
			for seg := range strings.SplitSeq(layer, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("path %q: sent %q, with a dot segment in a decoding layer %q", p, u.RequestURI(), layer)
				}
			}
			if strings.ContainsAny(layer, "\\\x00\r\n") {
				t.Fatalf("path %q: sent %q, hiding %q", p, u.RequestURI(), layer)
			}
			next, err := url.PathUnescape(layer)
			if err != nil || next == layer {
				break
			}
			layer = next
		}
	})
}
