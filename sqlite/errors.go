package sqlite

import (
	"context"
	"errors"

	"github.com/tokenkeeper/tokenkeeper"
	driver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// mapErr gives a database error its [tokenkeeper.Code], from SQLite's result
// code (never its message), keeping err as the cause:
//
//   - SQLITE_BUSY and SQLITE_LOCKED (another process held the lock past the
//     busy timeout) and an ended context: CodeUnavailable, retry later.
//   - a primary key or unique constraint: CodeConflict.
//   - anything else: CodeInternal.
//
// It returns nil for nil, and an error that already has a code unchanged.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var te *tokenkeeper.Error
	if errors.As(err, &te) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Err: err}
	}
	var se *driver.Error
	if !errors.As(err, &se) {
		return &tokenkeeper.Error{Code: tokenkeeper.CodeInternal, Err: err}
	}
	// Extended result codes are on: the low byte is the primary code.
	switch code := se.Code(); {
	case code&0xff == sqlite3.SQLITE_BUSY, code&0xff == sqlite3.SQLITE_LOCKED:
		return &tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Message: "the database is busy", Err: err}
	case code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, code == sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return &tokenkeeper.Error{Code: tokenkeeper.CodeConflict, Err: err}
	case code&0xff == sqlite3.SQLITE_INTERRUPT:
		// sqlite3_interrupt is how the driver ends a statement whose
		// context ended.
		return &tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Err: err}
	}
	return &tokenkeeper.Error{Code: tokenkeeper.CodeInternal, Err: err}
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
