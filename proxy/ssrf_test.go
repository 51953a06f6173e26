package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/proxy"
)

// rawGet sends "GET target HTTP/1.1" with the given Host header over a new
// connection, byte for byte (a client library would normalise the
// request-target), and returns the response.
func rawGet(t *testing.T, addr, target, host string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestProxy_Forward_SSRF sends every trick we know to make the proxy reach
// another host, or leave the API's path prefix. evil is a real server: had
// a trick worked, it would have been called.
func TestProxy_Forward_SSRF(t *testing.T) {
	up := newUpstream(t, nil)
	evil := newUpstream(t, nil)
	evilHost := evil.Listener.Addr().String()
	front := frontServer(t, &proxy.Proxy{Target: up.url(t, "/api"), Transport: bearer("constant")})
	frontHost := front.Listener.Addr().String()
	const base = "/connections/acme/proxy"

	tests := []struct {
		name   string
		target string // the request-target, sent as is
		host   string // "" means the front's own
		// refused: 400 with code invalid, and nothing reaches upstream.
		// Otherwise the request must reach upstream, at Target's host,
		// under /api.
		refused bool
	}{
		{"DotDot", base + "/../admin", "", true},
		{"DotDotDeep", base + "/v2/../../admin", "", true},
		{"DotDotTrailing", base + "/v2/..", "", true},
		{"Dot", base + "/./v2/employees", "", true},
		{"EncodedDotDot", base + "/%2e%2e/admin", "", true},
		{"EncodedDotDotMixedCase", base + "/%2E%2e/admin", "", true},
		{"HalfEncodedDotDot", base + "/.%2E/admin", "", true},
		{"EncodedDot", base + "/%2e/v2", "", true},
		{"DoubleEncodedDotDot", base + "/%252e%252e/admin", "", true},
		{"DotDotParam", base + "/..;/admin", "", true},
		{"EncodedSlash", base + "/v2%2F..%2Fadmin", "", true},
		{"EncodedSlashLower", base + "/v2%2f..%2fadmin", "", true},
		{"DoubleEncodedSlash", base + "/v2%252F..%252Fadmin", "", true},
		{"EncodedBackslash", base + "/%5C..%5Cadmin", "", true},
		{"EncodedBackslashLower", base + "/v2%5c..%5cadmin", "", true},
		{"Backslash", base + `/v2\..\admin`, "", true},
		{"SchemeRelative", base + "//evil.example/x", "", true},
		{"SchemeRelativeReal", base + "//" + evilHost + "/x", "", true},
		{"AbsoluteURL", base + "/http://" + evilHost + "/x", "", true},
		{"AbsoluteURLNoSlash", base + "http://" + evilHost + "/x", "", true},
		{"EncodedAbsoluteURL", base + "/http:%2F%2F" + evilHost + "/x", "", true},
		{"EncodedColonSlash", base + "/http%3A%2F%2F" + evilHost, "", true},
		{"UserinfoNoSlash", base + "@" + evilHost + "/x", "", true},
		{"EncodedNUL", base + "/v2%00/employees", "", true},
		{"EncodedCRLF", base + "/v2%0d%0aHost:%20evil.example", "", true},
		{"Empty", base, "", true},

		// These are harmless, and forwarded: they must still land on Target.
		{"Plain", base + "/v2/employees", "", false},
		{"HostHeader", base + "/v2/employees", "evil.example", false},
		{"HostHeaderReal", base + "/v2/employees", evilHost, false},
		{"AbsoluteForm", "http://" + evilHost + base + "/v2/employees", evilHost, false},
		{"UserinfoInPath", base + "/@" + evilHost + "/x", "", false},
		{"UserinfoWithPassword", base + "/user:pass@" + evilHost + "/x", "", false},
		{"EncodedAt", base + "/%40" + evilHost, "", false},
		{"URLInQuery", base + "/v2/employees?next=http://" + evilHost + "/x&u=//" + evilHost, "", false},
		{"DotsInName", base + "/v2/..employees./...", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := tt.host
			if host == "" {
				host = frontHost
			}
			before := len(up.requests())
			status, body := rawGet(t, frontHost, tt.target, host)
			got := up.requests()[before:]
			if tt.refused {
				if status != http.StatusBadRequest || errorCode([]byte(body)) != "invalid" {
					t.Errorf("status %d, body %s; want 400 invalid", status, body)
				}
				if len(got) != 0 {
					t.Errorf("upstream got %q", got[0].RequestURI)
				}
				return
			}
			if status != http.StatusOK || len(got) != 1 {
				t.Fatalf("status %d, body %s, %d upstream requests; want it forwarded once", status, body, len(got))
			}
			if got[0].Host != up.Listener.Addr().String() || !strings.HasPrefix(got[0].URL.Path, "/api/") {
				t.Errorf("upstream got Host %q, path %q; want Target's host, under /api/", got[0].Host, got[0].URL.Path)
			}
		})
	}
	if n := len(evil.requests()); n != 0 {
		t.Fatalf("the evil server got %d requests", n)
	}
}
