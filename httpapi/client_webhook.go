package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tokenkeeper/tokenkeeper"
)

// CreateWebhookEndpoint calls POST /v1/webhook-endpoints (scope admin). It
// returns the new endpoint with its signing secret, which the server shows
// this once.
func (c *Client) CreateWebhookEndpoint(ctx context.Context, rawURL string) (*CreatedWebhookEndpoint, error) {
	var out CreatedWebhookEndpoint
	if err := c.do(ctx, http.MethodPost, "/v1/webhook-endpoints", nil, CreateWebhookEndpointRequest{URL: rawURL}, &out); err != nil {
		return nil, err
	}
	if out.Secret.IsZero() {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "httpapi client: the server's answer holds no secret")
	}
	return &out, nil
}

// ListWebhookEndpoints calls GET /v1/webhook-endpoints (scope admin): the
// endpoints not deleted, oldest first, without secrets.
func (c *Client) ListWebhookEndpoints(ctx context.Context) ([]*WebhookEndpoint, error) {
	var out WebhookEndpointList
	if err := c.do(ctx, http.MethodGet, "/v1/webhook-endpoints", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.WebhookEndpoints, nil
}

// DeleteWebhookEndpoint calls DELETE /v1/webhook-endpoints/{id} (scope
// admin) and returns the deleted endpoint.
func (c *Client) DeleteWebhookEndpoint(ctx context.Context, id tokenkeeper.WebhookEndpointID) (*WebhookEndpoint, error) {
	var out WebhookEndpoint
	if err := c.do(ctx, http.MethodDelete, "/v1/webhook-endpoints/"+segment(string(id)), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TestWebhookEndpoint calls POST /v1/webhook-endpoints/{id}/test (scope
// admin): a signed webhook.test event is enqueued to the endpoint.
func (c *Client) TestWebhookEndpoint(ctx context.Context, id tokenkeeper.WebhookEndpointID) (*WebhookTest, error) {
	var out WebhookTest
	if err := c.do(ctx, http.MethodPost, "/v1/webhook-endpoints/"+segment(string(id))+"/test", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListDeliveriesOptions selects deliveries for [Client.ListDeliveries].
// The zero value lists the newest 100.
type ListDeliveriesOptions struct {
	State tokenkeeper.DeliveryState
	// Limit is the page size, 1 to 1000; 0 means 100.
	Limit int
	// Cursor is a previous page's NextCursor; "" starts at the newest.
	Cursor string
}

// ListDeliveries calls GET /v1/webhook-endpoints/{id}/deliveries (scope
// admin): the endpoint's delivery log, newest first.
func (c *Client) ListDeliveries(ctx context.Context, id tokenkeeper.WebhookEndpointID, opts ListDeliveriesOptions) (*DeliveryList, error) {
	q := url.Values{}
	set(q, "state", string(opts.State))
	set(q, "cursor", opts.Cursor)
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	var out DeliveryList
	if err := c.do(ctx, http.MethodGet, "/v1/webhook-endpoints/"+segment(string(id))+"/deliveries", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListEventsOptions selects events for [Client.ListEvents]. The zero value
// lists the newest 100.
type ListEventsOptions struct {
	// Type is a wire type ("connection.refreshed"); "" lists every type.
	Type   string
	Limit  int
	Cursor string
}

// ListEvents calls GET /v1/connections/{id}/events (scope admin): the
// connection's events, newest first.
func (c *Client) ListEvents(ctx context.Context, id tokenkeeper.ConnectionID, opts ListEventsOptions) (*EventList, error) {
	q := url.Values{}
	set(q, "type", opts.Type)
	set(q, "cursor", opts.Cursor)
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	var out EventList
	if err := c.do(ctx, http.MethodGet, "/v1/connections/"+segment(string(id))+"/events", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
