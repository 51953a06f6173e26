package httpapi_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// routes are the authenticated routes with the scope each needs.
var routes = []struct {
	method, path string
	scope        tokenkeeper.Scope
}{
	{"POST", "/v1/connect-sessions", tokenkeeper.ScopeAdmin},
	{"GET", "/v1/connections", tokenkeeper.ScopeTokens},
	{"POST", "/v1/connections/prune", tokenkeeper.ScopeAdmin},
	{"GET", "/v1/connections/x", tokenkeeper.ScopeTokens},
	{"DELETE", "/v1/connections/x", tokenkeeper.ScopeAdmin},
	{"POST", "/v1/connections/x/token", tokenkeeper.ScopeTokens},
	{"POST", "/v1/connections/x/refresh", tokenkeeper.ScopeAdmin},
	{"GET", "/v1/connections/x/proxy/v1/introspect", tokenkeeper.ScopeProxy},
	{"POST", "/v1/connections/x/proxy/v1/export-jobs", tokenkeeper.ScopeProxy},
	{"PUT", "/v1/connections/x/proxy/v1/export-jobs/1", tokenkeeper.ScopeProxy},
	{"PATCH", "/v1/connections/x/proxy/v1/export-jobs/1", tokenkeeper.ScopeProxy},
	{"DELETE", "/v1/connections/x/proxy/v1/installations/me", tokenkeeper.ScopeProxy},
	{"GET", "/v1/api-keys", tokenkeeper.ScopeAdmin},
	{"POST", "/v1/api-keys", tokenkeeper.ScopeAdmin},
	{"DELETE", "/v1/api-keys/ak" + strings.Repeat("a", 32), tokenkeeper.ScopeAdmin},
	{"GET", "/v1/audit", tokenkeeper.ScopeAdmin},
	{"GET", "/v1/connections/x/events", tokenkeeper.ScopeAdmin},
	{"GET", "/v1/webhook-endpoints", tokenkeeper.ScopeAdmin},
	{"POST", "/v1/webhook-endpoints", tokenkeeper.ScopeAdmin},
	{"DELETE", "/v1/webhook-endpoints/we_x", tokenkeeper.ScopeAdmin},
	{"POST", "/v1/webhook-endpoints/we_x/test", tokenkeeper.ScopeAdmin},
	{"GET", "/v1/webhook-endpoints/we_x/deliveries", tokenkeeper.ScopeAdmin},
}

