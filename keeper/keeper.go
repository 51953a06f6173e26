package keeper

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/tokenkeeper/tokenkeeper"
)

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
	// feedDone is closed when the change feed's goroutine ends (nil: the
	// store has no feed); feedUp is true while the feed is listening.
	feedDone chan struct{}
	feedUp   atomic.Bool
	closed   atomic.Bool
	life     sync.Mutex // orders flights.Add against Close

	// timed: Config.Now was nil, so the real clock drives the live flags.
	timed bool

	// metrics is nil without Config.Registerer.
	metrics *metrics
	// prunePage is the page size of Prune's listings; keepAlivePage how
	// many connections a step of the keep-alive scan lists and refreshes
	// before it lists more.
	prunePage, keepAlivePage int

	// hook, when set by tests, is called at each step of a refresh.
	hook func(step string, id tokenkeeper.ConnectionID)
}

// New returns a Keeper. It fails with [tokenkeeper.CodeInvalid], naming the
// setting, if the configuration is incomplete or inconsistent, or if
// Config.Registerer refuses the metrics (it already holds them).
func New(cfg Config) (*Keeper, error) {
	timed := cfg.Now == nil
	if err := cfg.resolve(); err != nil {
		return nil, err
	}
	k := &Keeper{
		cfg:           cfg,
		timed:         timed,
		log:           cfg.Logger,
		now:           cfg.Now,
		client:        cfg.HTTPClient,
		limiter:       rate.NewLimiter(rate.Limit(cfg.RefreshRate), cfg.RefreshBurst),
		sem:           make(chan struct{}, cfg.MaxConcurrentRefreshes),
		prunePage:     200,
		keepAlivePage: 200,
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
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer, k)
		if err != nil {
			return nil, err
		}
		k.metrics = m
	}
	k.base, k.cancel = context.WithCancel(context.Background())
	k.stopping, k.stop = context.WithCancel(context.Background())
	if feed, ok := cfg.Store.(tokenkeeper.ChangeFeed); ok && !cfg.NoChangeFeed {
		k.feedDone = make(chan struct{})
		go func() {
			defer close(k.feedDone)
			k.watch(k.stopping, feed)
		}()
	}
	return k, nil
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
	if k.feedDone != nil {
		<-k.feedDone
	}
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
