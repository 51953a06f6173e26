package webhook

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
)

// Defaults of [Config].
const (
	DefaultTimeout      = 10 * time.Second
	DefaultPollInterval = time.Second
	DefaultBatch        = 32
	DefaultConcurrency  = 8
	DefaultMinBackoff   = 5 * time.Second
	DefaultMaxBackoff   = time.Hour
	DefaultMaxAttempts  = 20
	DefaultMaxAge       = 24 * time.Hour
)

// Config configures a [Dispatcher]. Store and Sealer are required; every
// other zero value has the default named on its field.
type Config struct {
	// Store is the outbox.
	Store tokenkeeper.WebhookStore
	// Sealer opens the endpoints' secrets.
	Sealer tokenkeeper.Sealer
	// HTTPClient sends the deliveries; nil means a client of its own.
	// Redirects are never followed (a 3xx is not a delivery), whatever the
	// client's CheckRedirect.
	HTTPClient *http.Client
	// Timeout bounds one attempt, from connecting to the response's
	// status; 0 means [DefaultTimeout].
	Timeout time.Duration
	// Owner names this dispatcher in its claims; "" means a random one.
	Owner string
	// ClaimTTL is how long a claimed delivery is this dispatcher's alone:
	// if it dies, another takes the delivery over after that. 0 means the
	// time a whole batch may take (Timeout per round of Concurrency
	// attempts) plus 30 seconds, so that a live dispatcher finishes well
	// within its claim.
	ClaimTTL time.Duration
	// PollInterval is how often an idle dispatcher looks for due
	// deliveries; 0 means [DefaultPollInterval]. [Dispatcher.Notify] wakes
	// it earlier.
	PollInterval time.Duration
	// Batch is how many deliveries one claim takes; 0 means
	// [DefaultBatch].
	Batch int
	// Concurrency caps the attempts in flight; 0 means
	// [DefaultConcurrency].
	Concurrency int
	// MinBackoff is the wait before the first retry; each retry waits
	// twice as long as the one before, up to MaxBackoff, less a random
	// part of up to half (jitter). 0 means [DefaultMinBackoff].
	MinBackoff time.Duration
	// MaxBackoff caps the wait between attempts; 0 means
	// [DefaultMaxBackoff].
	MaxBackoff time.Duration
	// MaxAttempts: after this many attempts without a 2xx, the delivery
	// is failed. 0 means [DefaultMaxAttempts].
	MaxAttempts int
	// MaxAge: a delivery not delivered this long after its event is
	// failed at its next attempt. 0 means [DefaultMaxAge].
	MaxAge time.Duration
	// Now is the clock of due times and backoff; nil means time.Now.
	Now func() time.Time
	// Jitter returns a random duration in [0, d); nil means math/rand/v2.
	Jitter func(d time.Duration) time.Duration
	// Logger receives a line per attempt that does not deliver; nil
	// discards. Lines name the endpoint by id, never its URL (which may
	// hold a receiver's token), the secret or the body.
	Logger *slog.Logger
	// Registerer receives the dispatcher's metrics
	// (tokenkeeper_webhook_attempts_total{outcome},
	// tokenkeeper_webhook_attempt_duration_seconds); nil keeps none.
	Registerer prometheus.Registerer
}

// Dispatcher delivers the outbox: it claims due deliveries, POSTs each
// signed ([SetHeaders]) with [Payload]'s body, and records the outcome: a
// 2xx is delivered; anything else (another status, a network error, a
// timeout) is retried with backoff, and failed after MaxAttempts or
// MaxAge. Its state is all in the store, so a restarted dispatcher goes on
// where it stopped, and several dispatchers on one store share the work,
// each delivery attempted by one at a time. Delivery is at least once: a
// dispatcher that dies after the POST and before recording it leaves the
// delivery to be sent again after its claim expires (receivers drop
// repeats by webhook-id).
//
// Make it with [New]; Run it. Safe for concurrent use.
type Dispatcher struct {
	cfg     Config
	client  *http.Client
	log     *slog.Logger
	metrics *dispatchMetrics
	wake    chan struct{}
}

