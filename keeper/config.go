package keeper

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
)

// Config configures a [Keeper]. Store, Sealer, Provider and ClientID are
// required; every other zero value means the default named on the field.
type Config struct {
	Store    tokenkeeper.Store
	Sealer   tokenkeeper.Sealer
	Provider tokenkeeper.Provider
	// ClientID and ClientSecret authenticate the integration at the token
	// endpoint with client_secret_basic (RFC 6749 section 2.3.1).
	ClientID     string
	ClientSecret tokenkeeper.Secret

	// Owner names this keeper in leases and markers, and must be unique
	// among the keepers sharing a store: the store lets an owner re-take its
	// own lease. "" means a random id ("keeper-<hex>"), new for each New, so
	// a restarted process is a new owner.
	Owner string
	// Events receives connection events; nil drops them.
	Events tokenkeeper.EventHandler
	// Logger receives one record per refresh attempt and every failure; nil
	// discards. Tokens are never logged.
	Logger *slog.Logger
	// HTTPClient sends token requests; nil means a client with
	// http.DefaultTransport. Its Timeout is ignored: RefreshTimeout bounds
	// each request.
	HTTPClient *http.Client
	// Now is the clock for token expiry and planning; nil means time.Now.
	// Leases use the store's own clock.
	Now func() time.Time

	// RefreshTimeout bounds one token request, on a context detached from
	// every caller; 0 means 30s.
	RefreshTimeout time.Duration
	// LeaseTTL is how long a lease lasts unless renewed; it is renewed every
	// third of it while a refresh runs. 0 means 3 x RefreshTimeout. It must
	// be at least twice RefreshTimeout.
	LeaseTTL time.Duration
	// DrainGrace is how long after a token's promised ExpiresAt the keeper
	// waits before refreshing, for calls already on their way; 0 means 1s.
	DrainGrace time.Duration
	// DrainWait bounds how long a refresh waits, after the grace, for the
	// keeper's own HTTP calls still in flight with the old token; 0 means 5s.
	DrainWait time.Duration
	// MaxAttempts bounds the token requests of one refresh; 0 means 4.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the exponential backoff with full
	// jitter between attempts; 0 means 250ms and 10s.
	BackoffBase, BackoffMax time.Duration
	// MaxRetryAfter is the longest Retry-After waited for within one
	// refresh; a longer one ends the refresh and becomes its cooldown. 0
	// means 10s.
	MaxRetryAfter time.Duration
	// FailureCooldown is how long a connection whose refresh failed
	// transiently keeps its old token (and promise) before the next try; 0
	// means 30s. It is capped by the token's expiry.
	FailureCooldown time.Duration
	// ClientRejectedCooldown is how long refreshing stops after the provider
	// rejects the client credentials, before one probe; 0 means 1 minute.
	ClientRejectedCooldown time.Duration
	// RejectCooldown bounds the refreshes that refused tokens cause (401s
	// reported to [Keeper.Invalidate], by the Transport or a caller). The
	// first refusal of a connection's current token always refreshes. But
	// if the provider also refuses the token handed out in its place, less
	// than RejectCooldown after it was handed out and while it is still
	// current, no refresh is made: a provider that refuses fresh tokens (a
	// permission problem answered as invalid_token, say) is not cured by
	// one, and each refresh rotates the refresh token, breaks the promise
	// of the tokens handed out and spends the rate limit. Invalidate then
	// returns the refused token itself; the first refusal after the
	// cooldown refreshes once more. The memory is per process. 0 means 30s;
	// negative disables the guard (every refusal of the current token
	// refreshes).
	RejectCooldown time.Duration
	// RefreshRate and RefreshBurst limit token requests per second to the
	// provider; 0 means 20 per second with a burst of 20.
	RefreshRate  float64
	RefreshBurst int
	// MaxConcurrentRefreshes caps token requests in flight; 0 means 8.
	MaxConcurrentRefreshes int
	// KeepAlive refreshes any active connection whose refresh token is
	// older than this, so refresh tokens never expire unnoticed (Pleo
	// guarantees only 60 days); 0 means 7 days, negative disables.
	KeepAlive time.Duration
	// ScheduleInterval is how often [Keeper.Run] looks for due proactive
	// refreshes; 0 means 1s. Keep-alive scans run every 60 intervals.
	ScheduleInterval time.Duration
	// DefaultLifetime is assumed when a token response has no expires_in;
	// 0 means 5 minutes.
	DefaultLifetime time.Duration

	// Registerer receives the keeper's metrics (listed in the package
	// documentation) when New runs; nil means no metrics. Register one
	// Keeper per Registerer: a second fails New. Nothing is registered
	// with prometheus.DefaultRegisterer unless it is passed here.
	Registerer prometheus.Registerer
	// NoChangeFeed leaves the store's change feed (tokenkeeper.ChangeFeed)
	// unused: for a short-lived keeper, such as a command-line tool's, that
	// serves no cached tokens and need not hold a listening connection. A
	// long-lived keeper on a store with a feed should use it.
	NoChangeFeed bool
	// Retention makes [Keeper.Run] remove connections that have been
	// disconnected, or waiting for a reconnect, for longer than this (see
	// [Keeper.Prune]); 0 means never, negative is invalid.
	Retention time.Duration
	// PruneInterval is how often Run prunes when Retention is set; 0 means
	// 1h. The first prune comes shortly after Run starts (after the lesser
	// of PruneInterval and 10 x ScheduleInterval).
	PruneInterval time.Duration
}

