package httpapi_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

func TestServer_Health(t *testing.T) {
	e := newEnv(t)
	health := func(t *testing.T, path string, status int) httpapi.Health {
		t.Helper()
		r := e.do(t, req{method: "GET", path: path})
		want(t, r, status, "")
		var h httpapi.Health
		r.decode(t, &h)
		return h
	}
	t.Run("Healthz", func(t *testing.T) {
		if h := health(t, "/healthz", 200); h != (httpapi.Health{Status: "ok"}) {
			t.Errorf("healthz %+v", h)
		}
	})
	t.Run("Ready", func(t *testing.T) {
		if h := health(t, "/readyz", 200); h != (httpapi.Health{Status: "ok"}) {
			t.Errorf("readyz %+v", h)
		}
	})
	t.Run("Degraded", func(t *testing.T) {
		err := error(tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "the store is not reachable: %w",
			errors.New("dial postgres://tk:hunter2@db")))
		e.degraded.Store(&err)
		defer e.degraded.Store(nil)
		if h := health(t, "/readyz", 200); h != (httpapi.Health{Status: "degraded", Reason: "the store is not reachable"}) {
			t.Errorf("readyz %+v", h)
		}
		// Not ready wins over degraded.
		notReady := errors.New("the key file is out of sync")
		e.ready.Store(&notReady)
		defer e.ready.Store(nil)
		if h := health(t, "/readyz", 503); h.Status != "unavailable" {
			t.Errorf("readyz %+v", h)
		}
	})
	t.Run("NotReady", func(t *testing.T) {
		err := errors.New("the store is not reachable")
		e.ready.Store(&err)
		defer e.ready.Store(nil)
		if h := health(t, "/readyz", 503); h != (httpapi.Health{Status: "unavailable", Reason: "the store is not reachable"}) {
			t.Errorf("readyz %+v", h)
		}
	})
	t.Run("NotReadyCauseHidden", func(t *testing.T) {
		err := error(tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "the store is not reachable: %w",
			errors.New("dial postgres://tk:hunter2@db")))
		e.ready.Store(&err)
		defer e.ready.Store(nil)
		h := health(t, "/readyz", 503)
		if h.Reason != "the store is not reachable" {
			t.Errorf("reason %q", h.Reason)
		}
	})
}

func TestServer_Metrics(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "acme-42")
	want(t, e.do(t, req{method: "POST", path: "/v1/connections/acme-42/token", key: e.tokens}), 200, "")
	want(t, e.do(t, req{method: "POST", path: "/v1/connections/nobody-7/token", key: e.tokens}), 404, "")
	want(t, e.do(t, req{method: "GET", path: "/v1/connections/acme-42/proxy/v1/introspect", key: e.proxyKey}), 200, "")
	want(t, e.do(t, req{method: "GET", path: "/v1/no-such-route-99"}), 404, "")
	r := e.do(t, req{method: "GET", path: "/metrics"})
	want(t, r, http.StatusOK, "")
	text := string(r.body)
	for _, line := range []string{
		`tokenkeeper_http_requests_total{method="POST",route="/v1/connections/{id}/token",status="200"} 1`,
		`tokenkeeper_http_requests_total{method="POST",route="/v1/connections/{id}/token",status="404"} 1`,
		`tokenkeeper_http_requests_total{method="GET",route="/v1/connections/{id}/proxy/{path...}",status="200"} 1`,
		`tokenkeeper_http_requests_total{method="POST",route="/connect/{token}",status="303"} 1`,
		`tokenkeeper_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`tokenkeeper_http_request_duration_seconds_count{route="/v1/connections/{id}/token"} 2`,
	} {
		if !strings.Contains(text, line) {
			t.Errorf("metrics lack %s", line)
		}
	}
	for _, raw := range []string{"acme-42", "nobody-7", "no-such-route", "introspect"} {
		if strings.Contains(text, raw) {
			t.Errorf("a metric label holds the raw path part %q", raw)
		}
	}
}

func TestNew(t *testing.T) {
	e := newEnv(t)
	base := func() httpapi.Config {
		return httpapi.Config{Keeper: e.k, Flow: e.flow, Proxy: fakeProxy(nil), Store: e.store, APIKeys: e.store,
			Audit: e.store, PublicURL: mustURL(t, "https://tk.example")}
	}
	if _, err := httpapi.New(base()); err != nil {
		t.Fatalf("New: %v", err)
	}
	for name, edit := range map[string]func(*httpapi.Config){
		"NoKeeper":      func(c *httpapi.Config) { c.Keeper = nil },
		"NoFlow":        func(c *httpapi.Config) { c.Flow = nil },
		"NoProxy":       func(c *httpapi.Config) { c.Proxy = nil },
		"NoStore":       func(c *httpapi.Config) { c.Store = nil },
		"NoAPIKeys":     func(c *httpapi.Config) { c.APIKeys = nil },
		"NoAudit":       func(c *httpapi.Config) { c.Audit = nil },
		"NoPublicURL":   func(c *httpapi.Config) { c.PublicURL = nil },
		"RelativeURL":   func(c *httpapi.Config) { c.PublicURL = mustURL(t, "/x") },
		"QueryURL":      func(c *httpapi.Config) { c.PublicURL = mustURL(t, "https://tk.example/?a=b") },
		"FTPURL":        func(c *httpapi.Config) { c.PublicURL = mustURL(t, "ftp://tk.example") },
		"NegRetention":  func(c *httpapi.Config) { c.Retention = -1 },
		"NegMaxBody":    func(c *httpapi.Config) { c.MaxBodyBytes = -1 },
		"MetricsTwice":  func(c *httpapi.Config) { c.Registerer = e.reg },
		"NoDoubleCheck": nil,
	} {
		if edit == nil {
			continue
		}
		t.Run(name, func(t *testing.T) {
			c := base()
			edit(&c)
			if _, err := httpapi.New(c); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
				t.Errorf("New: %v, want invalid", err)
			}
		})
	}
	t.Run("Codes", func(t *testing.T) {
		got := map[tokenkeeper.Code]int{}
		for _, c := range httpapi.Codes() {
			got[c] = httpapi.Status(c)
		}
		wantStatus := map[tokenkeeper.Code]int{
			"not_found": 404, "invalid": 400, "conflict": 409, "unauthorized": 401, "forbidden": 403, "internal": 500,
			"reconnect_required": 409, "unavailable": 503, "too_large": 413, "method_not_allowed": 405,
			"unsupported_media_type": 415,
		}
		if diff := cmp.Diff(wantStatus, got); diff != "" {
			t.Errorf("status table (-want +got):\n%s", diff)
		}
		if httpapi.Status("bogus") != 500 {
			t.Error("an unknown code is not 500")
		}
	})
}
