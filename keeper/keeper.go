package keeper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

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
	// exceed RefreshTimeout.
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
}

// Keeper is the refresh authority for the connections in one store. It is
// safe for concurrent use. Call [Keeper.Run] to refresh ahead of expiry,
// and [Keeper.Close] when done.
type Keeper struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	oauth   oauth2.Config
	client  *http.Client
	limiter *rate.Limiter
	sem     chan struct{}

	entries sync.Map // tokenkeeper.ConnectionID -> *entry

	// rejectedUntil (unix nanos, wall clock: an operational pause, not a
	// token time) stops refreshing after the
	// provider rejected the client credentials.
	rejectedUntil atomic.Int64
	rejectedWhy   atomic.Pointer[string]

	// base is the detached context of every refresh: cancelled only when
	// Close gives up waiting.
	base   context.Context
	cancel context.CancelFunc
	// stopping is cancelled when Close starts: flights stop waiting (for a
	// promise, a lease holder, the rate limit) but a sent request completes.
	stopping context.Context
	stop     context.CancelFunc
	flights  sync.WaitGroup
	closed   atomic.Bool
	life     sync.Mutex // orders flights.Add against Close

	// timed: Config.Now was nil, so the real clock drives the live flags.
	timed bool

	// hook, when set by tests, is called at each step of a refresh.
	hook func(step string, id tokenkeeper.ConnectionID)
}

// New returns a Keeper. It fails with [tokenkeeper.CodeInvalid], naming the
// setting, if the configuration is incomplete or inconsistent.
func New(cfg Config) (*Keeper, error) {
	timed := cfg.Now == nil
	if err := cfg.resolve(); err != nil {
		return nil, err
	}
	k := &Keeper{
		cfg:     cfg,
		timed:   timed,
		log:     cfg.Logger,
		now:     cfg.Now,
		client:  cfg.HTTPClient,
		limiter: rate.NewLimiter(rate.Limit(cfg.RefreshRate), cfg.RefreshBurst),
		sem:     make(chan struct{}, cfg.MaxConcurrentRefreshes),
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret.Reveal(),
			Endpoint: oauth2.Endpoint{
				AuthURL:   cfg.Provider.AuthURL,
				TokenURL:  cfg.Provider.TokenURL,
				AuthStyle: oauth2.AuthStyleInHeader,
			},
		},
	}
	k.base, k.cancel = context.WithCancel(context.Background())
	k.stopping, k.stop = context.WithCancel(context.Background())
	return k, nil
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
	def(&c.KeepAlive, 7*24*time.Hour)
	def(&c.ScheduleInterval, time.Second)
	def(&c.DefaultLifetime, 5*time.Minute)
	if c.LeaseTTL <= c.RefreshTimeout {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid,
			"keeper: LeaseTTL (%s) must exceed RefreshTimeout (%s), or a slow refresh outlives its lease", c.LeaseTTL, c.RefreshTimeout)
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

// Owner returns the name this keeper uses in leases and markers.
func (k *Keeper) Owner() string { return k.cfg.Owner }

// Close stops new refreshes, ends flights that have not sent a request
// yet, and waits for those in flight to finish and persist: a sent refresh
// is never abandoned. It gives up after
// 2 x LeaseTTL and then cancels them. After Close, Token still returns a
// cached token within its promise; anything that needs a refresh fails
// with [tokenkeeper.CodeUnavailable]. Close does not close the Store.
// Close is idempotent.
func (k *Keeper) Close() error {
	k.life.Lock()
	already := k.closed.Swap(true)
	k.life.Unlock()
	if already {
		return nil
	}
	k.stop()
	done := make(chan struct{})
	go func() { k.flights.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * k.cfg.LeaseTTL):
		k.log.Error("close: refreshes still in flight after the wait; cancelling them")
		k.cancel()
		<-done
	}
	k.cancel()
	return nil
}

// grace is the drain grace for a token of the given lifetime: DrainGrace,
// but at most a quarter of the lifetime, so that a short-lived token still
// gets a promise.
func (k *Keeper) grace(lifetime time.Duration) time.Duration {
	if lifetime > 0 && lifetime/4 < k.cfg.DrainGrace {
		return lifetime / 4
	}
	return k.cfg.DrainGrace
}

func (k *Keeper) step(s string, id tokenkeeper.ConnectionID) {
	if k.hook != nil {
		k.hook(s, id)
	}
}
