package keeper

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// usable returns the error a caller gets for a connection that is not
// active.
func usable(rec *tokenkeeper.Record) error {
	switch rec.State {
	case tokenkeeper.StateActive:
		return nil
	case tokenkeeper.StateReconnectRequired:
		return tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "connection %s needs reconnecting: %s", rec.ID, rec.LastError)
	case tokenkeeper.StateDisconnected:
		return tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "connection %s is disconnected; connect it again", rec.ID)
	}
	return tokenkeeper.Errorf(tokenkeeper.CodeInternal, "connection %s has an unknown state %q", rec.ID, rec.State)
}

// cachedFrom opens rec's access token; nil if it holds none.
func (k *Keeper) cachedFrom(rec *tokenkeeper.Record) (*cached, error) {
	if rec.Tokens.AccessToken.IsZero() {
		return nil, nil
	}
	access, err := k.open(rec, tokenkeeper.FieldAccessToken)
	if err != nil {
		return nil, err
	}
	return newCached(rec, access, rec.Tokens.Expiry.Sub(issuedAt(rec))), nil
}

// newCached is rec's token, access in plaintext, as the cache holds it.
func newCached(rec *tokenkeeper.Record, access tokenkeeper.Secret, lifetime time.Duration) *cached {
	return &cached{
		token:      tokenkeeper.AccessToken{Value: access, ExpiresAt: rec.Tokens.ExpiresAt},
		expiry:     rec.Tokens.Expiry,
		lifetime:   lifetime,
		generation: rec.Generation,
		ver:        versionOf(rec),
	}
}

// issuedAt is when rec's token set was issued: its last refresh, or its
// creation if it was never refreshed.
func issuedAt(rec *tokenkeeper.Record) time.Time {
	if rec.LastRefreshAt.IsZero() {
		return rec.CreatedAt
	}
	return rec.LastRefreshAt
}

// open unseals one token field of rec.
func (k *Keeper) open(rec *tokenkeeper.Record, field string) (tokenkeeper.Secret, error) {
	s := rec.Tokens.AccessToken
	if field == tokenkeeper.FieldRefreshToken {
		s = rec.Tokens.RefreshToken
	}
	if s.IsZero() {
		return tokenkeeper.Secret{}, nil
	}
	b, err := k.cfg.Sealer.Open(s, tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, string(rec.ID), field))
	if err != nil {
		return tokenkeeper.Secret{}, fmt.Errorf("open %s of connection %s (key %s): %w", field, rec.ID, s.KeyID, err)
	}
	return tokenkeeper.NewSecret(string(b)), nil
}

// sealSet seals a token set for connection id.
func (k *Keeper) sealSet(id tokenkeeper.ConnectionID, set tokenkeeper.TokenSet) (tokenkeeper.SealedTokenSet, error) {
	out := tokenkeeper.SealedTokenSet{Expiry: set.Expiry, ExpiresAt: set.ExpiresAt, Scope: set.Scope}
	for _, f := range []struct {
		name string
		in   tokenkeeper.Secret
		out  *tokenkeeper.Sealed
	}{
		{tokenkeeper.FieldAccessToken, set.AccessToken, &out.AccessToken},
		{tokenkeeper.FieldRefreshToken, set.RefreshToken, &out.RefreshToken},
	} {
		if f.in.IsZero() {
			continue
		}
		s, err := k.cfg.Sealer.Seal([]byte(f.in.Reveal()), tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, string(id), f.name))
		if err != nil {
			return tokenkeeper.SealedTokenSet{}, fmt.Errorf("seal %s of connection %s: %w", f.name, id, err)
		}
		*f.out = s
	}
	return out, nil
}

// storeError wraps a store failure with the operation; the code stays.
func (k *Keeper) storeError(id tokenkeeper.ConnectionID, op string, err error) error {
	if errors.Is(err, errAgain) {
		return err
	}
	if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound {
		return tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "connection %s not found", id)
	}
	return fmt.Errorf("connection %s: %s: %w", id, op, err)
}

// ctxError turns the end of a flight's context into an unavailable error.
func (k *Keeper) ctxError(id tokenkeeper.ConnectionID, err error) error {
	if k.closed.Load() {
		return errClosed()
	}
	return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "connection %s: refresh timed out: %w", id, err)
}
