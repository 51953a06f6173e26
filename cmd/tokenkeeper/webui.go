package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/webui"
)

// dashboard is what serve adds for people: the connect pages that httpapi renders through
// webui, and the operator dashboard at /ui, which reads the durable event log (the chart,
// the timeline) and the webhook outbox (the delivery log) that every replica shares.
type dashboard struct {
	st     backend
	events *eventSystem
	now    func() time.Time
}

func newDashboard(st backend, events *eventSystem, now func() time.Time) *dashboard {
	if now == nil {
		now = time.Now
	}
	return &dashboard{st: st, events: events, now: now}
}

// The event types the overview's chart counts as refreshes and as failures.
var (
	chartRefreshes = []tokenkeeper.EventType{tokenkeeper.EventRefreshed, tokenkeeper.EventRecovered}
	chartFailures  = []tokenkeeper.EventType{tokenkeeper.EventDegraded, tokenkeeper.EventReconnectRequired, tokenkeeper.EventClientRejected}
)

// perMinute is webui.Config.RefreshesPerMinute: two counts per minute of the event log
// (each an index range on the events' time), from since to now.
func (d *dashboard) perMinute(ctx context.Context, since time.Time) ([]webui.Bucket, error) {
	now := d.now()
	var out []webui.Bucket
	for m := since.Truncate(time.Minute); !m.After(now); m = m.Add(time.Minute) {
		b := webui.Bucket{Start: m.UTC()}
		var err error
		if b.Refreshes, err = d.st.CountEvents(ctx, tokenkeeper.EventFilter{Types: chartRefreshes, Since: m, Until: m.Add(time.Minute)}); err != nil {
			return nil, err
		}
		if b.Failures, err = d.st.CountEvents(ctx, tokenkeeper.EventFilter{Types: chartFailures, Since: m, Until: m.Add(time.Minute)}); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// timelineLength bounds each source of a connection's timeline.
const timelineLength = 50

// timeline is webui.Config.Timeline: the connection's newest events from the event log,
// and the operators' actions on it from the audit trail, newest first.
func (d *dashboard) timeline(ctx context.Context, id tokenkeeper.ConnectionID) ([]webui.TimelineItem, error) {
	var items []webui.TimelineItem
	entries, err := d.st.ListAudit(ctx, tokenkeeper.AuditFilter{ConnectionID: id, Limit: timelineLength})
	if err != nil {
		return nil, err
	}
	for _, a := range entries {
		text := auditWords(a.Action) + " by " + a.Actor
		if a.Detail != "" {
			text += " (" + a.Detail + ")"
		}
		items = append(items, webui.TimelineItem{Time: a.Time, Kind: "audit", Text: text})
	}
	events, err := d.st.ListEvents(ctx, tokenkeeper.EventFilter{ConnectionID: id, Newest: true, Limit: timelineLength})
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		text := eventWords(e.Type)
		if e.Reason != "" {
			text += ": " + e.Reason
		}
		items = append(items, webui.TimelineItem{Time: e.Time, Kind: string(e.Type), Text: text})
	}
	slices.SortStableFunc(items, func(a, b webui.TimelineItem) int { return b.Time.Compare(a.Time) })
	return items, nil
}

// deliveries is webui.Config.Deliveries: the outbox's delivery log, newest first, each
// with its endpoint's URL.
func (d *dashboard) deliveries(ctx context.Context, f webui.DeliveryFilter) ([]webui.Delivery, error) {
	var before int64
	if f.Before != "" {
		n, err := strconv.ParseInt(f.Before, 10, 64)
		if err != nil || n <= 0 {
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "a delivery cursor is a positive number")
		}
		before = n
	}
	list, err := d.events.endpoints.Deliveries(ctx, tokenkeeper.DeliveryFilter{Before: tokenkeeper.DeliveryID(before), Limit: f.Limit})
	if err != nil {
		return nil, err
	}
	urls := map[tokenkeeper.WebhookEndpointID]string{}
	out := make([]webui.Delivery, 0, len(list))
	for _, dl := range list {
		u, ok := urls[dl.EndpointID]
		if !ok {
			if ep, err := d.events.endpoints.Get(ctx, dl.EndpointID); err == nil {
				u = ep.URL
			}
			urls[dl.EndpointID] = u
		}
		at := dl.LastAttemptAt
		if at.IsZero() {
			at = dl.CreatedAt
		}
		errText := dl.LastError
		if errText == "" && dl.State != tokenkeeper.DeliveryDelivered {
			errText = string(dl.State)
		}
		out = append(out, webui.Delivery{
			ID: strconv.FormatInt(int64(dl.ID), 10), EndpointID: string(dl.EndpointID), EndpointURL: u,
			EventType: dl.Event.Type.WireType(), Time: at, Status: dl.LastStatus, Attempt: dl.Attempts, Error: errText,
		})
	}
	return out, nil
}

// endpoints is webui.Config.Endpoints.
func (d *dashboard) endpoints(ctx context.Context) ([]webui.Endpoint, error) {
	eps, err := d.events.endpoints.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]webui.Endpoint, 0, len(eps))
	for _, ep := range eps {
		out = append(out, webui.Endpoint{ID: string(ep.ID), URL: ep.URL})
	}
	return out, nil
}

// sendTest is webui.Config.SendTestEvent.
func (d *dashboard) sendTest(ctx context.Context, id string) error {
	_, err := d.events.endpoints.SendTest(ctx, tokenkeeper.WebhookEndpointID(id))
	return err
}

func auditWords(action string) string {
	switch action {
	case "connection.refresh":
		return "forced refresh"
	case "connection.delete":
		return "disconnected"
	case "connection.uninstall":
		return "revoked at the provider"
	case "connect_session.create":
		return "connect link created"
	case "connection.prune":
		return "removed by retention"
	}
	return action
}

func eventWords(t tokenkeeper.EventType) string {
	switch t {
	case tokenkeeper.EventConnected:
		return "connected"
	case tokenkeeper.EventRefreshed:
		return "refreshed"
	case tokenkeeper.EventDegraded:
		return "refreshing failed; will retry"
	case tokenkeeper.EventRecovered:
		return "refreshing works again"
	case tokenkeeper.EventReconnectRequired:
		return "the grant is dead; the customer must reconnect"
	case tokenkeeper.EventDisconnected:
		return "disconnected"
	}
	return string(t)
}

// connectPages are the pages httpapi shows end users in a connect flow.
func connectPages(s *settings, log *slog.Logger) (*webui.ConnectPages, error) {
	return webui.NewConnectPages(webui.ConnectConfig{AppName: s.appName, ProviderName: "Pleo", Scopes: s.scopeList(),
		AuthURL: s.prov.AuthURL, Logger: log})
}

// mount returns h with the dashboard answering /ui and everything under it.
func (d *dashboard) mount(h http.Handler, s *settings, st backend, keys tokenkeeper.Sealer, k *keeper.Keeper, flow *connect.Flow, log *slog.Logger) (http.Handler, error) {
	ui, err := webui.New(webui.Config{
		Store: st, APIKeys: st, Audit: st, Sealer: keys, Keeper: k, Flow: flow, PublicURL: s.public,
		Timeline:           d.timeline,
		RefreshesPerMinute: d.perMinute,
		Deliveries:         d.deliveries,
		Endpoints:          d.endpoints,
		SendTestEvent:      d.sendTest,
		Now:                d.now,
		Logger:             log,
	})
	if err != nil {
		return nil, fmt.Errorf("start the dashboard: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, webui.Prefix) {
			ui.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}
