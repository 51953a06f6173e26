package storetest

import (
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func renewLeaseTests() []test {
	return []test{
		{"OK", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			l := acquire(t, s, "c1", "a", time.Minute)
			before := time.Now()
			renewed, err := s.RenewLease(t.Context(), "c1", l, long)
			if err != nil {
				t.Fatal(err)
			}
			if renewed.Owner != l.Owner || renewed.Fence != l.Fence {
				t.Errorf("renewed lease = %+v, want owner and fence of %+v", renewed, l)
			}
			// ttl from now by the store's clock, with slack for a server's.
			if !renewed.ExpiresAt.After(l.ExpiresAt) || renewed.ExpiresAt.Before(before.Add(long-time.Minute)) {
				t.Errorf("renewed ExpiresAt = %v (was %v), want about %v from now", renewed.ExpiresAt, l.ExpiresAt, long)
			}
			wantLease(t, s, "c1", renewed)
			// The renewed lease is the current one: its holder writes with it.
			next := changed(get(t, s, "c1"))
			if err := s.UpdateLeased(t.Context(), next, 1, renewed); err != nil {
				t.Errorf("UpdateLeased with the renewed lease: %v", err)
			}
		}},
		{"ErrConflict", func(t *testing.T, s tokenkeeper.Store) {
			cases := []struct {
				name  string
				setup func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) tokenkeeper.Lease
			}{
				{"Expired", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) tokenkeeper.Lease {
					l := acquire(t, s, id, "a", short)
					sleepPast(l)
					return l
				}},
				{"TakenOver", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) tokenkeeper.Lease {
					l := acquire(t, s, id, "a", short)
					sleepPast(l)
					acquire(t, s, id, "b", long)
					return l
				}},
				{"Reacquired", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) tokenkeeper.Lease {
					l := acquire(t, s, id, "a", long)
					acquire(t, s, id, "a", long)
					return l
				}},
				{"WrongOwner", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) tokenkeeper.Lease {
					l := acquire(t, s, id, "a", long)
					l.Owner = "b"
					return l
				}},
				{"Released", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) tokenkeeper.Lease {
					l := acquire(t, s, id, "a", long)
					if err := s.ReleaseLease(t.Context(), id, l); err != nil {
						t.Fatal(err)
					}
					return l
				}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					id := tokenkeeper.ConnectionID("c-" + tc.name)
					create(t, s, record(id))
					presented := tc.setup(t, s, id)
					before := get(t, s, id).Lease
					_, err := s.RenewLease(t.Context(), id, presented, long)
					wantCode(t, err, tokenkeeper.CodeConflict)
					wantLease(t, s, id, before)
				})
			}
		}},
		{"ErrNotFound", func(t *testing.T, s tokenkeeper.Store) {
			l := tokenkeeper.Lease{Owner: "a", Fence: 1, ExpiresAt: now().Add(long)}
			_, err := s.RenewLease(t.Context(), "c1", l, long)
			wantCode(t, err, tokenkeeper.CodeNotFound)
		}},
	}
}

func releaseLeaseTests() []test {
	return []test{
		{"OK", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			l := acquire(t, s, "c1", "a", long)
			if err := s.ReleaseLease(t.Context(), "c1", l); err != nil {
				t.Fatal(err)
			}
			// Held by nobody, but the fence counter stays.
			got := get(t, s, "c1").Lease
			if got.Owner != "" || got.Fence != l.Fence || got.HeldBy("a", time.Now()) {
				t.Errorf("lease after release = %+v, want no owner and fence %d", got, l.Fence)
			}
			// Another owner may take it at once, with a higher fence.
			if next := acquire(t, s, "c1", "b", long); next.Fence <= l.Fence {
				t.Errorf("fence after release = %d, want more than %d", next.Fence, l.Fence)
			}
		}},
		{"Twice", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			l := acquire(t, s, "c1", "a", long)
			for range 2 {
				if err := s.ReleaseLease(t.Context(), "c1", l); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"TakenOver", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			old := acquire(t, s, "c1", "a", short)
			sleepPast(old)
			held := acquire(t, s, "c1", "b", long)
			if err := s.ReleaseLease(t.Context(), "c1", old); err != nil {
				t.Fatalf("ReleaseLease of a lost lease: %v", err)
			}
			wantLease(t, s, "c1", held)
			// So does a release in the holder's name with a stale fence.
			if err := s.ReleaseLease(t.Context(), "c1", tokenkeeper.Lease{Owner: "b", Fence: held.Fence - 1}); err != nil {
				t.Fatal(err)
			}
			wantLease(t, s, "c1", held)
		}},
		{"Expired", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			l := acquire(t, s, "c1", "a", short)
			sleepPast(l)
			if err := s.ReleaseLease(t.Context(), "c1", l); err != nil {
				t.Fatalf("ReleaseLease of an expired lease: %v", err)
			}
			wantLease(t, s, "c1", l)
		}},
		{"NotFound", func(t *testing.T, s tokenkeeper.Store) {
			l := tokenkeeper.Lease{Owner: "a", Fence: 1, ExpiresAt: now().Add(long)}
			if err := s.ReleaseLease(t.Context(), "c1", l); err != nil {
				t.Errorf("ReleaseLease on a missing connection: %v", err)
			}
		}},
	}
}
