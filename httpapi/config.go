package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

// Keeper is the refresh authority the API drives. *keeper.Keeper implements
// it. Its errors' codes become the statuses (see [Status]): CodeNotFound for
// an unknown connection, CodeReconnectRequired once the grant is dead,
// CodeUnavailable while the provider or the store fails. Implementations
// must be safe for concurrent use.
type Keeper interface {
	// Token returns a valid access token and its promise.
	Token(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error)
	// Invalidate reports that stale, a token Token handed out, was refused
	// by the provider (a 401), and returns a fresh token. It refreshes only
	// if stale is still the connection's current token and otherwise
	// returns the current one, so that any number of reports of one token
	// cost at most one refresh.
	Invalidate(ctx context.Context, id tokenkeeper.ConnectionID, stale tokenkeeper.Secret) (tokenkeeper.AccessToken, error)
	// Refresh forces a refresh now (an operator's action).
	Refresh(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error)
	// Disconnect wipes the tokens and marks the connection disconnected,
	// with reason as its last error.
	Disconnect(ctx context.Context, id tokenkeeper.ConnectionID, reason string) error
	// Uninstall revokes the grant at the provider, changing nothing here;
	// when it fails the tokens stay.
	Uninstall(ctx context.Context, id tokenkeeper.ConnectionID) error
	// Prune removes connections disconnected or reconnect_required for
	// longer than retention, returning them (with dryRun, those it would).
	Prune(ctx context.Context, retention time.Duration, dryRun bool) ([]*tokenkeeper.Connection, error)
}

// Flow runs connect flows. *connect.Flow implements it. Its failures are
// *connect.FlowError, whose Reason and ReturnURL decide the page or the
// redirect. Implementations must be safe for concurrent use.
type Flow interface {
	// NewLink makes a single-use connect link.
	NewLink(ctx context.Context, req connect.LinkRequest) (*connect.Link, error)
	// OpenLink spends a link and begins a flow bound to binding, returning
	// the provider's authorisation URL; "link_unknown" and "link_expired"
	// are its reasons for a link it cannot open.
	OpenLink(ctx context.Context, token, binding string) (authURL string, err error)
	// Callback finishes the flow from the provider's redirect.
	Callback(ctx context.Context, req connect.CallbackRequest) (*connect.Result, error)
}

// Proxy forwards a request to the provider's API with the connection's
// access token. path is "/" followed by the rest of the request path exactly
// as the client sent it (still percent-encoded, never cleaned), so that the
// proxy can refuse "..", encoded slashes and other tricks itself. The
// request it gets carries no Authorization header. Implementations must be
// safe for concurrent use.
type Proxy interface {
	Forward(w http.ResponseWriter, r *http.Request, id tokenkeeper.ConnectionID, path string)
}

// ConnectPages renders the browser pages of the connect flow: what the end
// user sees. webui.ConnectPages implements it; its methods take only
// standard and root types, so an implementation need not import this
// package. Implementations must write a whole response (headers, status,
// body; the security headers ServeHTTP sets are already there, and may be
// overridden) and be safe for concurrent use.
type ConnectPages interface {
	// Landing writes the 200 page of GET /connect/{token}: what the link is
	// for, and one button, a form that POSTs to the same URL. Only that
	// POST spends the link, so a link preview (a chat app, a mail scanner)
	// that GETs it spends nothing. Landing must not look the link up.
	Landing(w http.ResponseWriter, r *http.Request)
	// Outcome writes the page that ends a flow with no return URL to send
	// the browser to, with status: err is nil when connection id is
	// connected; otherwise it is the failure, a *connect.FlowError (whose
	// Reason the page explains) or an error whose tokenkeeper code says
	// what kind of failure it was. id is "" when unknown.
	Outcome(w http.ResponseWriter, r *http.Request, status int, id tokenkeeper.ConnectionID, err error)
}

// DefaultMaxBodyBytes bounds JSON request bodies when Config.MaxBodyBytes is
// zero.
const DefaultMaxBodyBytes = 64 << 10

