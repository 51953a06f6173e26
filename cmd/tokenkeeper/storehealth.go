package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
)

// storeHealthInterval is how often serve checks that the store answers, and
// storeHealthTimeout how long one check may take.
const (
	storeHealthInterval = 2 * time.Second
	storeHealthTimeout  = 2 * time.Second
)

// storeHealth follows whether the store answers, for /readyz and the
// tokenkeeper_store_up gauge. While it does not (a PostgreSQL failover or
// outage), the service keeps serving every cached token within its promise
// and refreshes nothing (a refresh needs the lease, and the lease is in the
// store); /readyz says so with status "degraded" but stays 200, so that a
// load balancer keeps sending this replica the calls it can still answer.
// Each check uses the store's pool, so the pool's own reconnecting is what
// brings the service back: nothing needs a restart.
type storeHealth struct {
	st  tokenkeeper.Store
	log *slog.Logger

	mu    sync.Mutex
	err   error     // nil while the store answers
	since time.Time // when the current state began
	queue float64   // the notification queue's usage, if the store has one
}

// notifyQueue is a store with a notification queue to watch (PostgreSQL's
// LISTEN/NOTIFY: see postgres.Store.NotifyQueueUsage).
type notifyQueue interface {
	NotifyQueueUsage(ctx context.Context) (float64, error)
}

func newStoreHealth(st tokenkeeper.Store, log *slog.Logger, reg prometheus.Registerer) (*storeHealth, error) {
	h := &storeHealth{st: st, log: log, since: time.Now()}
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokenkeeper_store_up",
		Help: "1 while the store (the database) answers, 0 while it does not: cached tokens are still served within their promise, and nothing is refreshed (see /readyz for why).",
	}, func() float64 {
		if h.Err() != nil {
			return 0
		}
		return 1
	})
	if err := reg.Register(up); err != nil {
		return nil, err
	}
	if _, ok := st.(notifyQueue); ok {
		usage := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokenkeeper_store_notify_queue_usage",
			Help: "How full PostgreSQL's notification queue is, 0 to 1 (pg_notification_queue_usage()), read with each store check. A listener that stops reading pins it; when it is full, every commit that notifies fails: alert well before (see docs/operations.md).",
		}, func() float64 {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.queue
		})
		if err := reg.Register(usage); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Err returns why the store did not answer the last check, or nil.
func (h *storeHealth) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Run checks the store every storeHealthInterval until ctx ends.
func (h *storeHealth) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = storeHealthInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		h.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check asks the store once and records the answer, logging each change.
func (h *storeHealth) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, storeHealthTimeout)
	err := ping(cctx, h.st)
	var queue float64
	var qerr error
	if q, ok := h.st.(notifyQueue); ok && err == nil {
		queue, qerr = q.NotifyQueueUsage(cctx)
	}
	cancel()
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil && h.err == nil:
		h.log.Error("the store does not answer: serving cached tokens only, refreshing nothing, until it is back", "error", err)
		h.since = time.Now()
	case err == nil && h.err != nil:
		h.log.Info("the store answers again", "down_for", time.Since(h.since).Round(time.Millisecond).String())
		h.since = time.Now()
	}
	h.err = err
	if qerr == nil {
		h.queue = queue
	}
}

// ping asks st whether it answers: Ping if it has one, else a lookup of a
// connection that does not exist.
func ping(ctx context.Context, st tokenkeeper.Store) error {
	if p, ok := st.(tokenkeeper.Pinger); ok {
		return p.Ping(ctx)
	}
	_, err := st.GetConnection(ctx, "readyz-probe")
	if err != nil && tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
		return err
	}
	return nil
}

// degraded is /readyz's degraded verdict: the store does not answer.
func (h *storeHealth) degraded(context.Context) error {
	if h.Err() != nil {
		return errors.New("the store is not reachable: cached tokens are served within their promise; nothing is refreshed until it is back")
	}
	return nil
}
