package postgres_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/postgres"
)

// show returns the value of a server setting on one of s's connections.
func show(t *testing.T, s *postgres.Store, setting string) string {
	t.Helper()
	var v string
	if err := s.Pool().QueryRow(t.Context(), "SHOW "+setting).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOpen_Settings: every connection has a statement timeout (5s unless
// the URL sets one, as a parameter or in options) and names itself.
func TestOpen_Settings(t *testing.T) {
	requireServer(t)
	for _, tt := range []struct {
		name             string
		params           map[string]string
		timeout, appName string
	}{
		{"Defaults", nil, "5s", "tokenkeeper"},
		{"Param", map[string]string{"statement_timeout": "250ms", "application_name": "tk-a"}, "250ms", "tk-a"},
		{"Options", map[string]string{"options": "-c statement_timeout=1min"}, "1min", "tokenkeeper"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openURL(t, schemaURL(newSchema(t), tt.params))
			if got := show(t, s, "statement_timeout"); got != tt.timeout {
				t.Errorf("statement_timeout = %q, want %q", got, tt.timeout)
			}
			if got := show(t, s, "application_name"); got != tt.appName {
				t.Errorf("application_name = %q, want %q", got, tt.appName)
			}
		})
	}
}

// TestOpen_ConcurrentMigrations: five replicas open a fresh database at
// once. The migration runs once, under the advisory lock; without it, the
// losers' CREATE TABLEs would fail. Each then sees the others' writes.
func TestOpen_ConcurrentMigrations(t *testing.T) {
	url := freshDatabase(t)
	const n = 5
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = postgres.Open(t.Context(), url)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	var rows, versions int
	err := stores[0].Pool().QueryRow(t.Context(),
		`SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&rows, &versions)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := postgres.Migrations(); rows != n || versions != n {
		t.Errorf("schema_migrations has %d rows of %d versions, want %d of %d (once each)", rows, versions, n, n)
	}
	create(t, stores[1], newRecord("c1"))
	if _, err := stores[4].GetConnection(t.Context(), "c1"); err != nil {
		t.Errorf("another replica's connection: %v", err)
	}
}

// freshDatabase creates an empty database on the server, dropped when t
// ends, and returns its URL.
func freshDatabase(t *testing.T) string {
	t.Helper()
	requireServer(t)
	name := server.url.Path[1:] + "_" + strings.ToLower(t.Name())
	conn, err := pgx.Connect(t.Context(), server.base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), server.base)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	u := *server.url
	u.Path = "/" + name
	return withParams(&u, map[string]string{"pool_max_conns": "2"})
}

// TestOpen_Reopen: opening a migrated schema again changes nothing, and
// the schema version is the newest migration's.
func TestOpen_Reopen(t *testing.T) {
	schema := newSchema(t)
	first := openURL(t, schemaURL(schema, nil))
	create(t, first, newRecord("c1"))
	second := openURL(t, schemaURL(schema, nil))
	if _, err := second.GetConnection(t.Context(), "c1"); err != nil {
		t.Fatal(err)
	}
	v, err := second.SchemaVersion(t.Context())
	if _, latest := postgres.Migrations(); err != nil || int64(v) != latest {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, latest)
	}
}

// TestOpen_NewerSchema: a database migrated by a newer build is refused.
func TestOpen_NewerSchema(t *testing.T) {
	schema := newSchema(t)
	s := openURL(t, schemaURL(schema, nil))
	if _, err := s.Pool().Exec(t.Context(), `INSERT INTO schema_migrations (version, name) VALUES (999, '0999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	_, err := postgres.Open(t.Context(), schemaURL(schema, nil))
	if err == nil || !strings.Contains(err.Error(), "schema version 999") {
		t.Errorf("Open of a newer schema: %v, want it refused naming version 999", err)
	}
}

// TestOpen_NoSchema: a search_path naming no schema that exists is an
// error that says so.
func TestOpen_NoSchema(t *testing.T) {
	requireServer(t)
	_, err := postgres.Open(t.Context(), schemaURL("no_such_schema", nil))
	if err == nil || !strings.Contains(err.Error(), "search_path") {
		t.Errorf("Open with no schema: %v, want an error about the search_path", err)
	}
}

// TestOpen_Unreachable: a server that cannot be reached is CodeUnavailable,
// and the error does not repeat the password. It needs no server.
func TestOpen_Unreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = postgres.Open(t.Context(), "postgres://tk:hunter2@"+addr+"/tk?sslmode=disable&connect_timeout=5")
	if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open of a closed port: %v (code %q), want %q without the password",
			err, tokenkeeper.ErrorCode(err), tokenkeeper.CodeUnavailable)
	}
}

// TestOpen_BadURL: a URL that cannot be parsed is CodeInvalid, with the
// reason but never the password.
func TestOpen_BadURL(t *testing.T) {
	for _, url := range []string{
		"postgres://tk:hunter2@127.0.0.1:port/tk",
		"postgres://tk:hunter2@127.0.0.1/tk?pool_max_conns=many",
		"postgres://tk:hunter2@127.0.0.1/tk?default_query_exec_mode=fast",
	} {
		_, err := postgres.Open(t.Context(), url)
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%s): %v (code %q), want %q without the password",
				strings.ReplaceAll(url, "hunter2", "xxx"), err, tokenkeeper.ErrorCode(err), tokenkeeper.CodeInvalid)
		}
	}
}
