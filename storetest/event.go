package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// outbox is what the event and webhook tests use: a store that keeps the
// event log and the webhook outbox.
type outbox interface {
	tokenkeeper.Store
	tokenkeeper.EventLog
	tokenkeeper.WebhookStore
}

// withOutbox adapts a test of the event log and outbox to a test, failing
// t if the store keeps neither.
func withOutbox(run func(t *testing.T, s outbox)) func(*testing.T, tokenkeeper.Store) {
	return func(t *testing.T, s tokenkeeper.Store) {
		t.Helper()
		o, ok := s.(outbox)
		if !ok {
			t.Fatalf("%T does not implement tokenkeeper.EventLog and tokenkeeper.WebhookStore", s)
		}
		run(t, o)
	}
}

// event returns an event of conn with every field set; reason tells
// events apart.
func event(conn tokenkeeper.ConnectionID, typ tokenkeeper.EventType, reason string) *tokenkeeper.StoredEvent {
	return &tokenkeeper.StoredEvent{
		ID: tokenkeeper.NewEventID(),
		Event: tokenkeeper.Event{
			Type: typ, ConnectionID: conn, Subject: "urn:pleo:company:" + string(conn),
			Reason: reason, Time: now(), Generation: 7,
		},
	}
}

// appendEvent appends e with fanout or fails t.
func appendEvent(t *testing.T, s outbox, e *tokenkeeper.StoredEvent, fanout tokenkeeper.Fanout) *tokenkeeper.StoredEvent {
	t.Helper()
	if err := s.AppendEvent(t.Context(), e, fanout); err != nil {
		t.Fatalf("AppendEvent(%s %s): %v", e.Type, e.Reason, err)
	}
	if e.Seq <= 0 {
		t.Fatalf("AppendEvent set Seq %d, want positive", e.Seq)
	}
	return e
}

// listEvents returns ListEvents(f) or fails t.
func listEvents(t *testing.T, s outbox, f tokenkeeper.EventFilter) []*tokenkeeper.StoredEvent {
	t.Helper()
	got, err := s.ListEvents(t.Context(), f)
	if err != nil {
		t.Fatalf("ListEvents(%+v): %v", f, err)
	}
	for _, e := range got {
		if e.Time.Location() != time.UTC || e.Time.Nanosecond()%1000 != 0 {
			t.Errorf("event %d: Time = %v, want UTC and whole microseconds", e.Seq, e.Time)
		}
	}
	return got
}

