package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
)

// EventLogStarted is the type of the one event (id [LogStartedID], no
// connection) that the first [Reconciler] to run appends to an empty event
// log. Its Time separates connections that existed before the log (whose
// state the reconciler records as a baseline, sending no webhook) from
// those connected since (whose missing events it repairs, webhook
// included). It is never sent.
const EventLogStarted tokenkeeper.EventType = "log_started"

// LogStartedID is the id of the [EventLogStarted] event.
const LogStartedID tokenkeeper.EventID = "evt_log_started"

// Defaults of [ReconcilerConfig].
const (
	DefaultReconcileInterval = 5 * time.Minute
	DefaultReconcileGrace    = time.Minute
)

// ReconcilerConfig configures a [Reconciler]. Store and Log are required;
// every other zero value has the default named on its field.
type ReconcilerConfig struct {
	// Store is read for the connections' states.
	Store tokenkeeper.Store
	// Log is where events are read and repaired.
	Log tokenkeeper.EventLog
	// Interval is how often Run reconciles (and prunes); 0 means
	// [DefaultReconcileInterval].
	Interval time.Duration
	// Grace skips connections written less than Grace ago: the keeper
	// appends its event right after a write, so a fresh write's event may
	// be on its way. 0 means [DefaultReconcileGrace].
	Grace time.Duration
	// MaxAge: a repaired change older than this (by the connection's
	// UpdatedAt) is recorded but sent to no endpoint, since news that old
	// helps nobody; 0 means [DefaultMaxAge], the dispatcher's.
	MaxAge time.Duration
	// Retention, if positive, makes Run prune events older than it (with
	// their finished deliveries; see [tokenkeeper.EventLog.PruneEvents]).
	// Each connection's newest state event is kept, so a connection idle
	// for longer is not taken for one whose event was lost.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a warning per repaired event; nil discards.
	Logger *slog.Logger
	// Registerer receives tokenkeeper_events_repaired_total{type}; nil
	// keeps no metrics.
	Registerer prometheus.Registerer
}

// Reconciler finds state changes whose event was lost (the process
// stopped between the keeper's write and the event's append, or the
// append failed) and appends them. Make it with [NewReconciler]. It is
// safe for concurrent use, and any number of processes may run one on the
// same store: a repair's id is [tokenkeeper.StateEventID] of the
// connection's current generation and the missing type, so two repairs of
// one change are one event.
type Reconciler struct {
	cfg      ReconcilerConfig
	log      *slog.Logger
	repaired *prometheus.CounterVec

	// since is where Run's next pass starts: the connections written at
	// or after it (zero: every connection, as on the first pass and every
	// fullEvery).
	since    time.Time
	lastFull time.Time
}

// Incremental passes. After a full pass, Run's next passes list only the
// connections written since the previous pass's bound, less reconcileSlack
// (replicas' clocks, which write UpdatedAt, may be that far apart); a full
// pass still runs every fullEvery, in case a clock was further off.
const (
	reconcileSlack = 5 * time.Minute
	fullEvery      = 6 * time.Hour
)

// NewReconciler returns a Reconciler. CodeInvalid without Store or Log;
// it fails if the metric cannot be registered.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.Store == nil || cfg.Log == nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "webhook: the reconciler needs a Store and a Log")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultReconcileInterval
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultReconcileGrace
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reconciler{cfg: cfg, log: orDiscard(cfg.Logger)}
	if cfg.Registerer != nil {
		r.repaired = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenkeeper_events_repaired_total",
			Help: "State events the reconciler appended because the change's own event was missing, by type.",
		}, []string{"type"})
		if err := cfg.Registerer.Register(r.repaired); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Run reconciles, and prunes with Retention set, at once and then every
// Interval until ctx ends; it returns ctx's error. A failed pass is logged
// and tried again at the next.
func (r *Reconciler) Run(ctx context.Context) error {
	for {
		now := r.cfg.Now()
		if r.lastFull.IsZero() || now.Sub(r.lastFull) >= fullEvery {
			r.since = time.Time{}
		}
		if _, err := r.reconcile(ctx, r.since, false); err != nil && ctx.Err() == nil {
			r.log.Warn("events: reconciling stopped early; the rest waits for the next pass", "error", err)
		} else if err == nil {
			if r.since.IsZero() {
				r.lastFull = now
			}
			// The pass covered every write before now - Grace.
			r.since = now.Add(-r.cfg.Grace - reconcileSlack)
		}
		if r.cfg.Retention > 0 {
			n, err := r.cfg.Log.PruneEvents(ctx, r.cfg.Now().Add(-r.cfg.Retention), append(tokenkeeper.StateEventTypes(), EventLogStarted))
			switch {
			case err != nil && ctx.Err() == nil:
				r.log.Warn("events: pruning failed", "error", err)
			case n > 0:
				r.log.Info("events: pruned", "events", n, "retention", r.cfg.Retention)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.Interval):
		}
	}
}

