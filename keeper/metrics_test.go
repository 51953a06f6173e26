package keeper_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// withRegistry gives the env's keeper a Registerer.
func withRegistry(reg prometheus.Registerer) option {
	return func(c *keeper.Config, _ *emulator.Config) { c.Registerer = reg }
}

// outcomes returns tokenkeeper_refreshes_total by outcome.
func outcomes(t testing.TB, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	return samples(t, reg, "tokenkeeper_refreshes_total")
}

// samples returns the counter or gauge name by the value of its one label;
// nil if reg has no such family.
func samples(t testing.TB, reg prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		out := map[string]float64{}
		for _, m := range mf.GetMetric() {
			label := ""
			if len(m.GetLabel()) > 0 {
				label = m.GetLabel()[0].GetValue()
			}
			out[label] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return out
	}
	return nil
}

// histogram returns the sample count and sum of the histogram name.
func histogram(t testing.TB, reg prometheus.Gatherer, name string) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0, 0
}

// wantOutcomes checks tokenkeeper_refreshes_total: every outcome in want
// with its count, every other one at 0.
func wantOutcomes(t testing.TB, reg prometheus.Gatherer, want map[string]float64) {
	t.Helper()
	all := map[string]float64{"ok": 0, "transient": 0, "invalid_grant": 0, "client_rejected": 0, "lost": 0, "rejected": 0}
	for o, n := range want {
		all[o] = n
	}
	if diff := cmp.Diff(all, outcomes(t, reg)); diff != "" {
		t.Errorf("tokenkeeper_refreshes_total (-want +got):\n%s", diff)
	}
}

func TestKeeper_Metrics_Refreshes(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t, withRegistry(reg))
		e.connect("acme")
		wantOutcomes(t, reg, nil) // every outcome is there from the start
		e.expire("acme")
		e.mustToken("acme")
		wantOutcomes(t, reg, map[string]float64{"ok": 1})
		if n, _ := histogram(t, reg, "tokenkeeper_refresh_duration_seconds"); n != 1 {
			t.Errorf("refresh durations observed: %d, want 1", n)
		}
		if n, _ := histogram(t, reg, "tokenkeeper_lease_wait_seconds"); n != 0 {
			t.Errorf("lease waits observed: %d, want 0 (the caller ran its own refresh)", n)
		}
	})
	t.Run("InvalidGrant", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t, withRegistry(reg))
		e.connect("acme")
		if err := e.srv.Revoke(e.srv.Report().Authorisations[0].ID); err != nil {
			t.Fatal(err)
		}
		e.expire("acme")
		if _, err := e.token(e.k, "acme"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
			t.Fatalf("Token: %v, want reconnect_required", err)
		}
		wantOutcomes(t, reg, map[string]float64{"invalid_grant": 1})
	})
	t.Run("TransientThenOK", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t, withRegistry(reg))
		e.connect("acme")
		e.expire("acme")
		e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.Fault500}}})
		e.mustToken("acme")
		wantOutcomes(t, reg, map[string]float64{"transient": 1, "ok": 1})
		if n, _ := histogram(t, reg, "tokenkeeper_refresh_duration_seconds"); n != 2 {
			t.Errorf("refresh durations observed: %d, want 2", n)
		}
	})
	t.Run("LostThenInvalidGrant", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t, withRegistry(reg))
		e.connect("acme")
		e.expire("acme")
		e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.FaultDropAfterCommit}}})
		if _, err := e.token(e.k, "acme"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
			t.Fatalf("Token: %v, want reconnect_required", err)
		}
		wantOutcomes(t, reg, map[string]float64{"lost": 1, "invalid_grant": 1})
	})
	t.Run("ClientRejected", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t)
		e.connect("acme")
		e.expire("acme")
		k, err := keeper.New(keeper.Config{
			Store: e.store, Sealer: e.ring, Now: e.srv.Now, Registerer: reg,
			Provider: tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL),
			ClientID: e.client.ID, ClientSecret: tokenkeeper.NewSecret("wrong"),
			DrainGrace: 20 * time.Millisecond, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		// The live token is still served (its promise is extended), and
		// refreshing pauses.
		_, _ = e.token(k, "acme")
		wantOutcomes(t, reg, map[string]float64{"client_rejected": 1})
	})
}

func TestKeeper_Metrics_LeaseWait(t *testing.T) {
	t.Run("JoinedFlight", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t, withRegistry(reg))
		e.connect("acme")
		e.expire("acme")
		held := emulator.Duration(500 * time.Millisecond) // time for all five to join
		e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{Min: held, Max: held}}})
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				if _, err := e.token(e.k, "acme"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		wantOutcomes(t, reg, map[string]float64{"ok": 1})
		// One caller ran the refresh; the other four waited for it.
		n, sum := histogram(t, reg, "tokenkeeper_lease_wait_seconds")
		if n != 4 || sum <= 0 {
			t.Errorf("lease waits: %d observations, %.3fs in all; want 4, more than 0s", n, sum)
		}
	})
	t.Run("OtherOwnersLease", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t, withRegistry(reg))
		e.connect("acme")
		e.expire("acme")
		ctx := context.Background()
		lease, _, err := e.store.AcquireLease(ctx, "acme", "another-process", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(300*time.Millisecond, func() { _ = e.store.ReleaseLease(ctx, "acme", lease) })
		e.mustToken("acme")
		n, sum := histogram(t, reg, "tokenkeeper_lease_wait_seconds")
		if n != 1 || sum < 0.1 {
			t.Errorf("lease waits: %d observations, %.3fs in all; want 1 of about 0.3s", n, sum)
		}
		wantOutcomes(t, reg, map[string]float64{"ok": 1})
	})
}

