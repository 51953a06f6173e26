// Package webui serves tokenkeeper's web pages: the operator dashboard under
// /ui (the connections, their state and timeline, and the actions force
// refresh, create connect link and disconnect), and the pages an end user
// sees in a connect flow ([ConnectPages]).
//
// Everything is rendered on the server with html/template; the templates,
// the stylesheet and one small script (live countdowns, an enhancement
// only) are embedded in the binary. The dashboard's login takes an admin
// API key; the session is a cookie sealed by the service's [tokenkeeper.Sealer]
// (see session.go), so any replica can read it and nothing is kept in
// memory. Every form carries a CSRF token. No page ever shows a token.
//
// The package is an adapter: it takes the store, the keeper and the flow
// as small interfaces, and what other parts of the system may one day
// provide (an event log, webhook deliveries) as function fields that may
// be nil.
package webui

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

// Keeper is the refresh authority the dashboard's actions drive.
// *keeper.Keeper implements it. Implementations must be safe for
// concurrent use.
type Keeper interface {
	// Refresh forces a refresh now; the token it returns is dropped unseen.
	Refresh(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error)
	// Disconnect wipes the tokens and marks the connection disconnected,
	// with reason as its last error.
	Disconnect(ctx context.Context, id tokenkeeper.ConnectionID, reason string) error
}

// Flow makes connect links. *connect.Flow implements it. Implementations
// must be safe for concurrent use.
type Flow interface {
	NewLink(ctx context.Context, req connect.LinkRequest) (*connect.Link, error)
}

// TimelineItem is one line of a connection's timeline: something that
// happened to it, in words. It never holds a token.
type TimelineItem struct {
	Time time.Time
	// Kind is a short word shown as a badge: an event type ("refreshed",
	// "degraded", "reconnect_required", ...) or "audit" for an operator's
	// action.
	Kind string
	// Text says what happened ("forced refresh by apikey:ak...").
	Text string
}

// Bucket counts what happened in one minute, for the overview's chart.
type Bucket struct {
	// Start is the start of the minute.
	Start time.Time
	// Refreshes is how many refreshes committed a new token set.
	Refreshes int
	// Failures is how many refreshes failed (degraded, reconnect
	// required, client rejected).
	Failures int
}

// Delivery is one attempt to deliver a webhook event, for the delivery
// log. It never holds a signing secret or a token.
type Delivery struct {
	ID         string
	EndpointID string
	// EndpointURL is where it was sent (shown as is; it must hold no
	// credentials).
	EndpointURL string
	EventType   string
	Time        time.Time
	// Status is the receiver's HTTP status; 0 if none (a network error).
	Status int
	// Attempt counts the tries of this event to this endpoint, from 1.
	Attempt int
	// Error says why it failed; "" when delivered.
	Error string
}

// DeliveryFilter selects deliveries for Config.Deliveries.
type DeliveryFilter struct {
	// Before, if set, keeps deliveries older than the one with this ID
	// (pagination, newest first).
	Before string
	// Limit caps the number returned; 0 means 50.
	Limit int
}

// Endpoint is a webhook endpoint, for the "send test event" action.
type Endpoint struct {
	ID  string
	URL string
}

// DefaultSessionTTL is how long a dashboard login lasts when
// Config.SessionTTL is zero.
const DefaultSessionTTL = 8 * time.Hour

// Config configures a [Server]. Store, APIKeys, Audit, Sealer, Keeper, Flow
// and PublicURL are required; every other zero value has the default
// named on its field.
type Config struct {
	// Store serves the reads: CountConnections, ListConnections and
	// GetConnection. Tokens are never read out of what it returns.
	Store tokenkeeper.Store
	// APIKeys verifies the admin API key at login, and again on every
	// request of a session (a revoked key ends its sessions at once).
	APIKeys tokenkeeper.APIKeyStore
	// Audit records the login and every action, after it succeeded, with
	// the actor "apikey:<id>" as the API does.
	Audit tokenkeeper.AuditLog
	// Sealer seals the session cookie (an AEAD): every replica that shares
	// the keyset reads every other's sessions.
	Sealer tokenkeeper.Sealer
	// Keeper forces refreshes and disconnects.
	Keeper Keeper
	// Flow makes the connect links the dashboard hands out.
	Flow Flow
	// PublicURL is where browsers reach the service, with an optional path
	// prefix: the dashboard is PublicURL + "/ui/", connect links are
	// PublicURL + "/connect/" + token, and cookies are Secure when its
	// scheme is https.
	PublicURL *url.URL
	// SessionTTL is how long a login lasts. Zero means
	// [DefaultSessionTTL].
	SessionTTL time.Duration

	// Timeline returns a connection's timeline, newest first. nil means the
	// connection page says the timeline is not configured.
	Timeline func(ctx context.Context, id tokenkeeper.ConnectionID) ([]TimelineItem, error)
	// RefreshesPerMinute returns one Bucket per minute from since to now,
	// oldest first (minutes with nothing may be absent). nil means the
	// overview says the chart is not configured.
	RefreshesPerMinute func(ctx context.Context, since time.Time) ([]Bucket, error)
	// Deliveries returns webhook deliveries, newest first. nil means the
	// webhooks page says deliveries are not configured.
	Deliveries func(ctx context.Context, f DeliveryFilter) ([]Delivery, error)
	// Endpoints returns the webhook endpoints, for the "send test event"
	// action. nil means no endpoints are listed.
	Endpoints func(ctx context.Context) ([]Endpoint, error)
	// SendTestEvent queues a test event to one endpoint. nil means the
	// action is not offered.
	SendTestEvent func(ctx context.Context, endpointID string) error

	// Now tells the time; nil means time.Now.
	Now func() time.Time
	// Logger receives failures (never a key, a session or a token). nil
	// discards.
	Logger *slog.Logger
}

