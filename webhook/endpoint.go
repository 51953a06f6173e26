package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Endpoints manages webhook endpoints: what the HTTP API's
// /v1/webhook-endpoints routes and the CLI's webhooks commands drive.
// Store, Log and Sealer are required. Safe for concurrent use.
type Endpoints struct {
	Store  tokenkeeper.WebhookStore
	Log    tokenkeeper.EventLog
	Sealer tokenkeeper.Sealer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the warning about an http:// URL; nil discards.
	Logger *slog.Logger
	// Enqueued, if set, is called after a test event is enqueued
	// (Dispatcher.Notify, so that it goes out at once).
	Enqueued func()
}

func (e *Endpoints) now() time.Time {
	if e.Now == nil {
		return time.Now().UTC().Truncate(time.Microsecond)
	}
	return e.Now().UTC().Truncate(time.Microsecond)
}

// Create makes an endpoint for rawURL with a new secret, and returns it
// with the secret, which is shown once: only its sealed form is stored.
// CodeInvalid if [tokenkeeper.CheckWebhookURL] refuses rawURL; an http://
// URL is accepted with a warning in the log.
func (e *Endpoints) Create(ctx context.Context, rawURL string) (*tokenkeeper.WebhookEndpoint, tokenkeeper.Secret, error) {
	secret := tokenkeeper.NewWebhookSecret()
	ep, err := e.create(ctx, tokenkeeper.NewWebhookEndpointID(), rawURL, secret)
	if err != nil {
		return nil, tokenkeeper.Secret{}, err
	}
	return ep, secret, nil
}

func (e *Endpoints) create(ctx context.Context, id tokenkeeper.WebhookEndpointID, rawURL string, secret tokenkeeper.Secret) (*tokenkeeper.WebhookEndpoint, error) {
	insecure, err := tokenkeeper.CheckWebhookURL(rawURL)
	if err != nil {
		return nil, err
	}
	if _, err := tokenkeeper.WebhookSecretKey(secret); err != nil {
		return nil, err
	}
	if insecure {
		e.warnInsecure(id)
	}
	sealed, err := e.Sealer.Seal([]byte(secret.Reveal()), secretAD(id))
	if err != nil {
		return nil, fmt.Errorf("seal the webhook secret: %w", err)
	}
	ep := &tokenkeeper.WebhookEndpoint{ID: id, URL: rawURL, Secret: sealed, CreatedAt: e.now()}
	if err := e.Store.CreateWebhookEndpoint(ctx, ep); err != nil {
		return nil, err
	}
	return ep, nil
}

// Ensure makes sure an enabled endpoint for rawURL signs with secret (an
// endpoint from configuration), and returns it. The endpoint's id derives
// from the URL and the secret, so replicas starting together make one; an
// enabled endpoint for the same URL with another secret (the configured
// secret changed) is disabled. Endpoints made by Create are not touched.
// If that endpoint was deleted (over the API), it stays deleted: Ensure
// returns it with a CodeConflict error.
func (e *Endpoints) Ensure(ctx context.Context, rawURL string, secret tokenkeeper.Secret) (*tokenkeeper.WebhookEndpoint, error) {
	h := sha256.Sum256([]byte("tokenkeeper/config-endpoint/v1\x00" + rawURL + "\x00" + secret.Reveal()))
	id := tokenkeeper.WebhookEndpointID("we_cfg" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:15])))
	eps, err := e.Store.ListWebhookEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	var mine *tokenkeeper.WebhookEndpoint
	for _, ep := range eps {
		switch {
		case ep.ID == id:
			mine = ep
		case !ep.Disabled() && ep.URL == rawURL && strings.HasPrefix(string(ep.ID), "we_cfg"):
			if err := e.Store.DisableWebhookEndpoint(ctx, ep.ID, e.now()); err != nil {
				return nil, err
			}
		}
	}
	if mine != nil && !mine.Disabled() {
		if insecure, _ := tokenkeeper.CheckWebhookURL(rawURL); insecure {
			e.warnInsecure(id)
		}
		return mine, nil
	}
	if mine != nil {
		return mine, tokenkeeper.Errorf(tokenkeeper.CodeConflict, "the configured webhook endpoint %s was deleted; configure another secret to make a new one", id)
	}
	ep, err := e.create(ctx, id, rawURL, secret)
	if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeConflict {
		return e.Store.GetWebhookEndpoint(ctx, id)
	}
	return ep, err
}

