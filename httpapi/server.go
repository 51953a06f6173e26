// Package httpapi serves tokenkeeper over HTTP: the JSON API under /v1 that
// other services call for access tokens, connections, connect sessions, API
// keys and the audit trail; the proxy to the provider's API; the browser
// pages of the connect flow (/connect/{token} and the OAuth redirect URI
// /oauth/callback); and /healthz, /readyz and /metrics. docs/openapi.yaml is
// the contract, and the package's tests check every response against it.
//
// The package is an adapter: it takes its collaborators (the keeper, the
// connect flow, the proxy, the stores) as the small interfaces below, maps
// every error to a status in one table ([Status]), and never writes a token
// or an API key to a log. [Client] calls the same API from Go.
package httpapi

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Server is the HTTP API. Create it with [New]; it is an [http.Handler],
// safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	metrics *metrics
	// callbackPath is the public path of /oauth/callback, the binding
	// cookie's Path.
	callbackPath string
	secure       bool
	keys         *keyCache
}

var _ http.Handler = (*Server)(nil)

// New returns a Server for cfg. It fails with [tokenkeeper.CodeInvalid],
// naming the field, if a required field is missing or a field is malformed,
// or if the metrics cannot be registered.
func New(cfg Config) (*Server, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, mux: http.NewServeMux()}
	ttl := cfg.APIKeyCacheTTL
	if ttl == 0 {
		ttl = DefaultAPIKeyCacheTTL
	}
	s.keys = &keyCache{ttl: ttl, now: s.now, store: cfg.APIKeys}
	s.secure = cfg.PublicURL.Scheme == "https"
	s.callbackPath = strings.TrimSuffix(cfg.PublicURL.Path, "/") + "/oauth/callback"
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer)
		if err != nil {
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "httpapi: register metrics: %w", err)
		}
		s.metrics = m
	}
	s.routes()
	return s, nil
}

// ServeHTTP serves one request. Every response carries nosniff, no-referrer,
// no-store, a strict Content-Security-Policy and X-Frame-Options DENY.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	h := rec.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	route := s.dispatch(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	elapsed := time.Since(start)
	s.metrics.observe(route, r.Method, status, elapsed)
	s.log.DebugContext(r.Context(), "http request", "method", r.Method, "route", route,
		"status", status, "duration", elapsed)
}

// contentSecurityPolicy allows the pages their inline style and nothing else.
const contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dispatch routes r and returns its route label: the ServeMux pattern
// without its method, never the raw path.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) string {
	// The proxy sees the raw path: ServeMux would clean ".." and redirect.
	if id, rest, ok := proxyPath(r.URL.EscapedPath()); ok {
		r.Pattern = proxyRoute // for logs, as ServeMux would set it
		s.serveProxy(w, r, id, rest)
		return proxyRoute
	}
	if p := r.URL.EscapedPath(); strings.HasPrefix(p, "/v1/") && !cleanPath(p) {
		s.fail(w, r, tokenkeeper.Errorf(tokenkeeper.CodeInvalid,
			"the path has an empty, . or .. segment; percent-encode dots in ids (%%2E)"))
		return "unmatched"
	}
	s.mux.ServeHTTP(w, r)
	if _, pattern, ok := strings.Cut(r.Pattern, " "); ok {
		return pattern
	}
	if r.Pattern == "" || r.Pattern == "/" || r.Pattern == "/v1/" {
		return "unmatched"
	}
	return r.Pattern
}

// cleanPath reports whether p has no empty, "." or ".." segment (a
// trailing slash aside, which reaches the 404 of an unknown route).
func cleanPath(p string) bool {
	p = strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