// Reconcile makes one pass over every connection not written within
// Grace, and appends, for each whose state the newest state event
// recorded for it does not describe, the events of the missing transition
// (see [Missing]). It returns the events it appended.
func (r *Reconciler) Reconcile(ctx context.Context) ([]*tokenkeeper.StoredEvent, error) {
	return r.reconcile(ctx, time.Time{}, true)
}

// reconcile is Reconcile over the connections written at or after since
// (zero: all of them); it returns the events appended only if collect is
// set (Run's passes keep nothing: a first pass over a million connections
// older than the event log appends a million baselines). It logs, once,
// how many connections older than the event log got their baseline event.
func (r *Reconciler) reconcile(ctx context.Context, since time.Time, collect bool) ([]*tokenkeeper.StoredEvent, error) {
	started, err := r.logStarted(ctx)
	if err != nil {
		return nil, err
	}
	now := r.cfg.Now()
	var out []*tokenkeeper.StoredEvent
	baselines := 0
	defer func() {
		if baselines > 0 {
			r.log.Info("events: recorded the state of connections older than the event log (no webhooks sent for them)", "connections", baselines)
		}
	}()
	var after tokenkeeper.ConnectionID
	for {
		page, err := r.cfg.Store.ListConnections(ctx, tokenkeeper.ConnectionFilter{
			After: after, UpdatedBefore: now.Add(-r.cfg.Grace), UpdatedAfter: since, Limit: 1000,
		})
		if err != nil {
			return out, fmt.Errorf("reconcile events: list connections: %w", err)
		}
		if len(page) == 0 {
			return out, nil
		}
		ids := make([]tokenkeeper.ConnectionID, len(page))
		for i, rec := range page {
			ids[i] = rec.ID
		}
		after = ids[len(ids)-1]
		latest, err := r.cfg.Log.LatestEvents(ctx, ids, tokenkeeper.StateEventTypes())
		if err != nil {
			return out, fmt.Errorf("reconcile events: %w", err)
		}
		for _, rec := range page {
			last := latest[rec.ID]
			missing := Missing(&rec.Connection, last)
			if len(missing) == 0 {
				continue
			}
			got, err := r.repair(ctx, rec, last, missing, started, now)
			if collect {
				out = append(out, got...)
			}
			if last == nil && rec.CreatedAt.Before(started) && len(got) > 0 {
				baselines++
			}
			if err != nil {
				return out, err
			}
		}
		if len(page) < 1000 {
			return out, nil
		}
	}
}

// repair appends missing for rec, once a re-read shows rec unchanged since
// it was listed (a change made meanwhile reports itself).
func (r *Reconciler) repair(ctx context.Context, rec *tokenkeeper.Record, last *tokenkeeper.StoredEvent, missing []tokenkeeper.EventType, started, now time.Time) ([]*tokenkeeper.StoredEvent, error) {
	cur, err := r.cfg.Store.GetConnection(ctx, rec.ID)
	switch {
	case tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reconcile events: %w", err)
	case cur.Generation != rec.Generation:
		return nil, nil
	}
	// Send the repair unless it is stale, or it is the baseline of a
	// connection that existed before the event log did.
	send := now.Sub(rec.UpdatedAt) <= r.cfg.MaxAge && !(last == nil && rec.CreatedAt.Before(started))
	var out []*tokenkeeper.StoredEvent
	for _, t := range missing {
		reason := ""
		if t != tokenkeeper.EventConnected && t != tokenkeeper.EventRecovered {
			reason = rec.LastError
		}
		e := &tokenkeeper.StoredEvent{
			ID: tokenkeeper.StateEventID(rec.ID, rec.Generation, t),
			Event: tokenkeeper.Event{Type: t, ConnectionID: rec.ID, Subject: rec.Subject, Reason: reason,
				Time: rec.UpdatedAt, Generation: rec.Generation},
		}
		fanout := tokenkeeper.Fanout{}
		if send {
			fanout = fanoutOf(t)
		}
		err := r.cfg.Log.AppendEvent(ctx, e, fanout)
		switch tokenkeeper.ErrorCode(err) {
		case "":
		case tokenkeeper.CodeConflict:
			continue // recorded by the keeper, or another reconciler, meanwhile
		default:
			return out, fmt.Errorf("reconcile events: append %s of %s: %w", t, rec.ID, err)
		}
		if r.repaired != nil {
			r.repaired.WithLabelValues(string(t)).Inc()
		}
		if last == nil && rec.CreatedAt.Before(started) {
			// A baseline, not a repair: counted, and logged once per pass.
			r.log.Debug("events: recorded the state of a connection older than the event log", "connection", rec.ID, "event", t)
		} else {
			r.log.Warn("events: repaired a missing event", "connection", rec.ID, "event", t, "generation", rec.Generation, "webhook", send)
		}
		out = append(out, e)
	}
	return out, nil
}

