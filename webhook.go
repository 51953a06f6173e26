package tokenkeeper

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"strings"
	"time"
)

// WebhookEndpointID names a webhook endpoint: "we_" and 26 lowercase base32
// characters. It is not a secret.
type WebhookEndpointID string

// NewWebhookEndpointID returns a random WebhookEndpointID.
func NewWebhookEndpointID() WebhookEndpointID {
	var b [16]byte
	rand.Read(b[:])
	return WebhookEndpointID("we_" + strings.ToLower(idEncoding.EncodeToString(b[:])))
}

// WebhookEndpoint is a receiver of signed webhooks, as stored.
type WebhookEndpoint struct {
	ID WebhookEndpointID
	// URL is where deliveries are POSTed: an http or https URL without
	// userinfo (see [CheckWebhookURL]).
	URL string
	// Secret is the signing secret (the whole "whsec_..." string), sealed
	// with [AssociatedData] (SealKindWebhookEndpoint, the endpoint id,
	// FieldWebhookSecret). It is shown once, when the endpoint is made.
	Secret    Sealed
	CreatedAt time.Time
	// DisabledAt is when the endpoint was deleted; zero while it receives.
	// A disabled endpoint is kept for its delivery log.
	DisabledAt time.Time
}

// Disabled reports whether the endpoint no longer receives deliveries.
func (e *WebhookEndpoint) Disabled() bool { return !e.DisabledAt.IsZero() }

// Sealing of webhook secrets, for [AssociatedData].
const (
	SealKindWebhookEndpoint = "webhook_endpoint"
	FieldWebhookSecret      = "secret"
)

// webhookSecretPrefix starts every webhook signing secret (Standard
// Webhooks' form).
const webhookSecretPrefix = "whsec_"

// NewWebhookSecret returns a new signing secret in Standard Webhooks' form:
// "whsec_" and the standard base64 of 32 random bytes.
func NewWebhookSecret() Secret {
	var b [32]byte
	rand.Read(b[:])
	return NewSecret(webhookSecretPrefix + base64.StdEncoding.EncodeToString(b[:]))
}

// WebhookSecretKey returns the HMAC key of secret: the bytes that the base64
// after "whsec_" encodes (24 to 64 of them). CodeInvalid if secret has
// another form; the error never repeats it.
func WebhookSecretKey(secret Secret) ([]byte, error) {
	rest, ok := strings.CutPrefix(secret.Reveal(), webhookSecretPrefix)
	if !ok {
		return nil, Errorf(CodeInvalid, "a webhook secret starts with %q", webhookSecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, Errorf(CodeInvalid, "a webhook secret is %q and standard base64", webhookSecretPrefix)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, Errorf(CodeInvalid, "a webhook secret's key is %d bytes; want 24 to 64", len(key))
	}
	return key, nil
}

// MaxWebhookURLLength bounds a webhook endpoint's URL, in bytes.
const MaxWebhookURLLength = 2048

// CheckWebhookURL reports whether raw can be a webhook endpoint's URL: an
// absolute http or https URL with a host, no userinfo (a password in a URL
// ends up in logs) and no fragment, at most [MaxWebhookURLLength] bytes.
// insecure is true for http: accepted (a receiver on loopback or an
// internal network), but the caller should warn, as https is recommended.
// It returns a [CodeInvalid] error saying what is wrong otherwise.
func CheckWebhookURL(raw string) (insecure bool, err error) {
	if err := CheckStoredText("the URL", raw); err != nil {
		return false, err
	}
	if len(raw) > MaxWebhookURLLength {
		return false, Errorf(CodeInvalid, "the webhook URL is %d bytes; the limit is %d", len(raw), MaxWebhookURLLength)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return false, Errorf(CodeInvalid, "the webhook URL cannot be parsed")
	case u.Scheme != "https" && u.Scheme != "http":
		return false, Errorf(CodeInvalid, "the webhook URL's scheme is %q; want https (or http)", u.Scheme)
	case u.User != nil:
		return false, Errorf(CodeInvalid, "the webhook URL holds userinfo; put no credentials in it (deliveries are signed)")
	case u.Host == "" || u.Hostname() == "":
		return false, Errorf(CodeInvalid, "the webhook URL has no host")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return false, Errorf(CodeInvalid, "the webhook URL has a fragment")
	}
	return u.Scheme == "http", nil
}

// Validate returns a [CodeInvalid] error if e cannot be stored: no ID, a URL
// [CheckWebhookURL] refuses, no sealed secret, or text [CheckStoredText]
// refuses.
func (e *WebhookEndpoint) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"ID", string(e.ID)},
		{"URL", e.URL},
		{"Secret.KeyID", e.Secret.KeyID},
	} {
		if err := CheckStoredText(f.name, f.v); err != nil {
			return err
		}
	}
	if e.ID == "" {
		return Errorf(CodeInvalid, "the webhook endpoint has no ID")
	}
	if e.Secret.IsZero() {
		return Errorf(CodeInvalid, "the webhook endpoint has no sealed secret")
	}
	_, err := CheckWebhookURL(e.URL)
	return err
}

