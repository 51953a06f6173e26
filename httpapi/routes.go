package httpapi

import (
	"net/http"
	"slices"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// handler serves one authenticated route. key is the caller's API key. A
// returned error becomes the JSON error response; nothing may have been
// written then.
type handler func(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error

// routes registers every route but the proxy, which dispatch serves before
// the ServeMux can clean its path.
func (s *Server) routes() {
	s.api("POST /v1/connect-sessions", tokenkeeper.ScopeAdmin, s.createConnectSession)
	s.api("GET /v1/connections", tokenkeeper.ScopeTokens, s.listConnections)
	s.api("POST /v1/connections/prune", tokenkeeper.ScopeAdmin, s.prune)
	s.api("GET /v1/connections/{id}", tokenkeeper.ScopeTokens, s.getConnection)
	s.api("DELETE /v1/connections/{id}", tokenkeeper.ScopeAdmin, s.deleteConnection)
	s.api("POST /v1/connections/{id}/token", tokenkeeper.ScopeTokens, s.token)
	s.api("POST /v1/connections/{id}/refresh", tokenkeeper.ScopeAdmin, s.refresh)
	s.api("GET /v1/api-keys", tokenkeeper.ScopeAdmin, s.listAPIKeys)
	s.api("POST /v1/api-keys", tokenkeeper.ScopeAdmin, s.createAPIKey)
	s.api("DELETE /v1/api-keys/{id}", tokenkeeper.ScopeAdmin, s.revokeAPIKey)
	s.api("GET /v1/audit", tokenkeeper.ScopeAdmin, s.listAudit)
	s.api("GET /v1/connections/{id}/events", tokenkeeper.ScopeAdmin, s.listEvents)
	s.api("GET /v1/webhook-endpoints", tokenkeeper.ScopeAdmin, s.listWebhookEndpoints)
	s.api("POST /v1/webhook-endpoints", tokenkeeper.ScopeAdmin, s.createWebhookEndpoint)
	s.api("DELETE /v1/webhook-endpoints/{id}", tokenkeeper.ScopeAdmin, s.deleteWebhookEndpoint)
	s.api("POST /v1/webhook-endpoints/{id}/test", tokenkeeper.ScopeAdmin, s.testWebhookEndpoint)
	s.api("GET /v1/webhook-endpoints/{id}/deliveries", tokenkeeper.ScopeAdmin, s.listDeliveries)

	s.mux.HandleFunc("GET /connect/{token}", s.landing)
	s.mux.HandleFunc("POST /connect/{token}", s.openLink)
	s.mux.HandleFunc("GET /oauth/callback", s.callback)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if s.cfg.Gatherer != nil {
		s.mux.Handle("GET /metrics", s.metricsHandler())
	}
	// Anything else is a JSON 404, or 405 when another method would match.
	s.mux.HandleFunc("/", s.unmatched)
}

// api registers an authenticated JSON route.
func (s *Server) api(pattern string, scope tokenkeeper.Scope, h handler) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		key, err := s.authenticate(w, r, scope)
		if err == nil {
			err = h(w, r, key)
		}
		if err != nil {
			s.fail(w, r, err)
		}
	})
}

// methods are those unmatched probes for an Allow header.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete}

// unmatched answers a request no route matched: 405 with Allow if the path
// is served for other methods, 404 otherwise. It runs in place of the
// ServeMux's own plain-text answers, so that even these are JSON.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range methods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && !slices.Contains(allow, m) {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.fail(w, r, wireErrorf(CodeMethodNotAllowed, "method %s is not allowed here; allowed: %s",
			r.Method, strings.Join(allow, ", ")))
		return
	}
	s.fail(w, r, tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "no route for this path"))
}
