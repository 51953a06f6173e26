package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// CreateSession stores the connect session s, keyed by its StateHash. It
// returns CodeInvalid if s is nil, its StateHash is empty or a text field
// (ConnectionID, ReturnURL, Verifier.KeyID) is not valid UTF-8 or holds a
// NUL byte, and CodeConflict if a session with that StateHash exists. It
// does not modify s.
func (s *Store) CreateSession(ctx context.Context, sess *tokenkeeper.Session) error {
	if sess == nil || len(sess.StateHash) == 0 {
		return fmt.Errorf("sqlite: create session: %w", errInvalid("the session has no state hash"))
	}
	for _, f := range []struct{ name, v string }{
		{"ConnectionID", string(sess.ConnectionID)},
		{"ReturnURL", sess.ReturnURL},
		{"Verifier.KeyID", sess.Verifier.KeyID},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return fmt.Errorf("sqlite: create session %s: %w", short(sess.StateHash), err)
		}
	}
	_, err := s.stmts.createSession.ExecContext(ctx,
		sess.StateHash, string(sess.ConnectionID), sess.ReturnURL,
		blob(sess.Verifier.Ciphertext), sess.Verifier.KeyID,
		micros(sess.CreatedAt), micros(sess.ExpiresAt))
	if err != nil {
		err = withMessage(mapErr(err), tokenkeeper.CodeConflict, "the session exists")
		return fmt.Errorf("sqlite: create session %s: %w", short(sess.StateHash), err)
	}
	return nil
}

// TakeSession deletes the session with stateHash and returns it, in one
// statement, so that of concurrent callers (in any process) exactly one
// gets it. It returns the session even if it has expired: checking
// ExpiresAt is the caller's business. CodeNotFound if there is no such
// session (never created, taken already, or deleted as expired).
func (s *Store) TakeSession(ctx context.Context, stateHash []byte) (*tokenkeeper.Session, error) {
	var (
		sess             tokenkeeper.Session
		created, expires int64
	)
	err := s.stmts.takeSession.QueryRowContext(ctx, stateHash).Scan(
		&sess.StateHash, &sess.ConnectionID, &sess.ReturnURL,
		&sess.Verifier.Ciphertext, &sess.Verifier.KeyID, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		err = errNotFound("session")
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: take session %s: %w", short(stateHash), mapErr(err))
	}
	sess.Verifier.Ciphertext = unblob(sess.Verifier.Ciphertext)
	sess.CreatedAt = fromMicros(created)
	sess.ExpiresAt = fromMicros(expires)
	return &sess, nil
}

// DeleteExpiredSessions deletes the sessions whose ExpiresAt is strictly
// before now (to the nanosecond: now is rounded up to the microsecond, not
// truncated) and returns how many it deleted.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	res, err := s.stmts.deleteExpired.ExecContext(ctx, microsAfter(now))
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete expired sessions: %w", mapErr(err))
	}
	return int(n), nil
}

// short names a session in errors by the start of its state hash: enough
// to find it in a log, too little to matter (the state itself is never
// stored or logged).
func short(stateHash []byte) string {
	return hex.EncodeToString(stateHash[:min(len(stateHash), 4)])
}
