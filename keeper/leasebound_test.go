package keeper_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// stallingStore is the env's store, but renewals fail (the database is
// unreachable for them), and the marker write takes markDelay (a slow database).
type stallingStore struct {
	tokenkeeper.Store
	markDelay time.Duration
}

func (s *stallingStore) RenewLease(ctx context.Context, id tokenkeeper.ConnectionID, l tokenkeeper.Lease, ttl time.Duration) (tokenkeeper.Lease, error) {
	return tokenkeeper.Lease{}, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "injected: renewals fail")
}

func (s *stallingStore) UpdateLeased(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
	if !rec.Pending.IsZero() {
		time.Sleep(s.markDelay)
	}
	return s.Store.UpdateLeased(ctx, rec, expect, lease)
}

// TestKeeper_LeaseBoundsTheRequest: a refresh request never outlives the lease
// it was sent under. Keeper A's renewals fail (its database went away for them) and
// its marker write is slow, so it sends with the lease half gone; the provider takes
// longer to answer than the lease has left. Another keeper takes the lease once it
// runs out and finds the marker. Without a bound, A's request would still be in
// flight then, and B's one more attempt would present the same refresh token (found
// by review: concurrent_refresh and refresh_token_reuse). A's request is cut when its
// lease surely ends, so B's attempt is the only one the provider sees in flight.
func TestKeeper_LeaseBoundsTheRequest(t *testing.T) {
	e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) {
		c.RefreshTimeout = 2 * time.Second
		c.LeaseTTL = 4 * time.Second
	})
	e.connect("acme")
	e.expire("acme")
	if _, err := e.srv.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{Min: emulator.Duration(1900 * time.Millisecond), Max: emulator.Duration(1900 * time.Millisecond)}}})

	cfg := keeper.Config{}
	fast(&cfg, nil)
	cfg.RefreshTimeout = 2 * time.Second
	cfg.LeaseTTL = 4 * time.Second
	// The marker is written 2.3 s into the 4 s lease: a request sent then, which the
	// provider answers in 1.9 s (within RefreshTimeout), would still be at the
	// provider when the lease runs out at 4 s.
	cfg.Store = &stallingStore{Store: e.store, markDelay: 2300 * time.Millisecond}
	cfg.Sealer = e.ring
	cfg.Provider = tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL)
	cfg.ClientID = e.client.ID
	cfg.ClientSecret = tokenkeeper.NewSecret(e.client.Secret)
	cfg.Now = e.srv.Now
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, nil))
	a, err := keeper.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	done := make(chan error, 1)
	go func() { _, err := a.Token(context.Background(), "acme"); done <- err }()
	time.Sleep(4300 * time.Millisecond) // A's lease (never renewed) has run out
	_, errB := e.k.Token(context.Background(), "acme")
	errA := <-done
	t.Logf("A: %v; B: %v", errA, errB)
	if v := e.violations(); len(v) > 0 {
		t.Fatalf("violations at the provider: %v (refresh counters %v)", v, e.srv.Report().Counters["refresh_token"])
	}
	if errA == nil || errB != nil {
		t.Errorf("A: %v, want an error (it sent nothing); B: %v, want its token", errA, errB)
	}
	if n := e.refreshes("ok"); n != 1 {
		t.Errorf("%d refreshes at the provider, want exactly B's", n)
	}
	if !strings.Contains(e.logs.String(), "nothing sent") {
		t.Error("A did not say it sent nothing")
	}
}
