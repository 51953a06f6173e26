package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.APIKeyStore = (*Store)(nil)

// apiKeyColumns are the columns scanAPIKey reads, in its order.
const apiKeyColumns = `id, name, scopes, hash, created_at, revoked_at`

// CreateAPIKey stores k, every field as given (times in microseconds). It
// returns CodeInvalid if k is nil, has an empty ID or Hash, or has a name
// or scopes that [tokenkeeper.APIKey.Validate] refuses (a blank, over-long
// or non-text name; no scope, or one that is not [tokenkeeper.Scope.Valid];
// a hash that is not 32 bytes),
// or if its ID, Name or a scope is not valid UTF-8 or holds a NUL byte
// (the error names the field). CodeConflict if a key with its ID exists.
// It does not modify k.
func (s *Store) CreateAPIKey(ctx context.Context, k *tokenkeeper.APIKey) error {
	if k == nil {
		return fmt.Errorf("sqlite: create API key: %w", errInvalid("the API key is nil"))
	}
	if err := checkAPIKey(k); err != nil {
		return fmt.Errorf("sqlite: create API key %s: %w", k.ID, err)
	}
	scopes, err := jsonText(k.Scopes, len(k.Scopes))
	if err != nil {
		return fmt.Errorf("sqlite: create API key %s: scopes: %w", k.ID, err)
	}
	_, err = s.stmts.createAPIKey.ExecContext(ctx, string(k.ID), k.Name, scopes,
		k.Hash, micros(k.CreatedAt), micros(k.RevokedAt))
	if err != nil {
		err = withMessage(mapErr(err), tokenkeeper.CodeConflict, "API key "+string(k.ID)+" exists")
		return fmt.Errorf("sqlite: create API key %s: %w", k.ID, err)
	}
	return nil
}

// checkAPIKey returns a CodeInvalid error if k cannot be stored: the root
// holds the one copy of the rules.
func checkAPIKey(k *tokenkeeper.APIKey) error { return k.Validate() }

// GetAPIKey returns the key id, revoked or not. CodeNotFound if there is
// none.
func (s *Store) GetAPIKey(ctx context.Context, id tokenkeeper.APIKeyID) (*tokenkeeper.APIKey, error) {
	k, err := scanAPIKey(s.stmts.getAPIKey.QueryRowContext(ctx, string(id)))
	if errors.Is(err, sql.ErrNoRows) {
		err = errNotFound("API key " + string(id))
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get API key %s: %w", id, mapErr(err))
	}
	return k, nil
}

// ListAPIKeys returns every key, revoked ones included, oldest (by
// CreatedAt) first, keys created at the same microsecond in id order. It
// returns an empty slice, not an error, when there are none.
func (s *Store) ListAPIKeys(ctx context.Context) ([]*tokenkeeper.APIKey, error) {
	keys := []*tokenkeeper.APIKey{}
	err := func() error {
		rows, err := s.stmts.listAPIKeys.QueryContext(ctx)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			k, err := scanAPIKey(rows)
			if err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("sqlite: list API keys: %w", mapErr(err))
	}
	return keys, nil
}

// RevokeAPIKey marks the key id revoked at at (truncated to the
// microsecond), in one statement. Revoking a revoked key keeps its first
// RevokedAt and returns nil. CodeNotFound if there is no such key;
// CodeInvalid if at is the zero time (or the unix epoch, which is stored
// as "not revoked"), which would leave the key valid.
func (s *Store) RevokeAPIKey(ctx context.Context, id tokenkeeper.APIKeyID, at time.Time) error {
	var err error
	if micros(at) == 0 {
		err = errInvalid("the revocation time is zero")
	} else {
		var ok bool
		ok, err = affected(s.stmts.revokeAPIKey.ExecContext(ctx, micros(at), string(id)))
		if err == nil && !ok {
			err = errNotFound("API key " + string(id))
		}
	}
	if err != nil {
		return fmt.Errorf("sqlite: revoke API key %s: %w", id, err)
	}
	return nil
}

// scanAPIKey reads one row of apiKeyColumns.
func scanAPIKey(row scanner) (*tokenkeeper.APIKey, error) {
	var (
		k                tokenkeeper.APIKey
		scopes           sql.NullString
		created, revoked int64
	)
	if err := row.Scan(&k.ID, &k.Name, &scopes, &k.Hash, &created, &revoked); err != nil {
		return nil, err
	}
	var err error
	if k.Scopes, err = unjson[[]tokenkeeper.Scope](scopes); err != nil {
		return nil, fmt.Errorf("API key %s: scopes: %w", k.ID, err)
	}
	k.Hash = unblob(k.Hash)
	k.CreatedAt = fromMicros(created)
	k.RevokedAt = fromMicros(revoked)
	return &k, nil
}
