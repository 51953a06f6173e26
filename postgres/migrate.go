package postgres

import (
	"cmp"
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migrationFiles are the schema's migrations, applied in order of the
// number that starts each name ("0001_init.sql"). A migration, once
// released, never changes: a change is a new file. Each runs inside the
// migration's transaction, so it must not use statements that refuse one
// (CREATE INDEX CONCURRENTLY).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema change.
type migration struct {
	version int64
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, _ := strings.Cut(base, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name does not start with a positive number", base)
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// migrationLockClass is the first key of the advisory lock that migrations
// take ("tkmg"); the second is a hash of the schema, so that stores in
// different schemas of one database do not wait for each other.
const migrationLockClass = 0x746b6d67

// migrate applies the migrations that the database lacks, all in one
// transaction that first takes a transaction-level advisory lock
// (pg_advisory_xact_lock): replicas that start together on a fresh database
// queue on it, the first applies the migrations, and the others find them
// applied. The lock ends with the transaction, on commit, rollback or a
// lost connection, and needs no session of its own, so it works through a
// transaction-mode pooler too. PostgreSQL's DDL is transactional: a failed
// migration leaves nothing behind. The transaction waits for the lock
// without the statement timeout (a large migration may take longer), for as
// long as ctx allows.
//
// It fails if the database holds a migration this build does not know (a
// newer build wrote it).
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	latest := ms[len(ms)-1].version
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0`); err != nil {
			return err
		}
		var schema *string
		if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return err
		}
		if schema == nil {
			return fmt.Errorf("no schema of the search_path exists; create it, or set search_path in the URL")
		}
		h := fnv.New32a()
		h.Write([]byte(*schema))
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, int32(migrationLockClass), int32(h.Sum32())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    bigint      NOT NULL PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
		)`); err != nil {
			return err
		}
		applied := map[int64]bool{}
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		var v int64
		if _, err := pgx.ForEachRow(rows, []any{&v}, func() error {
			applied[v] = true
			return nil
		}); err != nil {
			return err
		}
		for v := range applied {
			if v > latest {
				return fmt.Errorf("the database has schema version %d; this build knows up to %d", v, latest)
			}
		}
		for _, m := range ms {
			if applied[m.version] {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`,
				m.version, m.name); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", mapErr(err))
	}
	return nil
}

// SchemaVersion returns the newest migration applied to the database (the
// schema version), for `tokenkeeper migrate` to report.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int64
	err := retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", mapErr(err))
	}
	return int(v), nil
}
