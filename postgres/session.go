package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenkeeper/tokenkeeper"
)

// CreateSession stores the connect session sess, keyed by its StateHash.
// It returns CodeInvalid if sess is nil, its StateHash is empty or a text
// field (ConnectionID, ReturnURL, Verifier.KeyID) is not valid UTF-8 or
// holds a NUL byte, and CodeConflict if a session with that StateHash
// exists. It does not modify sess.
func (s *Store) CreateSession(ctx context.Context, sess *tokenkeeper.Session) error {
	if sess == nil || len(sess.StateHash) == 0 {
		return fmt.Errorf("postgres: create session: %w", errInvalid("the session has no state hash"))
	}
	for _, f := range []struct{ name, v string }{
		{"ConnectionID", string(sess.ConnectionID)},
		{"ReturnURL", sess.ReturnURL},
		{"Verifier.KeyID", sess.Verifier.KeyID},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return fmt.Errorf("postgres: create session %s: %w", short(sess.StateHash), err)
		}
	}
	_, err := s.exec(ctx, createSessionSQL,
		sess.StateHash, string(sess.ConnectionID), sess.ReturnURL,
		bytea(sess.Verifier.Ciphertext), sess.Verifier.KeyID,
		ts(sess.CreatedAt), ts(sess.ExpiresAt))
	if err != nil {
		err = withMessage(err, tokenkeeper.CodeConflict, "the session exists")
		return fmt.Errorf("postgres: create session %s: %w", short(sess.StateHash), err)
	}
	return nil
}

// TakeSession deletes the session with stateHash and returns it, in one
// DELETE ... RETURNING, so that of concurrent callers (in any process)
// exactly one gets it. It returns the session even if it has expired:
// checking ExpiresAt is the caller's business. CodeNotFound if there is no
// such session (never created, taken already, or deleted as expired).
func (s *Store) TakeSession(ctx context.Context, stateHash []byte) (*tokenkeeper.Session, error) {
	var sess tokenkeeper.Session
	err := retry(ctx, func() error {
		var created, expires pgtype.Timestamptz
		err := s.pool.QueryRow(ctx, takeSessionSQL, stateHash).Scan(
			&sess.StateHash, &sess.ConnectionID, &sess.ReturnURL,
			&sess.Verifier.Ciphertext, &sess.Verifier.KeyID, &created, &expires)
		sess.CreatedAt, sess.ExpiresAt = fromTS(created), fromTS(expires)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = errNotFound("session")
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: take session %s: %w", short(stateHash), mapErr(err))
	}
	if len(sess.Verifier.Ciphertext) == 0 {
		sess.Verifier.Ciphertext = nil
	}
	return &sess, nil
}

// DeleteExpiredSessions deletes the sessions whose ExpiresAt is strictly
// before now (to the nanosecond: now is rounded up to the microsecond, not
// truncated) and returns how many it deleted.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := retry(ctx, func() error {
		tag, err := s.pool.Exec(ctx, deleteExpiredSessionsSQL, tsAfter(now))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: delete expired sessions: %w", mapErr(err))
	}
	return int(n), nil
}

// short names a session in errors by the start of its state hash: enough
// to find it in a log, too little to matter (the state itself is never
// stored or logged).
func short(stateHash []byte) string {
	return hex.EncodeToString(stateHash[:min(len(stateHash), 4)])
}