func (c *Config) resolve() error {
	switch {
	case c.Store == nil:
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "keeper: Store is required")
	case c.Sealer == nil:
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "keeper: Sealer is required: tokens are sealed at rest")
	case c.ClientID == "":
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "keeper: ClientID is required")
	}
	if err := c.Provider.Validate(); err != nil {
		return err
	}
	if c.Owner == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		c.Owner = "keeper-" + hex.EncodeToString(b)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: http.DefaultTransport}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.RefreshTimeout, 30*time.Second)
	def(&c.LeaseTTL, 3*c.RefreshTimeout)
	def(&c.DrainGrace, time.Second)
	def(&c.DrainWait, 5*time.Second)
	def(&c.BackoffBase, 250*time.Millisecond)
	def(&c.BackoffMax, 10*time.Second)
	def(&c.MaxRetryAfter, 10*time.Second)
	def(&c.FailureCooldown, 30*time.Second)
	def(&c.ClientRejectedCooldown, time.Minute)
	def(&c.RejectCooldown, 30*time.Second)
	def(&c.KeepAlive, 7*24*time.Hour)
	def(&c.ScheduleInterval, time.Second)
	def(&c.DefaultLifetime, 5*time.Minute)
	def(&c.PruneInterval, time.Hour)
	if c.Retention < 0 || c.PruneInterval < 0 {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "keeper: Retention and PruneInterval may not be negative")
	}
	if c.LeaseTTL < 2*c.RefreshTimeout {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid,
			"keeper: LeaseTTL (%s) must be at least twice RefreshTimeout (%s): a request is sent only while the lease surely lasts RefreshTimeout longer, and the lease is renewed every third of LeaseTTL", c.LeaseTTL, c.RefreshTimeout)
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 4
	}
	if c.RefreshRate == 0 {
		c.RefreshRate = 20
	}
	if c.RefreshBurst == 0 {
		c.RefreshBurst = 20
	}
	if c.MaxConcurrentRefreshes == 0 {
		c.MaxConcurrentRefreshes = 8
	}
	if c.MaxAttempts < 1 || c.RefreshRate < 0 || c.RefreshBurst < 1 || c.MaxConcurrentRefreshes < 1 {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "keeper: MaxAttempts, RefreshRate, RefreshBurst and MaxConcurrentRefreshes must be positive")
	}
	return nil
}