// DeliveryState is where a delivery stands. The string values are stored
// and sent on the wire; they never change.
type DeliveryState string

// The delivery states.
const (
	// DeliveryPending: not delivered yet; attempted at NextAttemptAt.
	DeliveryPending DeliveryState = "pending"
	// DeliveryDelivered: the endpoint answered 2xx.
	DeliveryDelivered DeliveryState = "delivered"
	// DeliveryFailed: given up (too many attempts, too old, or the endpoint
	// was deleted). Kept, visible in the delivery log, never retried.
	DeliveryFailed DeliveryState = "failed"
)

// DeliveryID names a delivery; stores assign it, growing.
type DeliveryID int64

// Delivery is one event on its way to one endpoint: an outbox entry.
type Delivery struct {
	ID         DeliveryID
	EventID    EventID
	EndpointID WebhookEndpointID
	State      DeliveryState
	// Attempts counts the attempts whose outcome was recorded.
	Attempts      int
	CreatedAt     time.Time
	NextAttemptAt time.Time
	LastAttemptAt time.Time // zero before the first attempt
	// LastStatus is the HTTP status of the last attempt; 0 if none came
	// back (a network error, a timeout) or no attempt was made.
	LastStatus int
	// LastError says why the last attempt did not deliver ("" if none). It
	// never holds the secret or the body.
	LastError   string
	DeliveredAt time.Time // zero unless delivered
	// Claim is the current or last claim by a dispatcher.
	Claim DeliveryClaim
	// Event is the event delivered, filled by ClaimDeliveries and
	// ListDeliveries.
	Event StoredEvent
}

// DeliveryClaim gives one dispatcher the right to attempt a delivery until
// ExpiresAt (on the store's clock, like a [Lease]). Fence grows with every
// claim of the delivery, so the outcome of an attempt whose claim was
// taken over is recognised and refused.
type DeliveryClaim struct {
	Owner     string
	Fence     int64
	ExpiresAt time.Time
}

// DeliveryResult is the outcome of one attempt, for
// [WebhookStore.FinishAttempt].
type DeliveryResult struct {
	// At is when the attempt was made.
	At time.Time
	// State is DeliveryDelivered, DeliveryFailed (give up), or
	// DeliveryPending (try again at NextAttemptAt).
	State         DeliveryState
	NextAttemptAt time.Time
	Status        int
	Error         string
}

