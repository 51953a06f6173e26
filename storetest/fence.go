package storetest

import (
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

// UpdateLeased is the fenced write: it must fail with CodeConflict for any
// lease that is not the current, unexpired one, whatever else matches.
//
// "Unexpired" is at the moment the write is decided, not when the call
// began: a store must read its lease clock once it holds the lock the
// write waits for (SQLite: inside BEGIN IMMEDIATE; PostgreSQL:
// clock_timestamp(), not now(), which is the transaction's start, or a
// time read after the row lock is taken). The same holds for RenewLease
// and ReleaseLease. The suite cannot make a store wait for a lock through
// the Store interface, so each backend tests this itself (the SQLite
// store by holding the file's write lock from another connection).

func updateLeasedTests() []test {
	return []test{
		{"OK", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			l := acquire(t, s, "c1", "a", long)
			next := changed(get(t, s, "c1"))
			if err := s.UpdateLeased(t.Context(), next, 1, l); err != nil {
				t.Fatal(err)
			}
			// Every field is replaced but the lease, which stays held.
			wantRecord(t, get(t, s, "c1"), withLease(next, l))
			// The holder may write again, on the new generation.
			again := changed(next)
			if err := s.UpdateLeased(t.Context(), again, next.Generation, l); err != nil {
				t.Fatal(err)
			}
			wantRecord(t, get(t, s, "c1"), withLease(again, l))
		}},
		{"ErrConflict", func(t *testing.T, s tokenkeeper.Store) {
			// Each case sets up the lease and returns the lease a writer
			// presents; the write must fail and change nothing.
			cases := []struct {
				name  string
				setup func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (presented tokenkeeper.Lease, expect int64)
			}{
				{"WrongOwner", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (tokenkeeper.Lease, int64) {
					l := acquire(t, s, id, "a", long)
					l.Owner = "b"
					return l, 1
				}},
				{"WrongFence", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (tokenkeeper.Lease, int64) {
					l := acquire(t, s, id, "a", long)
					l.Fence++
					return l, 1
				}},
				{"StaleFenceAfterReacquire", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (tokenkeeper.Lease, int64) {
					old := acquire(t, s, id, "a", long)
					acquire(t, s, id, "a", long)
					return old, 1
				}},
				{"StaleFenceAfterTakeover", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (tokenkeeper.Lease, int64) {
					old := acquire(t, s, id, "a", short)
					sleepPast(old)
					acquire(t, s, id, "b", long)
					return old, 1
				}},
				{"Expired", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (tokenkeeper.Lease, int64) {
					l := acquire(t, s, id, "a", short)
					sleepPast(l)
					return l, 1
				}},
				{"Released", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (tokenkeeper.Lease, int64) {
					l := acquire(t, s, id, "a", long)
					if err := s.ReleaseLease(t.Context(), id, l); err != nil {
						t.Fatal(err)
					}
					return l, 1
				}},
				{"NoLease", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (tokenkeeper.Lease, int64) {
					return tokenkeeper.Lease{}, 1
				}},
				{"ZeroLeaseAfterRelease", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (tokenkeeper.Lease, int64) {
					l := acquire(t, s, id, "a", long)
					if err := s.ReleaseLease(t.Context(), id, l); err != nil {
						t.Fatal(err)
					}
					return tokenkeeper.Lease{Fence: l.Fence}, 1
				}},
				{"GenerationMismatch", func(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) (tokenkeeper.Lease, int64) {
					return acquire(t, s, id, "a", long), 2
				}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					id := tokenkeeper.ConnectionID("c-" + tc.name) // one per case
					create(t, s, record(id))
					presented, expect := tc.setup(t, s, id)
					before := get(t, s, id)
					err := s.UpdateLeased(t.Context(), changed(before), expect, presented)
					wantCode(t, err, tokenkeeper.CodeConflict)
					wantRecord(t, get(t, s, id), before)
				})
			}
		}},
		{"ErrNotFound", func(t *testing.T, s tokenkeeper.Store) {
			l := tokenkeeper.Lease{Owner: "a", Fence: 1, ExpiresAt: now().Add(long)}
			wantCode(t, s.UpdateLeased(t.Context(), changed(record("c1")), 1, l), tokenkeeper.CodeNotFound)
		}},
		{"ErrInvalidUTF8", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			l := acquire(t, s, "c1", "a", long)
			before := get(t, s, "c1")
			for _, tc := range invalidText(false) {
				next := changed(before)
				tc.set(next)
				wantInvalidText(t, s.UpdateLeased(t.Context(), next, 1, l), tc.field)
				wantRecord(t, get(t, s, "c1"), before)
			}
		}},
	}
}
