// Package connect runs the OAuth 2.0 authorization code flow with PKCE
// (RFC 6749 section 4.1, RFC 7636 with S256) that creates a connection, or
// reconnects one whose grant died.
//
// [Flow.Begin] starts a flow for a connection id and returns the provider's
// authorisation URL to send the user to. [Flow.Callback] takes the query of
// the redirect back, checks its state (and, if the flow was begun with one,
// the binding to the browser that began it) before anything else, exchanges
// the code for tokens, asks the provider who the grant is for (GET
// {API}/v1/introspect), and hands the tokens and the subject together to a
// [Keeper] to persist in one write.
//
// The server side of a flow is a [tokenkeeper.Session] in the
// [tokenkeeper.Store]: the SHA-256 of the state (never the state itself) and
// the PKCE verifier sealed by a [tokenkeeper.Sealer]. A copy of the
// database therefore can neither forge a callback nor redeem a stolen code.
// Each state works once, and only until its session expires. A browser
// binding (BeginRequest.Binding) is not stored either: it is part of the
// associated data the verifier is sealed with. Begin deletes
// long-expired sessions itself, at most once a minute per Flow, so there is
// nothing to schedule.
//
// A connect link ([Flow.NewLink], [Flow.OpenLink]) lets a backend start a
// flow for a browser it cannot redirect itself: the backend makes a
// single-use link for a connection id and return URL, sends the end user
// to it, and opening it begins the flow bound to the browser that opened
// it. A link is a session too, with no verifier, keyed by the SHA-256 of
// "tokenkeeper/link", a NUL byte and the token: never the plain SHA-256 a
// state is stored under, so a link token is never taken for a state, nor a
// state for a link. Each link works once and until it expires (15 minutes
// by default, at most 7 days).
//
// The package is an orchestrator: it takes the store, the sealer and the
// keeper as interfaces and never imports a concrete adapter.
package connect

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
)

// Keeper persists what a finished flow produced. *keeper.Keeper implements
// it. Implementations must be safe for concurrent use.
type Keeper interface {
	// Connect stores the grant for g.ConnectionID: it creates the
	// connection, or for an existing id replaces its token set, clears
	// reconnect_required or disconnected, and keeps its metadata. It must
	// write g.Subject (a subject URN such as "urn:pleo:company:<uuid>", or
	// "" if unknown) in the same write as the tokens, so that a concurrent
	// Connect for the same id never leaves one grant's tokens with the
	// other's subject. It returns the connection as stored.
	Connect(ctx context.Context, g tokenkeeper.Grant) (*tokenkeeper.Connection, error)
}

// DefaultSessionTTL is how long a user has between [Flow.Begin] and the
// callback, when Config.SessionTTL is zero.
const DefaultSessionTTL = 10 * time.Minute

// Config configures a [Flow]. Provider, ClientID, ClientSecret, RedirectURL,
// Store, Sealer and Keeper are required; every other zero value has a
// documented default.
type Config struct {
	// Provider says where the authorisation, token and API endpoints are.
	Provider tokenkeeper.Provider
	// ClientID and ClientSecret are the OAuth client's credentials. They are
	// sent with HTTP Basic (client_secret_basic, RFC 6749 section 2.3.1),
	// the only method Pleo supports.
	ClientID     string
	ClientSecret tokenkeeper.Secret
	// RedirectURL is the registered redirect URI whose handler calls
	// [Flow.Callback]. It must match the registration exactly.
	RedirectURL string
	// Scopes are asked for in every flow (RFC 6749 section 3.3). nil asks
	// for none, leaving the provider to grant the client's default scopes.
	Scopes []string

	// Store keeps the flow sessions. The Flow uses only its session methods.
	Store tokenkeeper.Store
	// Sealer seals the PKCE verifier in the session.
	Sealer tokenkeeper.Sealer
	// Keeper persists the grant: the tokens and the subject, together.
	Keeper Keeper

	// AllowedReturnURLs are the absolute URLs a return URL may start with:
	// the scheme and host (with port) must equal one entry's, and the path
	// must equal the entry's path or lie below it ("https://app.example/settings"
	// allows /settings and /settings/x, not /settings-old). Relative return
	// URLs ("/path", never "//host") are always allowed. nil allows only
	// relative ones. This keeps the callback from becoming an open
	// redirector.
	AllowedReturnURLs []string
	// SessionTTL is how long a flow may take. Zero means [DefaultSessionTTL].
	SessionTTL time.Duration
	// LinkTTL is how long a connect link lives when LinkRequest.TTL is
	// zero. Zero means [DefaultLinkTTL]; at most [MaxLinkTTL].
	LinkTTL time.Duration
	// HTTPClient sends the token and introspection requests. nil means
	// http.DefaultClient. Its own timeout applies, and [ExchangeTimeout]
	// bounds all of a callback's requests together.
	HTTPClient *http.Client
	// Now tells the time, for sessions and token expiries. nil means
	// time.Now.
	Now func() time.Time
	// Logger receives a line per connection made and a warning per step that
	// failed without failing the flow, and a warning per callback from
	// the wrong browser. It never receives a code, state, verifier, browser
	// binding or token. nil discards.
	Logger *slog.Logger
}

// Flow runs connect flows. Create it with [New]; the zero Flow is not
// usable. A Flow is safe for concurrent use, and many Flows (in many
// processes) may share one Store: a callback may reach any of them.
type Flow struct {
	// The client secret stays a Secret until a request is built: an
	// oauth2.Config held here would print it with %v.
	clientID    string
	secret      tokenkeeper.Secret
	redirectURL string
	provider    tokenkeeper.Provider
	scopes      []string
	store       tokenkeeper.Store
	sealer      tokenkeeper.Sealer
	keeper      Keeper
	allowed     []allowedPrefix
	ttl         time.Duration
	linkTTL     time.Duration
	client      *http.Client
	now         func() time.Time
	log         *slog.Logger
	lastPruneNs atomic.Int64 // the f.now() of the last prune, in Unix ns; 0 never
}

// New returns a Flow for cfg. It fails with [tokenkeeper.CodeInvalid], in a
// message naming the field, if a required field is missing or a field is
// malformed.
func New(cfg Config) (*Flow, error) {
	allowed, err := validate(&cfg)
	if err != nil {
		return nil, err
	}
	f := &Flow{
		clientID:    cfg.ClientID,
		secret:      cfg.ClientSecret,
		redirectURL: cfg.RedirectURL,
		provider:    cfg.Provider,
		scopes:      append([]string(nil), cfg.Scopes...),
		store:       cfg.Store,
		sealer:      cfg.Sealer,
		keeper:      cfg.Keeper,
		allowed:     allowed,
		ttl:         cfg.SessionTTL,
		linkTTL:     cfg.LinkTTL,
		client:      cfg.HTTPClient,
		now:         cfg.Now,
		log:         cfg.Logger,
	}
	if f.ttl == 0 {
		f.ttl = DefaultSessionTTL
	}
	if f.linkTTL == 0 {
		f.linkTTL = DefaultLinkTTL
	}
	if f.client == nil {
		f.client = http.DefaultClient
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f, nil
}

// oauthConfig returns the golang.org/x/oauth2 view of the client. It holds
// the revealed secret, so it lives only as long as one request.
func (f *Flow) oauthConfig() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     f.clientID,
		ClientSecret: f.secret.Reveal(),
		RedirectURL:  f.redirectURL,
		Scopes:       f.scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   f.provider.AuthURL,
			TokenURL:  f.provider.TokenURL,
			AuthStyle: oauth2.AuthStyleInHeader, // Pleo: client_secret_basic only
		},
	}
}