// warnInsecure logs that endpoint id is plain http.
func (e *Endpoints) warnInsecure(id tokenkeeper.WebhookEndpointID) {
	orDiscard(e.Logger).Warn("webhook endpoint uses plain http: deliveries (signed, but readable) cross the network in the clear; use https unless it is on loopback or an internal network",
		"endpoint", id)
}

// List returns the endpoints that are not disabled, oldest first.
func (e *Endpoints) List(ctx context.Context) ([]*tokenkeeper.WebhookEndpoint, error) {
	eps, err := e.Store.ListWebhookEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	out := []*tokenkeeper.WebhookEndpoint{}
	for _, ep := range eps {
		if !ep.Disabled() {
			out = append(out, ep)
		}
	}
	return out, nil
}

// Get returns the endpoint, disabled or not. CodeNotFound if absent.
func (e *Endpoints) Get(ctx context.Context, id tokenkeeper.WebhookEndpointID) (*tokenkeeper.WebhookEndpoint, error) {
	return e.Store.GetWebhookEndpoint(ctx, id)
}

// Delete disables the endpoint (kept for its delivery log) and fails its
// pending deliveries. CodeNotFound if absent or already deleted.
func (e *Endpoints) Delete(ctx context.Context, id tokenkeeper.WebhookEndpointID) error {
	ep, err := e.Store.GetWebhookEndpoint(ctx, id)
	if err != nil {
		return err
	}
	if ep.Disabled() {
		return tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "webhook endpoint %s was deleted", id)
	}
	return e.Store.DisableWebhookEndpoint(ctx, id, e.now())
}

// SendTest enqueues a signed test event ([tokenkeeper.EventWebhookTest],
// sent as "webhook.test") to endpoint id alone, and returns it. It is
// delivered, retried and logged like any other. CodeNotFound if the
// endpoint is absent or deleted.
func (e *Endpoints) SendTest(ctx context.Context, id tokenkeeper.WebhookEndpointID) (*tokenkeeper.StoredEvent, error) {
	ev := &tokenkeeper.StoredEvent{ID: tokenkeeper.NewEventID(), Event: tokenkeeper.Event{
		Type: tokenkeeper.EventWebhookTest, Reason: "a test event sent from tokenkeeper", Time: e.now(),
	}}
	if err := e.Log.AppendEvent(ctx, ev, tokenkeeper.Fanout{Endpoint: id}); err != nil {
		return nil, err
	}
	if e.Enqueued != nil {
		e.Enqueued()
	}
	return ev, nil
}

// Reseal seals every endpoint's secret that is not under the Sealer's
// primary key again under it (a key rotation's re-seal, before the old key
// is removed), each with a compare and swap, and returns how many it
// re-sealed. A secret changed meanwhile is read again.
func (e *Endpoints) Reseal(ctx context.Context) (int, error) {
	eps, err := e.Store.ListWebhookEndpoints(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ep := range eps {
		for ep.Secret.KeyID != e.Sealer.PrimaryKeyID() {
			secret, err := OpenSecret(e.Sealer, ep)
			if err != nil {
				return n, err
			}
			sealed, err := e.Sealer.Seal([]byte(secret.Reveal()), secretAD(ep.ID))
			if err != nil {
				return n, fmt.Errorf("seal the webhook secret: %w", err)
			}
			err = e.Store.ResealWebhookEndpoint(ctx, ep.ID, ep.Secret, sealed)
			if err == nil {
				n++
				break
			}
			if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict {
				return n, err
			}
			if ep, err = e.Store.GetWebhookEndpoint(ctx, ep.ID); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Deliveries returns the delivery log: deliveries that pass f, newest
// first, each with its event.
func (e *Endpoints) Deliveries(ctx context.Context, f tokenkeeper.DeliveryFilter) ([]*tokenkeeper.Delivery, error) {
	return e.Store.ListDeliveries(ctx, f)
}
