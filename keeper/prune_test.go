package keeper_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

const (
	day       = 24 * time.Hour
	retention = 30 * day
)

// ids returns the ids of conns, in order.
func ids(conns []*tokenkeeper.Connection) []tokenkeeper.ConnectionID {
	out := []tokenkeeper.ConnectionID{}
	for _, c := range conns {
		out = append(out, c.ID)
	}
	return out
}

// exists reports whether the store holds id.
func (e *env) exists(id tokenkeeper.ConnectionID) bool {
	e.t.Helper()
	_, err := e.store.GetConnection(context.Background(), id)
	if err != nil && tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
		e.t.Fatal(err)
	}
	return err == nil
}

// advance moves the emulator (and keeper) clock on by d.
func (e *env) advance(d time.Duration) {
	e.t.Helper()
	if _, err := e.srv.Advance(d); err != nil {
		e.t.Fatal(err)
	}
}

// prune calls Prune with a test deadline.
func prune(t testing.TB, k *keeper.Keeper, dryRun bool) []tokenkeeper.ConnectionID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	removed, err := k.Prune(ctx, retention, dryRun)
	if err != nil {
		t.Fatalf("Prune(dryRun %v): %v", dryRun, err)
	}
	return ids(removed)
}

func TestKeeper_Prune(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t, withRegistry(reg))
		ctx := context.Background()
		for _, id := range []tokenkeeper.ConnectionID{"acme", "globex", "initech", "hooli"} {
			e.connect(id)
		}
		if err := e.k.Disconnect(ctx, "acme", "customer left"); err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Revoke(e.srv.Report().Authorisations[1].ID); err != nil { // globex's
			t.Fatal(err)
		}
		e.expire("globex")
		if _, err := e.token(e.k, "globex"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
			t.Fatalf("Token(globex): %v, want reconnect_required", err)
		}
		e.advance(31 * day)
		// hooli is disconnected just now; initech is active and was not
		// written for 31 days: neither is pruned.
		if err := e.k.Disconnect(ctx, "hooli", ""); err != nil {
			t.Fatal(err)
		}
		want := []tokenkeeper.ConnectionID{"globex", "acme"} // reconnect_required first

		if got := prune(t, e.k, true); !slices.Equal(got, want) {
			t.Errorf("dry run would remove %v, want %v", got, want)
		}
		for _, id := range []tokenkeeper.ConnectionID{"acme", "globex", "initech", "hooli"} {
			if !e.exists(id) {
				t.Errorf("the dry run removed %s", id)
			}
		}
		if _, ok := e.events.last(tokenkeeper.EventPruned); ok {
			t.Error("the dry run emitted a pruned event")
		}

		if got := prune(t, e.k, false); !slices.Equal(got, want) {
			t.Errorf("Prune removed %v, want %v", got, want)
		}
		for id, want := range map[tokenkeeper.ConnectionID]bool{"acme": false, "globex": false, "initech": true, "hooli": true} {
			if e.exists(id) != want {
				t.Errorf("%s exists: %v, want %v", id, !want, want)
			}
		}
		var reasons []string
		e.events.mu.Lock()
		for _, ev := range e.events.events {
			if ev.Type == tokenkeeper.EventPruned {
				reasons = append(reasons, string(ev.ConnectionID)+": "+ev.Reason)
			}
		}
		e.events.mu.Unlock()
		wantReasons := []string{
			"globex: waiting for a reconnect for 31 days (retention 30 days)",
			"acme: disconnected for 31 days (retention 30 days)",
		}
		if diff := cmp.Diff(wantReasons, reasons); diff != "" {
			t.Errorf("pruned events (-want +got):\n%s", diff)
		}
		lines := e.logLines("prune: removed connection")
		if len(lines) != 2 || lines[1]["connection"] != "acme" || lines[1]["state"] != "disconnected" || lines[1]["age"] == nil {
			t.Errorf("log lines: %v", lines)
		}
		if got := samples(t, reg, "tokenkeeper_pruned_total")[""]; got != 2 {
			t.Errorf("tokenkeeper_pruned_total = %v, want 2", got)
		}
		// This keeper forgot them, and the next prune finds nothing.
		if _, err := e.token(e.k, "acme"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Errorf("Token(acme) after the prune: %v, want not found", err)
		}
		if got := prune(t, e.k, false); len(got) != 0 {
			t.Errorf("a second prune removed %v", got)
		}
	})
	t.Run("ReconnectedMeanwhileSurvives", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		if err := e.k.Disconnect(context.Background(), "acme", ""); err != nil {
			t.Fatal(err)
		}
		e.advance(31 * day)
		var once sync.Once
		fs := &faultyStore{Store: e.store}
		fs.ListFunc = func(ctx context.Context, f tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
			page, err := e.store.ListConnections(ctx, f)
			if len(page) > 0 {
				// The user reconnects between the listing and the delete.
				once.Do(func() {
					if _, err := e.k.Connect(ctx, e.grant("acme", "")); err != nil {
						t.Error(err)
					}
				})
			}
			return page, err
		}
		k := e.keeperOverStore(fs, fastConfig())
		if got := prune(t, k, false); len(got) != 0 {
			t.Errorf("Prune removed %v, want nothing", got)
		}
		if r := e.record("acme"); r.State != tokenkeeper.StateActive {
			t.Errorf("acme is %s, want active", r.State)
		}
		if tok := e.mustToken("acme"); e.api(tok.Value) != 200 {
			t.Error("the reconnected connection's token does not work")
		}
		if _, ok := e.events.last(tokenkeeper.EventPruned); ok {
			t.Error("a pruned event for a connection that was kept")
		}
		if len(e.logLines("prune: connection changed since it was listed; kept")) != 1 {
			t.Error("no log line for the kept connection")
		}
	})
	t.Run("Pagination", func(t *testing.T) {
		e := newEnv(t)
		ctx := context.Background()
		old := e.srv.Now().UTC().Truncate(time.Microsecond)
		var want, wantDisconnected []tokenkeeper.ConnectionID
		for i := range 250 {
			id := tokenkeeper.ConnectionID(fmt.Sprintf("c%03d", i))
			at, state := old, tokenkeeper.StateDisconnected
			switch i % 5 {
			case 0:
				state = tokenkeeper.StateActive
			case 1:
				at = old.Add(20 * day) // recent at the prune
			case 4:
				state = tokenkeeper.StateReconnectRequired
				want = append(want, id)
			default:
				wantDisconnected = append(wantDisconnected, id)
			}
			rec := &tokenkeeper.Record{Connection: tokenkeeper.Connection{
				ID: id, Provider: tokenkeeper.ProviderCustom, State: state, Generation: 1, CreatedAt: old, UpdatedAt: at,
			}}
			if err := e.store.CreateConnection(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		want = append(want, wantDisconnected...)
		e.advance(31 * day)
		var mu sync.Mutex
		var calls []tokenkeeper.ConnectionFilter
		fs := &faultyStore{Store: e.store}
		fs.ListFunc = func(ctx context.Context, f tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
			mu.Lock()
			calls = append(calls, f)
			mu.Unlock()
			return e.store.ListConnections(ctx, f)
		}
		k := e.keeperOverStore(fs, fastConfig())
		keeper.SetPrunePageSize(k, 7)
		if got := prune(t, k, true); !slices.Equal(got, want) {
			t.Errorf("dry run: %d connections, want %d:\n%s", len(got), len(want), cmp.Diff(want, got))
		}
		calls = nil
		if got := prune(t, k, false); !slices.Equal(got, want) {
			t.Errorf("Prune: %d connections, want %d:\n%s", len(got), len(want), cmp.Diff(want, got))
		}
		// 50 reconnect_required in 8 pages, 100 disconnected in 15.
		if len(calls) != 8+15 {
			t.Errorf("%d listings, want 23", len(calls))
		}
		for _, f := range calls {
			if f.Limit != 7 || f.UpdatedBefore.IsZero() || f.State == "" || f.State == tokenkeeper.StateActive {
				t.Errorf("listing %+v: want Limit 7, UpdatedBefore, and an inactive State", f)
			}
		}
		counts, err := e.store.CountConnections(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantCounts := map[tokenkeeper.State]int{tokenkeeper.StateActive: 50, tokenkeeper.StateDisconnected: 50}
		if diff := cmp.Diff(wantCounts, counts); diff != "" {
			t.Errorf("left in the store (-want +got):\n%s", diff)
		}
	})
	t.Run("StoreIgnoresTheFilter", func(t *testing.T) {
		// A store that returned everything would still not make retention
		// remove an active or a recent connection.
		e := newEnv(t)
		e.connect("acme")
		e.connect("globex")
		if err := e.k.Disconnect(context.Background(), "globex", ""); err != nil {
			t.Fatal(err)
		}
		e.advance(31 * day)
		e.connect("hooli")
		if err := e.k.Disconnect(context.Background(), "hooli", ""); err != nil {
			t.Fatal(err)
		}
		fs := &faultyStore{Store: e.store}
		fs.ListFunc = func(ctx context.Context, f tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
			return e.store.ListConnections(ctx, tokenkeeper.ConnectionFilter{After: f.After, Limit: f.Limit})
		}
		k := e.keeperOverStore(fs, fastConfig())
		if got, want := prune(t, k, false), []tokenkeeper.ConnectionID{"globex"}; !slices.Equal(got, want) {
			t.Errorf("Prune removed %v, want %v", got, want)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e := newEnv(t)
		for _, d := range []time.Duration{0, -time.Hour} {
			if _, err := e.k.Prune(context.Background(), d, true); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
				t.Errorf("Prune(%s): %v, want invalid", d, err)
			}
		}
		cfg := fastConfig()
		cfg.Retention = -time.Hour
		cfg.Store, cfg.Sealer, cfg.ClientID = e.store, e.ring, e.client.ID
		cfg.Provider = tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL)
		if _, err := keeper.New(cfg); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
			t.Errorf("New with a negative Retention: %v, want invalid", err)
		}
	})
}

func TestKeeper_Run_Prunes(t *testing.T) {
	e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) {
		c.Retention = retention
		c.PruneInterval = 20 * time.Millisecond
		c.ScheduleInterval = 5 * time.Millisecond
	})
	e.connect("acme")
	e.connect("globex")
	if err := e.k.Disconnect(context.Background(), "acme", ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.k.Run(ctx) }()
	time.Sleep(100 * time.Millisecond) // several prunes: nothing is old enough yet
	if !e.exists("acme") {
		t.Fatal("pruned before the retention passed")
	}
	e.advance(31 * day)
	waitFor(t, "the scheduled prune", func() bool { return !e.exists("acme") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !e.exists("globex") {
		t.Error("the active connection was pruned")
	}
}
