package webhook_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

func TestMissing(t *testing.T) {
	const (
		connected  = tokenkeeper.EventConnected
		degraded   = tokenkeeper.EventDegraded
		recovered  = tokenkeeper.EventRecovered
		reconnect  = tokenkeeper.EventReconnectRequired
		disconnect = tokenkeeper.EventDisconnected
		none       = tokenkeeper.EventType("")
	)
	active := tokenkeeper.Connection{State: tokenkeeper.StateActive}
	sick := tokenkeeper.Connection{State: tokenkeeper.StateActive, DegradedSince: time.Now()}
	dead := tokenkeeper.Connection{State: tokenkeeper.StateReconnectRequired}
	gone := tokenkeeper.Connection{State: tokenkeeper.StateDisconnected}
	for _, tc := range []struct {
		name string
		c    tokenkeeper.Connection
		last tokenkeeper.EventType
		want []tokenkeeper.EventType
	}{
		{"ActiveAfterConnected", active, connected, nil},
		{"ActiveAfterRecovered", active, recovered, nil},
		{"ActiveAfterDegraded", active, degraded, []tokenkeeper.EventType{recovered}},
		{"ActiveAfterNothing", active, none, []tokenkeeper.EventType{connected}},
		{"ActiveAfterReconnectRequired", active, reconnect, []tokenkeeper.EventType{connected}},
		{"ActiveAfterDisconnected", active, disconnect, []tokenkeeper.EventType{connected}},
		{"DegradedAfterDegraded", sick, degraded, nil},
		{"DegradedAfterConnected", sick, connected, []tokenkeeper.EventType{degraded}},
		{"DegradedAfterRecovered", sick, recovered, []tokenkeeper.EventType{degraded}},
		{"DegradedAfterDisconnected", sick, disconnect, []tokenkeeper.EventType{connected, degraded}},
		{"DegradedAfterNothing", sick, none, []tokenkeeper.EventType{connected, degraded}},
		{"ReconnectRequired", dead, degraded, []tokenkeeper.EventType{reconnect}},
		{"ReconnectRequiredAfterIt", dead, reconnect, nil},
		{"Disconnected", gone, connected, []tokenkeeper.EventType{disconnect}},
		{"DisconnectedAfterIt", gone, disconnect, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var last *tokenkeeper.StoredEvent
			if tc.last != "" {
				last = &tokenkeeper.StoredEvent{Event: tokenkeeper.Event{Type: tc.last}}
			}
			if diff := cmp.Diff(tc.want, webhook.Missing(&tc.c, last)); diff != "" {
				t.Errorf("Missing (-want +got):\n%s", diff)
			}
		})
	}
}

// record returns a connection record in state, written at at.
func record(id tokenkeeper.ConnectionID, state tokenkeeper.State, at time.Time) *tokenkeeper.Record {
	return &tokenkeeper.Record{Connection: tokenkeeper.Connection{
		ID: id, Provider: "pleo", Subject: "urn:pleo:company:" + string(id), State: state,
		Generation: 1, CreatedAt: at, UpdatedAt: at,
	}}
}

