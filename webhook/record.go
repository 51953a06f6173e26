package webhook

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
)

// DefaultRecordTimeout bounds one append of an event by [Recorder].
const DefaultRecordTimeout = 5 * time.Second

// Recorder is the [tokenkeeper.EventHandler] that records the keeper's
// events in the [tokenkeeper.EventLog]. Make it with [NewRecorder]. It is
// safe for concurrent use.
//
// A state change (connected, degraded, recovered, reconnect_required,
// disconnected, pruned) gets the id [tokenkeeper.StateEventID] derives from
// the connection, the generation written and the type, so that the
// [Reconciler]'s repair of the same change and this report are one event;
// other events get a random id. The five webhook types are appended with
// a delivery to every enabled endpoint, in the same transaction.
//
// Handle appends synchronously (the keeper calls it after the change is
// persisted), on a context detached from the caller's (a caller that gives
// up does not lose the event) and bounded by Timeout. An append that fails
// is logged at error and counted (tokenkeeper_events_record_errors_total);
// the Reconciler records the lost state change later, with its webhook.
type Recorder struct {
	log     tokenkeeper.EventLog
	cfg     RecorderConfig
	logger  *slog.Logger
	metrics *recorderMetrics
}

// RecorderConfig configures a [Recorder]. Every zero value has the
// default named on its field.
type RecorderConfig struct {
	// Timeout bounds one append; 0 means [DefaultRecordTimeout].
	Timeout time.Duration
	// Logger receives a line per failed append; nil discards.
	Logger *slog.Logger
	// Registerer receives tokenkeeper_events_recorded_total{type} and
	// tokenkeeper_events_record_errors_total; nil keeps no metrics.
	Registerer prometheus.Registerer
	// Enqueued, if set, is called after an event with deliveries was
	// appended (Dispatcher.Notify, so that it goes out at once).
	Enqueued func()
}

// NewRecorder returns a Recorder appending to log. It fails if a metric
// cannot be registered.
func NewRecorder(log tokenkeeper.EventLog, cfg RecorderConfig) (*Recorder, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRecordTimeout
	}
	r := &Recorder{log: log, cfg: cfg, logger: orDiscard(cfg.Logger)}
	if cfg.Registerer != nil {
		m, err := newRecorderMetrics(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		r.metrics = m
	}
	return r, nil
}

var _ tokenkeeper.EventHandler = (*Recorder)(nil)

// Handle records e. See [Recorder].
func (r *Recorder) Handle(ctx context.Context, e tokenkeeper.Event) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()
	se := &tokenkeeper.StoredEvent{ID: eventID(e), Event: e}
	err := r.log.AppendEvent(ctx, se, fanoutOf(e.Type))
	switch tokenkeeper.ErrorCode(err) {
	case "":
		r.metrics.recorded(e.Type)
		if fanoutOf(e.Type).AllEndpoints && r.cfg.Enqueued != nil {
			r.cfg.Enqueued()
		}
	case tokenkeeper.CodeConflict:
		// Recorded already: the reconciler repaired it first.
	default:
		r.metrics.failed()
		r.logger.Error("event not recorded; a state change is recorded later by the reconciler",
			"connection", e.ConnectionID, "event", e.Type, "error", err)
	}
}

// eventID returns the id of e: derived from the change for a state event,
// random otherwise.
func eventID(e tokenkeeper.Event) tokenkeeper.EventID {
	if slices.Contains(tokenkeeper.StateEventTypes(), e.Type) {
		return tokenkeeper.StateEventID(e.ConnectionID, e.Generation, e.Type)
	}
	return tokenkeeper.NewEventID()
}

// fanoutOf returns where an event of type t goes: every endpoint for the
// webhook types, nowhere otherwise.
func fanoutOf(t tokenkeeper.EventType) tokenkeeper.Fanout {
	return tokenkeeper.Fanout{AllEndpoints: slices.Contains(tokenkeeper.WebhookEventTypes(), t)}
}

// orDiscard returns l, or a logger that discards for nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// recorderMetrics are the Recorder's metrics; a nil one records nothing.
type recorderMetrics struct {
	events *prometheus.CounterVec
	errors prometheus.Counter
}

func newRecorderMetrics(reg prometheus.Registerer) (*recorderMetrics, error) {
	m := &recorderMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenkeeper_events_recorded_total",
			Help: "Connection events appended to the event log by this process, by type.",
		}, []string{"type"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenkeeper_events_record_errors_total",
			Help: "Connection events this process could not append (state changes are repaired by the reconciler).",
		}),
	}
	if err := registerAll(reg, m.events, m.errors); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *recorderMetrics) recorded(t tokenkeeper.EventType) {
	if m != nil {
		m.events.WithLabelValues(string(t)).Inc()
	}
}

func (m *recorderMetrics) failed() {
	if m != nil {
		m.errors.Inc()
	}
}

// registerAll registers cs on reg, or none of them.
func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}
