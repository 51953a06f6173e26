package main

import (
	"context"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// TestDashboard_Events: the per-minute counts keep the last hour of this process's
// refreshes and failures, and the ring of recent events stays bounded.
func TestDashboard_Events(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)
	d := newDashboard(func() time.Time { return now })
	var passed int
	h := d.events(tokenkeeper.EventHandlerFunc(func(context.Context, tokenkeeper.Event) { passed++ }))
	for i := range recentEvents + 10 {
		typ := tokenkeeper.EventRefreshed
		if i%4 == 0 {
			typ = tokenkeeper.EventDegraded
		}
		h.Handle(context.Background(), tokenkeeper.Event{Type: typ, ConnectionID: "a", Time: now.Add(-time.Duration(i%90) * time.Minute)})
	}
	if passed != recentEvents+10 {
		t.Errorf("passed on %d events", passed)
	}
	if len(d.recent) != recentEvents {
		t.Errorf("the ring holds %d events", len(d.recent))
	}
	buckets, err := d.perMinute(context.Background(), now.Add(-59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(buckets) != 60 || !buckets[0].Start.Equal(now.Truncate(time.Minute).Add(-59*time.Minute)) {
		t.Fatalf("%d buckets from %v", len(buckets), buckets[0].Start)
	}
	total := 0
	for i, b := range buckets {
		if i > 0 && !b.Start.After(buckets[i-1].Start) {
			t.Fatal("buckets out of order")
		}
		total += b.Refreshes + b.Failures
	}
	if total == 0 || len(d.minutes) > 62 {
		t.Errorf("total %d, %d minutes kept", total, len(d.minutes))
	}
}
