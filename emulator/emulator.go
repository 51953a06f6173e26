package emulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Default lifetimes, used where a [Config] field is zero.
const (
	DefaultAccessTokenTTL  = 15 * time.Minute
	DefaultRefreshTokenTTL = 60 * 24 * time.Hour
	DefaultCodeTTL         = 60 * time.Second
	// consentTTL bounds how long a consent page may stay open before approval.
	consentTTL = 10 * time.Minute
)

// KnownScopes returns the scopes the emulator knows, taken from Pleo's documentation.
// A client registered without an explicit scope list may request any of them.
func KnownScopes() []string { return append([]string(nil), knownScopes...) }

var knownScopes = []string{
	"accounting-entries:read",
	"accounts:read",
	"accounts:write",
	"export-items:read",
	"export-jobs:read",
	"export-jobs:write",
	"test:test",
	"users:read",
	"users:write",
}

// Client is an OAuth 2.0 client registered with the emulator.
type Client struct {
	// ID and Secret are the client credentials. Both are required.
	ID     string `json:"id"`
	Secret string `json:"secret"`
	// RedirectURIs are matched exactly (no wildcards, no prefix match). At least one.
	RedirectURIs []string `json:"redirect_uris"`
	// Scopes the client may request. Empty means every scope in [KnownScopes].
	Scopes []string `json:"scopes,omitempty"`
	// Name is the application name shown on the consent page and returned by
	// GET /v1/introspect. Empty means the client ID.
	Name string `json:"name,omitempty"`
}

// DemoClient returns the client registered when a [Config] names none.
func DemoClient() Client {
	return Client{
		ID:           "demo-client",
		Secret:       "demo-secret",
		RedirectURIs: []string{"http://localhost:8080/oauth/callback", "http://127.0.0.1:8080/oauth/callback"},
		Name:         "Demo Integration",
	}
}

// Config configures an [Emulator]. The zero value is usable: it registers [DemoClient],
// shows a consent page, and uses the default lifetimes.
type Config struct {
	// Clients are registered at start and after every reset. Empty means [DemoClient].
	Clients []Client
	// AutoApprove skips the consent page: /oauth/authorize redirects at once with a code,
	// consenting for the requested subject, or the first seeded company.
	AutoApprove bool
	// AllowClientSecretPost accepts client credentials in the token request body
	// (client_secret_post). Off by default: Pleo requires HTTP Basic, and a body
	// credential is refused and recorded as a client_auth_method violation.
	AllowClientSecretPost bool
	// JWTTokens issues JWT-shaped tokens whose embedded exp deliberately disagrees with
	// expires_in, to catch clients that parse tokens. Off by default (opaque tokens).
	JWTTokens bool
	// AccessTokenTTL is the access-token lifetime (expires_in). Zero means 15 minutes.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the refresh-token lifetime. Zero means 60 days.
	RefreshTokenTTL time.Duration
	// RefreshTokenJitter adds a random extra lifetime in [0, RefreshTokenJitter) to each
	// refresh token, because Pleo says the lifetime "is not fixed". Zero means none.
	RefreshTokenJitter time.Duration
	// CodeTTL is the authorization-code lifetime. Zero means 60 seconds.
	CodeTTL time.Duration
	// Seed makes fault injection and refresh-token jitter deterministic for a sequential
	// client. Zero means seed 1.
	Seed uint64
	// MaxViolations bounds the violations kept in the report; further ones are only
	// counted. Zero means 10,000.
	MaxViolations int
	// Logger receives one Info line per request (method, path, status, duration), one
	// Warn line per violation, and a line per consent and revocation. Nil means no
	// logging. Tokens, credentials and query strings are never logged.
	Logger *slog.Logger
}

