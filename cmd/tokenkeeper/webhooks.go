package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

// envWebhookSecret holds the signing secret of the --webhook-url endpoints, unless
// --webhook-secret-file names a file with it.
const envWebhookSecret = "TOKENKEEPER_WEBHOOK_SECRET"

// webhookSettings are serve's and dev's webhook flags: endpoints from configuration. More
// endpoints can be added over the API (POST /v1/webhook-endpoints) or with `tokenkeeper
// webhooks create`; each has a secret of its own.
type webhookSettings struct {
	webhookURLs       []string
	webhookSecretFile string
	// webhookSecret is resolved by check: the whsec_ secret that signs deliveries to
	// every --webhook-url.
	webhookSecret tokenkeeper.Secret
}

// webhookFlags defines the webhook flags on f.
func (s *settings) webhookFlags(f *flagSet) {
	listVar(f, &s.webhookURLs, "webhook-url", parseWebhookURL, false,
		"POST signed connection events to this `URL` (https recommended; http is accepted with a warning); repeatable")
	f.stringVar(&s.webhookSecretFile, "webhook-secret-file", "",
		"read the whsec_ signing secret of the --webhook-url endpoints from `FILE` instead of $"+envWebhookSecret)
}

// parseWebhookURL checks a --webhook-url.
func parseWebhookURL(v string) (string, error) {
	if _, err := tokenkeeper.CheckWebhookURL(v); err != nil {
		return "", errors.New(tokenkeeper.ErrorMessage(err))
	}
	return v, nil
}

// checkWebhooks resolves the webhook secret: required, in Standard Webhooks' whsec_ form,
// when --webhook-url is set.
func (s *settings) checkWebhooks(bad func(name, format string, args ...any) error) error {
	fromEnv, _ := s.lookupEnv(envWebhookSecret)
	secret := strings.TrimSpace(fromEnv)
	switch {
	case fromEnv != "" && s.webhookSecretFile != "":
		return bad("webhook-secret-file", "and $%s are both set; use one", envWebhookSecret)
	case s.webhookSecretFile != "":
		data, err := os.ReadFile(s.webhookSecretFile)
		if err != nil {
			return bad("webhook-secret-file", "%v", err)
		}
		secret = strings.TrimSpace(string(data))
	}
	if secret == "" {
		if len(s.webhookURLs) > 0 {
			return bad("webhook-url", "needs a signing secret: set $%s or --webhook-secret-file (a whsec_ secret; `tokenkeeper webhooks secret` makes one)", envWebhookSecret)
		}
		return nil
	}
	s.webhookSecret = tokenkeeper.NewSecret(secret)
	if _, err := tokenkeeper.WebhookSecretKey(s.webhookSecret); err != nil {
		name := "webhook-secret-file"
		if s.webhookSecretFile == "" {
			name = "webhook-url"
		}
		return bad(name, "the webhook secret is not valid: %s", tokenkeeper.ErrorMessage(err))
	}
	return nil
}

// eventSystem is a service's event log and webhooks: the recorder the keeper reports to,
// the reconciler that repairs what a crash lost, the dispatcher that delivers, and the
// endpoints the API manages.
type eventSystem struct {
	// recorder is the keeper's event handler: a *webhook.Recorder, or, under the test
	// seam dropEventsKey, one that drops every event (a process that dies after each
	// commit).
	recorder   tokenkeeper.EventHandler
	reconciler *webhook.Reconciler
	dispatcher *webhook.Dispatcher
	endpoints  *webhook.Endpoints
	done       chan struct{}
}

// newEventSystem builds the event system of a service on st and makes sure the configured
// endpoints exist. now is the service's clock (nil: the wall clock). Retention prunes
// events as it prunes connections.
func newEventSystem(ctx context.Context, s *settings, st backend, keys tokenkeeper.Sealer, log *slog.Logger,
	reg prometheus.Registerer, now func() time.Time) (*eventSystem, error) {
	if now == nil {
		now = time.Now
	}
	d, err := webhook.New(webhook.Config{Store: st, Sealer: keys, Now: now, Logger: log, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("start the webhook dispatcher: %w", err)
	}
	rec, err := webhook.NewRecorder(st, webhook.RecorderConfig{Logger: log, Registerer: reg, Enqueued: d.Notify})
	if err != nil {
		return nil, fmt.Errorf("start the event log: %w", err)
	}
	rc, err := webhook.NewReconciler(webhook.ReconcilerConfig{Store: st, Log: st, Now: now, Logger: log,
		Registerer: reg, Retention: s.retention})
	if err != nil {
		return nil, fmt.Errorf("start the event reconciler: %w", err)
	}
	// Before anything is served: a connection made through this service must not
	// look older than the event log (whose lost events get no webhooks).
	if err := rc.Start(ctx); err != nil {
		return nil, fmt.Errorf("start the event log: %w", err)
	}
	eps := &webhook.Endpoints{Store: st, Log: st, Sealer: keys, Now: now, Logger: log, Enqueued: d.Notify}
	for _, u := range s.webhookURLs {
		ep, err := eps.Ensure(ctx, u, s.webhookSecret)
		if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeConflict {
			log.Warn("a --webhook-url endpoint was deleted over the API; nothing is sent to it until its secret changes",
				"endpoint", ep.ID)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.f.source("webhook-url"), err)
		}
		log.Info("webhook endpoint from configuration", "endpoint", ep.ID)
	}
	es := &eventSystem{recorder: rec, reconciler: rc, dispatcher: d, endpoints: eps}
	if drop, _ := ctx.Value(dropEventsKey{}).(bool); drop {
		es.recorder = handlers{}
	}
	return es, nil
}

// dropEventsKey is the context key of a test seam: with true under it, the keeper's
// events are dropped instead of recorded, as if the process died after each commit.
type dropEventsKey struct{}

// start runs the reconciler and the dispatcher until ctx ends.
func (es *eventSystem) start(ctx context.Context) {
	es.done = make(chan struct{})
	rdone := make(chan struct{})
	go func() { defer close(rdone); es.reconciler.Run(ctx) }()
	go func() {
		defer close(es.done)
		es.dispatcher.Run(ctx) // returns once the attempts in flight are recorded
		<-rdone
	}()
}

// wait waits for start's goroutines to return, after their context ended.
func (es *eventSystem) wait() {
	if es.done != nil {
		<-es.done
	}
}

// handlers passes each event to every non-nil handler, in order.
type handlers []tokenkeeper.EventHandler

func (hs handlers) Handle(ctx context.Context, e tokenkeeper.Event) {
	for _, h := range hs {
		if h != nil {
			h.Handle(ctx, e)
		}
	}
}
