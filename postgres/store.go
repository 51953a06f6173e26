// Package postgres is the [tokenkeeper.Store] on PostgreSQL (through pgx v5
// and its pool), for running several tokenkeeper processes or replicas on one
// database. It passes the same conformance suite (storetest) as the SQLite
// store, and keeps API keys and the audit log too.
//
// Every write that reads before it writes is one statement: a conditional
// UPDATE ... RETURNING (compare and swap on the generation, the lease
// operations) or DELETE ... RETURNING (taking a session). Its operations
// take no advisory lock (only the migration in Open does) and hold no lock
// across statements, so the store needs no session affinity and works
// through a transaction-mode pooler such as PgBouncer; the lease statements
// use nothing that Postgres-compatible distributed SQL (CockroachDB,
// YugabyteDB) lacks.
//
// The lease clock is the database server's: AcquireLease, RenewLease,
// ReleaseLease and UpdateLeased compare and compute lease times with
// clock_timestamp() inside the statement, so replicas whose clocks disagree
// still agree on who holds a lease. Every other time is stored as given.
//
// Times are timestamptz and come back in UTC, truncated to the microsecond;
// the zero time is stored as '-infinity', which sorts before every time (as
// SQLite's 0 does) and reads back as the zero time. Text must be valid UTF-8
// without NUL bytes, which PostgreSQL's text cannot hold (see
// [tokenkeeper.Store]).
//
// Errors are mapped by SQLSTATE, never by message: see [Store].
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenkeeper/tokenkeeper"
)

// Defaults that [Open] applies when the URL does not set them.
const (
	// DefaultStatementTimeout is the statement_timeout of every connection:
	// a statement that runs longer (a lock held elsewhere, an overloaded
	// server) fails with [tokenkeeper.CodeUnavailable] instead of holding a
	// caller. Set statement_timeout in the URL to change it.
	DefaultStatementTimeout = 5 * time.Second
	// DefaultConnectTimeout bounds making one connection (connect_timeout).
	DefaultConnectTimeout = 10 * time.Second
	// DefaultApplicationName names the store's connections in
	// pg_stat_activity (application_name).
	DefaultApplicationName = "tokenkeeper"
)

// Store is a [tokenkeeper.Store], a [tokenkeeper.APIKeyStore] and a
// [tokenkeeper.AuditLog] on one PostgreSQL database, through a connection
// pool. Make it with [Open]; the zero Store is not usable. It is safe for
// concurrent use by many goroutines, and many processes may share the
// database.
//
// Errors name the operation ("postgres: acquire lease c1: ...") and carry a
// [tokenkeeper.Code], from the error's SQLSTATE: 23505 (unique violation) is
// CodeConflict; 40001 and 40P01 (serialization failure, deadlock; retried a
// few times first, which is safe because every statement is its own
// transaction), 40003, 57014 (statement timeout or cancel), 55P03, 25006 (a
// read-only server, as during a failover), and classes 08 (connection), 53
// (resources) and 57P (shutdown) are CodeUnavailable; class 22 (data) is
// CodeInvalid; anything else is CodeInternal. A network error or an ended
// ctx is CodeUnavailable too (the context's error stays in the chain).
// Besides the codes each method lists, every method may fail with
// CodeUnavailable or CodeInternal.
type Store struct {
	pool *pgxpool.Pool
	// probeTo, if set by a test, is where the change feed's probes are sent
	// instead of its own channel: a listening connection that never
	// receives them, as through a transaction-mode pooler.
	probeTo string
	// feed, if set by a test, replaces the change feed's intervals.
	feed feedTimings
}

var (
	_ tokenkeeper.Store       = (*Store)(nil)
	_ tokenkeeper.APIKeyStore = (*Store)(nil)
	_ tokenkeeper.AuditLog    = (*Store)(nil)
)

// Open connects to the database at url (a postgres:// URL, or pgx's
// key=value form) and migrates it to the current schema, in the schema that
// the connections' search_path selects (public by default). The database
// must exist. Several processes may open the same database, a fresh one
// included, at the same time: the migration runs once, under a transaction
// advisory lock.
//
// The URL may set pgx's settings: the pool's (pool_max_conns, default the
// greater of 4 and the number of CPUs; pool_max_conn_lifetime;
// pool_max_conn_idle_time; pool_health_check_period), connect_timeout
// ([DefaultConnectTimeout] if absent), default_query_exec_mode (statements
// are prepared and cached on each connection by default; "exec" or
// "simple_protocol" suit a pooler without prepared statements), and any
// server setting as a parameter (statement_timeout=10s, search_path=tk) or
// in options (options=-c%20statement_timeout%3D10s). statement_timeout is
// [DefaultStatementTimeout] unless the URL sets it either way, and
// application_name is [DefaultApplicationName] unless set.
//
// ctx bounds the connecting and the migration only; the Store does not keep
// it. Open fails with [tokenkeeper.CodeInvalid] if url cannot be parsed (the
// error does not repeat the URL, which may hold a password),
// CodeUnavailable if the server cannot be reached, and CodeInternal if the
// schema is newer than this build knows or the migration fails. Close the
// Store when done.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", parseError(err))
	}
	setDefaults(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", mapErr(err))
	}
	s := &Store{pool: pool}
	err = pool.Ping(ctx) // the pool connects lazily: say so if it cannot
	if err != nil {
		err = fmt.Errorf("connect: %w", mapErr(err))
	} else {
		err = s.migrate(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open %s: %w", describe(cfg), err)
	}
	return s, nil
}

// setDefaults applies the defaults that cfg, parsed from the URL, leaves
// open.
func setDefaults(cfg *pgxpool.Config) {
	params := cfg.ConnConfig.RuntimeParams
	_, timeout := params["statement_timeout"]
	if !timeout && !strings.Contains(params["options"], "statement_timeout") {
		params["statement_timeout"] = fmt.Sprint(DefaultStatementTimeout.Milliseconds())
	}
	if params["application_name"] == "" {
		params["application_name"] = DefaultApplicationName
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
}

// parseError returns a CodeInvalid error for a URL that pgx cannot parse.
// pgx's own error quotes the URL with the password masked "on a best-effort
// basis", and a *url.Error quotes it whole, so neither is kept: only the
// reason, without the URL.
func parseError(err error) error {
	reason := ""
	var ue *url.Error
	var pe *pgconn.ParseConfigError
	switch {
	case errors.As(err, &ue):
		reason = ue.Err.Error()
	case errors.As(err, &pe) && pe.Unwrap() != nil:
		reason = pe.Unwrap().Error()
	}
	msg := "the database URL cannot be parsed"
	if reason != "" {
		msg += " (" + reason + ")"
	}
	return &tokenkeeper.Error{Code: tokenkeeper.CodeInvalid, Message: msg}
}

// describe names the database of cfg for errors, without the password.
func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("database %s on %s:%d as %s", c.Database, c.Host, c.Port, c.User)
}

// Close closes every connection of the pool, waiting for the ones in use to
// be returned. Leases held through the Store are not released (they
// expire). Close is safe to call more than once.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
