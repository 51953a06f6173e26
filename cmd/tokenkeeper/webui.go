package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/webui"
)

// dashboard is what serve adds for people: the connect pages that httpapi renders through
// webui, and the operator dashboard at /ui. Until the durable event log exists, it also
// remembers this process's recent keeper events, for the overview's chart and the
// connection timeline: per process, so with several replicas each dashboard counts the
// refreshes its own replica made, and a restart forgets them.
type dashboard struct {
	now func() time.Time

	mu      sync.Mutex
	minutes map[int64]*webui.Bucket // by Unix minute; the last hour is kept
	recent  []tokenkeeper.Event     // a ring of the last recentEvents events
	next    int
}

// recentEvents bounds the events a dashboard remembers.
const recentEvents = 4096

func newDashboard(now func() time.Time) *dashboard {
	if now == nil {
		now = time.Now
	}
	return &dashboard{now: now, minutes: map[int64]*webui.Bucket{}}
}

// events returns an event handler that records e, then passes it to next (nil: none).
func (d *dashboard) events(next tokenkeeper.EventHandler) tokenkeeper.EventHandler {
	return tokenkeeper.EventHandlerFunc(func(ctx context.Context, e tokenkeeper.Event) {
		d.record(e)
		if next != nil {
			next.Handle(ctx, e)
		}
	})
}

func (d *dashboard) record(e tokenkeeper.Event) {
	at := e.Time
	if at.IsZero() {
		at = d.now()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e.Time = at
	if len(d.recent) < recentEvents {
		d.recent = append(d.recent, e)
	} else {
		d.recent[d.next] = e
		d.next = (d.next + 1) % recentEvents
	}
	m, cur := at.Unix()/60, d.now().Unix()/60
	if m < cur-60 {
		return // older than the chart
	}
	b := d.minutes[m]
	if b == nil {
		b = &webui.Bucket{Start: time.Unix(m*60, 0).UTC()}
		d.minutes[m] = b
		for k := range d.minutes {
			if k < cur-60 {
				delete(d.minutes, k)
			}
		}
	}
	switch e.Type {
	case tokenkeeper.EventRefreshed, tokenkeeper.EventRecovered:
		b.Refreshes++
	case tokenkeeper.EventDegraded, tokenkeeper.EventReconnectRequired, tokenkeeper.EventClientRejected:
		b.Failures++
	}
}

// perMinute is webui.Config.RefreshesPerMinute from the events this process saw.
func (d *dashboard) perMinute(_ context.Context, since time.Time) ([]webui.Bucket, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []webui.Bucket
	for _, b := range d.minutes {
		if !b.Start.Before(since.Truncate(time.Minute)) {
			out = append(out, *b)
		}
	}
	slices.SortFunc(out, func(a, b webui.Bucket) int { return a.Start.Compare(b.Start) })
	return out, nil
}

// timeline is webui.Config.Timeline from what exists today: the audit trail of the
// connection, its record's own times, and the events this process saw.
func (d *dashboard) timeline(st backend) func(ctx context.Context, id tokenkeeper.ConnectionID) ([]webui.TimelineItem, error) {
	return func(ctx context.Context, id tokenkeeper.ConnectionID) ([]webui.TimelineItem, error) {
		var items []webui.TimelineItem
		entries, err := st.ListAudit(ctx, tokenkeeper.AuditFilter{ConnectionID: id, Limit: 50})
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
		seen := map[string]bool{}
		d.mu.Lock()
		for _, e := range d.recent {
			if e.ConnectionID != id {
				continue
			}
			text := eventWords(e.Type)
			if e.Reason != "" {
				text += ": " + e.Reason
			}
			items = append(items, webui.TimelineItem{Time: e.Time, Kind: string(e.Type), Text: text})
			seen[string(e.Type)+e.Time.Truncate(time.Second).String()] = true
		}
		d.mu.Unlock()
		rec, err := st.GetConnection(ctx, id)
		if err != nil {
			return nil, err
		}
		add := func(t time.Time, kind, text string) {
			if !t.IsZero() && !seen[kind+t.Truncate(time.Second).String()] {
				items = append(items, webui.TimelineItem{Time: t, Kind: kind, Text: text})
			}
		}
		add(rec.CreatedAt, "connected", "first connected")
		add(rec.LastRefreshAt, "refreshed", "last refresh committed a new token set")
		add(rec.DegradedSince, "degraded", "refreshing started to fail: "+rec.LastError)
		if rec.State != tokenkeeper.StateActive {
			add(rec.UpdatedAt, string(rec.State), cmp.Or(rec.LastError, string(rec.State)))
		}
		slices.SortStableFunc(items, func(a, b webui.TimelineItem) int { return b.Time.Compare(a.Time) })
		return items, nil
	}
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
		Timeline:           d.timeline(st),
		RefreshesPerMinute: d.perMinute,
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
