package storetest

import (
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper"
)

// This file covers what retention and the operator's views rely on: the
// UpdatedBefore filter (which connections to prune), DeleteConnection's
// generation check (prune only what was read), and CountConnections.

func deleteConnectionTests() []test {
	return []test{
		{"OK", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			create(t, s, record("c2"))
			if err := s.DeleteConnection(t.Context(), "c1", 0); err != nil {
				t.Fatal(err)
			}
			_, err := s.GetConnection(t.Context(), "c1")
			wantCode(t, err, tokenkeeper.CodeNotFound)
			get(t, s, "c2")
			wantCode(t, s.DeleteConnection(t.Context(), "c1", 0), tokenkeeper.CodeNotFound)
		}},
		{"ErrNotFound", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c2"))
			// Absent is not found, whatever generation is expected.
			for _, expect := range []int64{0, 1, 2} {
				wantCode(t, s.DeleteConnection(t.Context(), "c1", expect), tokenkeeper.CodeNotFound)
			}
			get(t, s, "c2")
		}},
		{"Expect", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			create(t, s, record("c2"))
			if err := s.DeleteConnection(t.Context(), "c2", 1); err != nil {
				t.Fatalf("DeleteConnection(c2, expect 1) of generation 1: %v", err)
			}
			_, err := s.GetConnection(t.Context(), "c2")
			wantCode(t, err, tokenkeeper.CodeNotFound)

			// c1 moves to generation 2 (a reconnect, say) after a reader
			// saw generation 1: the reader's delete must fail.
			if err := s.UpdateConnection(t.Context(), changed(get(t, s, "c1")), 1); err != nil {
				t.Fatal(err)
			}
			want := get(t, s, "c1")
			for _, expect := range []int64{1, 3, -2} {
				wantCode(t, s.DeleteConnection(t.Context(), "c1", expect), tokenkeeper.CodeConflict)
				wantRecord(t, get(t, s, "c1"), want)
			}
			if err := s.DeleteConnection(t.Context(), "c1", 2); err != nil {
				t.Fatalf("DeleteConnection(c1, expect 2) of generation 2: %v", err)
			}
			_, err = s.GetConnection(t.Context(), "c1")
			wantCode(t, err, tokenkeeper.CodeNotFound)
			wantCode(t, s.DeleteConnection(t.Context(), "c1", 2), tokenkeeper.CodeNotFound)
		}},
		{"Unconditional", func(t *testing.T, s tokenkeeper.Store) {
			// expect 0 deletes whatever the generation.
			create(t, s, record("c1"))
			next := changed(get(t, s, "c1"))
			if err := s.UpdateConnection(t.Context(), next, 1); err != nil {
				t.Fatal(err)
			}
			if err := s.UpdateConnection(t.Context(), changed(next), 2); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteConnection(t.Context(), "c1", 0); err != nil {
				t.Fatalf("DeleteConnection(c1, 0) of generation 3: %v", err)
			}
			_, err := s.GetConnection(t.Context(), "c1")
			wantCode(t, err, tokenkeeper.CodeNotFound)
		}},
		{"RaceWithUpdate", func(t *testing.T, s tokenkeeper.Store) {
			// A delete expecting generation 1 and an update from generation
			// 1 race: exactly one wins, and the loser sees why.
			const n = 16
			delErrs, updErrs := make([]error, n), make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				id := tokenkeeper.ConnectionID(fmt.Sprintf("c%02d", i))
				create(t, s, record(id))
				next := changed(get(t, s, id))
				wg.Go(func() {
					<-start
					delErrs[i] = s.DeleteConnection(t.Context(), id, 1)
				})
				wg.Go(func() {
					<-start
					updErrs[i] = s.UpdateConnection(t.Context(), next, 1)
				})
			}
			close(start)
			wg.Wait()
			for i := range n {
				id := tokenkeeper.ConnectionID(fmt.Sprintf("c%02d", i))
				del, upd := tokenkeeper.ErrorCode(delErrs[i]), tokenkeeper.ErrorCode(updErrs[i])
				_, err := s.GetConnection(t.Context(), id)
				switch {
				case del == "" && upd == tokenkeeper.CodeNotFound:
					wantCode(t, err, tokenkeeper.CodeNotFound)
				case del == tokenkeeper.CodeConflict && upd == "":
					if got := get(t, s, id).Generation; got != 2 {
						t.Errorf("%s: generation %d after the update won, want 2", id, got)
					}
				default:
					t.Errorf("%s: delete %v, update %v; want one success and not found or conflict", id, delErrs[i], updErrs[i])
				}
			}
		}},
		{"RemovesLease", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			if _, _, err := s.AcquireLease(t.Context(), "c1", "old", long); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteConnection(t.Context(), "c1", 1); err != nil {
				t.Fatal(err)
			}
			create(t, s, record("c1"))
			if l := get(t, s, "c1").Lease; l.Owner != "" || !l.ExpiresAt.IsZero() {
				t.Errorf("recreated connection's lease = %+v, want none held", l)
			}
			if _, _, err := s.AcquireLease(t.Context(), "c1", "new", long); err != nil {
				t.Errorf("AcquireLease after delete: %v", err)
			}
		}},
	}
}

