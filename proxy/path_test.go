package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

// TestProxy_Forward_Path calls Forward directly, with paths no HTTP client
// could send (control characters), and checks that each refusal says
// precisely what is wrong.
func TestProxy_Forward_Path(t *testing.T) {
	tests := []struct {
		path string
		want string // a part of the message; "" means the path is forwarded
	}{
		{"", "the path is empty"},
		{"v2/employees", `must start with "/"`},
		{"http://evil.example/x", `holds "://"`},
		{"/http://evil.example/x", `holds "://"`},
		{"//evil.example/x", "scheme-relative"},
		{"/v2//employees", "empty segment"},
		{"/..", "dot segment"},
		{"/v2/../admin", "dot segment"},
		{"/./v2", "dot segment"},
		{"/%2e%2e/admin", "dot segment"},
		{"/%2E%2e", "dot segment"},
		{"/%2e.", "dot segment"},
		{"/%252e%252e", "dot segment"},
		{"/%25252e%25252e", "dot segment"},
		{"/..;x=1/admin", "dot segment"},
		{"/v2%2F..%2Fadmin", "encoded slash"},
		{"/v2%2fadmin", "encoded slash"},
		{"/v2%252Fadmin", "encoded slash"},
		{"/v2%5Cadmin", "encoded backslash"},
		{"/v2%5cadmin", "encoded backslash"},
		{`/v2\admin`, "backslash at byte 3"},
		{"/v2\x00", "control character at byte 3"},
		{"/v2\r\nHost: evil", "control character at byte 3"},
		{"/v2\x7f", "control character"},
		{"/v2%00", "encoded control character"},
		{"/v2%0A", "encoded control character"},
		{"/v2%zz", "malformed percent-encoding at byte 3"},
		{"/v2%4", "malformed percent-encoding"},
		{"/v2 x", `' ' at byte 3`},
		{"/v2?x=1", `'?' at byte 3`},
		{"/v2#frag", `'#' at byte 3`},
		{"/v2/\u00e9", "at byte 4"},
		{"/%25252525252e", "percent-encoded too many times"},

		{"/v2/employees", ""},
		{"/v2/employees/", ""},
		{"/", ""},
		{"/v2/a%20b", ""},
		{"/v2/a%25b", ""},
		{"/v2/a%2525b", ""},
		{"/@evil.example", ""},
		{"/v2/...", ""},
		{"/v2/.x", ""},
		{"/v2/a:b;c=d", ""},
	}
	for _, tt := range tests {
		t.Run(url.PathEscape(tt.path), func(t *testing.T) {
			var sent *url.URL
			p := &proxy.Proxy{
				Target: &url.URL{Scheme: "https", Host: "api.example", Path: "/base"},
				Transport: func(tokenkeeper.ConnectionID) http.RoundTripper {
					return roundTripFunc(func(r *http.Request) (*http.Response, error) {
						sent = r.URL
						return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
					})
				},
			}
			w := httptest.NewRecorder()
			p.Forward(w, httptest.NewRequest(http.MethodGet, "/connections/acme/proxy", nil), "acme", tt.path)
			if tt.want == "" {
				if w.Code != http.StatusOK || sent == nil {
					t.Fatalf("status %d, body %s; want it forwarded", w.Code, w.Body)
				}
				if sent.Host != "api.example" || sent.EscapedPath() != "/base"+tt.path {
					t.Fatalf("sent to %s, want https://api.example/base%s", sent, tt.path)
				}
				return
			}
			var body errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusBadRequest || body.Error.Code != "invalid" {
				t.Fatalf("status %d, body %s; want 400 invalid", w.Code, w.Body)
			}
			if !strings.Contains(body.Error.Message, tt.want) {
				t.Errorf("message %q, want it to say %q", body.Error.Message, tt.want)
			}
			if sent != nil {
				t.Errorf("a refused path was sent to %s", sent)
			}
		})
	}
}
