package main

import (
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/internal/pgtest"
)

// postgresStore creates a throwaway database on the test server, dropped
// when t ends, and returns its --store URL (see internal/pgtest).
func postgresStore(t *testing.T) string {
	t.Helper()
	return pgtest.Database(t, "cmd")
}

// postgresStoreOn is postgresStore on the server whose maintenance database is base.
func postgresStoreOn(t *testing.T, base string) string {
	t.Helper()
	return pgtest.DatabaseOn(t, base, "cmd")
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
		{[]string{"migrate"}, ", up to date"},
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

// TestRedactStore: a store named in a log line or a message never shows a
// password, in the user info or as a parameter.
func TestRedactStore(t *testing.T) {
	for in, want := range map[string]string{
		"sqlite:tokenkeeper.db":                                "sqlite:tokenkeeper.db",
		"postgres://tk:hunter2@db:5432/tk?sslmode=require":     "postgres://tk:xxxxx@db:5432/tk?sslmode=require",
		"postgres://tk@db/tk?password=hunter2&sslmode=disable": "postgres://tk@db/tk?password=xxxxx&sslmode=disable",
		"postgresql://db/tk?PassWord=x":                        "postgresql://db/tk?PassWord=xxxxx",
		"postgres://tk:%zz@db/tk":                              "(a database URL that cannot be shown)",
		"host=db user=tk password=hunter2 dbname=tk":           "(a database URL that cannot be shown)",
	} {
		if got := redactStore(in); got != want {
			t.Errorf("redactStore(%q) = %q, want %q", in, got, want)
		}
	}
}