// DeliveryFilter selects deliveries for [WebhookStore.ListDeliveries]. The
// zero value selects the newest deliveries.
type DeliveryFilter struct {
	// EndpointID, if set, keeps that endpoint's deliveries.
	EndpointID WebhookEndpointID
	// EventID, if set, keeps that event's deliveries.
	EventID EventID
	// State, if set, keeps deliveries in that state.
	State DeliveryState
	// Before, if positive, keeps deliveries with an ID below it
	// (pagination, newest first).
	Before DeliveryID
	// Limit caps the number returned; 0 means 100. Stores cap it at 1000.
	Limit int
}

// WebhookStore keeps webhook endpoints and the outbox of deliveries (which
// [EventLog.AppendEvent] fills). Safe for concurrent use by many goroutines
// and processes; every method may fail with CodeUnavailable or
// CodeInternal. Text must be storable (CodeInvalid otherwise).
type WebhookStore interface {
	// CreateWebhookEndpoint stores e (see [WebhookEndpoint.Validate];
	// CodeInvalid). CodeConflict if its id exists.
	CreateWebhookEndpoint(ctx context.Context, e *WebhookEndpoint) error
	// GetWebhookEndpoint returns the endpoint, disabled or not. CodeNotFound
	// if absent.
	GetWebhookEndpoint(ctx context.Context, id WebhookEndpointID) (*WebhookEndpoint, error)
	// ListWebhookEndpoints returns every endpoint, disabled ones included,
	// oldest first (ties by id).
	ListWebhookEndpoints(ctx context.Context) ([]*WebhookEndpoint, error)
	// DisableWebhookEndpoint marks the endpoint disabled at at and, in the
	// same transaction, fails its pending deliveries (LastError says the
	// endpoint was deleted). Disabling a disabled endpoint keeps the first
	// time and is not an error. CodeNotFound if absent; CodeInvalid for the
	// zero at.
	DisableWebhookEndpoint(ctx context.Context, id WebhookEndpointID, at time.Time) error
	// ResealWebhookEndpoint replaces the endpoint's sealed secret old with
	// new (a key rotation's re-seal), if the stored one is still old (same
	// KeyID and ciphertext: compare and swap). CodeConflict if it is not;
	// CodeNotFound if absent; CodeInvalid if new is zero.
	ResealWebhookEndpoint(ctx context.Context, id WebhookEndpointID, old, new Sealed) error

	// ClaimDeliveries claims up to limit pending deliveries that are due
	// (NextAttemptAt at or before now, the caller's clock, which wrote
	// NextAttemptAt) and not claimed by an unexpired claim, oldest due
	// first, for owner until ttl from now on the store's clock. Each
	// delivery is claimed by one caller at a time, across processes
	// (PostgreSQL: FOR UPDATE SKIP LOCKED, so claimers never wait for each
	// other); a claim that expired (its dispatcher died) is taken over. The
	// deliveries come back with their Claim and Event filled in. CodeInvalid
	// for an empty owner, a ttl or limit that is not positive.
	ClaimDeliveries(ctx context.Context, owner string, now time.Time, ttl time.Duration, limit int) ([]*Delivery, error)
	// FinishAttempt records the outcome of an attempt made under claim: it
	// counts the attempt, stores r, and ends the claim. CodeConflict if
	// claim is not the delivery's current claim (same Owner and Fence) or
	// the delivery is no longer pending: the outcome is then not recorded
	// (another dispatcher took the delivery over, or it was failed by
	// DisableWebhookEndpoint). An expired claim nobody took over still
	// records. CodeNotFound if absent; CodeInvalid if r.State is not a
	// DeliveryState.
	FinishAttempt(ctx context.Context, id DeliveryID, claim DeliveryClaim, r DeliveryResult) error
	// ListDeliveries returns deliveries that pass f, newest (highest ID)
	// first, with their Event filled in: the delivery log.
	ListDeliveries(ctx context.Context, f DeliveryFilter) ([]*Delivery, error)
}

// Valid reports whether s is one of the three states.
func (s DeliveryState) Valid() bool {
	switch s {
	case DeliveryPending, DeliveryDelivered, DeliveryFailed:
		return true
	}
	return false
}