func appendEventTests() []test {
	return []test{
		{"OK", withOutbox(func(t *testing.T, s outbox) {
			e := event("c1", tokenkeeper.EventDegraded, "token endpoint: 503")
			e.Time = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("UTC+2", 7200))
			appendEvent(t, s, e, tokenkeeper.Fanout{})
			want := *e
			want.Time = e.Time.UTC().Truncate(time.Microsecond)
			wantEqual(t, "ListEvents", listEvents(t, s, tokenkeeper.EventFilter{}), []*tokenkeeper.StoredEvent{&want})
		})},
		{"SeqIncreases", withOutbox(func(t *testing.T, s outbox) {
			var prev int64
			for i := range 10 {
				e := appendEvent(t, s, event("c1", tokenkeeper.EventRefreshed, fmt.Sprint(i)), tokenkeeper.Fanout{})
				if e.Seq <= prev {
					t.Fatalf("event %d: Seq %d not above %d", i, e.Seq, prev)
				}
				prev = e.Seq
			}
		})},
		{"ConflictOnID", withOutbox(func(t *testing.T, s outbox) {
			ep := endpoint(t, s, "https://a.example/hook")
			e := appendEvent(t, s, event("c1", tokenkeeper.EventConnected, "first"), tokenkeeper.Fanout{})
			again := event("c1", tokenkeeper.EventConnected, "second")
			again.ID = e.ID
			wantCode(t, s.AppendEvent(t.Context(), again, tokenkeeper.Fanout{AllEndpoints: true}), tokenkeeper.CodeConflict)
			wantEqual(t, "ListEvents", listEvents(t, s, tokenkeeper.EventFilter{}), []*tokenkeeper.StoredEvent{e})
			wantEqual(t, "deliveries", listDeliveries(t, s, tokenkeeper.DeliveryFilter{EndpointID: ep.ID}), []*tokenkeeper.Delivery{})
		})},
		{"Invalid", withOutbox(func(t *testing.T, s outbox) {
			for name, change := range map[string]func(e *tokenkeeper.StoredEvent){
				"NoID":       func(e *tokenkeeper.StoredEvent) { e.ID = "" },
				"NoType":     func(e *tokenkeeper.StoredEvent) { e.Type = "" },
				"NULSubject": func(e *tokenkeeper.StoredEvent) { e.Subject = "a\x00b" },
				"BadUTF8":    func(e *tokenkeeper.StoredEvent) { e.Reason = "\xff" },
				"NULConn":    func(e *tokenkeeper.StoredEvent) { e.ConnectionID = "c\x00" },
			} {
				e := event("c1", tokenkeeper.EventConnected, name)
				change(e)
				if err := s.AppendEvent(t.Context(), e, tokenkeeper.Fanout{}); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
					t.Errorf("%s: AppendEvent = %v, want CodeInvalid", name, err)
				}
			}
			wantEqual(t, "ListEvents", listEvents(t, s, tokenkeeper.EventFilter{}), []*tokenkeeper.StoredEvent{})
		})},
		{"FanoutAll", withOutbox(func(t *testing.T, s outbox) {
			a := endpoint(t, s, "https://a.example/hook")
			b := endpoint(t, s, "http://127.0.0.1:9/hook")
			off := endpoint(t, s, "https://off.example/hook")
			disable(t, s, off.ID)
			e := appendEvent(t, s, event("c1", tokenkeeper.EventDegraded, ""), tokenkeeper.Fanout{AllEndpoints: true})
			ds := listDeliveries(t, s, tokenkeeper.DeliveryFilter{EventID: e.ID})
			got := map[tokenkeeper.WebhookEndpointID]bool{}
			for _, d := range ds {
				got[d.EndpointID] = true
				if d.State != tokenkeeper.DeliveryPending || d.Attempts != 0 || !d.NextAttemptAt.Equal(e.Time) || !d.CreatedAt.Equal(e.Time) {
					t.Errorf("new delivery %+v: want pending, 0 attempts, due and created at the event's time %v", d, e.Time)
				}
				wantEqual(t, "delivery's event", &d.Event, e)
			}
			wantEqual(t, "endpoints delivered to", got, map[tokenkeeper.WebhookEndpointID]bool{a.ID: true, b.ID: true})
		})},
		{"FanoutOne", withOutbox(func(t *testing.T, s outbox) {
			a := endpoint(t, s, "https://a.example/hook")
			endpoint(t, s, "https://b.example/hook")
			e := appendEvent(t, s, event("", tokenkeeper.EventWebhookTest, "test"), tokenkeeper.Fanout{Endpoint: a.ID})
			ds := listDeliveries(t, s, tokenkeeper.DeliveryFilter{EventID: e.ID})
			if len(ds) != 1 || ds[0].EndpointID != a.ID {
				t.Fatalf("deliveries = %+v, want one to %s", ds, a.ID)
			}
		})},
		{"FanoutUnknownEndpoint", withOutbox(func(t *testing.T, s outbox) {
			off := endpoint(t, s, "https://off.example/hook")
			disable(t, s, off.ID)
			for _, id := range []tokenkeeper.WebhookEndpointID{"we_nope", off.ID} {
				err := s.AppendEvent(t.Context(), event("", tokenkeeper.EventWebhookTest, "t"), tokenkeeper.Fanout{Endpoint: id})
				wantCode(t, err, tokenkeeper.CodeNotFound)
			}
			// Nothing stored: the event goes with its deliveries.
			wantEqual(t, "ListEvents", listEvents(t, s, tokenkeeper.EventFilter{}), []*tokenkeeper.StoredEvent{})
		})},
	}
}