// Config configures a [Server]. Keeper, Flow, Proxy, Store, APIKeys, Audit
// and PublicURL are required; every other zero value has the default named
// on its field.
type Config struct {
	// Keeper serves tokens, refreshes, disconnects, revokes and prunes.
	Keeper Keeper
	// Flow makes and opens connect links and finishes callbacks.
	Flow Flow
	// Proxy serves /v1/connections/{id}/proxy/.
	Proxy Proxy
	// Pages renders the connect flow's pages (the landing page of a link,
	// and the success and failure pages). nil means plain built-in pages.
	Pages ConnectPages
	// Store serves the reads of connections (GetConnection and
	// ListConnections only); their tokens are never sent.
	Store tokenkeeper.Store
	// APIKeys authenticates every /v1 call. A key's record is read at most
	// once per APIKeyCacheTTL: a key revoked through this server is refused
	// from the next request on, one revoked elsewhere (another replica, the
	// CLI on the store) within APIKeyCacheTTL.
	APIKeys tokenkeeper.APIKeyStore
	// APIKeyCacheTTL is how long a key's record is answered from memory.
	// Zero means [DefaultAPIKeyCacheTTL] (2s); negative reads the store on
	// every request.
	APIKeyCacheTTL time.Duration
	// Audit records each administrative action after it succeeded. If the
	// entry cannot be appended the action stands (it already happened), the
	// response is unchanged, and the failure is logged at error.
	Audit tokenkeeper.AuditLog
	// PublicURL is the URL browsers and the provider reach this server at,
	// with an optional path prefix: connect links are PublicURL +
	// "/connect/" + token, and the browser-binding cookie is Secure when its
	// scheme is https.
	PublicURL *url.URL
	// Retention is passed to Keeper.Prune by POST /v1/connections/prune; 0
	// makes that route fail with invalid. Negative is invalid.
	Retention time.Duration
	// Webhooks serves /v1/webhook-endpoints (create, list, delete, send a
	// test event, the delivery log); nil answers those routes 404.
	Webhooks Webhooks
	// Events serves GET /v1/connections/{id}/events, the event log; nil
	// answers it 404.
	Events tokenkeeper.EventLog
	// Ready reports whether the server can do its work (the store is
	// reachable, the keys are loaded). Its error is the reason /readyz
	// shows: the Message of a *tokenkeeper.Error, else the error's text, so
	// it must hold no secret. nil means always ready.
	Ready func(ctx context.Context) error
	// Degraded, when Ready passes, reports whether the server works in part
	// only: its error is the reason /readyz shows (with the same rules as
	// Ready's) with status "degraded", still 200, so that a load balancer
	// keeps sending the calls the server can answer. nil means never.
	Degraded func(ctx context.Context) error
	// Registerer receives the HTTP metrics; nil means none are kept.
	Registerer prometheus.Registerer
	// Gatherer is served at /metrics; nil means no /metrics route.
	Gatherer prometheus.Gatherer
	// Logger receives a debug line per request (method, route, status,
	// duration; never a path, a query, a token or a key) and each internal
	// error's cause, once. nil discards.
	Logger *slog.Logger
	// Now tells the time for expires_in, audit entries and API keys; nil
	// means time.Now.
	Now func() time.Time
	// MaxBodyBytes bounds JSON request bodies; 0 means
	// [DefaultMaxBodyBytes]. Negative is invalid.
	MaxBodyBytes int64
}

func validate(cfg *Config) error {
	bad := func(format string, args ...any) error {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "httpapi: "+format, args...)
	}
	switch {
	case cfg.Keeper == nil:
		return bad("Keeper is required")
	case cfg.Flow == nil:
		return bad("Flow is required")
	case cfg.Proxy == nil:
		return bad("Proxy is required")
	case cfg.Store == nil:
		return bad("Store is required")
	case cfg.APIKeys == nil:
		return bad("APIKeys is required: every /v1 call is authenticated")
	case cfg.Audit == nil:
		return bad("Audit is required: administrative actions are audited")
	case cfg.PublicURL == nil:
		return bad("PublicURL is required: connect links are built on it")
	case cfg.Retention < 0:
		return bad("Retention %s is negative", cfg.Retention)
	case cfg.MaxBodyBytes < 0:
		return bad("MaxBodyBytes %d is negative", cfg.MaxBodyBytes)
	}
	u := cfg.PublicURL
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return bad("PublicURL %q is not an absolute http(s) URL without user info, query or fragment", u.Redacted())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return nil
}
