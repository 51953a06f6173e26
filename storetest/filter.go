package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper"
)

// list returns the ids ListConnections returns for f, or fails t.
func list(t *testing.T, s tokenkeeper.Store, f tokenkeeper.ConnectionFilter) []tokenkeeper.ConnectionID {
	t.Helper()
	recs, err := s.ListConnections(t.Context(), f)
	if err != nil {
		t.Fatalf("ListConnections(%+v): %v", f, err)
	}
	ids := []tokenkeeper.ConnectionID{}
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	return ids
}

// wantIDs fails t unless got is want.
func wantIDs(t *testing.T, f tokenkeeper.ConnectionFilter, got []tokenkeeper.ConnectionID, want ...tokenkeeper.ConnectionID) {
	t.Helper()
	if want == nil {
		want = []tokenkeeper.ConnectionID{}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListConnections(%+v) ids (-want +got):\n%s", f, diff)
	}
}

// ids in byte order: upper case before lower, punctuation by its code.
var sortedIDs = []tokenkeeper.ConnectionID{"B", "a", "a-1", "a.b", "a0", "a:x", "a@y", "ab", "ab_c", "b"}

func listConnectionsTests() []test {
	return append([]test{
		{"All", func(t *testing.T, s tokenkeeper.Store) {
			recs := map[tokenkeeper.ConnectionID]*tokenkeeper.Record{}
			for _, i := range []int{3, 0, 9, 5, 1, 7, 2, 8, 4, 6} {
				recs[sortedIDs[i]] = record(sortedIDs[i])
				create(t, s, recs[sortedIDs[i]])
			}
			f := tokenkeeper.ConnectionFilter{}
			wantIDs(t, f, list(t, s, f), sortedIDs...)
			// Records come back whole, lease included.
			l := acquire(t, s, "a", "holder", long)
			got, err := s.ListConnections(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			checkTimes(t, got[1])
			wantRecord(t, got[1], withLease(recs["a"], l))
		}},
		{"Empty", func(t *testing.T, s tokenkeeper.Store) {
			f := tokenkeeper.ConnectionFilter{}
			wantIDs(t, f, list(t, s, f))
		}},
		{"IDPrefix", func(t *testing.T, s tokenkeeper.Store) {
			for _, id := range sortedIDs {
				create(t, s, record(id))
			}
			for prefix, want := range map[string][]tokenkeeper.ConnectionID{
				"a":   {"a", "a-1", "a.b", "a0", "a:x", "a@y", "ab", "ab_c"},
				"ab":  {"ab", "ab_c"},
				"a.":  {"a.b"},
				"B":   {"B"},
				"abc": {},
				"%":   {},
				"_":   {},
			} {
				f := tokenkeeper.ConnectionFilter{IDPrefix: prefix}
				wantIDs(t, f, list(t, s, f), want...)
			}
		}},
		{"State", func(t *testing.T, s tokenkeeper.Store) {
			states := []tokenkeeper.State{tokenkeeper.StateActive, tokenkeeper.StateReconnectRequired, tokenkeeper.StateDisconnected}
			for i, id := range sortedIDs {
				rec := record(id)
				rec.State = states[i%3]
				create(t, s, rec)
			}
			f := tokenkeeper.ConnectionFilter{State: tokenkeeper.StateReconnectRequired}
			wantIDs(t, f, list(t, s, f), "a", "a0", "ab")
		}},
		{"After", func(t *testing.T, s tokenkeeper.Store) {
			for _, id := range sortedIDs {
				create(t, s, record(id))
			}
			// Keyset pagination walks every record once, in order.
			var walked []tokenkeeper.ConnectionID
			f := tokenkeeper.ConnectionFilter{Limit: 3}
			for page := 0; ; page++ {
				ids := list(t, s, f)
				if len(ids) == 0 {
					break
				}
				if page > len(sortedIDs) {
					t.Fatal("pagination does not end")
				}
				walked = append(walked, ids...)
				f.After = ids[len(ids)-1]
			}
			wantIDs(t, tokenkeeper.ConnectionFilter{Limit: 3}, walked, sortedIDs...)
			// After need not be an existing id.
			f = tokenkeeper.ConnectionFilter{After: "a1", IDPrefix: "a"}
			wantIDs(t, f, list(t, s, f), "a:x", "a@y", "ab", "ab_c")
		}},
		{"Limit", func(t *testing.T, s tokenkeeper.Store) {
			createMany(t, s, 1001)
			for _, tc := range []struct{ limit, want int }{
				{0, 100}, {-1, 100}, {1, 1}, {100, 100}, {999, 999}, {1000, 1000}, {1001, 1000}, {5000, 1000},
			} {
				if got := len(list(t, s, tokenkeeper.ConnectionFilter{Limit: tc.limit})); got != tc.want {
					t.Errorf("Limit %d returned %d records, want %d", tc.limit, got, tc.want)
				}
			}
		}},
		{"LastRefreshBefore", func(t *testing.T, s tokenkeeper.Store) {
			cutoff := now().Add(-time.Hour)
			for id, times := range map[tokenkeeper.ConnectionID][2]time.Time{ // created, last refresh
				"refreshed-before":          {cutoff.Add(-48 * time.Hour), cutoff.Add(-time.Second)},
				"refreshed-at":              {cutoff.Add(-48 * time.Hour), cutoff},
				"refreshed-after":           {cutoff.Add(-48 * time.Hour), cutoff.Add(time.Microsecond)},
				"never-refreshed-old":       {cutoff.Add(-time.Microsecond), {}},
				"never-refreshed-new":       {cutoff.Add(time.Minute), {}},
				"never-refreshed-at-cutoff": {cutoff, {}},
			} {
				rec := record(id)
				rec.CreatedAt, rec.LastRefreshAt = times[0], times[1]
				create(t, s, rec)
			}
			f := tokenkeeper.ConnectionFilter{LastRefreshBefore: cutoff}
			wantIDs(t, f, list(t, s, f), "never-refreshed-old", "refreshed-before")
		}},
		{"NextRefreshBefore", func(t *testing.T, s tokenkeeper.Store) {
			cutoff := now().Add(time.Hour)
			for id, next := range map[tokenkeeper.ConnectionID]time.Time{
				"none":     {},
				"overdue":  cutoff.Add(-24 * time.Hour),
				"before":   cutoff.Add(-time.Microsecond),
				"at":       cutoff,
				"after":    cutoff.Add(time.Minute),
				"long-ago": time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC),
			} {
				rec := record(id)
				rec.NextRefreshAt = next
				create(t, s, rec)
			}
			f := tokenkeeper.ConnectionFilter{NextRefreshBefore: cutoff}
			wantIDs(t, f, list(t, s, f), "before", "long-ago", "overdue")
		}},
		{"SubMicrosecondBounds", func(t *testing.T, s tokenkeeper.Store) {
			// Stored times are whole microseconds, but the bounds need not
			// be (the keeper passes its clock): "before" is exact, so a
			// store must round a bound up to the microsecond, not truncate
			// it. The connection at the bound's microsecond is before it;
			// the one a microsecond later is not.
			at := now().Add(-time.Hour)
			for id, when := range map[tokenkeeper.ConnectionID]time.Time{"at": at, "later": at.Add(time.Microsecond)} {
				rec := record(id)
				rec.CreatedAt, rec.LastRefreshAt, rec.NextRefreshAt = when.Add(-time.Hour), when, when
				rec.UpdatedAt = when
				create(t, s, rec)
			}
			for _, frac := range []time.Duration{1, 500, 999} {
				bound := at.Add(frac)
				for _, f := range []tokenkeeper.ConnectionFilter{
					{NextRefreshBefore: bound},
					{LastRefreshBefore: bound},
					{NextRefreshBefore: bound, LastRefreshBefore: bound},
					{UpdatedBefore: bound},
					{UpdatedBefore: bound, State: tokenkeeper.StateActive},
				} {
					wantIDs(t, f, list(t, s, f), "at")
				}
			}
		}},
		{"Combined", func(t *testing.T, s tokenkeeper.Store) {
			cutoff := now()
			for i := range 12 {
				rec := record(tokenkeeper.ConnectionID(fmt.Sprintf("c%02d", i)))
				if i%2 == 0 {
					rec.State = tokenkeeper.StateDisconnected
				}
				if i%3 == 0 {
					rec.LastRefreshAt = cutoff.Add(time.Minute)
				}
				if i == 7 {
					rec.UpdatedAt = cutoff.Add(time.Minute)
				}
				create(t, s, rec)
			}
			// Active (odd), refreshed before the cutoff (not a multiple of
			// three), written before the cutoff (not c07), after c03, two
			// at most.
			f := tokenkeeper.ConnectionFilter{
				State: tokenkeeper.StateActive, LastRefreshBefore: cutoff, After: "c03", Limit: 2,
				IDPrefix: "c", NextRefreshBefore: cutoff.Add(time.Hour), UpdatedBefore: cutoff,
			}
			wantIDs(t, f, list(t, s, f), "c05", "c11")
		}},
	}, updatedBeforeTests()...)
}

// createMany creates n minimal connections, from a few goroutines.
func createMany(t *testing.T, s tokenkeeper.Store, n int) {
	t.Helper()
	const workers = 8
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				errs[w] = s.CreateConnection(t.Context(), &tokenkeeper.Record{Connection: tokenkeeper.Connection{
					ID: tokenkeeper.ConnectionID(fmt.Sprintf("c%05d", i)), State: tokenkeeper.StateActive,
					Generation: 1, CreatedAt: now(),
				}})
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