func TestKeeper_Metrics_SchedulerLag(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, withRegistry(reg), func(c *keeper.Config, _ *emulator.Config) {
		c.ScheduleInterval = 5 * time.Millisecond
		c.DrainGrace = 30 * time.Second // the plan is the promise plus this grace
	})
	e.connect("acme")
	e.mustToken("acme") // hot
	// The scheduler starts the refresh a minute after it was planned (as
	// if the process had been paused).
	if _, err := e.srv.Advance(e.record("acme").NextRefreshAt.Sub(e.srv.Now()) + time.Minute); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.k.Run(ctx) }()
	waitFor(t, "the scheduled refresh", func() bool { return outcomes(t, reg)["ok"] == 1 })
	cancel()
	<-done
	n, sum := histogram(t, reg, "tokenkeeper_scheduler_lag_seconds")
	if n != 1 || sum < 60 || sum > 70 {
		t.Errorf("scheduler lag: %d observations, %.3fs in all; want 1 of about 60s", n, sum)
	}
}

func TestKeeper_Metrics_Connections(t *testing.T) {
	t.Run("CountsCached", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t, withRegistry(reg))
		e.connect("acme")
		e.connect("globex")
		if err := e.k.Disconnect(context.Background(), "globex", "test"); err != nil {
			t.Fatal(err)
		}
		want := map[string]float64{"active": 1, "disconnected": 1, "reconnect_required": 0}
		if diff := cmp.Diff(want, samples(t, reg, "tokenkeeper_connections")); diff != "" {
			t.Errorf("tokenkeeper_connections (-want +got):\n%s", diff)
		}
		e.connect("initech")
		if diff := cmp.Diff(want, samples(t, reg, "tokenkeeper_connections")); diff != "" {
			t.Errorf("within 5s, the count is reused (-want +got):\n%s", diff)
		}
		if _, err := e.srv.Advance(6 * time.Second); err != nil {
			t.Fatal(err)
		}
		want["active"] = 2
		if diff := cmp.Diff(want, samples(t, reg, "tokenkeeper_connections")); diff != "" {
			t.Errorf("after 6s, counted again (-want +got):\n%s", diff)
		}
	})
	t.Run("StoreFails", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		e := newEnv(t)
		e.connect("acme")
		var mu sync.Mutex
		failing := true
		fs := &faultyStore{Store: e.store, CountFunc: func(ctx context.Context) (map[tokenkeeper.State]int, error) {
			if d, ok := ctx.Deadline(); !ok || time.Until(d) > 2*time.Second {
				t.Errorf("CountConnections without a deadline of at most 2s")
			}
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "database is locked")
			}
			return e.store.CountConnections(ctx)
		}}
		cfg := fastConfig()
		cfg.Registerer = reg
		e.keeperOverStore(fs, cfg)
		for range 3 {
			if s := samples(t, reg, "tokenkeeper_connections"); s != nil {
				t.Errorf("with the store failing, the gauge has samples: %v", s)
			}
		}
		if n := len(e.logLines("metrics: cannot count connections; the gauge is left out until the store answers")); n != 1 {
			t.Errorf("%d debug lines for three failed counts, want 1", n)
		}
		mu.Lock()
		failing = false
		mu.Unlock()
		want := map[string]float64{"active": 1, "disconnected": 0, "reconnect_required": 0}
		if diff := cmp.Diff(want, samples(t, reg, "tokenkeeper_connections")); diff != "" {
			t.Errorf("once the store answers (-want +got):\n%s", diff)
		}
	})
}

func TestKeeper_Metrics_Registerer(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, withRegistry(reg))
	cfg := fastConfig()
	cfg.Registerer = reg
	cfg.Store, cfg.Sealer, cfg.ClientID = e.store, e.ring, e.client.ID
	cfg.Provider = tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL)
	_, err := keeper.New(cfg)
	if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
		t.Fatalf("a second Keeper on one Registerer: %v, want invalid", err)
	}
	var te *tokenkeeper.Error
	if !errors.As(err, &te) {
		t.Fatalf("%T is not a *tokenkeeper.Error", err)
	}
	// The first keeper's metrics are intact.
	e.connect("acme")
	e.expire("acme")
	e.mustToken("acme")
	wantOutcomes(t, reg, map[string]float64{"ok": 1})
	if samples(t, reg, "tokenkeeper_connections") == nil || samples(t, reg, "tokenkeeper_pruned_total") == nil {
		t.Error("the first keeper lost its gauge or its pruned counter")
	}

	// A clash on one metric registers none of them.
	other := prometheus.NewRegistry()
	other.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "tokenkeeper_pruned_total", Help: "someone else's"}))
	cfg.Registerer = other
	if _, err := keeper.New(cfg); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
		t.Fatalf("New on a registry holding tokenkeeper_pruned_total: %v, want invalid", err)
	}
	if s := samples(t, other, "tokenkeeper_refreshes_total"); s != nil {
		t.Errorf("a failed New left its metrics registered: %v", s)
	}
}
