package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Webhooks manages webhook endpoints and reads their delivery log.
// *webhook.Endpoints implements it. Its errors' codes become the statuses
// (CodeInvalid for a URL it refuses, CodeNotFound for an unknown or
// deleted endpoint). Implementations must be safe for concurrent use.
type Webhooks interface {
	// Create makes an endpoint for url and returns it with its signing
	// secret ("whsec_..."), which is shown this once.
	Create(ctx context.Context, url string) (*tokenkeeper.WebhookEndpoint, tokenkeeper.Secret, error)
	// List returns the endpoints not deleted, oldest first.
	List(ctx context.Context) ([]*tokenkeeper.WebhookEndpoint, error)
	// Get returns an endpoint, deleted or not.
	Get(ctx context.Context, id tokenkeeper.WebhookEndpointID) (*tokenkeeper.WebhookEndpoint, error)
	// Delete disables the endpoint and fails its pending deliveries.
	Delete(ctx context.Context, id tokenkeeper.WebhookEndpointID) error
	// SendTest enqueues a signed webhook.test event to the endpoint.
	SendTest(ctx context.Context, id tokenkeeper.WebhookEndpointID) (*tokenkeeper.StoredEvent, error)
	// Deliveries returns deliveries, newest first, with their events.
	Deliveries(ctx context.Context, f tokenkeeper.DeliveryFilter) ([]*tokenkeeper.Delivery, error)
}

// WebhookEndpoint is the JSON form of an endpoint: never its secret.
// DeletedAt is null until it is deleted.
type WebhookEndpoint struct {
	ID        tokenkeeper.WebhookEndpointID `json:"id"`
	URL       string                        `json:"url"`
	CreatedAt time.Time                     `json:"created_at"`
	DeletedAt *time.Time                    `json:"deleted_at"`
}

// WebhookEndpointList is the JSON body of GET /v1/webhook-endpoints.
type WebhookEndpointList struct {
	WebhookEndpoints []*WebhookEndpoint `json:"webhook_endpoints"`
}

// CreateWebhookEndpointRequest is the JSON body of POST
// /v1/webhook-endpoints.
type CreateWebhookEndpointRequest struct {
	URL string `json:"url"`
}

// CreatedWebhookEndpoint is the JSON body of POST /v1/webhook-endpoints'
// 201: exactly {"id", "url", "secret"}, the secret shown this once.
// json.Marshal reveals Secret; fmt and log/slog see it redacted.
type CreatedWebhookEndpoint struct {
	ID     tokenkeeper.WebhookEndpointID
	URL    string
	Secret tokenkeeper.Secret
}

type createdWebhookEndpointJSON struct {
	ID     tokenkeeper.WebhookEndpointID `json:"id"`
	URL    string                        `json:"url"`
	Secret string                        `json:"secret"`
}

// MarshalJSON encodes e with the secret in clear.
func (e CreatedWebhookEndpoint) MarshalJSON() ([]byte, error) {
	return json.Marshal(createdWebhookEndpointJSON{ID: e.ID, URL: e.URL, Secret: e.Secret.Reveal()})
}

// UnmarshalJSON decodes the wire form, wrapping the secret in a Secret.
func (e *CreatedWebhookEndpoint) UnmarshalJSON(data []byte) error {
	var w createdWebhookEndpointJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*e = CreatedWebhookEndpoint{ID: w.ID, URL: w.URL, Secret: tokenkeeper.NewSecret(w.Secret)}
	return nil
}

// LogValue logs e with the secret redacted.
func (e CreatedWebhookEndpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", string(e.ID)), slog.String("url", e.URL), slog.Any("secret", e.Secret))
}

// WebhookTest is the JSON body of POST /v1/webhook-endpoints/{id}/test's
// 202: the test event enqueued.
type WebhookTest struct {
	EventID tokenkeeper.EventID `json:"event_id"`
	Type    string              `json:"type"`
}

// Delivery is the JSON form of one delivery of the delivery log. Type is
// the event's wire type. The times are null when they have not happened
// (next_attempt_at once no attempt is planned); last_status is 0 when no
// response came back.
type Delivery struct {
	ID            tokenkeeper.DeliveryID        `json:"id"`
	EventID       tokenkeeper.EventID           `json:"event_id"`
	Type          string                        `json:"type"`
	ConnectionID  tokenkeeper.ConnectionID      `json:"connection_id"`
	EndpointID    tokenkeeper.WebhookEndpointID `json:"endpoint_id"`
	State         tokenkeeper.DeliveryState     `json:"state"`
	Attempts      int                           `json:"attempts"`
	CreatedAt     time.Time                     `json:"created_at"`
	NextAttemptAt *time.Time                    `json:"next_attempt_at"`
	LastAttemptAt *time.Time                    `json:"last_attempt_at"`
	LastStatus    int                           `json:"last_status"`
	LastError     string                        `json:"last_error"`
	DeliveredAt   *time.Time                    `json:"delivered_at"`
}

