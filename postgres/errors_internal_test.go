package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tokenkeeper/tokenkeeper"
)

// TestMapErr maps errors that a test cannot easily make a server send (the
// tests in errors_test.go make it send the common ones).
func TestMapErr(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want tokenkeeper.Code
	}{
		{"UniqueViolation", &pgconn.PgError{Code: "23505"}, tokenkeeper.CodeConflict},
		{"SerializationFailure", &pgconn.PgError{Code: "40001"}, tokenkeeper.CodeUnavailable},
		{"Deadlock", &pgconn.PgError{Code: "40P01"}, tokenkeeper.CodeUnavailable},
		{"CompletionUnknown", &pgconn.PgError{Code: "40003"}, tokenkeeper.CodeUnavailable},
		{"QueryCanceled", &pgconn.PgError{Code: "57014"}, tokenkeeper.CodeUnavailable},
		{"LockNotAvailable", &pgconn.PgError{Code: "55P03"}, tokenkeeper.CodeUnavailable},
		{"ReadOnly", &pgconn.PgError{Code: "25006"}, tokenkeeper.CodeUnavailable},
		{"ConnectionFailure", &pgconn.PgError{Code: "08006"}, tokenkeeper.CodeUnavailable},
		{"TooManyConnections", &pgconn.PgError{Code: "53300"}, tokenkeeper.CodeUnavailable},
		{"DiskFull", &pgconn.PgError{Code: "53100"}, tokenkeeper.CodeUnavailable},
		{"AdminShutdown", &pgconn.PgError{Code: "57P01"}, tokenkeeper.CodeUnavailable},
		{"CannotConnectNow", &pgconn.PgError{Code: "57P03"}, tokenkeeper.CodeUnavailable},
		{"InvalidEncoding", &pgconn.PgError{Code: "22021"}, tokenkeeper.CodeInvalid},
		{"DatetimeOverflow", &pgconn.PgError{Code: "22008"}, tokenkeeper.CodeInvalid},
		{"NotNullViolation", &pgconn.PgError{Code: "23502"}, tokenkeeper.CodeInternal},
		{"UndefinedTable", &pgconn.PgError{Code: "42P01"}, tokenkeeper.CodeInternal},
		{"InvalidPassword", &pgconn.PgError{Code: "28P01"}, tokenkeeper.CodeInternal},
		{"Wrapped", fmt.Errorf("exec: %w", &pgconn.PgError{Code: "23505"}), tokenkeeper.CodeConflict},
		{"Canceled", context.Canceled, tokenkeeper.CodeUnavailable},
		{"DeadlineExceeded", fmt.Errorf("query: %w", context.DeadlineExceeded), tokenkeeper.CodeUnavailable},
		{"Refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, tokenkeeper.CodeUnavailable},
		{"Reset", fmt.Errorf("read: %w", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), tokenkeeper.CodeUnavailable},
		{"EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), tokenkeeper.CodeUnavailable},
		{"ConnClosed", fmt.Errorf("acquire: %w", pgconn.ErrConnClosed), tokenkeeper.CodeUnavailable},
		{"Other", errors.New("cannot scan"), tokenkeeper.CodeInternal},
		{"Coded", &tokenkeeper.Error{Code: tokenkeeper.CodeNotFound}, tokenkeeper.CodeNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := mapErr(tt.err)
			if code := tokenkeeper.ErrorCode(got); code != tt.want {
				t.Errorf("mapErr(%v) code = %q, want %q", tt.err, code, tt.want)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("mapErr(%v) = %v, which lost the cause", tt.err, got)
			}
		})
	}
	if mapErr(nil) != nil {
		t.Error("mapErr(nil) is not nil")
	}
}

// TestRetry: serialization failures and deadlocks are run again, a few
// times at most; other errors, and success, are not.
func TestRetry(t *testing.T) {
	for _, tt := range []struct {
		name string
		errs []error // what each run returns; the last one repeats
		runs int
	}{
		{"OK", []error{nil}, 1},
		{"SerializationThenOK", []error{&pgconn.PgError{Code: "40001"}, nil}, 2},
		{"DeadlockThenOK", []error{&pgconn.PgError{Code: "40P01"}, &pgconn.PgError{Code: "40P01"}, nil}, 3},
		{"Always", []error{&pgconn.PgError{Code: "40001"}}, maxTries},
		{"Unique", []error{&pgconn.PgError{Code: "23505"}}, 1},
		{"Timeout", []error{&pgconn.PgError{Code: "57014"}}, 1}, // the outcome of a write may be unknown
		{"Network", []error{io.ErrUnexpectedEOF}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			runs := 0
			err := retry(t.Context(), func() error {
				runs++
				return tt.errs[min(runs, len(tt.errs))-1]
			})
			if runs != tt.runs || err != tt.errs[min(runs, len(tt.errs))-1] {
				t.Errorf("retry ran %d times and returned %v; want %d runs", runs, err, tt.runs)
			}
		})
	}
}