// New returns a Dispatcher. CodeInvalid without Store or Sealer, or with a
// negative setting; it fails if a metric cannot be registered.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Sealer == nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "webhook: the dispatcher needs a Store and a Sealer")
	}
	for _, d := range []time.Duration{cfg.Timeout, cfg.ClaimTTL, cfg.PollInterval, cfg.MinBackoff, cfg.MaxBackoff, cfg.MaxAge} {
		if d < 0 {
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "webhook: a duration of the dispatcher is negative")
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.Timeout, DefaultTimeout)
	def(&cfg.PollInterval, DefaultPollInterval)
	def(&cfg.MinBackoff, DefaultMinBackoff)
	def(&cfg.MaxBackoff, DefaultMaxBackoff)
	def(&cfg.MaxAge, DefaultMaxAge)
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	rounds := time.Duration((cfg.Batch + cfg.Concurrency - 1) / cfg.Concurrency)
	def(&cfg.ClaimTTL, rounds*cfg.Timeout+30*time.Second)
	if cfg.Owner == "" {
		var b [8]byte
		cryptoRead(b[:])
		cfg.Owner = "dispatcher-" + hex.EncodeToString(b[:])
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return rand.N(d)
		}
	}
	client := &http.Client{}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	d := &Dispatcher{cfg: cfg, client: client, log: orDiscard(cfg.Logger), wake: make(chan struct{}, 1)}
	if cfg.Registerer != nil {
		m, err := newDispatchMetrics(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		d.metrics = m
	}
	return d, nil
}

func cryptoRead(b []byte) { _, _ = crand.Read(b) }

// Owner is the name of this dispatcher's claims.
func (d *Dispatcher) Owner() string { return d.cfg.Owner }

// Notify wakes an idle Run to look for due deliveries now (after an event
// was appended in this process). It never blocks.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, then waits for the attempts in flight to
// finish and be recorded, and returns ctx's error. A claim that fails (the
// store is down) is logged and tried again after PollInterval.
func (d *Dispatcher) Run(ctx context.Context) error {
	for {
		n, err := d.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("webhooks: cannot claim deliveries", "error", err)
		}
		if n == d.cfg.Batch && err == nil {
			continue // more may be due
		}
		t := time.NewTimer(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// RunOnce claims one batch of due deliveries, attempts each (up to
// Concurrency at once), records the outcomes, and returns how many it
// claimed. Attempts run on a context detached from ctx, bounded by
// Timeout, so that a shutdown lets a sent delivery be recorded.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	ds, err := d.cfg.Store.ClaimDeliveries(ctx, d.cfg.Owner, d.cfg.Now(), d.cfg.ClaimTTL, d.cfg.Batch)
	if err != nil {
		return 0, err
	}
	sem := make(chan struct{}, d.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, del := range ds {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d.deliver(context.WithoutCancel(ctx), del)
		})
	}
	wg.Wait()
	return len(ds), nil
}

