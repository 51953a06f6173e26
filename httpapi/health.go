package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenkeeper/tokenkeeper"
)

// Health is the JSON body of /healthz and /readyz. Reason says why the
// server is not ready, or ready in part only; it is left out when Status is
// "ok".
type Health struct {
	// Status is "ok", "degraded" (200: Config.Degraded) or "unavailable"
	// (503: Config.Ready).
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// healthz serves GET /healthz: the process is up and serving.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, Health{Status: "ok"})
}

// readyz serves GET /readyz: Config.Ready's verdict, 503 with its reason
// when not ready; then Config.Degraded's, 200 with status "degraded" and
// its reason.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			reason := healthReason(err)
			s.log.WarnContext(r.Context(), "http: not ready", "reason", reason)
			w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
			s.writeJSON(w, r, http.StatusServiceUnavailable, Health{Status: "unavailable", Reason: reason})
			return
		}
	}
	if s.cfg.Degraded != nil {
		if err := s.cfg.Degraded(r.Context()); err != nil {
			s.writeJSON(w, r, http.StatusOK, Health{Status: "degraded", Reason: healthReason(err)})
			return
		}
	}
	s.writeJSON(w, r, http.StatusOK, Health{Status: "ok"})
}

// healthReason is the text /readyz shows for err: the Message of a
// *tokenkeeper.Error (its cause stays out), else the error's text.
func healthReason(err error) string {
	var te *tokenkeeper.Error
	if errors.As(err, &te) {
		return tokenkeeper.ErrorMessage(err)
	}
	return err.Error()
}

// metricsHandler serves Config.Gatherer in the Prometheus formats.
func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