// logStarted returns the Time of the EventLogStarted event, appending it
// first if the log has none: the first reconciler ever to run sets it.
// Start makes sure the event log has its log-started event, appending it
// if this is the first reconciler ever to run. A service calls it before it
// serves anything: a connection it creates is then never older than the
// log, and so never mistaken for one that predates it (whose missing events
// are recorded without webhooks).
func (r *Reconciler) Start(ctx context.Context) error {
	_, err := r.logStarted(ctx)
	return err
}

func (r *Reconciler) logStarted(ctx context.Context) (time.Time, error) {
	for range 2 {
		evs, err := r.cfg.Log.ListEvents(ctx, tokenkeeper.EventFilter{Types: []tokenkeeper.EventType{EventLogStarted}, Limit: 1})
		if err != nil {
			return time.Time{}, fmt.Errorf("reconcile events: %w", err)
		}
		if len(evs) > 0 {
			return evs[0].Time, nil
		}
		e := &tokenkeeper.StoredEvent{ID: LogStartedID, Event: tokenkeeper.Event{
			Type: EventLogStarted, Reason: "the event log starts here", Time: r.cfg.Now().UTC().Truncate(time.Microsecond)}}
		err = r.cfg.Log.AppendEvent(ctx, e, tokenkeeper.Fanout{})
		if err == nil {
			return e.Time, nil
		}
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict {
			return time.Time{}, fmt.Errorf("reconcile events: %w", err)
		}
	}
	return time.Time{}, errors.New("reconcile events: the log-started event was appended and is not found")
}

// Missing returns the state events that would bring a connection whose
// newest recorded state event is last (nil if none) to the state of c, in
// order; none if last already describes it:
//
//   - disconnected: disconnected, unless that was last.
//   - reconnect_required: reconnect_required, unless that was last.
//   - active and degraded: nothing after degraded; degraded after
//     connected or recovered; otherwise connected, then degraded.
//   - active and healthy: nothing after connected or recovered; recovered
//     after degraded; otherwise connected.
func Missing(c *tokenkeeper.Connection, last *tokenkeeper.StoredEvent) []tokenkeeper.EventType {
	var lt tokenkeeper.EventType
	if last != nil {
		lt = last.Type
	}
	healthy := []tokenkeeper.EventType{tokenkeeper.EventConnected, tokenkeeper.EventRecovered}
	switch {
	case c.State == tokenkeeper.StateDisconnected:
		if lt != tokenkeeper.EventDisconnected {
			return []tokenkeeper.EventType{tokenkeeper.EventDisconnected}
		}
	case c.State == tokenkeeper.StateReconnectRequired:
		if lt != tokenkeeper.EventReconnectRequired {
			return []tokenkeeper.EventType{tokenkeeper.EventReconnectRequired}
		}
	case c.State == tokenkeeper.StateActive && c.Degraded():
		switch {
		case lt == tokenkeeper.EventDegraded:
		case slices.Contains(healthy, lt):
			return []tokenkeeper.EventType{tokenkeeper.EventDegraded}
		default:
			return []tokenkeeper.EventType{tokenkeeper.EventConnected, tokenkeeper.EventDegraded}
		}
	case c.State == tokenkeeper.StateActive:
		switch {
		case slices.Contains(healthy, lt):
		case lt == tokenkeeper.EventDegraded:
			return []tokenkeeper.EventType{tokenkeeper.EventRecovered}
		default:
			return []tokenkeeper.EventType{tokenkeeper.EventConnected}
		}
	}
	return nil
}
