package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

func TestServer_WebhookEndpoints(t *testing.T) {
	e := newEnv(t)
	var created httpapi.CreatedWebhookEndpoint
	t.Run("Create", func(t *testing.T) {
		r := e.do(t, req{method: "POST", path: "/v1/webhook-endpoints", key: e.admin,
			body: map[string]any{"url": "https://hooks.example.com/tk?team=ops"}})
		want(t, r, http.StatusCreated, "")
		r.decode(t, &created)
		e.secrets.add("webhook secret", created.Secret.Reveal())
		var raw map[string]any
		r.decode(t, &raw)
		if len(raw) != 3 || raw["url"] != "https://hooks.example.com/tk?team=ops" ||
			!strings.HasPrefix(created.Secret.Reveal(), "whsec_") || !strings.HasPrefix(string(created.ID), "we_") {
			t.Errorf("created %s, want exactly id, url, secret", r.body)
		}
		if _, err := tokenkeeper.WebhookSecretKey(created.Secret); err != nil {
			t.Errorf("the secret: %v", err)
		}
		entries, _ := e.store.ListAudit(context.Background(), tokenkeeper.AuditFilter{Limit: 1})
		if len(entries) != 1 || entries[0].Action != "webhook_endpoint.create" || !strings.Contains(entries[0].Detail, string(created.ID)) {
			t.Errorf("audit %+v", entries)
		}
	})
	t.Run("CreateHTTP", func(t *testing.T) {
		r := e.do(t, req{method: "POST", path: "/v1/webhook-endpoints", key: e.admin,
			body: map[string]any{"url": "http://127.0.0.1:9999/hook"}})
		want(t, r, http.StatusCreated, "")
		var c httpapi.CreatedWebhookEndpoint
		r.decode(t, &c)
		e.secrets.add("webhook secret", c.Secret.Reveal())
		if !strings.Contains(e.logs.String(), "plain http") {
			t.Error("no warning for an http:// endpoint")
		}
		want(t, e.do(t, req{method: "DELETE", path: "/v1/webhook-endpoints/" + string(c.ID), key: e.admin}), http.StatusOK, "")
	})
	t.Run("CreateRefused", func(t *testing.T) {
		for _, u := range []string{"ftp://a.example/x", "https://user:pw@a.example/x", "not a url", ""} {
			r := e.do(t, req{method: "POST", path: "/v1/webhook-endpoints", key: e.admin, body: map[string]any{"url": u}})
			want(t, r, http.StatusBadRequest, tokenkeeper.CodeInvalid)
		}
		want(t, e.do(t, req{method: "POST", path: "/v1/webhook-endpoints", key: e.admin, body: "{}",
			header: map[string]string{"Content-Type": "text/plain"}}), http.StatusUnsupportedMediaType, "")
		want(t, e.do(t, req{method: "POST", path: "/v1/webhook-endpoints", key: e.admin,
			body: `{"url": "https://a.example/` + strings.Repeat("a", httpapi.DefaultMaxBodyBytes) + `"}`}), http.StatusRequestEntityTooLarge, "")
	})
	t.Run("CreateStoreDown", func(t *testing.T) {
		restore := e.faults.inject("CreateWebhookEndpoint", errUnavailable)
		defer restore()
		r := e.do(t, req{method: "POST", path: "/v1/webhook-endpoints", key: e.admin, body: map[string]any{"url": "https://b.example/x"}})
		want(t, r, http.StatusServiceUnavailable, tokenkeeper.CodeUnavailable)
	})
	t.Run("List", func(t *testing.T) {
		r := e.do(t, req{method: "GET", path: "/v1/webhook-endpoints", key: e.admin})
		want(t, r, http.StatusOK, "")
		var l httpapi.WebhookEndpointList
		r.decode(t, &l)
		if len(l.WebhookEndpoints) != 1 || l.WebhookEndpoints[0].ID != created.ID || l.WebhookEndpoints[0].DeletedAt != nil {
			t.Errorf("list %s", r.body)
		}
		if strings.Contains(string(r.body), "whsec_") {
			t.Errorf("the list holds a secret")
		}
		want(t, e.do(t, req{method: "GET", path: "/v1/webhook-endpoints?x=1", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
		restore := e.faults.inject("ListWebhookEndpoints", errInternal)
		want(t, e.do(t, req{method: "GET", path: "/v1/webhook-endpoints", key: e.admin}), http.StatusInternalServerError, tokenkeeper.CodeInternal)
		restore()
	})
	t.Run("Test", func(t *testing.T) {
		r := e.do(t, req{method: "POST", path: "/v1/webhook-endpoints/" + string(created.ID) + "/test", key: e.admin})
		want(t, r, http.StatusAccepted, "")
		var wt httpapi.WebhookTest
		r.decode(t, &wt)
		if wt.Type != "webhook.test" || !strings.HasPrefix(string(wt.EventID), "evt_") {
			t.Errorf("test %s", r.body)
		}
		want(t, e.do(t, req{method: "POST", path: "/v1/webhook-endpoints/we_nope/test", key: e.admin}), http.StatusNotFound, tokenkeeper.CodeNotFound)
		want(t, e.do(t, req{method: "POST", path: "/v1/webhook-endpoints/WE_BAD/test", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
		restore := e.faults.inject("AppendEvent", errUnavailable)
		want(t, e.do(t, req{method: "POST", path: "/v1/webhook-endpoints/" + string(created.ID) + "/test", key: e.admin}), http.StatusServiceUnavailable, tokenkeeper.CodeUnavailable)
		restore()
	})
	t.Run("Deliveries", func(t *testing.T) {
		path := "/v1/webhook-endpoints/" + string(created.ID) + "/deliveries"
		r := e.do(t, req{method: "GET", path: path, key: e.admin})
		want(t, r, http.StatusOK, "")
		var l httpapi.DeliveryList
		r.decode(t, &l)
		if len(l.Deliveries) != 1 || l.Deliveries[0].Type != "webhook.test" || l.Deliveries[0].State != tokenkeeper.DeliveryPending ||
			l.Deliveries[0].NextAttemptAt == nil || l.Deliveries[0].LastAttemptAt != nil {
			t.Errorf("deliveries %s", r.body)
		}
		// Pages.
		for range 2 {
			want(t, e.do(t, req{method: "POST", path: "/v1/webhook-endpoints/" + string(created.ID) + "/test", key: e.admin}), http.StatusAccepted, "")
		}
		r = e.do(t, req{method: "GET", path: path + "?limit=2", key: e.admin})
		want(t, r, http.StatusOK, "")
		r.decode(t, &l)
		if len(l.Deliveries) != 2 || l.NextCursor == "" {
			t.Fatalf("first page %s", r.body)
		}
		r = e.do(t, req{method: "GET", path: path + "?limit=2&state=pending&cursor=" + l.NextCursor, key: e.admin})
		want(t, r, http.StatusOK, "")
		l = httpapi.DeliveryList{}
		r.decode(t, &l)
		if len(l.Deliveries) != 1 || l.NextCursor != "" {
			t.Fatalf("second page %s", r.body)
		}
		for _, bad := range []string{"?state=lost", "?cursor=0", "?limit=0", "?what=1"} {
			want(t, e.do(t, req{method: "GET", path: path + bad, key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
		}
		want(t, e.do(t, req{method: "GET", path: "/v1/webhook-endpoints/we_nope/deliveries", key: e.admin}), http.StatusNotFound, tokenkeeper.CodeNotFound)
		restore := e.faults.inject("ListDeliveries", errUnavailable)
		want(t, e.do(t, req{method: "GET", path: path, key: e.admin}), http.StatusServiceUnavailable, tokenkeeper.CodeUnavailable)
		restore()
	})
	t.Run("Delete", func(t *testing.T) {
		path := "/v1/webhook-endpoints/" + string(created.ID)
		r := e.do(t, req{method: "DELETE", path: path, key: e.admin})
		want(t, r, http.StatusOK, "")
		var ep httpapi.WebhookEndpoint
		r.decode(t, &ep)
		if ep.DeletedAt == nil {
			t.Errorf("deleted %s", r.body)
		}
		want(t, e.do(t, req{method: "DELETE", path: path, key: e.admin}), http.StatusNotFound, tokenkeeper.CodeNotFound)
		want(t, e.do(t, req{method: "DELETE", path: "/v1/webhook-endpoints/we-", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
		// Its log stays readable; its pending deliveries failed.
		r = e.do(t, req{method: "GET", path: path + "/deliveries?state=failed", key: e.admin})
		want(t, r, http.StatusOK, "")
		var l httpapi.DeliveryList
		r.decode(t, &l)
		if len(l.Deliveries) != 3 || l.Deliveries[0].NextAttemptAt != nil {
			t.Errorf("after delete: %s", r.body)
		}
		r = e.do(t, req{method: "GET", path: "/v1/webhook-endpoints", key: e.admin})
		var list httpapi.WebhookEndpointList
		r.decode(t, &list)
		if len(list.WebhookEndpoints) != 0 {
			t.Errorf("a deleted endpoint is listed: %s", r.body)
		}
	})
}

func TestServer_Events(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Microsecond)
	for i, typ := range []tokenkeeper.EventType{tokenkeeper.EventConnected, tokenkeeper.EventRefreshed, tokenkeeper.EventRefreshed, tokenkeeper.EventDegraded} {
		ev := &tokenkeeper.StoredEvent{ID: tokenkeeper.NewEventID(), Event: tokenkeeper.Event{
			Type: typ, ConnectionID: "c1", Subject: "urn:pleo:company:1", Time: base.Add(time.Duration(i) * time.Second)}}
		if err := e.store.AppendEvent(ctx, ev, tokenkeeper.Fanout{}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.do(t, req{method: "GET", path: "/v1/connections/c1/events", key: e.admin})
	want(t, r, http.StatusOK, "")
	var l httpapi.EventList
	r.decode(t, &l)
	if len(l.Events) != 4 || l.Events[0].Type != "connection.degraded" || l.Events[3].Type != "connection.connected" {
		t.Fatalf("events %s", r.body)
	}
	r = e.do(t, req{method: "GET", path: "/v1/connections/c1/events?type=connection.refreshed&limit=1", key: e.admin})
	want(t, r, http.StatusOK, "")
	r.decode(t, &l)
	if len(l.Events) != 1 || l.NextCursor == "" {
		t.Fatalf("first page %s", r.body)
	}
	r = e.do(t, req{method: "GET", path: "/v1/connections/c1/events?type=connection.refreshed&limit=1&cursor=" + l.NextCursor, key: e.admin})
	l = httpapi.EventList{}
	r.decode(t, &l)
	if len(l.Events) != 1 || l.NextCursor != "" || l.Events[0].Type != "connection.refreshed" {
		t.Fatalf("second page %s", r.body)
	}
	r = e.do(t, req{method: "GET", path: "/v1/connections/unknown/events", key: e.admin})
	want(t, r, http.StatusOK, "")
	for _, bad := range []string{"?type=refreshed", "?cursor=x", "?limit=1001"} {
		want(t, e.do(t, req{method: "GET", path: "/v1/connections/c1/events" + bad, key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	}
	want(t, e.do(t, req{method: "GET", path: "/v1/connections/c%20/events", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	restore := e.faults.inject("ListEvents", errInternal)
	want(t, e.do(t, req{method: "GET", path: "/v1/connections/c1/events", key: e.admin}), http.StatusInternalServerError, tokenkeeper.CodeInternal)
	restore()
}

func TestClient_Webhooks(t *testing.T) {
	e := newEnv(t)
	c := e.apiClient(e.admin)
	ctx := tctx(t)
	created, err := c.CreateWebhookEndpoint(ctx, "https://hooks.example/c")
	if err != nil {
		t.Fatal(err)
	}
	e.secrets.add("webhook secret", created.Secret.Reveal())
	if fmt.Sprint(created) == "" || strings.Contains(fmt.Sprint(created), created.Secret.Reveal()) {
		t.Errorf("a CreatedWebhookEndpoint prints its secret")
	}
	list, err := c.ListWebhookEndpoints(ctx)
	if err != nil || len(list) != 1 || list[0].ID != created.ID {
		t.Fatalf("list %v, %v", list, err)
	}
	test, err := c.TestWebhookEndpoint(ctx, created.ID)
	if err != nil || test.Type != "webhook.test" {
		t.Fatalf("test %v, %v", test, err)
	}
	ds, err := c.ListDeliveries(ctx, created.ID, httpapi.ListDeliveriesOptions{State: tokenkeeper.DeliveryPending, Limit: 5})
	if err != nil || len(ds.Deliveries) != 1 || ds.Deliveries[0].EventID != test.EventID {
		t.Fatalf("deliveries %v, %v", ds, err)
	}
	if _, err := c.DeleteWebhookEndpoint(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteWebhookEndpoint(ctx, created.ID); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
		t.Errorf("deleting again: %v", err)
	}
	evs, err := c.ListEvents(ctx, "c1", httpapi.ListEventsOptions{Type: "connection.connected", Limit: 10})
	if err != nil || len(evs.Events) != 0 {
		t.Errorf("events %v, %v", evs, err)
	}
}
