package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// proxyFunc is a Proxy of one function.
type proxyFunc func(w http.ResponseWriter, r *http.Request, id tokenkeeper.ConnectionID, path string)

func (f proxyFunc) Forward(w http.ResponseWriter, r *http.Request, id tokenkeeper.ConnectionID, path string) {
	f(w, r, id, path)
}

// fakeProxy returns a Proxy that records what it was given into got (if
// not nil) and answers 204.
func fakeProxy(got *[]string) httpapi.Proxy {
	var mu sync.Mutex
	return proxyFunc(func(w http.ResponseWriter, r *http.Request, id tokenkeeper.ConnectionID, path string) {
		mu.Lock()
		if got != nil {
			*got = append(*got, string(id)+" "+path+" auth="+r.Header.Get("Authorization"))
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestServer_Proxy(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "acme")
	t.Run("Introspect", func(t *testing.T) {
		r := e.do(t, req{method: "GET", path: "/v1/connections/acme/proxy/v1/introspect", key: e.proxyKey})
		want(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.body), "subjectURN") {
			t.Errorf("body %s", r.body)
		}
	})
	// Every method reaches the provider; its answers pass through.
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		t.Run("Method"+m, func(t *testing.T) {
			r := e.do(t, req{method: m, path: "/v1/connections/acme/proxy/v1/export-jobs/none", key: e.proxyKey})
			if r.status < 400 || r.status >= 500 {
				t.Errorf("status %d, want the provider's 4xx; body %s", r.status, r.body)
			}
		})
	}
	t.Run("DotSegmentsRefused", func(t *testing.T) {
		for _, p := range []string{"/v1/../oauth/token", "/v1/%2e%2e/oauth/token", "/v1%2Fintrospect"} {
			r := e.do(t, req{method: "GET", path: "/v1/connections/acme/proxy" + p, key: e.proxyKey})
			want(t, r, http.StatusBadRequest, tokenkeeper.CodeInvalid)
		}
	})
	t.Run("UnknownConnection", func(t *testing.T) {
		want(t, e.do(t, req{method: "GET", path: "/v1/connections/nobody/proxy/v1/introspect", key: e.proxyKey}), http.StatusNotFound, tokenkeeper.CodeNotFound)
	})
	t.Run("BadID", func(t *testing.T) {
		for _, p := range []string{"/v1/connections/a%20b/proxy/x", "/v1/connections/../proxy/x", "/v1/connections//proxy/x"} {
			want(t, e.do(t, req{method: "GET", path: p, key: e.proxyKey}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
		}
	})
}

// TestServer_ProxyRawPath: the proxy gets the rest of the path exactly as
// sent (never cleaned, never unescaped, nothing redirected) and a request
// without the API key.
func TestServer_ProxyRawPath(t *testing.T) {
	e := newEnv(t)
	var got []string
	api, err := httpapi.New(httpapi.Config{Keeper: e.k, Flow: e.flow, Proxy: fakeProxy(&got), Store: e.store,
		APIKeys: e.store, Audit: e.store, PublicURL: mustURL(t, "http://tk.example")})
	if err != nil {
		t.Fatal(err)
	}
	for path, wantGot := range map[string]string{
		"/v1/connections/acme/proxy/v1/a/../b":       "acme /v1/a/../b",
		"/v1/connections/acme/proxy/v1/a%2Fb/%2e%2e": "acme /v1/a%2Fb/%2e%2e",
		"/v1/connections/acme/proxy//double":         "acme //double",
		"/v1/connections/acme/proxy":                 "acme /",
		"/v1/connections/acme/proxy/":                "acme /",
		"/v1/connections/a.b/proxy/x":                "a.b /x",
		"/v1/connections/a%40b/proxy/x?q=1":          "a@b /x",
	} {
		got = nil
		r, err := http.NewRequest("GET", "http://tk.example"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+e.proxyKey.Reveal())
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		if w.Code != http.StatusNoContent || len(got) != 1 || got[0] != wantGot+" auth=" {
			t.Errorf("%s: status %d, proxy got %q, want %q", path, w.Code, got, wantGot+" auth=")
		}
	}
}
