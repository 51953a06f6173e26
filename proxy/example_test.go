package proxy_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

func ExampleProxy_Forward() {
	// The provider's API; here a stand-in that reports what it was sent.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s, token %s", r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"))
	}))
	defer api.Close()
	target, err := url.Parse(api.URL)
	if err != nil {
		log.Fatal(err)
	}

	p := &proxy.Proxy{
		Target: target,
		// In production: func(id) http.RoundTripper { return k.Transport(id, base) }
		// with k a *keeper.Keeper, which injects the connection's token.
		Transport: func(id tokenkeeper.ConnectionID) http.RoundTripper {
			return injector{token: "token-of-" + string(id)}
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/connections/{id}/proxy/", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		rest := strings.TrimPrefix(r.URL.EscapedPath(), "/connections/"+id+"/proxy")
		p.Forward(w, r, tokenkeeper.ConnectionID(id), rest)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(path string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer the-callers-own") // never forwarded
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	}
	get("/connections/acme/proxy/v2/employees?limit=2")
	get("/connections/acme/proxy/v2%2F..%2Fadmin")
	// Output:
	// 200 GET /v2/employees?limit=2, token Bearer token-of-acme
	// 400 {"error":{"code":"invalid","message":"proxy: the path has an encoded slash (%2F) in segment \"v2%2F..%2Fadmin\""}}
}

// injector sets a fixed bearer token: a stand-in for keeper.Transport.
type injector struct{ token string }

func (i injector) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+i.token)
	return http.DefaultTransport.RoundTrip(r)
}
