package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// postgresStore creates a throwaway database on the test server
// (TOKENKEEPER_TEST_POSTGRES_URL, or the local one), dropped when t ends,
// and returns its --store URL. It skips t if the server is not reachable,
// unless CI is true.
func postgresStore(t *testing.T) string {
	t.Helper()
	return postgresStoreOn(t, cmp.Or(os.Getenv("TOKENKEEPER_TEST_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"))
}

// postgresStoreOn is postgresStore on the server whose maintenance database is base.
func postgresStoreOn(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal("TOKENKEEPER_TEST_POSTGRES_URL is not a postgres:// URL")
	}
	conn, err := pgx.Connect(t.Context(), base)
	if err != nil {
		var ne net.Error
		var pe *pgconn.PgError
		if errors.As(err, &ne) && !errors.As(err, &pe) {
			msg := "PostgreSQL not reachable at " + u.Redacted() + " (" + err.Error() + "); start it or set TOKENKEEPER_TEST_POSTGRES_URL"
			if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
				t.Fatal(msg + " (CI is true: not skipping)")
			}
			t.Skip(msg)
		}
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	name := "tk_test_cmd_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// TestOpenStore_Postgres: --store postgres://... works end to end for the
// admin commands: migrate creates the schema, and a key made by one
// command is listed by the next.
func TestOpenStore_Postgres(t *testing.T) {
	t.Parallel()
	store := postgresStore(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate"}, "schema version 1, up to date"},
		{[]string{"apikeys", "create", "--name", "pg-ci", "--scopes", "admin"}, "tk_"},
		{[]string{"apikeys", "list"}, "pg-ci"},
		{[]string{"connections", "list"}, ""},
	} {
		code, stdout, stderr := run(t, append(tt.args, "--store", store)...)
		if code != exitOK || !strings.Contains(stdout, tt.want) {
			t.Fatalf("%s: exit %d, want 0 and %q in\n%s%s", strings.Join(tt.args, " "), code, tt.want, stdout, stderr)
		}
	}
	// A setting pgx refuses is a usage error that names the flag.
	code, _, stderr := run(t, "apikeys", "list", "--store", store+"&pool_max_conns=many")
	if code != exitUsage || !strings.Contains(stderr, "--store") {
		t.Errorf("a bad pool setting: exit %d, want %d naming --store\n%s", code, exitUsage, stderr)
	}
}
