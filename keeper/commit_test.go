package keeper_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// faultyStore is a function-field fake over a real Store: a nil field
// passes the call through to the embedded Store.
type faultyStore struct {
	tokenkeeper.Store
	UpdateLeasedFunc func(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error
	ListFunc         func(ctx context.Context, f tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error)
	CountFunc        func(ctx context.Context) (map[tokenkeeper.State]int, error)
}

func (s *faultyStore) CountConnections(ctx context.Context) (map[tokenkeeper.State]int, error) {
	if s.CountFunc != nil {
		return s.CountFunc(ctx)
	}
	return s.Store.CountConnections(ctx)
}

func (s *faultyStore) UpdateLeased(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
	if s.UpdateLeasedFunc != nil {
		return s.UpdateLeasedFunc(ctx, rec, expect, lease)
	}
	return s.Store.UpdateLeased(ctx, rec, expect, lease)
}

func (s *faultyStore) ListConnections(ctx context.Context, f tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
	if s.ListFunc != nil {
		return s.ListFunc(ctx, f)
	}
	return s.Store.ListConnections(ctx, f)
}

var _ tokenkeeper.Store = (*faultyStore)(nil)

// keeperOverStore is newKeeper over another Store (a fake wrapping the
// env's), and with cfg.Now kept if set.
func (e *env) keeperOverStore(s tokenkeeper.Store, cfg keeper.Config) *keeper.Keeper {
	e.t.Helper()
	cfg.Store = s
	cfg.Sealer = e.ring
	cfg.Provider = tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL)
	cfg.ClientID = e.client.ID
	cfg.ClientSecret = tokenkeeper.NewSecret(e.client.Secret)
	if cfg.Now == nil {
		cfg.Now = e.srv.Now
	}
	cfg.Events = e.events
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k, err := keeper.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { k.Close() })
	return k
}

func TestKeeper_Commit(t *testing.T) {
	t.Run("RetriedUntilStored", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		old := e.mustToken("acme")
		before := e.record("acme").Generation
		var commits, failed atomic.Int32
		fs := &faultyStore{Store: e.store}
		fs.UpdateLeasedFunc = func(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
			// The commit is the leased write that clears the marker.
			if rec.Pending.IsZero() {
				commits.Add(1)
				if failed.Load() < 3 {
					failed.Add(1)
					return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "injected: database is locked")
				}
			}
			return e.store.UpdateLeased(ctx, rec, expect, lease)
		}
		k := e.keeperOverStore(fs, fastConfig())
		e.expire("acme")
		tok, err := e.token(k, "acme")
		if err != nil {
			t.Fatalf("Token with a failing commit: %v", err)
		}
		if tok.Value.Equal(old.Value) {
			t.Fatal("Token returned the old token")
		}
		if n := commits.Load(); n != 4 {
			t.Fatalf("%d commit writes, want 4 (3 failed, then 1 stored)", n)
		}
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d refreshes, want exactly 1: the pair was held in memory, not fetched again", n)
		}
		stored, err := keeper.LoadToken(context.Background(), e.k, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if !stored.Value.Equal(tok.Value) || !stored.ExpiresAt.Equal(tok.ExpiresAt) {
			t.Fatal("the store does not hold the token Token returned")
		}
		rec := e.record("acme")
		if !rec.Pending.IsZero() || rec.Generation != before+2 || rec.Degraded() {
			t.Fatalf("record: pending %+v, generation %d (want %d: marker, commit), degraded %v", rec.Pending, rec.Generation, before+2, rec.Degraded())
		}
		warns := e.logLines("refresh: commit failed; retrying with the new pair held in memory")
		if len(warns) != 3 {
			t.Fatalf("%d retry warnings in the log, want 3", len(warns))
		}
		for i, w := range warns {
			if w["level"] != "WARN" || w["try"] != float64(i+1) || w["connection"] != "acme" {
				t.Fatalf("warning %d: %v", i, w)
			}
		}
		if e.api(tok.Value) != 200 {
			t.Fatal("the API refused the committed token")
		}
		if v := e.violations(); len(v) != 0 {
			t.Fatalf("violations: %v", v)
		}
	})

	t.Run("MarkerFailsNothingSent", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		old := e.mustToken("acme")
		before := e.record("acme")
		var markers atomic.Int32
		fs := &faultyStore{Store: e.store}
		fs.UpdateLeasedFunc = func(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
			if !rec.Pending.IsZero() {
				markers.Add(1)
				return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "injected: disk I/O error")
			}
			return e.store.UpdateLeased(ctx, rec, expect, lease)
		}
		k := e.keeperOverStore(fs, fastConfig())
		e.expire("acme")
		_, err := e.token(k, "acme")
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeUnavailable {
			t.Fatalf("code %q (%v), want unavailable", code, err)
		}
		if markers.Load() == 0 {
			t.Fatal("no marker write was attempted")
		}
		var sent int64
		for _, n := range e.srv.Report().Counters["refresh_token"] {
			sent += n
		}
		if sent != 0 || e.srv.Report().Counters["token"] != nil {
			t.Fatalf("%d refresh requests reached the emulator; want none without a durable marker", sent)
		}
		rec := e.record("acme")
		if rec.Generation != before.Generation || !rec.Pending.IsZero() {
			t.Fatalf("record changed: generation %d -> %d, pending %+v", before.Generation, rec.Generation, rec.Pending)
		}
		if stored, err := keeper.LoadToken(context.Background(), e.k, "acme"); err != nil || !stored.Value.Equal(old.Value) {
			t.Fatalf("stored token changed: %v", err)
		}
		if rec.Lease.Owner != "" && time.Now().Before(rec.Lease.ExpiresAt) {
			t.Fatalf("the lease is still held by %s", rec.Lease.Owner)
		}
	})
	t.Run("MarkerConflictGoesRound", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		var once atomic.Bool
		fs := &faultyStore{Store: e.store}
		fs.UpdateLeasedFunc = func(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
			if !rec.Pending.IsZero() && !once.Swap(true) {
				// An integrator's metadata write (no lease needed) lands
				// between the lease's re-read and the marker.
				if err := e.k.SetMetadata(ctx, "acme", map[string]string{"tenant": "t1"}); err != nil {
					t.Error(err)
				}
			}
			return e.store.UpdateLeased(ctx, rec, expect, lease)
		}
		k := e.keeperOverStore(fs, fastConfig())
		e.expire("acme")
		tok, err := e.token(k, "acme")
		if err != nil {
			t.Fatalf("Token with a metadata write racing the marker: code %q, %v", tokenkeeper.ErrorCode(err), err)
		}
		if e.api(tok.Value) != 200 || e.refreshes("ok") != 1 {
			t.Fatalf("no working token after one refresh (%d refreshes)", e.refreshes("ok"))
		}
		if rec := e.record("acme"); rec.Metadata["tenant"] != "t1" {
			t.Fatalf("the metadata write was lost: %v", rec.Metadata)
		}
	})
}
