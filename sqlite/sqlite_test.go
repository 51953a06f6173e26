package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
	"github.com/tokenkeeper/tokenkeeper/storetest"
)

// open opens a store on a new file in a temporary directory.
func open(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "tokenkeeper.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokenkeeper.Store { return open(t) })
}

// TestOpen_FileModes checks that the database and its -wal and -shm files
// are readable by their owner only: they hold sealed tokens.
func TestOpen_FileModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A write makes sure the -wal and -shm files exist.
	if err := s.CreateConnection(t.Context(), newRecord("c1")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want -rw-------", filepath.Base(name), perm)
		}
	}
}

// TestOpen_WAL checks, from another connection, that the file is in WAL
// mode, which is a property of the file.
func TestOpen_WAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

// TestOpen_Reopen checks that what was committed survives Close and Open.
func TestOpen_Reopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecord("c1")
	if err := s.CreateConnection(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	lease, _, err := s.AcquireLease(t.Context(), "c1", "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sess := &tokenkeeper.Session{StateHash: []byte{1, 2, 3}, ConnectionID: "c1", CreatedAt: rec.CreatedAt}
	if err := s.CreateSession(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetConnection(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	rec.Lease = lease
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Errorf("record after reopen (-want +got):\n%s", diff)
	}
	if _, err := s.TakeSession(t.Context(), sess.StateHash); err != nil {
		t.Errorf("TakeSession after reopen: %v", err)
	}
}

// TestOpen_Migrations checks that opening is idempotent, also when two
// stores open a fresh file at once, and that a database from a newer build
// is refused.
func TestOpen_Migrations(t *testing.T) {
	t.Run("Twice", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tokenkeeper.db")
		for range 2 {
			s, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		wantMigrations(t, path)
	})
	t.Run("Concurrent", func(t *testing.T) {
		for range 5 {
			path := filepath.Join(t.TempDir(), "tokenkeeper.db")
			var wg sync.WaitGroup
			errs := make([]error, 4)
			start := make(chan struct{})
			for i := range errs {
				wg.Go(func() {
					<-start
					s, err := sqlite.Open(t.Context(), path)
					if err == nil {
						err = s.Close()
					}
					errs[i] = err
				})
			}
			close(start)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			wantMigrations(t, path)
		}
	})
	t.Run("NewerSchema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tokenkeeper.db")
		s, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		db := rawDB(t, path)
		if _, err := db.ExecContext(t.Context(), `INSERT INTO schema_migrations VALUES (999999, 'future.sql', 0)`); err != nil {
			t.Fatal(err)
		}
		if s, err := sqlite.Open(t.Context(), path); err == nil {
			s.Close()
			t.Fatal("Open of a database with a newer schema succeeded")
		}
	})
}

// wantMigrations fails t unless the database at path records each
// migration once.
func wantMigrations(t *testing.T, path string) {
	t.Helper()
	var n, distinct int
	err := rawDB(t, path).QueryRowContext(t.Context(),
		`SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&n, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 || n != distinct {
		t.Errorf("schema_migrations has %d rows, %d versions; want each migration once", n, distinct)
	}
}

// rawDB opens the file with the driver alone, closed at cleanup.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStore_ErrInvalid covers the arguments the store refuses outright.
func TestStore_ErrInvalid(t *testing.T) {
	s := open(t)
	if err := s.CreateConnection(t.Context(), newRecord("c1")); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.AcquireLease(t.Context(), "c1", "", time.Minute)
	wantCode(t, "AcquireLease with no owner", err, tokenkeeper.CodeInvalid)
	_, _, err = s.AcquireLease(t.Context(), "c1", "a", 0)
	wantCode(t, "AcquireLease with ttl 0", err, tokenkeeper.CodeInvalid)
	l, _, err := s.AcquireLease(t.Context(), "c1", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.RenewLease(t.Context(), "c1", l, -time.Second)
	wantCode(t, "RenewLease with a negative ttl", err, tokenkeeper.CodeInvalid)
	wantCode(t, "CreateConnection(nil)", s.CreateConnection(t.Context(), nil), tokenkeeper.CodeInvalid)
	wantCode(t, "UpdateConnection(nil)", s.UpdateConnection(t.Context(), nil, 1), tokenkeeper.CodeInvalid)
	wantCode(t, "CreateSession(nil)", s.CreateSession(t.Context(), nil), tokenkeeper.CodeInvalid)
	wantCode(t, "CreateSession with no state hash", s.CreateSession(t.Context(), &tokenkeeper.Session{}), tokenkeeper.CodeInvalid)
}

// TestStore_ContextDone checks that a call on an ended context fails as
// unavailable, with the context's error in the chain.
func TestStore_ContextDone(t *testing.T) {
	s := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.GetConnection(ctx, "c1")
	wantCode(t, "GetConnection", err, tokenkeeper.CodeUnavailable)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("GetConnection error %v does not wrap context.Canceled", err)
	}
	err = s.CreateConnection(ctx, newRecord("c1"))
	wantCode(t, "CreateConnection", err, tokenkeeper.CodeUnavailable)
}

func wantCode(t *testing.T, what string, err error, code tokenkeeper.Code) {
	t.Helper()
	if got := tokenkeeper.ErrorCode(err); got != code {
		t.Errorf("%s: code %q (%v), want %q", what, got, err, code)
	}
}

// newRecord returns a new connection with a few fields set.
func newRecord(id tokenkeeper.ConnectionID) *tokenkeeper.Record {
	at := time.Now().UTC().Truncate(time.Microsecond)
	return &tokenkeeper.Record{
		Connection: tokenkeeper.Connection{
			ID: id, Provider: "pleo", State: tokenkeeper.StateActive, Generation: 1,
			Scopes: []string{"a"}, CreatedAt: at, UpdatedAt: at,
		},
		Tokens: tokenkeeper.SealedTokenSet{
			AccessToken: tokenkeeper.Sealed{KeyID: "k1", Ciphertext: []byte{0, 1, 2}},
			ExpiresAt:   at.Add(time.Hour),
		},
	}
}
