package keeper_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// skewStore is the real store seen from a replica whose clock is skewed
// from the database's: every lease time it returns is shifted by skew.
// Fencing compares Owner and Fence only, so the shifted leases it hands
// back still fence.
type skewStore struct {
	tokenkeeper.Store
	skew time.Duration
}

func (s skewStore) shift(r *tokenkeeper.Record) *tokenkeeper.Record {
	if r != nil && !r.Lease.ExpiresAt.IsZero() {
		r.Lease.ExpiresAt = r.Lease.ExpiresAt.Add(s.skew)
	}
	return r
}

func (s skewStore) GetConnection(ctx context.Context, id tokenkeeper.ConnectionID) (*tokenkeeper.Record, error) {
	r, err := s.Store.GetConnection(ctx, id)
	return s.shift(r), err
}

func (s skewStore) ListConnections(ctx context.Context, f tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
	rs, err := s.Store.ListConnections(ctx, f)
	for _, r := range rs {
		s.shift(r)
	}
	return rs, err
}

func (s skewStore) AcquireLease(ctx context.Context, id tokenkeeper.ConnectionID, owner string, ttl time.Duration) (tokenkeeper.Lease, *tokenkeeper.Record, error) {
	l, r, err := s.Store.AcquireLease(ctx, id, owner, ttl)
	if !l.ExpiresAt.IsZero() {
		l.ExpiresAt = l.ExpiresAt.Add(s.skew)
	}
	return l, s.shift(r), err
}

func (s skewStore) RenewLease(ctx context.Context, id tokenkeeper.ConnectionID, lease tokenkeeper.Lease, ttl time.Duration) (tokenkeeper.Lease, error) {
	l, err := s.Store.RenewLease(ctx, id, lease, ttl)
	if !l.ExpiresAt.IsZero() {
		l.ExpiresAt = l.ExpiresAt.Add(s.skew)
	}
	return l, err
}

// Two replicas whose clocks are skewed 10 minutes from the store's, either
// way, share a connection: each expiry is refreshed exactly once, the
// emulator sees no violation, and nobody waits out the skew (each Token
// has 20s, the skew is 10 minutes).
func TestKeeper_LeaseClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			e := newEnv(t)
			e.connect("acme")
			// Slow refreshes, so the other replica meets a held lease.
			e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{
				Min: emulator.Duration(100 * time.Millisecond), Max: emulator.Duration(200 * time.Millisecond)}}})
			ka := e.newSkewedKeeper("replica-a", skew)
			kb := e.newSkewedKeeper("replica-b", skew)
			for round := 1; round <= 3; round++ {
				e.expire("acme")
				before := e.refreshes("ok")
				var wg sync.WaitGroup
				got := make([]string, 8)
				errs := make([]error, 8)
				for i := range got {
					wg.Add(1)
					go func() {
						defer wg.Done()
						k := ka
						if i%2 == 1 {
							k = kb
						}
						tok, err := e.token(k, "acme")
						got[i], errs[i] = tok.Value.Reveal(), err
					}()
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d: Token %d: %v", round, i, err)
					}
					if got[i] != got[0] {
						t.Errorf("round %d: the replicas serve different tokens", round)
					}
				}
				if n := e.refreshes("ok") - before; n != 1 {
					t.Errorf("round %d: %d refreshes, want exactly 1", round, n)
				}
				if e.api(tokenkeeper.NewSecret(got[0])) != 200 {
					t.Errorf("round %d: the API refuses the served token", round)
				}
			}
			if v := e.violations(); len(v) != 0 {
				t.Errorf("violations: %v", v)
			}
		})
	}
}

// newSkewedKeeper returns a keeper named owner on the env's store seen
// through a clock skewed by skew.
func (e *env) newSkewedKeeper(owner string, skew time.Duration) *keeper.Keeper {
	cfg := fastConfig()
	cfg.Owner = owner
	cfg.Store = skewStore{Store: e.store, skew: skew}
	cfg.Sealer = e.ring
	cfg.Provider = tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL)
	cfg.ClientID = e.client.ID
	cfg.ClientSecret = tokenkeeper.NewSecret(e.client.Secret)
	cfg.Now = e.srv.Now
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k, err := keeper.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { k.Close() })
	return k
}