// updatedBeforeTests are ListConnections tests of UpdatedBefore.
func updatedBeforeTests() []test {
	return []test{
		{"UpdatedBefore", func(t *testing.T, s tokenkeeper.Store) {
			cutoff := now().Add(-time.Hour)
			for id, updated := range map[tokenkeeper.ConnectionID]time.Time{
				"never":  {}, // the zero time is before every bound
				"old":    cutoff.Add(-30 * 24 * time.Hour),
				"before": cutoff.Add(-time.Microsecond),
				"at":     cutoff,
				"after":  cutoff.Add(time.Microsecond),
				"new":    now(),
			} {
				rec := record(id)
				rec.UpdatedAt = updated
				// The other times say the opposite, so that a store
				// filtering on the wrong column fails.
				rec.CreatedAt, rec.LastRefreshAt = cutoff.Add(-time.Hour), cutoff.Add(-time.Hour)
				if !updated.IsZero() && updated.Before(cutoff) {
					rec.CreatedAt, rec.LastRefreshAt = cutoff.Add(time.Hour), cutoff.Add(time.Hour)
				}
				create(t, s, rec)
			}
			f := tokenkeeper.ConnectionFilter{UpdatedBefore: cutoff}
			wantIDs(t, f, list(t, s, f), "before", "never", "old")
		}},
		{"UpdatedAfter", func(t *testing.T, s tokenkeeper.Store) {
			// The reconciler's incremental pass: written at or after the
			// bound, exact to the nanosecond on whole-microsecond times.
			cutoff := now().Add(-time.Hour)
			for id, updated := range map[tokenkeeper.ConnectionID]time.Time{
				"never":  {},
				"before": cutoff.Add(-time.Microsecond),
				"at":     cutoff,
				"after":  cutoff.Add(time.Microsecond),
				"new":    now(),
			} {
				rec := record(id)
				rec.UpdatedAt = updated
				// The other times say the opposite.
				rec.CreatedAt, rec.LastRefreshAt = cutoff.Add(time.Hour), cutoff.Add(time.Hour)
				if !updated.Before(cutoff) {
					rec.CreatedAt, rec.LastRefreshAt = cutoff.Add(-time.Hour), cutoff.Add(-time.Hour)
				}
				create(t, s, rec)
			}
			f := tokenkeeper.ConnectionFilter{UpdatedAfter: cutoff}
			wantIDs(t, f, list(t, s, f), "after", "at", "new")
			// A bound between two microseconds keeps the later one only.
			f.UpdatedAfter = cutoff.Add(500 * time.Nanosecond)
			wantIDs(t, f, list(t, s, f), "after", "new")
			// With UpdatedBefore: a window.
			f = tokenkeeper.ConnectionFilter{UpdatedAfter: cutoff, UpdatedBefore: cutoff.Add(time.Microsecond)}
			wantIDs(t, f, list(t, s, f), "at")
		}},
		{"UpdatedBeforeState", func(t *testing.T, s tokenkeeper.Store) {
			// The retention query: disconnected, and untouched since the
			// cutoff. A later write takes a connection out of it.
			cutoff := now().Add(-24 * time.Hour)
			for i := range 8 {
				rec := record(tokenkeeper.ConnectionID(fmt.Sprintf("c%d", i)))
				if i%2 == 0 {
					rec.State = tokenkeeper.StateDisconnected
				}
				rec.UpdatedAt = cutoff.Add(-time.Minute)
				if i%4 >= 2 {
					rec.UpdatedAt = cutoff.Add(time.Minute)
				}
				create(t, s, rec)
			}
			f := tokenkeeper.ConnectionFilter{State: tokenkeeper.StateDisconnected, UpdatedBefore: cutoff}
			wantIDs(t, f, list(t, s, f), "c0", "c4")

			next := changed(get(t, s, "c4"))
			next.State, next.UpdatedAt = tokenkeeper.StateDisconnected, now()
			if err := s.UpdateConnection(t.Context(), next, 1); err != nil {
				t.Fatal(err)
			}
			wantIDs(t, f, list(t, s, f), "c0")
			f.Limit, f.After = 1, "c0"
			wantIDs(t, f, list(t, s, f))
		}},
	}
}