// DeliveryList is a page of the delivery log, newest first. NextCursor,
// when not empty, is the cursor of the next (older) page.
type DeliveryList struct {
	Deliveries []*Delivery `json:"deliveries"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

// FromWebhookEndpoint returns the JSON form of an endpoint.
func FromWebhookEndpoint(e *tokenkeeper.WebhookEndpoint) *WebhookEndpoint {
	return &WebhookEndpoint{ID: e.ID, URL: e.URL, CreatedAt: e.CreatedAt.UTC(), DeletedAt: optTime(e.DisabledAt)}
}

// FromDelivery returns the JSON form of a delivery.
func FromDelivery(d *tokenkeeper.Delivery) *Delivery {
	out := &Delivery{ID: d.ID, EventID: d.EventID, Type: d.Event.Type.WireType(), ConnectionID: d.Event.ConnectionID,
		EndpointID: d.EndpointID, State: d.State, Attempts: d.Attempts, CreatedAt: d.CreatedAt.UTC(),
		LastAttemptAt: optTime(d.LastAttemptAt), LastStatus: d.LastStatus, LastError: d.LastError,
		DeliveredAt: optTime(d.DeliveredAt)}
	if d.State == tokenkeeper.DeliveryPending {
		out.NextAttemptAt = optTime(d.NextAttemptAt)
	}
	return out
}

// webhooks returns the configured Webhooks, or the not-found error of a
// server without them.
func (s *Server) webhooks() (Webhooks, error) {
	if s.cfg.Webhooks == nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "webhooks are not enabled on this server")
	}
	return s.cfg.Webhooks, nil
}

func (s *Server) createWebhookEndpoint(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error {
	wh, err := s.webhooks()
	if err != nil {
		return err
	}
	var req CreateWebhookEndpointRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	ep, secret, err := wh.Create(r.Context(), req.URL)
	if err != nil {
		return err
	}
	host := ""
	if u, err := url.Parse(ep.URL); err == nil {
		host = u.Host
	}
	s.audit(r, key, "webhook_endpoint.create", "", fmt.Sprintf("id=%s host=%s", ep.ID, host))
	s.writeJSON(w, r, http.StatusCreated, CreatedWebhookEndpoint{ID: ep.ID, URL: ep.URL, Secret: secret})
	return nil
}

func (s *Server) listWebhookEndpoints(w http.ResponseWriter, r *http.Request, _ *tokenkeeper.APIKey) error {
	wh, err := s.webhooks()
	if err != nil {
		return err
	}
	if _, err := queryOf(r); err != nil {
		return err
	}
	eps, err := wh.List(r.Context())
	if err != nil {
		return err
	}
	out := WebhookEndpointList{WebhookEndpoints: make([]*WebhookEndpoint, 0, len(eps))}
	for _, ep := range eps {
		out.WebhookEndpoints = append(out.WebhookEndpoints, FromWebhookEndpoint(ep))
	}
	s.writeJSON(w, r, http.StatusOK, out)
	return nil
}

func (s *Server) deleteWebhookEndpoint(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error {
	wh, id, err := s.endpointOf(r)
	if err != nil {
		return err
	}
	if _, err := queryOf(r); err != nil {
		return err
	}
	if err := wh.Delete(r.Context(), id); err != nil {
		return err
	}
	ep, err := wh.Get(r.Context(), id)
	if err != nil {
		return err
	}
	s.audit(r, key, "webhook_endpoint.delete", "", "id="+string(id))
	s.writeJSON(w, r, http.StatusOK, FromWebhookEndpoint(ep))
	return nil
}

func (s *Server) testWebhookEndpoint(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error {
	wh, id, err := s.endpointOf(r)
	if err != nil {
		return err
	}
	if _, err := queryOf(r); err != nil {
		return err
	}
	ev, err := wh.SendTest(r.Context(), id)
	if err != nil {
		return err
	}
	s.audit(r, key, "webhook_endpoint.test", "", fmt.Sprintf("id=%s event=%s", id, ev.ID))
	s.writeJSON(w, r, http.StatusAccepted, WebhookTest{EventID: ev.ID, Type: ev.Type.WireType()})
	return nil
}

// listDeliveries serves GET /v1/webhook-endpoints/{id}/deliveries?state=&limit=&cursor=.
func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, _ *tokenkeeper.APIKey) error {
	wh, id, err := s.endpointOf(r)
	if err != nil {
		return err
	}
	q, err := queryOf(r, "state", "limit", "cursor")
	if err != nil {
		return err
	}
	f := tokenkeeper.DeliveryFilter{EndpointID: id, State: tokenkeeper.DeliveryState(q["state"])}
	if f.State != "" && !f.State.Valid() {
		return invalidf("state must be pending, delivered or failed")
	}
	if raw := q["cursor"]; raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 1 {
			return invalidf("cursor is not one this API returned")
		}
		f.Before = tokenkeeper.DeliveryID(n)
	}
	limit, err := limitOf(q["limit"])
	if err != nil {
		return err
	}
	if _, err := wh.Get(r.Context(), id); err != nil {
		return err
	}
	f.Limit = limit + 1
	ds, err := wh.Deliveries(r.Context(), f)
	if err != nil {
		return err
	}
	out := DeliveryList{Deliveries: []*Delivery{}}
	for i, d := range ds {
		if i == limit {
			break
		}
		out.Deliveries = append(out.Deliveries, FromDelivery(d))
	}
	if len(ds) > limit || (len(ds) == limit && limit == maxLimit) {
		out.NextCursor = strconv.FormatInt(int64(ds[limit-1].ID), 10)
	}
	s.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// endpointOf returns the Webhooks and the endpoint id of the request's
// path, checked for the form endpoint ids have.
func (s *Server) endpointOf(r *http.Request) (Webhooks, tokenkeeper.WebhookEndpointID, error) {
	wh, err := s.webhooks()
	if err != nil {
		return nil, "", err
	}
	id := r.PathValue("id")
	if !validEndpointID(id) {
		return nil, "", invalidf("the webhook endpoint id is malformed: want \"we_\" and up to 61 characters of a-z, 0-9 and _")
	}
	return wh, tokenkeeper.WebhookEndpointID(id), nil
}

// validEndpointID reports whether id has the form of an endpoint id.
func validEndpointID(id string) bool {
	if len(id) < 4 || len(id) > 64 || id[:3] != "we_" {
		return false
	}
	for _, c := range id[3:] {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// Event is the JSON form of one recorded event. Type is its wire type
// ("connection.refreshed"); subject and reason may be "".
type Event struct {
	ID           tokenkeeper.EventID      `json:"id"`
	Seq          int64                    `json:"seq"`
	Type         string                   `json:"type"`
	ConnectionID tokenkeeper.ConnectionID `json:"connection_id"`
	Subject      string                   `json:"subject"`
	Reason       string                   `json:"reason"`
	Time         time.Time                `json:"time"`
}

// EventList is a page of a connection's events, newest first.
// NextCursor, when not empty, is the cursor of the next (older) page.
type EventList struct {
	Events     []*Event `json:"events"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// listEvents serves GET /v1/connections/{id}/events?type=&limit=&cursor=.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, _ *tokenkeeper.APIKey) error {
	if s.cfg.Events == nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "the event log is not enabled on this server")
	}
	id, err := pathID(r)
	if err != nil {
		return err
	}
	q, err := queryOf(r, "type", "limit", "cursor")
	if err != nil {
		return err
	}
	f := tokenkeeper.EventFilter{ConnectionID: id, Newest: true}
	if raw := q["type"]; raw != "" {
		t, ok := eventTypeOf(raw)
		if !ok {
			return invalidf("type %q is not an event type (connection.connected, connection.refreshed, ...)", raw)
		}
		f.Types = []tokenkeeper.EventType{t}
	}
	if raw := q["cursor"]; raw != "" {
		if f.BeforeSeq, err = strconv.ParseInt(raw, 10, 64); err != nil || f.BeforeSeq < 1 {
			return invalidf("cursor is not one this API returned")
		}
	}
	limit, err := limitOf(q["limit"])
	if err != nil {
		return err
	}
	f.Limit = limit + 1
	evs, err := s.cfg.Events.ListEvents(r.Context(), f)
	if err != nil {
		return err
	}
	out := EventList{Events: []*Event{}}
	for i, e := range evs {
		if i == limit {
			break
		}
		out.Events = append(out.Events, &Event{ID: e.ID, Seq: e.Seq, Type: e.Type.WireType(), ConnectionID: e.ConnectionID,
			Subject: e.Subject, Reason: e.Reason, Time: e.Time.UTC()})
	}
	if len(evs) > limit || (len(evs) == limit && limit == maxLimit) {
		out.NextCursor = strconv.FormatInt(evs[limit-1].Seq, 10)
	}
	s.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// eventTypeOf returns the event type whose wire type is raw.
func eventTypeOf(raw string) (tokenkeeper.EventType, bool) {
	for _, t := range []tokenkeeper.EventType{tokenkeeper.EventConnected, tokenkeeper.EventRefreshed, tokenkeeper.EventDegraded,
		tokenkeeper.EventRecovered, tokenkeeper.EventReconnectRequired, tokenkeeper.EventDisconnected,
		tokenkeeper.EventPruned, tokenkeeper.EventClientRejected} {
		if t.WireType() == raw {
			return t, true
		}
	}
	return "", false
}
