package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/postgres"
)

// dbClock is the database clock of a store made by openWithClock: the
// store's statements call clock_timestamp() unqualified, and its
// search_path puts the test's schema, which defines its own
// clock_timestamp(), before pg_catalog. So the test sets the time the
// server reads, without sleeping and without touching the clocks of the
// machine.
type dbClock struct {
	t      *testing.T
	schema string
}

// set makes the database's clock read at from now on, in every session
// (the function reads a table).
func (c dbClock) set(at time.Time) {
	c.t.Helper()
	if _, err := server.admin.Exec(context.Background(), `UPDATE `+c.schema+`.fake_clock SET at = $1`, at); err != nil {
		c.t.Fatal(err)
	}
}

// openWithClock opens a store on a fresh schema whose database clock reads
// at until set otherwise. params are added to the store's URL.
func openWithClock(t *testing.T, at time.Time, params map[string]string) (*postgres.Store, dbClock) {
	t.Helper()
	schema := newSchema(t)
	for _, stmt := range []string{
		`CREATE TABLE ` + schema + `.fake_clock (at timestamptz NOT NULL)`,
		`CREATE FUNCTION ` + schema + `.clock_timestamp() RETURNS timestamptz
			LANGUAGE sql VOLATILE AS 'SELECT at FROM ` + schema + `.fake_clock'`,
	} {
		if _, err := server.admin.Exec(t.Context(), stmt); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := server.admin.Exec(t.Context(), `INSERT INTO `+schema+`.fake_clock VALUES ($1)`, at); err != nil {
		t.Fatal(err)
	}
	p := map[string]string{"search_path": schema + ",pg_catalog"}
	for k, v := range params {
		p[k] = v
	}
	return openURL(t, schemaURL(schema, p)), dbClock{t, schema}
}

// TestLease_DatabaseClock: lease times are the database server's, not the
// caller's. With the database's clock an hour ahead of this machine's, a
// lease that this machine would call live for an hour is expired by the
// database's clock once that passes its end; with the database an hour
// behind, a lease that this machine would call long expired is still held.
func TestLease_DatabaseClock(t *testing.T) {
	ahead := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	s, clock := openWithClock(t, ahead, nil)
	create(t, s, newRecord("c1"))
	l, _, err := s.AcquireLease(t.Context(), "c1", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := ahead.Add(time.Minute); !l.ExpiresAt.Equal(want) {
		t.Fatalf("lease ExpiresAt = %v, want the database's clock plus the ttl, %v", l.ExpiresAt, want)
	}
	clock.set(ahead.Add(2 * time.Minute)) // past the lease, by the database's clock only
	if !l.HeldBy("a", time.Now()) {
		t.Fatal("by this machine's clock, the lease should still be held")
	}
	_, err = s.RenewLease(t.Context(), "c1", l, time.Minute)
	wantCode(t, "RenewLease of a lease expired by the database's clock", err, tokenkeeper.CodeConflict)
	next := newRecord("c1")
	next.Generation = 2
	err = s.UpdateLeased(t.Context(), next, 1, l)
	wantCode(t, "UpdateLeased with a lease expired by the database's clock", err, tokenkeeper.CodeConflict)
	taken, _, err := s.AcquireLease(t.Context(), "c1", "b", time.Minute)
	if err != nil {
		t.Fatalf("AcquireLease of a lease expired by the database's clock: %v", err)
	}
	if taken.Fence <= l.Fence || !taken.ExpiresAt.Equal(ahead.Add(3*time.Minute)) {
		t.Errorf("taken-over lease = %+v after %+v, want a higher fence, until %v", taken, l, ahead.Add(3*time.Minute))
	}

	behind := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	clock.set(behind)
	create(t, s, newRecord("c2"))
	l, _, err = s.AcquireLease(t.Context(), "c2", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if l.HeldBy("a", time.Now()) {
		t.Fatal("by this machine's clock, the lease should have expired")
	}
	_, rec, err := s.AcquireLease(t.Context(), "c2", "b", time.Minute)
	wantCode(t, "AcquireLease of a lease held by the database's clock", err, tokenkeeper.CodeUnavailable)
	if rec == nil || rec.Lease != l {
		t.Errorf("refused AcquireLease's record = %+v, want the holder's lease %+v", rec, l)
	}
	if l, err = s.RenewLease(t.Context(), "c2", l, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	next = newRecord("c2")
	next.Generation = 2
	if err := s.UpdateLeased(t.Context(), next, 1, l); err != nil {
		t.Errorf("UpdateLeased with a lease held by the database's clock: %v", err)
	}
}

// TestLease_ExpiresWaitingForLock: a holder's lease statement that waits
// for a row lock held by another transaction while the lease expires
// decides with the database's clock as it is after the wait, not before,
// whether the other transaction wrote the row or only locked it (see
// lockedNow). So a holder whose lease ran out while it queued cannot write,
// renew or release. (AcquireLease does not queue there: while the lease is
// held, the row does not pass its WHERE clause, so it is refused at once.)
func TestLease_ExpiresWaitingForLock(t *testing.T) {
	requireServer(t)
	for _, tt := range []struct {
		name  string
		call  func(s *postgres.Store, l tokenkeeper.Lease) error
		check func(t *testing.T, s *postgres.Store, l tokenkeeper.Lease, err error)
	}{
		{"UpdateLeased", func(s *postgres.Store, l tokenkeeper.Lease) error {
			next := newRecord("c1")
			next.Generation, next.LastError = 2, "written by a holder whose lease had run out"
			return s.UpdateLeased(context.Background(), next, 1, l)
		}, func(t *testing.T, s *postgres.Store, l tokenkeeper.Lease, err error) {
			wantCode(t, "UpdateLeased", err, tokenkeeper.CodeConflict)
		}},
		{"RenewLease", func(s *postgres.Store, l tokenkeeper.Lease) error {
			_, err := s.RenewLease(context.Background(), "c1", l, time.Minute)
			return err
		}, func(t *testing.T, s *postgres.Store, l tokenkeeper.Lease, err error) {
			wantCode(t, "RenewLease", err, tokenkeeper.CodeConflict)
		}},
		{"ReleaseLease", func(s *postgres.Store, l tokenkeeper.Lease) error {
			return s.ReleaseLease(context.Background(), "c1", l)
		}, func(t *testing.T, s *postgres.Store, l tokenkeeper.Lease, err error) {
			if err != nil {
				t.Fatal(err)
			}
			if got := getLease(t, s); got != l {
				t.Errorf("lease after releasing it once expired = %+v, want it unchanged: %+v", got, l)
			}
		}},
	} {
		// The blockers: a write of the row, and a lock without a write
		// (which PostgreSQL would not make the UPDATE evaluate again).
		for blocker, lock := range map[string]string{
			"Write":     `UPDATE %s.connections SET subject = 'blocker' WHERE id = 'c1'`,
			"ForUpdate": `SELECT 1 FROM %s.connections WHERE id = 'c1' FOR UPDATE`,
		} {
			t.Run(tt.name+"/"+blocker, func(t *testing.T) {
				t.Parallel()
				t0 := time.Now().UTC().Truncate(time.Microsecond)
				app := fmt.Sprintf("tk-lockwait-%d", time.Now().UnixNano())
				s, clock := openWithClock(t, t0, map[string]string{"application_name": app})
				create(t, s, newRecord("c1"))
				l, _, err := s.AcquireLease(t.Context(), "c1", "a", time.Minute)
				if err != nil {
					t.Fatal(err)
				}

				tx, err := conn(t).Begin(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(context.Background())
				if _, err := tx.Exec(t.Context(), fmt.Sprintf(lock, clock.schema)); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- tt.call(s, l) }()
				waitForLockWait(t, app)
				clock.set(t0.Add(2 * time.Minute)) // the lease expires while the call waits
				if err := tx.Commit(t.Context()); err != nil {
					t.Fatal(err)
				}
				tt.check(t, s, l, <-done)
			})
		}
	}
}

// getLease returns the stored lease of c1.
func getLease(t *testing.T, s *postgres.Store) tokenkeeper.Lease {
	t.Helper()
	rec, err := s.GetConnection(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	return rec.Lease
}

// waitForLockWait waits until a session named app waits for a lock.
func waitForLockWait(t *testing.T, app string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := server.admin.QueryRow(t.Context(),
			`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the call never waited for the row lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