func TestServer_Auth(t *testing.T) {
	e := newEnv(t)
	revoked := e.newKey(t, "revoked", tokenkeeper.ScopeAdmin)
	id, err := tokenkeeper.ParseAPIKey(revoked)
	if err != nil {
		t.Fatal(err)
	}
	want(t, e.do(t, req{method: "DELETE", path: "/v1/api-keys/" + string(id), key: e.admin}), http.StatusOK, "")
	unknown, _, _ := tokenkeeper.NewAPIKey("never stored", []tokenkeeper.Scope{tokenkeeper.ScopeAdmin}, e.srv.Now())
	admin := e.admin.Reveal()
	last := admin[len(admin)-1]
	swap := byte('a')
	if last == 'a' {
		swap = 'b'
	}
	wrong := admin[:len(admin)-1] + string(swap)

	refused := map[string]map[string]string{
		"NoKey":     nil,
		"NotBearer": {"Authorization": "Basic " + admin},
		"NoSpace":   {"Authorization": "Bearer"},
		"Malformed": {"Authorization": "Bearer tk_short"},
		"Unknown":   {"Authorization": "Bearer " + unknown.Reveal()},
		"WrongKey":  {"Authorization": "Bearer " + wrong},
		"Revoked":   {"Authorization": "Bearer " + revoked.Reveal()},
	}
	for _, rt := range routes {
		for name, h := range refused {
			t.Run(name+rt.method+rt.path, func(t *testing.T) {
				r := e.do(t, req{method: rt.method, path: rt.path, header: h})
				want(t, r, http.StatusUnauthorized, tokenkeeper.CodeUnauthorized)
				if ch := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, `Bearer realm="tokenkeeper"`) {
					t.Errorf("WWW-Authenticate %q", ch)
				}
				if name != "NoKey" && !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate %q lacks invalid_token", r.header.Get("WWW-Authenticate"))
				}
			})
		}
		keys := map[tokenkeeper.Scope]tokenkeeper.Secret{
			tokenkeeper.ScopeAdmin: e.admin, tokenkeeper.ScopeTokens: e.tokens, tokenkeeper.ScopeProxy: e.proxyKey,
		}
		for scope, key := range keys {
			allowed := scope == rt.scope || scope == tokenkeeper.ScopeAdmin
			t.Run(string(scope)+rt.method+rt.path, func(t *testing.T) {
				r := e.do(t, req{method: rt.method, path: rt.path, key: key})
				switch {
				case allowed && (r.status == 401 || r.status == 403):
					t.Errorf("a %s key gets %d: %s", scope, r.status, r.body)
				case !allowed:
					want(t, r, http.StatusForbidden, tokenkeeper.CodeForbidden)
					if ch := r.header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="insufficient_scope"`) ||
						!strings.Contains(ch, `scope="`+string(rt.scope)+`"`) {
						t.Errorf("WWW-Authenticate %q", ch)
					}
				}
			})
		}
	}
	t.Run("SchemeIsCaseInsensitive", func(t *testing.T) {
		// RFC 7235 section 2.1: the auth scheme is case-insensitive.
		for _, scheme := range []string{"bearer", "BEARER", "BeArEr"} {
			h := map[string]string{"Authorization": scheme + " " + e.tokens.Reveal()}
			want(t, e.do(t, req{method: "GET", path: "/v1/connections", header: h}), http.StatusOK, "")
		}
	})
	t.Run("RevocationIsImmediate", func(t *testing.T) {
		key := e.newKey(t, "short-lived", tokenkeeper.ScopeTokens)
		want(t, e.do(t, req{method: "GET", path: "/v1/connections", key: key}), http.StatusOK, "")
		kid, _ := tokenkeeper.ParseAPIKey(key)
		want(t, e.do(t, req{method: "DELETE", path: "/v1/api-keys/" + string(kid), key: e.admin}), http.StatusOK, "")
		want(t, e.do(t, req{method: "GET", path: "/v1/connections", key: key}), http.StatusUnauthorized, tokenkeeper.CodeUnauthorized)
	})
	t.Run("KeyStoreDown", func(t *testing.T) {
		fresh := e.newKey(t, "not yet seen", tokenkeeper.ScopeTokens)
		restore := e.faults.inject("GetAPIKey", errUnavailable)
		defer restore()
		want(t, e.do(t, req{method: "GET", path: "/v1/connections", key: fresh}), http.StatusServiceUnavailable, tokenkeeper.CodeUnavailable)
		// A key read within the cache's TTL still works while the store is down.
		want(t, e.do(t, req{method: "GET", path: "/v1/connections", key: e.tokens}), http.StatusOK, "")
	})
	t.Run("RevokedElsewhereWithinTTL", func(t *testing.T) {
		// Revoked in the store by someone else (another replica, the CLI): this
		// server reads the record again within APIKeyCacheTTL (2s).
		key := e.newKey(t, "revoked elsewhere", tokenkeeper.ScopeTokens)
		want(t, e.do(t, req{method: "GET", path: "/v1/connections", key: key}), http.StatusOK, "")
		kid, _ := tokenkeeper.ParseAPIKey(key)
		if err := e.store.RevokeAPIKey(context.Background(), kid, e.srv.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := e.srv.Advance(httpapi.DefaultAPIKeyCacheTTL + time.Millisecond); err != nil {
			t.Fatal(err)
		}
		want(t, e.do(t, req{method: "GET", path: "/v1/connections", key: key}), http.StatusUnauthorized, tokenkeeper.CodeUnauthorized)
	})
}

// TestServer_Faults: every authenticated operation answers 503 with
// Retry-After when the store is unavailable, and 500 "internal error" when
// it fails unexpectedly, the cause logged once and never shown.
func TestServer_Faults(t *testing.T) {
	e := newEnv(t)
	for _, rt := range routes {
		t.Run(rt.method+rt.path, func(t *testing.T) {
			restore := e.faults.inject("GetAPIKey", errUnavailable)
			r := e.do(t, req{method: rt.method, path: rt.path, key: e.admin})
			restore()
			want(t, r, http.StatusServiceUnavailable, tokenkeeper.CodeUnavailable)
			if r.header.Get("Retry-After") == "" {
				t.Error("a 503 without Retry-After")
			}
			before := len(e.logLines(t, "http: internal error"))
			restore = e.faults.inject("GetAPIKey", errInternal)
			r = e.do(t, req{method: rt.method, path: rt.path, key: e.admin})
			restore()
			want(t, r, http.StatusInternalServerError, tokenkeeper.CodeInternal)
			var b httpapi.ErrorBody
			r.decode(t, &b)
			if b.Error.Message != "internal error" {
				t.Errorf("message %q", b.Error.Message)
			}
			lines := e.logLines(t, "http: internal error")
			if len(lines)-before != 1 || !strings.Contains(lines[len(lines)-1]["error"].(string), "sector 7") {
				t.Errorf("%d new log lines for the cause, want 1 with it", len(lines)-before)
			}
		})
	}
}

// TestRoutes_MatchSpec keeps the hand-written routes table (which the auth test walks)
// equal to the spec: every operation that takes an API key appears in it, with the scope
// its tag names, and nothing else does. A route added to the spec without a row here, or
// with another scope, fails.
func TestRoutes_MatchSpec(t *testing.T) {
	doc, _ := loadSpec(t)
	type op struct{ method, path string }
	inTable := map[op]tokenkeeper.Scope{}
	for _, rt := range routes {
		inTable[op{rt.method, rt.path}] = rt.scope
	}
	matched := map[op]bool{}
	for path, item := range doc.Paths.Map() {
		segs := strings.Split(path, "/")
		for i, seg := range segs {
			switch {
			case seg == "{path}":
				segs[i] = ".+"
			case strings.HasPrefix(seg, "{"):
				segs[i] = "[^/]+"
			default:
				segs[i] = regexp.QuoteMeta(seg)
			}
		}
		re := regexp.MustCompile("^" + strings.Join(segs, "/") + "$")
		for method, o := range item.Operations() {
			if o.Security != nil && len(*o.Security) == 0 {
				continue // no API key: the browser pages and health
			}
			if len(o.Tags) != 1 {
				t.Errorf("%s %s: %d tags; want exactly one naming its scope", method, path, len(o.Tags))
				continue
			}
			scope := tokenkeeper.Scope(o.Tags[0])
			found := false
			for k, v := range inTable {
				if k.method == method && re.MatchString(k.path) {
					found = true
					matched[k] = true
					if v != scope {
						t.Errorf("%s %s: the table checks scope %s; the spec's tag says %s", method, path, v, scope)
					}
				}
			}
			if !found {
				t.Errorf("%s %s (scope %s) is missing from the routes table, so its auth is untested", method, path, scope)
			}
		}
	}
	for k := range inTable {
		if !matched[k] {
			t.Errorf("the routes table has %s %s, which the spec does not document", k.method, k.path)
		}
	}
}
