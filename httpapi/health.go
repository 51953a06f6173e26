package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenkeeper/tokenkeeper"
)

// Health is the JSON body of /healthz and /readyz. Reason says why the
// server is not ready; it is left out when Status is "ok".
type Health struct {
	// Status is "ok" or "unavailable".
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// healthz serves GET /healthz: the process is up and serving.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, Health{Status: "ok"})
}

// readyz serves GET /readyz: Config.Ready's verdict, 503 with its reason
// when not ready.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			reason := err.Error()
			var te *tokenkeeper.Error
			if errors.As(err, &te) {
				reason = tokenkeeper.ErrorMessage(err) // its cause stays out
			}
			s.log.WarnContext(r.Context(), "http: not ready", "reason", reason)
			w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
			s.writeJSON(w, r, http.StatusServiceUnavailable, Health{Status: "unavailable", Reason: reason})
			return
		}
	}
	s.writeJSON(w, r, http.StatusOK, Health{Status: "ok"})
}

// metricsHandler serves Config.Gatherer in the Prometheus formats.
func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