// Emulator is the in-memory Pleo authorisation server, API and control plane. It is an
// http.Handler set: [Emulator.Handler] serves everything on one listener, or
// [Emulator.AuthHandler] and [Emulator.APIHandler] can be split across two.
//
// Create one with [New]; the zero value is not usable. All methods are safe for
// concurrent use.
type Emulator struct {
	cfg    Config
	log    *slog.Logger
	clock  clock
	faults *faultInjector

	stop     chan struct{} // closed by Close
	stopOnce sync.Once

	mu      sync.Mutex
	rng     *rand.Rand // guarded by mu; refresh-token jitter
	clients map[string]*Client
	st      *state
	ledger  *ledger
}

// New returns an emulator configured by cfg. It fails if a client is malformed.
func New(cfg Config) (*Emulator, error) {
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if cfg.CodeTTL == 0 {
		cfg.CodeTTL = DefaultCodeTTL
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.MaxViolations == 0 {
		cfg.MaxViolations = 10000
	}
	for name, d := range map[string]time.Duration{
		"access token TTL": cfg.AccessTokenTTL, "refresh token TTL": cfg.RefreshTokenTTL,
		"code TTL": cfg.CodeTTL,
	} {
		if d < time.Second {
			return nil, fmt.Errorf("emulator: %s %s is shorter than one second", name, d)
		}
	}
	if cfg.RefreshTokenJitter < 0 {
		return nil, fmt.Errorf("emulator: refresh token jitter %s is negative", cfg.RefreshTokenJitter)
	}
	// A lifetime past the clock's range would overflow into the past: a token born dead.
	for name, d := range map[string]time.Duration{
		"access token TTL": cfg.AccessTokenTTL, "refresh token TTL plus jitter": cfg.RefreshTokenTTL + cfg.RefreshTokenJitter,
		"code TTL": cfg.CodeTTL,
	} {
		if d > maxOffset || d < 0 {
			return nil, fmt.Errorf("emulator: %s is longer than %s", name, maxOffset)
		}
	}
	if len(cfg.Clients) == 0 {
		cfg.Clients = []Client{DemoClient()}
	}
	if cfg.MaxViolations < 0 {
		return nil, fmt.Errorf("emulator: MaxViolations %d is negative", cfg.MaxViolations)
	}
	e := &Emulator{cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.faults = newFaultInjector(cfg.Seed)
	if err := e.resetLocked(); err != nil {
		return nil, err
	}
	return e, nil
}

// resetLocked restores the state at start: the configured clients, the seeded data, an
// empty ledger. The caller holds mu, or owns e exclusively.
func (e *Emulator) resetLocked() error {
	e.clients = map[string]*Client{}
	for _, c := range e.cfg.Clients {
		if err := e.addClientLocked(c); err != nil {
			return err
		}
	}
	e.rng = rand.New(rand.NewPCG(e.cfg.Seed, e.cfg.Seed^0x9e3779b97f4a7c15))
	e.st = newState()
	e.ledger = newLedger(e.cfg.MaxViolations)
	return nil
}

// Close cuts short every injected latency: requests waiting on one are dropped, and so is
// any later request that draws a latency. Everything else keeps working. [Server.Close]
// calls it; call it yourself when serving [Emulator.Handler] from your own server. Close
// is idempotent.
func (e *Emulator) Close() {
	e.stopOnce.Do(func() { close(e.stop) })
}

// Reset forgets every authorisation, token, code, violation, fault and client added at run
// time, returns the clock to the present, and restarts the seeded random sequences (faults
// and jitter) from Config.Seed. Clients from [Config] stay registered.
func (e *Emulator) Reset() {
	e.mu.Lock()
	defer e.unlock()
	_ = e.resetLocked() // the configured clients were validated by New
	e.clock.reset()
	e.faults.reset(e.cfg.Seed)
}

// AddClient registers c, replacing any client with the same ID. It fails if c is malformed.
func (e *Emulator) AddClient(c Client) error {
	e.mu.Lock()
	defer e.unlock()
	return e.addClientLocked(c)
}

// Clients returns the registered clients, sorted by ID.
func (e *Emulator) Clients() []Client {
	e.mu.Lock()
	defer e.unlock()
	out := make([]Client, 0, len(e.clients))
	for _, c := range e.clients {
		cp := *c
		cp.RedirectURIs = append([]string(nil), c.RedirectURIs...)
		cp.Scopes = append([]string(nil), c.Scopes...)
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (e *Emulator) addClientLocked(c Client) error {
	if err := c.validate(); err != nil {
		return err
	}
	cp := c
	cp.RedirectURIs = append([]string(nil), c.RedirectURIs...)
	if len(cp.Scopes) == 0 {
		cp.Scopes = KnownScopes()
	} else {
		cp.Scopes = append([]string(nil), c.Scopes...)
	}
	if cp.Name == "" {
		cp.Name = cp.ID
	}
	e.clients[c.ID] = &cp
	return nil
}

func (c Client) validate() error {
	if c.ID == "" || c.Secret == "" {
		return errors.New("emulator: a client needs an id and a secret")
	}
	if len(c.RedirectURIs) == 0 {
		return fmt.Errorf("emulator: client %q needs at least one redirect URI", c.ID)
	}
	for _, raw := range c.RedirectURIs {
		u, err := url.Parse(raw)
		if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
			return fmt.Errorf("emulator: client %q: redirect URI %q must be an absolute URL without a fragment (RFC 6749 §3.1.2)", c.ID, raw)
		}
	}
	for _, s := range c.Scopes {
		if !isKnownScope(s) {
			return fmt.Errorf("emulator: client %q: unknown scope %q (known: %s)", c.ID, s, strings.Join(knownScopes, " "))
		}
	}
	return nil
}

// ParseClient parses the --client flag form ID:SECRET:REDIRECT_URI. The redirect URI may
// itself contain colons.
func ParseClient(s string) (Client, error) {
	id, rest, ok1 := strings.Cut(s, ":")
	secret, redirect, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		// The value is not quoted: it may hold the client secret.
		return Client{}, errors.New("emulator: a client must be given as ID:SECRET:REDIRECT_URI")
	}
	c := Client{ID: id, Secret: secret, RedirectURIs: []string{redirect}}
	return c, c.validate()
}

func isKnownScope(s string) bool {
	for _, k := range knownScopes {
		if k == s {
			return true
		}
	}
	return false
}

// Handler serves the authorisation server, the API and the control plane on one listener.
func (e *Emulator) Handler() http.Handler {
	mux := http.NewServeMux()
	e.routeAuth(mux)
	e.routeAPI(mux)
	e.routeControl(mux)
	return e.logRequests(mux)
}

// AuthHandler serves the authorisation server (/oauth/...) and the control plane
// (/_emulator/...), for use with a separate API listener.
func (e *Emulator) AuthHandler() http.Handler {
	mux := http.NewServeMux()
	e.routeAuth(mux)
	e.routeControl(mux)
	return e.logRequests(mux)
}

// APIHandler serves only Pleo's API paths (/v1/..., /v2/...).
func (e *Emulator) APIHandler() http.Handler {
	mux := http.NewServeMux()
	e.routeAPI(mux)
	return e.logRequests(mux)
}

// logRequests logs one line per request at Info: method, path (never the query, which
// may carry a code), status and duration. Headers and bodies, which carry credentials and
// tokens, are never logged. With a logger that discards Info, it adds nothing.
func (e *Emulator) logRequests(next http.Handler) http.Handler {
	if !e.log.Enabled(context.Background(), slog.LevelInfo) {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			if p := recover(); p != nil {
				// A dropped connection (an injected fault) is an ErrAbortHandler panic:
				// log it, then let net/http close the connection.
				e.log.Info("request", "method", r.Method, "path", r.URL.Path, "outcome", "connection dropped",
					"duration", time.Since(start))
				panic(p)
			}
			e.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", status,
				"duration", time.Since(start))
		}()
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController and http.MaxBytesReader reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (e *Emulator) routeAuth(mux *http.ServeMux) {
	mux.HandleFunc("/oauth/authorize", e.handleAuthorize)
	mux.HandleFunc("/oauth/authorize/consent", e.handleConsent)
	mux.HandleFunc("/oauth/token", e.handleToken)
	mux.HandleFunc("/oauth/token/introspect", e.handleIntrospect)
}
