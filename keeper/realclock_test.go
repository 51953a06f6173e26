package keeper_test

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// TestKeeper_Token_RealClock runs the production clock path (Config.Now
// nil), where the hot path reads no clock and a timer clears each token's
// live flag just before its promise ends: with real two-second tokens, 20
// callers that use each token at once through the keeper's client see no
// 401 across several rotations, each expiry costs one refresh, and the
// emulator records no violation.
func TestKeeper_Token_RealClock(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for five seconds of real time")
	}
	e := newEnv(t, func(_ *keeper.Config, ec *emulator.Config) { ec.AccessTokenTTL = 2 * time.Second })
	e.connect("acme")
	k, err := keeper.New(keeper.Config{
		Store: e.store, Sealer: e.ring,
		Provider:         tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL),
		ClientID:         e.client.ID,
		ClientSecret:     tokenkeeper.NewSecret(e.client.Secret),
		Logger:           slog.New(slog.NewJSONHandler(e.logs, nil)),
		DrainGrace:       250 * time.Millisecond,
		DrainWait:        time.Second,
		ScheduleInterval: 10 * time.Millisecond,
		RefreshTimeout:   2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go k.Run(ctx)
	client := k.Client("acme", nil)
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.APIURL+"/v1/introspect", nil)
				resp, err := client.Do(req)
				switch {
				case err != nil && ctx.Err() != nil:
					return
				case err != nil:
					t.Errorf("API call: %v", err)
					bad.Add(1)
				default:
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
					} else {
						bad.Add(1)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	rep := e.srv.Report()
	refreshes := rep.Counters["refresh_token"]["ok"]
	apiBad := rep.Counters["api"]["invalid_token"]
	if bad.Load() != 0 || apiBad != 0 || ok.Load() < 100 {
		t.Fatalf("%d calls ok, %d failed (%d refused by the emulator)", ok.Load(), bad.Load(), apiBad)
	}
	// About 5s / (0.75..0.85 x 2s + grace) rotations, one refresh each.
	if refreshes < 2 || refreshes > 4 {
		t.Fatalf("%d refreshes in 5s of 2s tokens, want 2 to 4", refreshes)
	}
	if v := e.violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
}
