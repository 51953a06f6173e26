package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/postgres"
)

// wantSQLSTATE fails t unless err's chain holds a server error with code.
func wantSQLSTATE(t *testing.T, err error, code string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code {
		t.Errorf("error %v: want SQLSTATE %s in its chain", err, code)
	}
}

// TestMapErr_Server makes the server report errors and maps them by their
// SQLSTATE.
func TestMapErr_Server(t *testing.T) {
	s, _ := open(t)
	insert := `INSERT INTO sessions (state_hash, connection_id, return_url, verifier_key, created_at, expires_at)
		VALUES ('\x01', 'c1', '', '', now(), now())`
	if _, err := s.Pool().Exec(t.Context(), insert); err != nil {
		t.Fatal(err)
	}
	_, err := s.Pool().Exec(t.Context(), insert)
	wantCode(t, "a duplicate primary key", postgres.MapErr(err), tokenkeeper.CodeConflict)
	wantSQLSTATE(t, err, "23505")

	_, err = s.Pool().Exec(t.Context(), `SELECT 1 / 0`)
	wantCode(t, "a division by zero", postgres.MapErr(err), tokenkeeper.CodeInvalid)
	wantSQLSTATE(t, err, "22012")

	_, err = s.Pool().Exec(t.Context(), `SELECT * FROM no_such_table`)
	wantCode(t, "an unknown table", postgres.MapErr(err), tokenkeeper.CodeInternal)
	wantSQLSTATE(t, err, "42P01")
}

// TestStore_StatementTimeout: a statement that runs past statement_timeout
// is canceled by the server (57014) and fails with CodeUnavailable, both
// for a slow query and for a write that waits on a row lock held
// elsewhere.
func TestStore_StatementTimeout(t *testing.T) {
	schema := newSchema(t)
	s := openURL(t, schemaURL(schema, map[string]string{"statement_timeout": "100ms"}))

	_, err := s.Pool().Exec(t.Context(), `SELECT pg_sleep(2)`)
	wantCode(t, "pg_sleep past the statement timeout", postgres.MapErr(err), tokenkeeper.CodeUnavailable)
	wantSQLSTATE(t, err, "57014")

	rec := newRecord("c1")
	create(t, s, rec)
	tx, err := conn(t).Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `UPDATE `+schema+`.connections SET last_error = 'locked' WHERE id = 'c1'`); err != nil {
		t.Fatal(err)
	}
	next := *rec
	next.Generation = 2
	start := time.Now()
	err = s.UpdateConnection(t.Context(), &next, 1)
	wantCode(t, "UpdateConnection of a locked row", err, tokenkeeper.CodeUnavailable)
	wantSQLSTATE(t, err, "57014")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("UpdateConnection took %v to time out after 100ms", took)
	}
}

// TestStore_ContextDone: a call whose context has ended fails with
// CodeUnavailable and the context's error in its chain.
func TestStore_ContextDone(t *testing.T) {
	s, _ := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.GetConnection(ctx, "c1")
	wantCode(t, "GetConnection with a canceled context", err, tokenkeeper.CodeUnavailable)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not hold context.Canceled", err)
	}
}
