// Package pgtest gives tests a throwaway PostgreSQL database on the test
// server: TOKENKEEPER_TEST_POSTGRES_URL, or the local one at 127.0.0.1:5432
// (trust auth). A test that needs one skips, with a message that says how
// to provide it, when the server cannot be reached, unless CI is true (then
// it fails). It is for tests only.
package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultURL is the server used when TOKENKEEPER_TEST_POSTGRES_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL returns the test server's URL (a database on it that exists).
func ServerURL() string {
	return cmp.Or(os.Getenv("TOKENKEEPER_TEST_POSTGRES_URL"), DefaultURL)
}

// connectTo connects to the server at base, or skips t (fails it under
// CI=true) if the server cannot be reached. The connection is closed when t
// ends.
func connectTo(t testing.TB, base string) *pgx.Conn {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("the test server %q is not a postgres:// URL (TOKENKEEPER_TEST_POSTGRES_URL)", base)
	}
	conn, err := pgx.Connect(context.Background(), base)
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
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Name returns a new throwaway database name: "tk_test_<prefix>_<unix
// seconds>_<random>". The time lets Sweep drop the ones a crashed test run
// left behind.
func Name(prefix string) string {
	return fmt.Sprintf("tk_test_%s_%d_%s", prefix, time.Now().Unix(), strings.ToLower(rand.Text()[:12]))
}

// staleAfter is how old a throwaway database must be before Sweep drops it:
// far longer than any test run.
const staleAfter = 6 * time.Hour

// Sweep drops the throwaway databases (named by Name) older than six hours:
// those of test binaries that panicked or were killed before their cleanup.
// Failures are ignored: a database in use cannot be that old.
func Sweep(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'tk\_test\_%'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		f := strings.Split(name, "_")
		if len(f) < 5 {
			continue // not named by Name
		}
		sec, err := strconv.ParseInt(f[len(f)-2], 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)) < staleAfter {
			continue
		}
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
}

// Database creates a database named by Name on the test server, dropped
// (WITH FORCE) when t ends, and returns its URL. It first sweeps stale
// ones.
func Database(t testing.TB, prefix string) string {
	t.Helper()
	return DatabaseOn(t, ServerURL(), prefix)
}

// DatabaseOn is Database on the server whose maintenance database is base
// (a postgres:// URL), such as a test's private server.
func DatabaseOn(t testing.TB, base, prefix string) string {
	t.Helper()
	conn := connectTo(t, base)
	Sweep(context.Background(), conn)
	name := Name(prefix)
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
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
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}