// deliver attempts del and records the outcome.
func (d *Dispatcher) deliver(ctx context.Context, del *tokenkeeper.Delivery) {
	start := d.cfg.Now()
	status, why := d.attempt(ctx, del, start)
	r := tokenkeeper.DeliveryResult{At: start, Status: status, Error: why}
	attempts := del.Attempts + 1
	outcome := "delivered"
	switch {
	case why == "":
		r.State = tokenkeeper.DeliveryDelivered
	case why == errEndpointGone:
		r.State, outcome = tokenkeeper.DeliveryFailed, "failed"
	case attempts >= d.cfg.MaxAttempts || start.Sub(del.CreatedAt) >= d.cfg.MaxAge:
		r.State, outcome = tokenkeeper.DeliveryFailed, "failed"
		r.Error = fmt.Sprintf("gave up after %d attempts over %s; the last: %s", attempts,
			start.Sub(del.CreatedAt).Round(time.Second), why)
	default:
		r.State, outcome = tokenkeeper.DeliveryPending, "retry"
		r.NextAttemptAt = start.Add(d.backoff(attempts))
	}
	d.metrics.attempt(outcome, d.cfg.Now().Sub(start))
	attrs := []any{"delivery", del.ID, "event", del.EventID, "type", del.Event.Type.WireType(),
		"endpoint", del.EndpointID, "attempt", attempts, "status", status}
	switch r.State {
	case tokenkeeper.DeliveryPending:
		d.log.Warn("webhook not delivered; will retry", append(attrs, "error", why, "next_attempt_at", r.NextAttemptAt)...)
	case tokenkeeper.DeliveryFailed:
		d.log.Error("webhook failed; giving up", append(attrs, "error", r.Error)...)
	default:
		d.log.Debug("webhook delivered", attrs...)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	err := d.cfg.Store.FinishAttempt(ctx, del.ID, del.Claim, r)
	switch tokenkeeper.ErrorCode(err) {
	case "":
	case tokenkeeper.CodeConflict:
		d.log.Info("webhook attempt not recorded: the delivery was taken over or its endpoint deleted", attrs...)
	default:
		d.log.Error("webhook attempt not recorded; it is attempted again when the claim expires", append(attrs, "error", err)...)
	}
}

// errEndpointGone is the error of an attempt to a deleted endpoint.
const errEndpointGone = "the endpoint was deleted"

// attempt POSTs del once and returns the status (0 if none) and, unless
// delivered, why not: words that hold neither the URL nor the secret.
func (d *Dispatcher) attempt(ctx context.Context, del *tokenkeeper.Delivery, at time.Time) (int, string) {
	ep, err := d.cfg.Store.GetWebhookEndpoint(ctx, del.EndpointID)
	switch {
	case tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound || err == nil && ep.Disabled():
		return 0, errEndpointGone
	case err != nil:
		return 0, "reading the endpoint: " + tokenkeeper.ErrorMessage(err)
	}
	secret, err := OpenSecret(d.cfg.Sealer, ep)
	if err != nil {
		return 0, "opening the endpoint's secret failed"
	}
	body := Payload(&del.Event)
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "the endpoint URL cannot be used"
	}
	if err := SetHeaders(req.Header, secret, del.EventID, at, body); err != nil {
		return 0, "signing failed: " + tokenkeeper.ErrorMessage(err)
	}
	req.Header.Set("User-Agent", "tokenkeeper-webhooks/1")
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, describe(err, d.cfg.Timeout)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, fmt.Sprintf("HTTP %d", resp.StatusCode)
}

// describe says why a request failed, without the URL (a *url.Error
// quotes it whole).
func describe(err error, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Sprintf("no response within %s", timeout)
		}
		err = ue.Err
	}
	return err.Error()
}

// backoff returns the wait after the attempts-th attempt: MinBackoff
// doubled per attempt, capped at MaxBackoff, less up to half at random.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	b := d.cfg.MinBackoff
	for i := 1; i < attempts && b < d.cfg.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.cfg.MaxBackoff)
	return b - d.cfg.Jitter(b/2)
}

// OpenSecret returns the signing secret of ep, opened with s.
func OpenSecret(s tokenkeeper.Sealer, ep *tokenkeeper.WebhookEndpoint) (tokenkeeper.Secret, error) {
	b, err := s.Open(ep.Secret, secretAD(ep.ID))
	if err != nil {
		return tokenkeeper.Secret{}, fmt.Errorf("open the secret of webhook endpoint %s: %w", ep.ID, err)
	}
	return tokenkeeper.NewSecret(string(b)), nil
}

// secretAD is the associated data of the secret of endpoint id.
func secretAD(id tokenkeeper.WebhookEndpointID) []byte {
	return tokenkeeper.AssociatedData(tokenkeeper.SealKindWebhookEndpoint, string(id), tokenkeeper.FieldWebhookSecret)
}

// dispatchMetrics are the dispatcher's metrics; a nil one records nothing.
type dispatchMetrics struct {
	attempts *prometheus.CounterVec
	duration prometheus.Histogram
}

func newDispatchMetrics(reg prometheus.Registerer) (*dispatchMetrics, error) {
	m := &dispatchMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenkeeper_webhook_attempts_total",
			Help: "Webhook delivery attempts, by outcome: delivered (2xx), retry (will be tried again), failed (given up).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenkeeper_webhook_attempt_duration_seconds",
			Help:    "How long a webhook delivery attempt took, to the response's status.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	for _, o := range []string{"delivered", "retry", "failed"} {
		m.attempts.WithLabelValues(o)
	}
	if err := registerAll(reg, m.attempts, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *dispatchMetrics) attempt(outcome string, took time.Duration) {
	if m != nil {
		m.attempts.WithLabelValues(outcome).Inc()
		m.duration.Observe(took.Seconds())
	}
}
