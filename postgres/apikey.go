package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenkeeper/tokenkeeper"
)

// apiKeyColumns are the columns scanAPIKey reads, in its order.
const apiKeyColumns = `id, name, scopes, hash, created_at, revoked_at`

// CreateAPIKey stores k, every field as given (times truncated to the
// microsecond). It returns CodeInvalid if k is nil, has an empty ID or
// Hash, or has a name or scopes that [tokenkeeper.APIKey.Validate] refuses
// (a blank, over-long or non-text name; no scope, or one that is not
// [tokenkeeper.Scope.Valid]; a hash that is not 32 bytes), or if its ID,
// Name or a scope is not valid UTF-8 or holds a NUL byte (the error names
// the field). CodeConflict if a key with its ID exists. It does not modify
// k.
func (s *Store) CreateAPIKey(ctx context.Context, k *tokenkeeper.APIKey) error {
	if k == nil {
		return fmt.Errorf("postgres: create API key: %w", errInvalid("the API key is nil"))
	}
	if err := checkAPIKey(k); err != nil {
		return fmt.Errorf("postgres: create API key %s: %w", k.ID, err)
	}
	scopes := make([]string, len(k.Scopes))
	for i, sc := range k.Scopes {
		scopes[i] = string(sc)
	}
	_, err := s.exec(ctx, createAPIKeySQL, string(k.ID), k.Name, scopes,
		k.Hash, ts(k.CreatedAt), ts(k.RevokedAt))
	if err != nil {
		err = withMessage(err, tokenkeeper.CodeConflict, "API key "+string(k.ID)+" exists")
		return fmt.Errorf("postgres: create API key %s: %w", k.ID, err)
	}
	return nil
}

// checkAPIKey returns a CodeInvalid error if k cannot be stored: the root
// holds the one copy of the rules.
func checkAPIKey(k *tokenkeeper.APIKey) error { return k.Validate() }

// GetAPIKey returns the key id, revoked or not. CodeNotFound if there is
// none.
func (s *Store) GetAPIKey(ctx context.Context, id tokenkeeper.APIKeyID) (*tokenkeeper.APIKey, error) {
	var k *tokenkeeper.APIKey
	err := pgx.ErrNoRows // an id that is not storable text names no key
	if storable(string(id)) {
		err = retry(ctx, func() error {
			var err error
			k, err = scanAPIKey(s.pool.QueryRow(ctx, getAPIKeySQL, string(id)))
			return err
		})
	}
	if errors.Is(err, pgx.ErrNoRows) {
		err = errNotFound("API key " + string(id))
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: get API key %s: %w", id, mapErr(err))
	}
	return k, nil
}

// ListAPIKeys returns every key, revoked ones included, oldest (by
// CreatedAt) first, keys created at the same microsecond in id (byte)
// order. It returns an empty slice, not an error, when there are none.
func (s *Store) ListAPIKeys(ctx context.Context) ([]*tokenkeeper.APIKey, error) {
	var keys []*tokenkeeper.APIKey
	err := retry(ctx, func() error {
		keys = []*tokenkeeper.APIKey{}
		rows, err := s.pool.Query(ctx, listAPIKeysSQL)
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
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list API keys: %w", mapErr(err))
	}
	return keys, nil
}

// RevokeAPIKey marks the key id revoked at at (truncated to the
// microsecond), in one statement. Revoking a revoked key keeps its first
// RevokedAt and returns nil. CodeNotFound if there is no such key;
// CodeInvalid if at is the zero time, which would leave the key valid.
func (s *Store) RevokeAPIKey(ctx context.Context, id tokenkeeper.APIKeyID, at time.Time) error {
	var err error
	switch {
	case at.IsZero():
		err = errInvalid("the revocation time is zero")
	case !storable(string(id)):
		err = errNotFound("API key " + string(id))
	default:
		var ok bool
		ok, err = s.exec(ctx, revokeAPIKeySQL, string(id), ts(at))
		if err == nil && !ok {
			err = errNotFound("API key " + string(id))
		}
	}
	if err != nil {
		return fmt.Errorf("postgres: revoke API key %s: %w", id, err)
	}
	return nil
}

// scanAPIKey reads one row of apiKeyColumns.
func scanAPIKey(row pgx.Row) (*tokenkeeper.APIKey, error) {
	var (
		k                tokenkeeper.APIKey
		scopes           []string
		created, revoked pgtype.Timestamptz
	)
	if err := row.Scan(&k.ID, &k.Name, &scopes, &k.Hash, &created, &revoked); err != nil {
		return nil, err
	}
	for _, sc := range scopes {
		k.Scopes = append(k.Scopes, tokenkeeper.Scope(sc))
	}
	if len(k.Hash) == 0 {
		k.Hash = nil
	}
	k.CreatedAt = fromTS(created)
	k.RevokedAt = fromTS(revoked)
	return &k, nil
}
