package sqlite_test

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

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
	t.Run("From0001", func(t *testing.T) {
		// A database made by a build that knew only 0001 gains 0002's
		// tables and index, and keeps its connections.
		path := filepath.Join(t.TempDir(), "tokenkeeper.db")
		s, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecord("c1")
		if err := s.CreateConnection(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		s.Close()
		db := rawDB(t, path)
		for _, q := range []string{
			`DROP TABLE api_keys`, `DROP TABLE audit`, `DROP INDEX connections_state_updated_at`,
			`DELETE FROM schema_migrations WHERE version = 2`,
		} {
			if _, err := db.ExecContext(t.Context(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
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
		if diff := cmp.Diff(rec, got); diff != "" {
			t.Errorf("record after migrating (-want +got):\n%s", diff)
		}
		if err := s.AppendAudit(t.Context(), &tokenkeeper.AuditEntry{Actor: "cli:x", Action: "test"}); err != nil {
			t.Errorf("AppendAudit after migrating: %v", err)
		}
		var versions string
		if err := db.QueryRowContext(t.Context(),
			`SELECT group_concat(version, ',') FROM (SELECT version FROM schema_migrations ORDER BY version)`).Scan(&versions); err != nil {
			t.Fatal(err)
		}
		if versions != "1,2,3" {
			t.Errorf("schema_migrations versions = %s, want 1,2,3", versions)
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
