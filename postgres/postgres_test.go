package postgres_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/pgtest"
	"github.com/tokenkeeper/tokenkeeper/postgres"
	"github.com/tokenkeeper/tokenkeeper/storetest"
)

// The tests run against a real PostgreSQL server: TestMain makes a
// throwaway database for the run, and each store gets a fresh schema in it
// (CREATE SCHEMA, and search_path in the store's URL), which is much faster
// than a database per store. TestMain drops the database at the end.

// defaultURL is the server the tests use unless
// TOKENKEEPER_TEST_POSTGRES_URL names another: the local one, trust auth.
const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// server is the test run's database. TestMain sets it before any test runs;
// tests only read it.
var server struct {
	// url is the throwaway database's URL.
	url *url.URL
	// admin is a small pool on the throwaway database, for the tests' own
	// SQL.
	admin *pgxpool.Pool
	// base is the server's URL as configured, to make more databases.
	base string
	// skip says why the tests cannot run: the server is not reachable.
	skip string
	// fail says why the tests fail: the server is reachable but the
	// throwaway database could not be made.
	fail string
}

// schemas numbers the schemas of one run.
var schemas atomic.Int64

// storeSlots bounds the stores open at once, each with a pool of up to 3
// connections (schemaURL), so that a machine with many CPUs (go test runs
// that many tests in parallel) stays within the server's max_connections
// (100 by default).
var storeSlots = make(chan struct{}, 16)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests sets up server, runs the tests, and drops the throwaway database.
func runTests(m *testing.M) int {
	server.base = cmp.Or(os.Getenv("TOKENKEEPER_TEST_POSTGRES_URL"), defaultURL)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	u, err := url.Parse(server.base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		server.fail = "TOKENKEEPER_TEST_POSTGRES_URL is not a postgres:// URL"
		return m.Run()
	}
	conn, err := pgx.Connect(ctx, server.base)
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL not reachable at %s (%v); start it or set TOKENKEEPER_TEST_POSTGRES_URL", u.Redacted(), err)
		if unreachable(err) {
			server.skip = msg
		} else {
			server.fail = msg
		}
		return m.Run()
	}
	pgtest.Sweep(ctx, conn)
	name := pgtest.Name("postgres")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		conn.Close(ctx)
		server.fail = fmt.Sprintf("create the test database on %s: %v", u.Redacted(), err)
		return m.Run()
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "drop the test database %s: %v\n", name, err)
		}
		conn.Close(ctx)
	}()
	u.Path = "/" + name
	server.url = u
	server.admin, err = pgxpool.New(ctx, withParams(u, map[string]string{"pool_max_conns": "4"}))
	if err != nil {
		server.fail = fmt.Sprintf("connect to the test database: %v", err)
		return m.Run()
	}
	defer server.admin.Close()
	return m.Run()
}

// unreachable reports whether a connection attempt failed for want of a
// server (nothing listening, no route, a timeout), not for its settings.
func unreachable(err error) bool {
	var ne net.Error
	var pe *pgconn.PgError
	return !errors.As(err, &pe) && (errors.As(err, &ne) || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded))
}

// requireServer skips t if the server is not reachable, or fails it when
// CI is true (a CI machine must not pass by skipping) or the server is
// reachable but unusable.
func requireServer(t *testing.T) {
	t.Helper()
	if server.fail != "" {
		t.Fatal(server.fail)
	}
	if server.skip != "" {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal(server.skip + " (CI is true: not skipping)")
		}
		t.Skip(server.skip)
	}
}

// conn returns a connection of its own to the test database, closed when t
// ends, for a transaction that holds locks while the test goes on: one from
// server.admin would starve the other tests of the shared pool.
func conn(t *testing.T) *pgx.Conn {
	t.Helper()
	requireServer(t)
	c, err := pgx.Connect(t.Context(), server.url.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// withParams returns u with the query parameters params added.
func withParams(u *url.URL, params map[string]string) string {
	c := *u
	q := c.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	// pgx reads the query as RFC 3986 does, where "+" is a plus, not a
	// space as in a form.
	c.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return c.String()
}

// newSchema creates an empty schema in the test database and returns its
// name.
func newSchema(t *testing.T) string {
	t.Helper()
	requireServer(t)
	name := fmt.Sprintf("s%d", schemas.Add(1))
	if _, err := server.admin.Exec(t.Context(), "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	return name
}

// schemaURL returns the URL of a store in schema (search_path), with a
// small pool (many stores are open at once) and params.
func schemaURL(schema string, params map[string]string) string {
	p := map[string]string{"search_path": schema, "pool_max_conns": "3"}
	for k, v := range params {
		p[k] = v
	}
	return withParams(server.url, p)
}

// openURL opens a store at url, closed when t ends, or fails t. It waits
// for one of storeSlots, which it holds until then.
func openURL(t *testing.T, url string) *postgres.Store {
	t.Helper()
	storeSlots <- struct{}{}
	s, err := postgres.Open(t.Context(), url)
	if err != nil {
		<-storeSlots
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		<-storeSlots
	})
	return s
}

// open opens a store on a fresh schema and returns it with the schema's
// name.
func open(t *testing.T) (*postgres.Store, string) {
	t.Helper()
	schema := newSchema(t)
	return openURL(t, schemaURL(schema, nil)), schema
}

func TestStore(t *testing.T) {
	requireServer(t)
	storetest.Run(t, func(t *testing.T) tokenkeeper.Store {
		s, _ := open(t)
		return s
	})
}

// wantCode fails t unless err has code.
func wantCode(t *testing.T, what string, err error, code tokenkeeper.Code) {
	t.Helper()
	if got := tokenkeeper.ErrorCode(err); got != code {
		t.Fatalf("%s: code %q (%v), want %q", what, got, err, code)
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

// create stores rec in s or fails t.
func create(t *testing.T, s *postgres.Store, rec *tokenkeeper.Record) {
	t.Helper()
	if err := s.CreateConnection(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
}
