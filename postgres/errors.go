package postgres

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tokenkeeper/tokenkeeper"
)

// codeOf returns the code of a server error from its SQLSTATE (never its
// message), as [Store]'s doc lists.
func codeOf(sqlstate string) tokenkeeper.Code {
	switch sqlstate {
	case "23505": // unique_violation
		return tokenkeeper.CodeConflict
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"40003", // statement_completion_unknown (CockroachDB: the outcome is ambiguous)
		"57014", // query_canceled: statement_timeout, or a cancel request
		"55P03", // lock_not_available: lock_timeout
		"25006": // read_only_sql_transaction: a primary turned standby (failover)
		return tokenkeeper.CodeUnavailable
	}
	switch {
	case strings.HasPrefix(sqlstate, "08"), // connection exception
		strings.HasPrefix(sqlstate, "53"),  // insufficient resources (too many connections, disk full)
		strings.HasPrefix(sqlstate, "57P"): // admin or crash shutdown, cannot connect now
		return tokenkeeper.CodeUnavailable
	case strings.HasPrefix(sqlstate, "22"): // data exception
		return tokenkeeper.CodeInvalid
	}
	return tokenkeeper.CodeInternal
}

// mapErr gives a database error its [tokenkeeper.Code], keeping err as the
// cause: by SQLSTATE for an error the server sent (codeOf), CodeUnavailable
// for an ended context or a failure to reach or keep talking to the server,
// CodeInternal otherwise. It returns nil for nil, and an error that already
// has a code unchanged.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var te *tokenkeeper.Error
	if errors.As(err, &te) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		e := &tokenkeeper.Error{Code: codeOf(pe.Code), Err: err}
		if e.Code == tokenkeeper.CodeUnavailable {
			e.Message = "the database is unavailable or busy"
		}
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || unreachable(err) {
		return &tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Message: "the database is unavailable", Err: err}
	}
	return &tokenkeeper.Error{Code: tokenkeeper.CodeInternal, Err: err}
}

// unreachable reports whether err says that the server could not be reached
// or the connection broke: a network error (refused, reset, timed out), a
// connection that ended mid-message, or one pgx had already closed. A
// connection attempt that failed for another reason (a TLS or
// authentication setting) is not: retrying cannot help.
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, pgconn.ErrConnClosed)
}

// retryable reports whether err is a serialization failure or a deadlock:
// the statement's transaction was rolled back and nothing of it took
// effect, so running it again is safe.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// maxTries bounds the runs of one statement by retry.
const maxTries = 4

// retry runs fn, which runs one statement in a transaction of its own, and
// runs it again (up to maxTries runs in all, a few milliseconds apart) while
// it fails with a serialization failure or a deadlock. PostgreSQL's READ
// COMMITTED rarely reports either for the store's one-row statements (a
// deadlock needs two multi-row deletes of expired sessions, say), but a
// SERIALIZABLE database such as CockroachDB reports 40001 under any
// contention. It returns fn's last error, unmapped.
func retry(ctx context.Context, fn func() error) error {
	for try := 1; ; try++ {
		err := fn()
		if try >= maxTries || !retryable(err) || ctx.Err() != nil {
			return err
		}
		wait := time.Duration(try) * 5 * time.Millisecond
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait + rand.N(wait)):
		}
	}
}

// withMessage sets the user message of err, a fresh error from mapErr,
// when it has code, and returns err.
func withMessage(err error, code tokenkeeper.Code, msg string) error {
	var te *tokenkeeper.Error
	if errors.As(err, &te) && te.Code == code {
		te.Message = msg
	}
	return err
}

// errNotFound returns the CodeNotFound error for a missing thing.
func errNotFound(what string) error {
	return &tokenkeeper.Error{Code: tokenkeeper.CodeNotFound, Message: what + " not found"}
}

// errConflict returns a CodeConflict error that says why.
func errConflict(why string) error {
	return &tokenkeeper.Error{Code: tokenkeeper.CodeConflict, Message: why}
}

// errInvalid returns a CodeInvalid error that says why.
func errInvalid(why string) error {
	return &tokenkeeper.Error{Code: tokenkeeper.CodeInvalid, Message: why}
}
