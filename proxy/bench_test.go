package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

// benchBody is the upstream's constant small JSON answer.
const benchBody = `{"data":[{"id":"e1","firstName":"Astrid","lastName":"Jensen"}],"pagination":{"hasNextPage":false}}`

// pooled returns a transport that keeps enough idle connections for
// RunParallel, so the benchmark measures proxying, not TCP handshakes.
func pooled() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	return t
}

// BenchmarkProxy compares, over loopback, a GET answered by a constant
// small JSON: straight to the upstream, through a plain ReverseProxy,
// through Proxy with a constant bearer header (the keeper not measured),
// and through Proxy with a real keeper's Transport (cached token on
// SQLite).
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchBody)
	}))
	b.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	upstreamTransport := pooled()
	b.Cleanup(upstreamTransport.CloseIdleConnections)

	serve := func(b *testing.B, h http.Handler) string {
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		return srv.URL
	}
	constant := func(tokenkeeper.ConnectionID) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer constant-benchmark-token")
			return upstreamTransport.RoundTrip(r)
		})
	}
	viaProxy := func(p *proxy.Proxy) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.Forward(w, r, "acme", r.URL.EscapedPath()[len("/connections/acme/proxy"):])
		})
	}

	b.Run("Direct", func(b *testing.B) { runClients(b, up.URL+"/v2/employees") })
	b.Run("ReverseProxy", func(b *testing.B) {
		rp := &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			Transport: upstreamTransport,
		}
		runClients(b, serve(b, rp)+"/v2/employees")
	})
	b.Run("Proxy", func(b *testing.B) {
		p := &proxy.Proxy{Target: target, Transport: constant}
		runClients(b, serve(b, viaProxy(p))+"/connections/acme/proxy/v2/employees")
	})
	b.Run("ProxyKeeper", func(b *testing.B) {
		e := newEnv(b)
		e.connect("acme")
		p := &proxy.Proxy{Target: target, Transport: func(id tokenkeeper.ConnectionID) http.RoundTripper {
			return e.k.Transport(id, upstreamTransport)
		}}
		runClients(b, serve(b, viaProxy(p))+"/connections/acme/proxy/v2/employees")
	})
}

// runClients GETs url from b.RunParallel clients and checks each answer.
func runClients(b *testing.B, url string) {
	client := &http.Client{Transport: pooled(), Timeout: 30 * time.Second}
	b.Cleanup(client.CloseIdleConnections)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n != int64(len(benchBody)) {
				b.Errorf("status %d, %d bytes", resp.StatusCode, n)
				return
			}
		}
	})
}
