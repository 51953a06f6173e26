package keeper

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
)

// The connections gauge asks the store on scrape, not on every change: the
// count is of the store (every process's connections), not of this
// process's cache, and a scrape every few seconds from several Prometheus
// servers must not turn into as many COUNT queries.
const (
	countTimeout = 2 * time.Second // one CountConnections call
	countMaxAge  = 5 * time.Second // how long an answer is reused
)

// connectionsCollector is tokenkeeper_connections{state}.
type connectionsCollector struct {
	k    *Keeper
	desc *prometheus.Desc

	mu       sync.Mutex // serialises scrapes, so concurrent ones share one query
	at       time.Time  // when counts was read, on the keeper clock
	counts   map[tokenkeeper.State]int
	failing  bool // the last query failed (and was logged)
	hasCount bool
}

func newConnectionsCollector(k *Keeper) *connectionsCollector {
	return &connectionsCollector{k: k, desc: prometheus.NewDesc("tokenkeeper_connections",
		"Connections in the store, by state (all processes' connections, counted at most every 5s).",
		[]string{"state"}, nil)}
}

// Describe sends the gauge's one descriptor.
func (c *connectionsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect sends one sample per state (0 for a state with none), or nothing
// if the store cannot count.
func (c *connectionsCollector) Collect(ch chan<- prometheus.Metric) {
	counts, ok := c.get()
	if !ok {
		return
	}
	for _, s := range []tokenkeeper.State{tokenkeeper.StateActive, tokenkeeper.StateReconnectRequired, tokenkeeper.StateDisconnected} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// get returns the cached counts, or asks the store if they are older than
// countMaxAge (or from the future: the clock went back).
func (c *connectionsCollector) get() (map[tokenkeeper.State]int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.k.now()
	if c.hasCount && now.Sub(c.at) < countMaxAge && !now.Before(c.at) {
		return c.counts, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), countTimeout)
	defer cancel()
	counts, err := c.k.cfg.Store.CountConnections(ctx)
	if err != nil {
		// The cached count stays too old to serve: the next scrape asks again.
		if !c.failing {
			c.failing = true
			c.k.log.Debug("metrics: cannot count connections; the gauge is left out until the store answers", "error", err)
		}
		return nil, false
	}
	c.failing = false
	c.counts, c.at, c.hasCount = counts, now, true
	return counts, true
}