func listEventsTests() []test {
	return []test{
		{"Filters", withOutbox(func(t *testing.T, s outbox) {
			base := now().Add(-time.Hour)
			var all []*tokenkeeper.StoredEvent
			for i, spec := range []struct {
				conn tokenkeeper.ConnectionID
				typ  tokenkeeper.EventType
			}{
				{"c1", tokenkeeper.EventConnected}, {"c2", tokenkeeper.EventConnected},
				{"c1", tokenkeeper.EventRefreshed}, {"c1", tokenkeeper.EventDegraded},
				{"c2", tokenkeeper.EventRefreshed}, {"c1", tokenkeeper.EventRecovered},
			} {
				e := event(spec.conn, spec.typ, fmt.Sprint(i))
				e.Time = base.Add(time.Duration(i) * time.Minute)
				all = append(all, appendEvent(t, s, e, tokenkeeper.Fanout{}))
			}
			rev := func(es ...*tokenkeeper.StoredEvent) []*tokenkeeper.StoredEvent {
				out := make([]*tokenkeeper.StoredEvent, len(es))
				for i, e := range es {
					out[len(es)-1-i] = e
				}
				return out
			}
			for _, tc := range []struct {
				name string
				f    tokenkeeper.EventFilter
				want []*tokenkeeper.StoredEvent
			}{
				{"All", tokenkeeper.EventFilter{}, all},
				{"Newest", tokenkeeper.EventFilter{Newest: true}, rev(all...)},
				{"Connection", tokenkeeper.EventFilter{ConnectionID: "c1"}, []*tokenkeeper.StoredEvent{all[0], all[2], all[3], all[5]}},
				{"Types", tokenkeeper.EventFilter{Types: []tokenkeeper.EventType{tokenkeeper.EventRefreshed, tokenkeeper.EventRecovered}}, []*tokenkeeper.StoredEvent{all[2], all[4], all[5]}},
				{"Since", tokenkeeper.EventFilter{Since: all[4].Time}, all[4:]},
				{"SinceSubMicro", tokenkeeper.EventFilter{Since: all[4].Time.Add(time.Nanosecond)}, all[5:]},
				{"Until", tokenkeeper.EventFilter{Until: all[2].Time}, all[:2]},
				{"UntilSubMicro", tokenkeeper.EventFilter{Until: all[2].Time.Add(time.Nanosecond)}, all[:3]},
				{"SinceUntil", tokenkeeper.EventFilter{Since: all[1].Time, Until: all[4].Time}, all[1:4]},
				{"AfterSeq", tokenkeeper.EventFilter{AfterSeq: all[3].Seq}, all[4:]},
				{"BeforeSeqNewest", tokenkeeper.EventFilter{BeforeSeq: all[3].Seq, Newest: true}, rev(all[:3]...)},
				{"Limit", tokenkeeper.EventFilter{Limit: 2}, all[:2]},
				{"LimitNewestOfOne", tokenkeeper.EventFilter{ConnectionID: "c2", Newest: true, Limit: 1}, []*tokenkeeper.StoredEvent{all[4]}},
				{"UnknownConnection", tokenkeeper.EventFilter{ConnectionID: "c9"}, nil},
				{"NULConnection", tokenkeeper.EventFilter{ConnectionID: "c\x00"}, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					wantEqual(t, "ListEvents", listEvents(t, s, tc.f), tc.want)
					f := tc.f
					f.AfterSeq, f.BeforeSeq, f.Limit, f.Newest = 0, 0, 0, false
					want := len(listEvents(t, s, f))
					n, err := s.CountEvents(t.Context(), f)
					if err != nil || n != want {
						t.Errorf("CountEvents(%+v) = %d, %v; want %d", f, n, err, want)
					}
				})
			}
		})},
		{"LimitCap", withOutbox(func(t *testing.T, s outbox) {
			for i := range 1001 {
				appendEvent(t, s, event("c1", tokenkeeper.EventRefreshed, fmt.Sprint(i)), tokenkeeper.Fanout{})
			}
			if n := len(listEvents(t, s, tokenkeeper.EventFilter{Limit: 5000})); n != 1000 {
				t.Errorf("ListEvents(Limit 5000) returned %d, want the cap 1000", n)
			}
			if n := len(listEvents(t, s, tokenkeeper.EventFilter{})); n != 100 {
				t.Errorf("ListEvents(Limit 0) returned %d, want 100", n)
			}
		})},
	}
}

