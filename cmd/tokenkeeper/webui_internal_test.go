package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// TestDashboard_EventLog: the overview's chart counts, per minute, the refreshes and the
// failures in the durable event log (every replica's), and a connection's timeline merges
// its events with the operators' actions on it, newest first.
func TestDashboard_EventLog(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "tk.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)
	d := newDashboard(st, nil, func() time.Time { return now })
	add := func(typ tokenkeeper.EventType, id tokenkeeper.ConnectionID, at time.Time, reason string) {
		t.Helper()
		e := &tokenkeeper.StoredEvent{ID: tokenkeeper.NewEventID(), Event: tokenkeeper.Event{Type: typ, ConnectionID: id, Time: at, Reason: reason}}
		if err := st.AppendEvent(ctx, e, tokenkeeper.Fanout{}); err != nil {
			t.Fatal(err)
		}
	}
	// 90 minutes of events, one a minute: refreshed three times out of four, degraded the
	// fourth; plus a recovery and a dead grant in the current minute.
	wantRefreshes, wantFailures := 0, 0
	since := now.Truncate(time.Minute).Add(-59 * time.Minute)
	for i := range 90 {
		at := now.Add(-time.Duration(i) * time.Minute)
		typ := tokenkeeper.EventRefreshed
		if i%4 == 0 {
			typ = tokenkeeper.EventDegraded
		}
		add(typ, "a", at, "")
		if !at.Before(since) {
			if typ == tokenkeeper.EventDegraded {
				wantFailures++
			} else {
				wantRefreshes++
			}
		}
	}
	add(tokenkeeper.EventRecovered, "b", now, "")
	add(tokenkeeper.EventReconnectRequired, "b", now.Add(time.Second), "the provider rejected the refresh token (invalid_grant)")
	wantRefreshes, wantFailures = wantRefreshes+1, wantFailures+1

	buckets, err := d.perMinute(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	if len(buckets) != 60 || !buckets[0].Start.Equal(since) {
		t.Fatalf("%d buckets from %v, want 60 from %v", len(buckets), buckets[0].Start, since)
	}
	refreshes, failures := 0, 0
	for i, b := range buckets {
		if i > 0 && !b.Start.Equal(buckets[i-1].Start.Add(time.Minute)) {
			t.Fatalf("bucket %d starts at %v", i, b.Start)
		}
		refreshes, failures = refreshes+b.Refreshes, failures+b.Failures
	}
	if refreshes != wantRefreshes || failures != wantFailures {
		t.Errorf("chart: %d refreshes, %d failures; want %d and %d", refreshes, failures, wantRefreshes, wantFailures)
	}

	if err := st.AppendAudit(ctx, &tokenkeeper.AuditEntry{Time: now.Add(-time.Second), Actor: "apikey:ak1", Action: "connection.refresh", ConnectionID: "b"}); err != nil {
		t.Fatal(err)
	}
	items, err := d.timeline(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, it.Kind+": "+it.Text)
	}
	want := []string{
		"reconnect_required: the grant is dead; the customer must reconnect: the provider rejected the refresh token (invalid_grant)",
		"recovered: refreshing works again",
		"audit: forced refresh by apikey:ak1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