func (e *env) reconciler(s store) *webhook.Reconciler {
	r, err := webhook.NewReconciler(webhook.ReconcilerConfig{Store: s, Log: s, Now: e.clock.Now, Logger: e.logger()})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func reconcile(t *testing.T, r *webhook.Reconciler) []*tokenkeeper.StoredEvent {
	t.Helper()
	got, err := r.Reconcile(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func types(es []*tokenkeeper.StoredEvent) map[tokenkeeper.ConnectionID][]tokenkeeper.EventType {
	out := map[tokenkeeper.ConnectionID][]tokenkeeper.EventType{}
	for _, e := range es {
		out[e.ConnectionID] = append(out[e.ConnectionID], e.Type)
	}
	return out
}

// TestReconciler_Crash: a state change committed by a process that died
// before appending its event is recorded and sent by the next
// reconciliation; the dead process's event, appended late after all, is
// the same event (not a second one).
func TestReconciler_Crash(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	rcv := newReceiver(t)
	rcv.register(e, e.store)
	rec := e.reconciler(e.store)
	reconcile(t, rec) // the log starts here: nothing to do

	// The keeper connects c1 and records it; then it degrades c1 and dies
	// before the event is appended.
	c1 := record("c1", tokenkeeper.StateActive, e.clock.Now())
	if err := e.store.CreateConnection(ctx, c1); err != nil {
		t.Fatal(err)
	}
	recorder := e.recorder(e.store)
	recorder.Handle(ctx, tokenkeeper.Event{Type: tokenkeeper.EventConnected, ConnectionID: "c1", Time: c1.UpdatedAt, Generation: 1})
	e.clock.Add(time.Minute)
	c1.DegradedSince, c1.LastError, c1.UpdatedAt, c1.Generation = e.clock.Now(), "token endpoint: 503", e.clock.Now(), 2
	if err := e.store.UpdateConnection(ctx, c1, 1); err != nil {
		t.Fatal(err)
	}
	// Within the grace the reconciler leaves it alone: the event may be on
	// its way.
	if got := reconcile(t, rec); len(got) != 0 {
		t.Fatalf("repaired within the grace: %v", types(got))
	}
	e.clock.Add(2 * time.Minute)
	got := reconcile(t, rec)
	if diff := cmp.Diff(map[tokenkeeper.ConnectionID][]tokenkeeper.EventType{"c1": {tokenkeeper.EventDegraded}}, types(got)); diff != "" {
		t.Fatalf("repaired (-want +got):\n%s", diff)
	}
	if got[0].Reason != "token endpoint: 503" || got[0].Generation != 2 {
		t.Errorf("repaired event = %+v", got[0])
	}
	// Reconciling again finds nothing; the dead process's late append is a
	// duplicate the log refuses.
	if got := reconcile(t, rec); len(got) != 0 {
		t.Errorf("second pass repaired %v", types(got))
	}
	recorder.Handle(ctx, tokenkeeper.Event{Type: tokenkeeper.EventDegraded, ConnectionID: "c1", Time: c1.UpdatedAt, Generation: 2})
	evs, _ := e.store.ListEvents(ctx, tokenkeeper.EventFilter{ConnectionID: "c1"})
	if len(evs) != 2 {
		t.Errorf("c1 has %d events, want 2 (connected, degraded)", len(evs))
	}
	runOnce(t, e.dispatcher(e.store, nil))
	if n := len(rcv.delivered()); n != 2 {
		t.Errorf("receiver got %d events, want 2", n)
	}
}

// TestReconciler_Baseline: connections that existed before the event log
// get their state recorded without a webhook; one connected since, whose
// event was lost, gets its webhook.
func TestReconciler_Baseline(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	rcv := newReceiver(t)
	rcv.register(e, e.store)
	old := e.clock.Now().Add(-time.Hour)
	for _, r := range []*tokenkeeper.Record{
		record("old-active", tokenkeeper.StateActive, old),
		record("old-dead", tokenkeeper.StateReconnectRequired, old),
	} {
		if err := e.store.CreateConnection(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	rec := e.reconciler(e.store)
	got := reconcile(t, rec)
	want := map[tokenkeeper.ConnectionID][]tokenkeeper.EventType{
		"old-active": {tokenkeeper.EventConnected}, "old-dead": {tokenkeeper.EventReconnectRequired}}
	if diff := cmp.Diff(want, types(got)); diff != "" {
		t.Fatalf("baseline (-want +got):\n%s", diff)
	}
	if n := len(listDeliveries(t, e.store, tokenkeeper.DeliveryFilter{})); n != 0 {
		t.Errorf("the baseline enqueued %d deliveries", n)
	}
	// A connection made after the log started, whose connected event was
	// lost.
	e.clock.Add(time.Second)
	if err := e.store.CreateConnection(ctx, record("new", tokenkeeper.StateActive, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(5 * time.Minute)
	got = reconcile(t, rec)
	if diff := cmp.Diff(map[tokenkeeper.ConnectionID][]tokenkeeper.EventType{"new": {tokenkeeper.EventConnected}}, types(got)); diff != "" {
		t.Fatalf("repair (-want +got):\n%s", diff)
	}
	runOnce(t, e.dispatcher(e.store, nil))
	if n := len(rcv.delivered()); n != 1 {
		t.Errorf("receiver got %d events, want 1", n)
	}
}

// failingLog is an EventLog whose appends fail: the store is down when
// the keeper reports its change.
type failingLog struct{ tokenkeeper.EventLog }

func (failingLog) AppendEvent(context.Context, *tokenkeeper.StoredEvent, tokenkeeper.Fanout) error {
	return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "the database is unavailable")
}

// TestRecorder_FailedAppend: a failed append is logged, and the lost state
// change is repaired by the reconciler, webhook included.
func TestRecorder_FailedAppend(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	rcv := newReceiver(t)
	rcv.register(e, e.store)
	rec := e.reconciler(e.store)
	reconcile(t, rec)
	e.clock.Add(time.Second)
	c := record("c1", tokenkeeper.StateReconnectRequired, e.clock.Now())
	c.LastError = "the grant was revoked (invalid_grant)"
	if err := e.store.CreateConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	r, err := webhook.NewRecorder(failingLog{e.store}, webhook.RecorderConfig{Logger: e.logger()})
	if err != nil {
		t.Fatal(err)
	}
	r.Handle(ctx, tokenkeeper.Event{Type: tokenkeeper.EventReconnectRequired, ConnectionID: "c1", Time: c.UpdatedAt, Generation: 1})
	if !contains(e.logs.String(), "event not recorded") {
		t.Errorf("the failed append was not logged:\n%s", e.logs)
	}
	e.clock.Add(5 * time.Minute)
	got := reconcile(t, rec)
	if len(got) != 1 || got[0].Type != tokenkeeper.EventReconnectRequired || got[0].Reason != c.LastError {
		t.Fatalf("repaired %+v", got)
	}
	runOnce(t, e.dispatcher(e.store, nil))
	if n := len(rcv.delivered()); n != 1 {
		t.Errorf("receiver got %d, want the reconnect_required webhook", n)
	}
}

// TestRecorder_Types: refreshed is recorded and not sent; the five state
// webhooks are sent.
func TestRecorder_Types(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	rcv := newReceiver(t)
	rcv.register(e, e.store)
	r := e.recorder(e.store)
	for i, typ := range []tokenkeeper.EventType{tokenkeeper.EventConnected, tokenkeeper.EventRefreshed, tokenkeeper.EventDegraded,
		tokenkeeper.EventRecovered, tokenkeeper.EventReconnectRequired, tokenkeeper.EventDisconnected, tokenkeeper.EventPruned, tokenkeeper.EventClientRejected} {
		r.Handle(ctx, tokenkeeper.Event{Type: typ, ConnectionID: "c1", Time: e.clock.Now(), Generation: int64(i + 1)})
	}
	evs, _ := e.store.ListEvents(ctx, tokenkeeper.EventFilter{})
	if len(evs) != 8 {
		t.Errorf("%d events recorded, want 8", len(evs))
	}
	runOnce(t, e.dispatcher(e.store, nil))
	var sent []string
	for _, b := range rcv.bodies {
		var m struct{ Type string }
		mustUnmarshal(t, b, &m)
		sent = append(sent, m.Type)
	}
	want := []string{"connection.connected", "connection.degraded", "connection.recovered", "connection.reconnect_required", "connection.disconnected"}
	if diff := cmp.Diff(want, sent, sortStrings); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
}

// TestReconciler_RunPrunes: with Retention, Run prunes old events (keeping each
// connection's newest state event), and stops when its context ends.
func TestReconciler_RunPrunes(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	old := e.clock.Now().Add(-48 * time.Hour)
	if err := e.store.CreateConnection(ctx, record("c1", tokenkeeper.StateActive, old)); err != nil {
		t.Fatal(err)
	}
	for i, typ := range []tokenkeeper.EventType{tokenkeeper.EventConnected, tokenkeeper.EventRefreshed, tokenkeeper.EventRefreshed} {
		ev := &tokenkeeper.StoredEvent{ID: tokenkeeper.NewEventID(), Event: tokenkeeper.Event{Type: typ, ConnectionID: "c1", Time: old.Add(time.Duration(i) * time.Second)}}
		if err := e.store.AppendEvent(ctx, ev, tokenkeeper.Fanout{}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := webhook.NewReconciler(webhook.ReconcilerConfig{Store: e.store, Log: e.store, Now: e.clock.Now,
		Retention: 24 * time.Hour, Interval: time.Hour, Logger: e.logger()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- r.Run(runCtx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, _ := e.store.ListEvents(ctx, tokenkeeper.EventFilter{ConnectionID: "c1"})
		if len(evs) == 1 {
			if evs[0].Type != tokenkeeper.EventConnected {
				t.Errorf("kept %s, want the connected event", evs[0].Type)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not pruned within 10s: %d events", len(evs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	// The log-started event is kept too.
	evs, _ := e.store.ListEvents(ctx, tokenkeeper.EventFilter{Types: []tokenkeeper.EventType{webhook.EventLogStarted}})
	if len(evs) != 1 {
		t.Errorf("%d log-started events, want 1", len(evs))
	}
}

// listRecorder is the real store, recording the filters of ListConnections.
type listRecorder struct {
	tokenkeeper.Store
	mu      sync.Mutex
	filters []tokenkeeper.ConnectionFilter
}

func (l *listRecorder) ListConnections(ctx context.Context, f tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
	l.mu.Lock()
	l.filters = append(l.filters, f)
	l.mu.Unlock()
	return l.Store.ListConnections(ctx, f)
}

func (l *listRecorder) seen() []tokenkeeper.ConnectionFilter {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tokenkeeper.ConnectionFilter(nil), l.filters...)
}

// TestReconciler_Incremental: Run's first pass goes over every connection;
// the next ones list only the connections written since the previous pass
// (less the grace and a slack for clocks), and still repair a change made
// between them.
func TestReconciler_Incremental(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	old := e.clock.Now().Add(-48 * time.Hour)
	c1 := record("c1", tokenkeeper.StateActive, old)
	if err := e.store.CreateConnection(ctx, c1); err != nil {
		t.Fatal(err)
	}
	lr := &listRecorder{Store: e.store}
	r, err := webhook.NewReconciler(webhook.ReconcilerConfig{Store: lr, Log: e.store, Now: e.clock.Now,
		Interval: 5 * time.Millisecond, Logger: e.logger()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- r.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitPasses := func(n int) []tokenkeeper.ConnectionFilter {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(lr.seen()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d passes within 10s", n)
			}
			time.Sleep(time.Millisecond)
		}
		return lr.seen()
	}
	fs := waitPasses(3)
	if !fs[0].UpdatedAfter.IsZero() {
		t.Errorf("the first pass lists from %v, want every connection", fs[0].UpdatedAfter)
	}
	for _, f := range fs[1:] {
		if f.UpdatedAfter.IsZero() || !f.UpdatedAfter.Before(e.clock.Now()) || e.clock.Now().Sub(f.UpdatedAfter) > 10*time.Minute {
			t.Fatalf("a later pass lists from %v (now %v), want the recent writes only", f.UpdatedAfter, e.clock.Now())
		}
	}
	// A change whose event is lost, between passes: an incremental pass repairs it.
	c1.DegradedSince, c1.LastError, c1.UpdatedAt, c1.Generation = e.clock.Now(), "token endpoint: 503", e.clock.Now(), 2
	if err := e.store.UpdateConnection(ctx, c1, 1); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Minute) // past the grace
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, _ := e.store.ListEvents(ctx, tokenkeeper.EventFilter{ConnectionID: "c1", Types: []tokenkeeper.EventType{tokenkeeper.EventDegraded}})
		if len(evs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lost degraded event was not repaired by an incremental pass")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, f := range lr.seen()[1:] {
		if f.UpdatedAfter.IsZero() {
			t.Fatal("a full pass ran again before fullEvery")
		}
	}
}
