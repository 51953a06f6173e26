package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// acquire takes the lease of id for owner or fails t.
func acquire(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID, owner string, ttl time.Duration) tokenkeeper.Lease {
	t.Helper()
	l, _, err := s.AcquireLease(t.Context(), id, owner, ttl)
	if err != nil {
		t.Fatalf("AcquireLease(%s, %s): %v", id, owner, err)
	}
	return l
}

// wantLease fails t unless the stored lease of id is want.
func wantLease(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID, want tokenkeeper.Lease) {
	t.Helper()
	if got := get(t, s, id).Lease; got != want {
		t.Fatalf("stored lease = %+v, want %+v", got, want)
	}
}

func acquireLeaseTests() []test {
	return []test{
		{"OK", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			before := time.Now()
			l, rec, err := s.AcquireLease(t.Context(), "c1", "a", long)
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			if l.Owner != "a" || l.Fence < 1 {
				t.Errorf("lease = %+v, want owner a and a positive fence", l)
			}
			// ttl from now by the store's clock; a minute of slack for a
			// database server's clock.
			if l.ExpiresAt.Before(before.Add(long-time.Minute)) || l.ExpiresAt.After(after.Add(long+time.Minute)) {
				t.Errorf("ExpiresAt = %v, want about %v from now", l.ExpiresAt, long)
			}
			if !l.HeldBy("a", time.Now()) {
				t.Errorf("lease %+v is not held by a now", l)
			}
			// The returned record is the stored one, lease included.
			checkTimes(t, rec)
			wantRecord(t, rec, get(t, s, "c1"))
			if rec.Lease != l {
				t.Errorf("record's lease = %+v, want %+v", rec.Lease, l)
			}
		}},
		{"ReturnsCurrentRecord", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			next := changed(get(t, s, "c1"))
			if err := s.UpdateConnection(t.Context(), next, 1); err != nil {
				t.Fatal(err)
			}
			l, rec, err := s.AcquireLease(t.Context(), "c1", "a", long)
			if err != nil {
				t.Fatal(err)
			}
			wantRecord(t, rec, withLease(next, l))
		}},
		{"ErrUnavailable", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			held := acquire(t, s, "c1", "a", long)
			l, rec, err := s.AcquireLease(t.Context(), "c1", "b", long)
			wantCode(t, err, tokenkeeper.CodeUnavailable)
			if l != (tokenkeeper.Lease{}) {
				t.Errorf("lease = %+v, want the zero Lease", l)
			}
			if rec == nil {
				t.Fatal("record is nil; want it filled in")
			}
			// The caller sees who holds the lease and until when.
			wantRecord(t, rec, get(t, s, "c1"))
			if rec.Lease != held {
				t.Errorf("record's lease = %+v, want the holder's %+v", rec.Lease, held)
			}
		}},
		{"ErrNotFound", func(t *testing.T, s tokenkeeper.Store) {
			_, _, err := s.AcquireLease(t.Context(), "c1", "a", long)
			wantCode(t, err, tokenkeeper.CodeNotFound)
		}},
		{"ErrInvalidOwner", func(t *testing.T, s tokenkeeper.Store) {
			// The owner is stored text, so it must be valid UTF-8.
			create(t, s, record("c1"))
			_, _, err := s.AcquireLease(t.Context(), "c1", "replica-\xff", long)
			wantCode(t, err, tokenkeeper.CodeInvalid)
			wantLease(t, s, "c1", tokenkeeper.Lease{})
		}},
		{"Reacquire", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			first := acquire(t, s, "c1", "a", short)
			second := acquire(t, s, "c1", "a", long)
			if second.Fence <= first.Fence || !second.ExpiresAt.After(first.ExpiresAt) {
				t.Errorf("re-acquired lease = %+v after %+v, want a new fence and a later expiry", second, first)
			}
			wantLease(t, s, "c1", second)
		}},
		{"Race", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			const n = 50
			type result struct {
				lease tokenkeeper.Lease
				rec   *tokenkeeper.Record
				err   error
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					l, rec, err := s.AcquireLease(t.Context(), "c1", fmt.Sprint("owner-", i), long)
					results[i] = result{l, rec, err}
				})
			}
			close(start)
			wg.Wait()
			var winner *result
			for i := range results {
				if results[i].err == nil {
					if winner != nil {
						t.Fatalf("%s and %s both hold the lease", winner.lease.Owner, results[i].lease.Owner)
					}
					winner = &results[i]
				}
			}
			if winner == nil {
				t.Fatal("nobody acquired the lease")
			}
			for i, r := range results {
				if r.err == nil {
					continue
				}
				wantCode(t, r.err, tokenkeeper.CodeUnavailable)
				if r.rec == nil || r.rec.Lease != winner.lease {
					t.Fatalf("loser %d sees record %v, want the holder's lease %+v", i, r.rec, winner.lease)
				}
			}
			wantLease(t, s, "c1", winner.lease)
		}},
		{"FenceGrows", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			var fences []int64
			l := acquire(t, s, "c1", "a", long)
			fences = append(fences, l.Fence)
			if err := s.ReleaseLease(t.Context(), "c1", l); err != nil {
				t.Fatal(err)
			}
			if got := get(t, s, "c1").Lease; got.Fence != l.Fence {
				t.Errorf("fence after release = %d, want it kept at %d", got.Fence, l.Fence)
			}
			l = acquire(t, s, "c1", "a", short) // after a release
			fences = append(fences, l.Fence)
			sleepPast(l)
			l = acquire(t, s, "c1", "b", short) // a takeover of an expired lease
			fences = append(fences, l.Fence)
			l = acquire(t, s, "c1", "b", long) // a re-acquisition by the holder
			fences = append(fences, l.Fence)
			if err := s.ReleaseLease(t.Context(), "c1", l); err != nil {
				t.Fatal(err)
			}
			l = acquire(t, s, "c1", "a", long) // the first owner again
			fences = append(fences, l.Fence)
			for i := 1; i < len(fences); i++ {
				if fences[i] <= fences[i-1] {
					t.Fatalf("fences %v do not strictly increase", fences)
				}
			}
		}},
		{"Takeover", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			old := acquire(t, s, "c1", "a", short)
			sleepPast(old)
			l, rec, err := s.AcquireLease(t.Context(), "c1", "b", long)
			if err != nil {
				t.Fatalf("AcquireLease of an expired lease: %v", err)
			}
			if l.Owner != "b" || l.Fence <= old.Fence || rec.Lease != l {
				t.Errorf("lease = %+v (record: %+v) after %+v, want b's with a higher fence", l, rec.Lease, old)
			}
			// The old holder can no longer act.
			wantCode(t, s.UpdateLeased(t.Context(), changed(rec), rec.Generation, old), tokenkeeper.CodeConflict)
			_, err = s.RenewLease(t.Context(), "c1", old, long)
			wantCode(t, err, tokenkeeper.CodeConflict)
			if err := s.ReleaseLease(t.Context(), "c1", old); err != nil {
				t.Errorf("ReleaseLease of a lost lease: %v", err)
			}
			wantLease(t, s, "c1", l)
		}},
	}
}
