package keeper

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
)

// The outcomes of tokenkeeper_refreshes_total: one per token request.
const (
	outcomeOK             = "ok"              // a new token set (committed or not)
	outcomeTransient      = "transient"       // never sent (network), 429, or 5xx: retried
	outcomeInvalidGrant   = "invalid_grant"   // invalid_grant or invalid_token: the grant is dead
	outcomeClientRejected = "client_rejected" // invalid_client or unauthorized_client
	outcomeLost           = "lost"            // sent, no usable answer (timeout, reset, garbled 200)
	outcomeRejected       = "rejected"        // another 4xx: not retried
)

// outcome is the tokenkeeper_refreshes_total label of a token request's
// class.
func (c class) outcome() string {
	switch c {
	case classOK:
		return outcomeOK
	case classDead:
		return outcomeInvalidGrant
	case classClient:
		return outcomeClientRejected
	case classLost:
		return outcomeLost
	case classRejected:
		return outcomeRejected
	}
	return outcomeTransient // classNotSent, classBusy, classServer
}

// metrics are the keeper's Prometheus metrics. A nil *metrics records
// nothing (Config.Registerer was nil).
type metrics struct {
	refreshes       *prometheus.CounterVec
	refreshDuration prometheus.Histogram
	leaseWait       prometheus.Histogram
	schedulerLag    prometheus.Histogram
	pruned          prometheus.Counter
	suppressed      prometheus.Counter
	feedDrops       prometheus.Counter
	feedResyncs     prometheus.Counter
}

// newMetrics creates the metrics and registers them, with the connections
// gauge, on reg. On a clash it unregisters what it registered and fails.
func newMetrics(reg prometheus.Registerer, k *Keeper) (*metrics, error) {
	m := &metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenkeeper_refreshes_total",
			Help: "Token refresh requests, by outcome: ok, transient (not sent, 429, 5xx), invalid_grant, client_rejected, lost (sent, outcome unknown), rejected (another 4xx).",
		}, []string{"outcome"}),
		refreshDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenkeeper_refresh_duration_seconds",
			Help:    "Round trip of each token refresh request to the provider's token endpoint.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		leaseWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenkeeper_lease_wait_seconds",
			Help:    "How long a Token or Invalidate caller waited for a refresh it did not run itself: another caller's flight in this process, or another owner's lease.",
			Buckets: []float64{.001, .005, .025, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		schedulerLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenkeeper_scheduler_lag_seconds",
			Help:    "How late the scheduler started a planned refresh, after the connection's NextRefreshAt (0 if not late).",
			Buckets: []float64{0, .1, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenkeeper_pruned_total",
			Help: "Connections removed by retention.",
		}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenkeeper_refreshes_suppressed_total",
			Help: "Refreshes that a refused token (a 401 reported to Invalidate) asked for and that were not made, because the provider refused the token issued in place of an earlier refused one within RejectCooldown: a refresh cannot fix that.",
		}),
		feedDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenkeeper_coherence_drops_total",
			Help: "Cached access tokens dropped because the store's change feed reported that another process wrote the connection: any change of its generation (a refresh, a forced refresh, a disconnect, a reconnect, metadata, a re-seal); the next use reads the store.",
		}),
		feedResyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenkeeper_change_feed_resyncs_total",
			Help: "Times the store's change feed started listening (1 at start; more after breaks): each time, every cached token is dropped and read again on its next use.",
		}),
	}
	for _, o := range []string{outcomeOK, outcomeTransient, outcomeInvalidGrant, outcomeClientRejected, outcomeLost, outcomeRejected} {
		m.refreshes.WithLabelValues(o) // every outcome is exported from the start, at 0
	}
	all := []prometheus.Collector{m.refreshes, m.refreshDuration, m.leaseWait, m.schedulerLag, m.pruned, m.suppressed, m.feedDrops, m.feedResyncs, newConnectionsCollector(k)}
	if _, ok := k.cfg.Store.(tokenkeeper.ChangeFeed); ok && !k.cfg.NoChangeFeed {
		all = append(all, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokenkeeper_change_feed_up",
			Help: "1 while the store's change feed (PostgreSQL LISTEN/NOTIFY) is listening and its probes come back; 0 while it is down: other replicas' forced refreshes and disconnects then reach this one only when its cached tokens' promises end. Only with a store that has a feed.",
		}, func() float64 {
			if k.feedUp.Load() {
				return 1
			}
			return 0
		}))
	}
	var done []prometheus.Collector
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			if errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "keeper: Registerer already holds tokenkeeper's metrics (one Keeper per Registerer): %w", err)
			}
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "keeper: Registerer refused tokenkeeper's metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

// attempt records one token request that was issued.
func (m *metrics) attempt(c class, took time.Duration) {
	if m == nil {
		return
	}
	m.refreshes.WithLabelValues(c.outcome()).Inc()
	m.refreshDuration.Observe(took.Seconds())
}

// waited records a caller's wait for someone else's refresh.
func (m *metrics) waited(d time.Duration) {
	if m == nil {
		return
	}
	m.leaseWait.Observe(d.Seconds())
}

// late records how late the scheduler started a planned refresh.
func (m *metrics) late(d time.Duration) {
	if m == nil {
		return
	}
	m.schedulerLag.Observe(max(d, 0).Seconds())
}

// prunedOne counts a connection removed by retention.
func (m *metrics) prunedOne() {
	if m == nil {
		return
	}
	m.pruned.Inc()
}

// suppressedOne counts a refresh declined by Config.RejectCooldown.
func (m *metrics) suppressedOne() {
	if m == nil {
		return
	}
	m.suppressed.Inc()
}

// feedDrop counts a cached token dropped on a change from the feed.
func (m *metrics) feedDrop() {
	if m == nil {
		return
	}
	m.feedDrops.Inc()
}

// feedResync counts a (re)start of the change feed.
func (m *metrics) feedResync() {
	if m == nil {
		return
	}
	m.feedResyncs.Inc()
}
