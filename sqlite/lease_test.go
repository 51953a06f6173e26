package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// openLocked opens a store on a new file, creates c1 in it, takes a lease of
// ttl on it for owner "a", and then has another connection (as another
// process would) hold the file's write lock for hold. It returns the store
// and the lease.
func openLocked(t *testing.T, ttl, hold time.Duration) (*sqlite.Store, *tokenkeeper.Record, tokenkeeper.Lease) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rec := newRecord("c1")
	if err := s.CreateConnection(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	lease, _, err := s.AcquireLease(t.Context(), "c1", "a", ttl)
	if err != nil {
		t.Fatal(err)
	}

	other, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	tx, err := other.BeginTx(t.Context(), nil) // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(hold)
		tx.Rollback()
	}()
	t.Cleanup(func() { <-released })
	return s, rec, lease
}

// wantWaitedPast fails t unless the lease has expired by now: the call
// under test must have waited for the lock past the lease's expiry.
func wantWaitedPast(t *testing.T, lease tokenkeeper.Lease) {
	t.Helper()
	if now := time.Now(); !now.After(lease.ExpiresAt) {
		t.Fatalf("the write lock was not held past the lease (now %v, lease until %v)", now, lease.ExpiresAt)
	}
}

// TestUpdateLeased_ExpiresWaitingForLock: the fenced write waits for
// another process's write lock (up to BusyTimeout) and the lease expires
// meanwhile. The lease clock must be read once the lock is held, so the
// write fails: "UpdateLeased ... also requires lease to be the current,
// unexpired lease ... CodeConflict if either check fails."
func TestUpdateLeased_ExpiresWaitingForLock(t *testing.T) {
	t.Parallel()
	s, rec, lease := openLocked(t, 200*time.Millisecond, time.Second)
	next := *rec
	next.Generation = 2
	next.LastError = "written by a holder whose lease had run out"
	err := s.UpdateLeased(t.Context(), &next, 1, lease)
	wantWaitedPast(t, lease)
	if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeConflict {
		got, _ := s.GetConnection(t.Context(), "c1")
		t.Errorf("UpdateLeased committed at %v with a lease that expired at %v: code %q (%v), want conflict; stored generation %d",
			time.Now().UTC(), lease.ExpiresAt, code, err, got.Generation)
	}
}

// TestReleaseLease_ExpiresWaitingForLock: a release that waits for another
// process's write lock while the lease expires must change nothing, like
// the release of an expired lease ("Releasing a lease that is no longer
// held (expired, or taken over) changes nothing").
func TestReleaseLease_ExpiresWaitingForLock(t *testing.T) {
	t.Parallel()
	s, _, lease := openLocked(t, 200*time.Millisecond, time.Second)
	if err := s.ReleaseLease(t.Context(), "c1", lease); err != nil {
		t.Fatal(err)
	}
	wantWaitedPast(t, lease)
	got, err := s.GetConnection(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Lease != lease {
		t.Errorf("lease after releasing it once expired = %+v, want it unchanged: %+v", got.Lease, lease)
	}
}