func latestEventsTests() []test {
	return []test{
		{"OK", withOutbox(func(t *testing.T, s outbox) {
			states := tokenkeeper.StateEventTypes()
			appendEvent(t, s, event("c1", tokenkeeper.EventConnected, ""), tokenkeeper.Fanout{})
			c1 := appendEvent(t, s, event("c1", tokenkeeper.EventDegraded, ""), tokenkeeper.Fanout{})
			c1r := appendEvent(t, s, event("c1", tokenkeeper.EventRefreshed, ""), tokenkeeper.Fanout{})
			c2 := appendEvent(t, s, event("c2", tokenkeeper.EventDisconnected, ""), tokenkeeper.Fanout{})
			appendEvent(t, s, event("c3", tokenkeeper.EventRefreshed, ""), tokenkeeper.Fanout{})
			got, err := s.LatestEvents(t.Context(), []tokenkeeper.ConnectionID{"c1", "c2", "c3", "c4", "c\x00"}, states)
			if err != nil {
				t.Fatal(err)
			}
			wantEqual(t, "LatestEvents(states)", got, map[tokenkeeper.ConnectionID]*tokenkeeper.StoredEvent{"c1": c1, "c2": c2})
			got, err = s.LatestEvents(t.Context(), []tokenkeeper.ConnectionID{"c1"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantEqual(t, "LatestEvents(any type)", got, map[tokenkeeper.ConnectionID]*tokenkeeper.StoredEvent{"c1": c1r})
		})},
		{"TooMany", withOutbox(func(t *testing.T, s outbox) {
			ids := make([]tokenkeeper.ConnectionID, 1001)
			for i := range ids {
				ids[i] = tokenkeeper.ConnectionID(fmt.Sprint("c", i))
			}
			_, err := s.LatestEvents(t.Context(), ids, nil)
			wantCode(t, err, tokenkeeper.CodeInvalid)
		})},
	}
}

// at3 sets e's Time to when and returns e.
func at3(e *tokenkeeper.StoredEvent, when time.Time) *tokenkeeper.StoredEvent {
	e.Time = when
	return e
}

func pruneEventsTests() []test {
	return []test{
		{"Backlog", withOutbox(func(t *testing.T, s outbox) {
			// More than any store's batch: every old event goes, in one call.
			old := now().Add(-48 * time.Hour)
			const n = 6001
			for i := range n {
				e := event("c1", tokenkeeper.EventRefreshed, "")
				e.Time = old.Add(time.Duration(i) * time.Microsecond)
				appendEvent(t, s, e, tokenkeeper.Fanout{})
			}
			got, err := s.PruneEvents(t.Context(), now().Add(-24*time.Hour), tokenkeeper.StateEventTypes())
			if err != nil || got != n {
				t.Fatalf("PruneEvents = %d, %v; want %d", got, err, n)
			}
			wantEqual(t, "events left", listEvents(t, s, tokenkeeper.EventFilter{}), []*tokenkeeper.StoredEvent{})
		})},
		{"OK", withOutbox(func(t *testing.T, s outbox) {
			// c1 and c2 exist; the events of c3, removed, all go.
			create(t, s, record("c1"))
			create(t, s, record("c2"))
			ep := endpoint(t, s, "https://a.example/hook")
			old := now().Add(-48 * time.Hour)
			appendEvent(t, s, at3(event("c3", tokenkeeper.EventPruned, ""), old), tokenkeeper.Fanout{})
			started := appendEvent(t, s, at3(event("", "log_started", ""), old), tokenkeeper.Fanout{})
			appendEvent(t, s, at3(event("", tokenkeeper.EventWebhookTest, ""), old), tokenkeeper.Fanout{})
			at := func(e *tokenkeeper.StoredEvent, when time.Time) *tokenkeeper.StoredEvent { e.Time = when; return e }
			all := tokenkeeper.Fanout{AllEndpoints: true}
			oldConnected := appendEvent(t, s, at(event("c1", tokenkeeper.EventConnected, ""), old), all)
			oldRefreshed := appendEvent(t, s, at(event("c1", tokenkeeper.EventRefreshed, ""), old), tokenkeeper.Fanout{})
			lastState := appendEvent(t, s, at(event("c1", tokenkeeper.EventDegraded, ""), old), all)
			pending := appendEvent(t, s, at(event("c2", tokenkeeper.EventDisconnected, ""), old), all)
			appendEvent(t, s, at(event("c2", tokenkeeper.EventConnected, ""), old.Add(time.Second)), tokenkeeper.Fanout{})
			fresh := appendEvent(t, s, event("c1", tokenkeeper.EventRefreshed, ""), tokenkeeper.Fanout{})
			// Deliver all but pending's.
			for _, d := range claim(t, s, "o", now(), time.Hour, 10) {
				if d.EventID == pending.ID {
					continue
				}
				finish(t, s, d, tokenkeeper.DeliveryResult{At: now(), State: tokenkeeper.DeliveryDelivered, Status: 204})
			}
			n, err := s.PruneEvents(t.Context(), now().Add(-24*time.Hour), append(tokenkeeper.StateEventTypes(), "log_started"))
			if err != nil {
				t.Fatal(err)
			}
			got := listEvents(t, s, tokenkeeper.EventFilter{})
			// Kept: c1's newest state event, the event with a pending
			// delivery, c2's newest state event, and the fresh one.
			var c2Latest *tokenkeeper.StoredEvent
			for _, e := range got {
				if e.ConnectionID == "c2" && e.Type == tokenkeeper.EventConnected {
					c2Latest = e
				}
			}
			if c2Latest == nil {
				t.Fatalf("c2's newest state event was pruned; events left: %+v", got)
			}
			wantEqual(t, "events left", got, []*tokenkeeper.StoredEvent{started, lastState, pending, c2Latest, fresh})
			if n != 4 {
				t.Errorf("PruneEvents = %d, want 4 (c3's pruned, the test event, c1's old connected and refreshed)", n)
			}
			// The pruned event's delivery went with it.
			wantEqual(t, "deliveries of a pruned event", listDeliveries(t, s, tokenkeeper.DeliveryFilter{EventID: oldConnected.ID}), []*tokenkeeper.Delivery{})
			if ds := listDeliveries(t, s, tokenkeeper.DeliveryFilter{EndpointID: ep.ID}); len(ds) != 2 {
				t.Errorf("deliveries left = %d, want 2 (lastState's, pending's)", len(ds))
			}
			for _, e := range got {
				if e.ID == oldRefreshed.ID {
					t.Errorf("an old refreshed event was kept")
				}
			}
		})},
	}
}