func validate(cfg *Config) error {
	bad := func(format string, args ...any) error {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "webui: "+format, args...)
	}
	switch {
	case cfg.Store == nil:
		return bad("Store is required")
	case cfg.APIKeys == nil:
		return bad("APIKeys is required: the login checks admin API keys")
	case cfg.Audit == nil:
		return bad("Audit is required: actions are audited")
	case cfg.Sealer == nil:
		return bad("Sealer is required: it seals the session cookie")
	case cfg.Keeper == nil:
		return bad("Keeper is required")
	case cfg.Flow == nil:
		return bad("Flow is required")
	case cfg.PublicURL == nil:
		return bad("PublicURL is required")
	case cfg.SessionTTL < 0:
		return bad("SessionTTL %s is negative", cfg.SessionTTL)
	}
	if u := cfg.PublicURL; (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("PublicURL %q is not an absolute http(s) URL", u.Redacted())
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Server is the dashboard: an http.Handler for the paths under /ui/. Create
// it with [New]. Safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	mux    *http.ServeMux
	base   string // the public path of /ui, without a trailing slash
	secure bool
	pages  map[string]*pageSet
}

var _ http.Handler = (*Server)(nil)

// New returns the dashboard for cfg. It fails with CodeInvalid, naming the
// field, if a required field is missing or malformed.
func New(cfg Config) (*Server, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(),
		base:   strings.TrimSuffix(cfg.PublicURL.Path, "/") + "/ui",
		secure: cfg.PublicURL.Scheme == "https"}
	s.pages = loadPages()
	s.routes()
	return s, nil
}

// Prefix is the path the dashboard serves, for mounting: a ServeMux
// pattern of Prefix routes everything the Server answers.
const Prefix = "/ui/"

// ServeHTTP serves one request under /ui/ (and /ui itself, redirected).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows the dashboard its own stylesheet and script,
// and forms that post to itself; nothing inline, nothing elsewhere.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func (s *Server) routes() {
	s.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", staticHandler()))
	s.mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { s.redirect(w, r, "/") })
	s.mux.HandleFunc("GET /ui/login", s.loginPage)
	s.mux.HandleFunc("POST /ui/login", s.login)
	s.mux.HandleFunc("POST /ui/logout", s.authed(s.logout))
	s.mux.HandleFunc("GET /ui/{$}", s.authed(s.overview))
	s.mux.HandleFunc("GET /ui/connections", s.authed(s.connections))
	s.mux.HandleFunc("GET /ui/connections/{id}", s.authed(s.connection))
	s.mux.HandleFunc("POST /ui/connections/{id}/refresh", s.authed(s.refresh))
	s.mux.HandleFunc("POST /ui/connections/{id}/connect-link", s.authed(s.connectLink))
	s.mux.HandleFunc("POST /ui/connect-link", s.authed(s.newConnectLink))
	s.mux.HandleFunc("POST /ui/connections/{id}/disconnect", s.authed(s.disconnect))
	s.mux.HandleFunc("GET /ui/webhooks", s.authed(s.webhooks))
	s.mux.HandleFunc("POST /ui/webhooks/test", s.authed(s.sendTest))
	s.mux.HandleFunc("/ui/", s.authed(s.notFound))
}

// staticHandler serves the stylesheet and the script; they change only with
// the binary, so a browser may keep them an hour.
func staticHandler() http.Handler {
	fsrv := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}

// redirect answers 303 to path under /ui.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, path string) {
	w.Header().Set("Location", s.base+path)
	w.WriteHeader(http.StatusSeeOther)
}

// audit records an action that has succeeded. A failure to append is
// logged at error; the action stands.
func (s *Server) audit(r *http.Request, sess *session, action string, id tokenkeeper.ConnectionID, detail string) {
	e := &tokenkeeper.AuditEntry{Time: s.cfg.Now().UTC().Truncate(time.Microsecond), Actor: "apikey:" + string(sess.keyID),
		Action: action, ConnectionID: id, Detail: detail}
	if err := s.cfg.Audit.AppendAudit(context.WithoutCancel(r.Context()), e); err != nil {
		s.log.ErrorContext(r.Context(), "webui: the action succeeded but its audit entry was not recorded",
			"action", action, "actor", e.Actor, "connection", id, "error", err)
	}
}