func countConnectionsTests() []test {
	return []test{
		{"Empty", func(t *testing.T, s tokenkeeper.Store) {
			wantCounts(t, s, map[tokenkeeper.State]int{})
		}},
		{"ByState", func(t *testing.T, s tokenkeeper.Store) {
			states := map[tokenkeeper.State]int{
				tokenkeeper.StateActive:            5,
				tokenkeeper.StateReconnectRequired: 2,
				tokenkeeper.StateDisconnected:      1,
			}
			i := 0
			for state, n := range states {
				for range n {
					rec := record(tokenkeeper.ConnectionID(fmt.Sprintf("c%d", i)))
					rec.State = state
					create(t, s, rec)
					i++
				}
			}
			wantCounts(t, s, states)

			// A write that changes the state, and a delete, move the counts.
			active, err := s.ListConnections(t.Context(), tokenkeeper.ConnectionFilter{State: tokenkeeper.StateActive})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.UpdateConnection(t.Context(), changed(active[0]), 1); err != nil { // to reconnect_required
				t.Fatal(err)
			}
			if err := s.DeleteConnection(t.Context(), active[1].ID, 0); err != nil {
				t.Fatal(err)
			}
			wantCounts(t, s, map[tokenkeeper.State]int{
				tokenkeeper.StateActive:            3,
				tokenkeeper.StateReconnectRequired: 3,
				tokenkeeper.StateDisconnected:      1,
			})
			for _, rec := range active[2:] {
				if err := s.DeleteConnection(t.Context(), rec.ID, 0); err != nil {
					t.Fatal(err)
				}
			}
			wantCounts(t, s, map[tokenkeeper.State]int{
				tokenkeeper.StateReconnectRequired: 3,
				tokenkeeper.StateDisconnected:      1,
			})
		}},
	}
}

// wantCounts fails t unless CountConnections returns want. A state with
// no connections may be absent or 0.
func wantCounts(t *testing.T, s tokenkeeper.Store, want map[tokenkeeper.State]int) {
	t.Helper()
	got, err := s.CountConnections(t.Context())
	if err != nil {
		t.Fatalf("CountConnections: %v", err)
	}
	got = maps.Clone(got)
	if got == nil {
		got = map[tokenkeeper.State]int{}
	}
	maps.DeleteFunc(got, func(_ tokenkeeper.State, n int) bool { return n == 0 })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CountConnections (-want +got):\n%s", diff)
	}
}
