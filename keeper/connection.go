package keeper

import (
	"context"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Connect stores the tokens of a finished connect flow: it creates the
// connection, or, for an existing id, replaces its grant (a reconnect). A
// reconnect keeps the metadata, clears reconnect_required and
// disconnected, and this keeper drops the old tokens at once; other
// processes on the store serve their cached token until its promise ends
// or a 401 sends them to the store (docs/design.md, "Coherence between
// processes"). It emits [tokenkeeper.EventConnected].
//
// Errors: [tokenkeeper.CodeInvalid] for a bad id or a grant without tokens.
func (k *Keeper) Connect(ctx context.Context, g tokenkeeper.Grant) (*tokenkeeper.Connection, error) {
	if err := g.ConnectionID.Validate(); err != nil {
		return nil, err
	}
	if g.Tokens.AccessToken.IsZero() || g.Tokens.RefreshToken.IsZero() {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "connect %s: the grant lacks an access or refresh token", g.ConnectionID)
	}
	now := k.stamp()
	set := g.Tokens
	set.Expiry = truncate(set.Expiry)
	lifetime := set.Expiry.Sub(now)
	if set.Expiry.IsZero() || lifetime <= 0 {
		lifetime = k.cfg.DefaultLifetime
		set.Expiry = truncate(now.Add(lifetime))
	}
	set.ExpiresAt = k.plan(now, lifetime)
	sealed, err := k.sealSet(g.ConnectionID, set)
	if err != nil {
		return nil, err
	}
	for {
		rec, err := k.cfg.Store.GetConnection(ctx, g.ConnectionID)
		switch tokenkeeper.ErrorCode(err) {
		case tokenkeeper.CodeNotFound:
			rec = &tokenkeeper.Record{Connection: tokenkeeper.Connection{ID: g.ConnectionID, CreatedAt: now, Generation: 1}}
			k.granted(rec, g, sealed, now)
			rec.Generation = 1
			err = k.cfg.Store.CreateConnection(ctx, rec)
		case "":
			expect := rec.Generation
			k.granted(rec, g, sealed, now)
			rec.Generation = expect + 1
			err = k.cfg.Store.UpdateConnection(ctx, rec, expect)
		}
		if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeConflict {
			continue // a concurrent write; read again
		}
		if err != nil {
			return nil, k.storeError(g.ConnectionID, "connect", err)
		}
		e := k.entry(g.ConnectionID)
		cur := newCached(rec, set.AccessToken, lifetime)
		e.publish(cur, cur.ver)
		k.log.Info("connected", "connection", rec.ID, "generation", rec.Generation)
		k.emit(ctx, tokenkeeper.EventConnected, rec, "")
		c := rec.Connection
		return &c, nil
	}
}

func (k *Keeper) granted(rec *tokenkeeper.Record, g tokenkeeper.Grant, sealed tokenkeeper.SealedTokenSet, now time.Time) {
	rec.Provider = g.Provider
	rec.Scopes = g.Scopes
	rec.Subject = g.Subject // with the tokens: the consent may be for another company
	rec.State = tokenkeeper.StateActive
	rec.Tokens = sealed
	rec.Pending = tokenkeeper.Pending{}
	rec.DegradedSince = time.Time{}
	rec.LastError = ""
	rec.LastRefreshAt = now
	rec.NextRefreshAt = sealed.ExpiresAt.Add(k.cfg.DrainGrace)
	rec.UpdatedAt = now
}

// SetSubject records who the connection's grant is for.
//
// Errors: [tokenkeeper.CodeNotFound].
func (k *Keeper) SetSubject(ctx context.Context, id tokenkeeper.ConnectionID, subject string) error {
	_, err := k.update(ctx, id, func(r *tokenkeeper.Record) { r.Subject = subject })
	return err
}

// SetMetadata replaces the connection's integrator metadata.
//
// Errors: [tokenkeeper.CodeNotFound].
func (k *Keeper) SetMetadata(ctx context.Context, id tokenkeeper.ConnectionID, md map[string]string) error {
	_, err := k.update(ctx, id, func(r *tokenkeeper.Record) { r.Metadata = md })
	return err
}

// Disconnect ends the connection: its tokens are wiped and it is marked
// disconnected (the record stays, for the audit and a later reconnect). It
// does not revoke the grant at the provider. It emits
// [tokenkeeper.EventDisconnected].
//
// Errors: [tokenkeeper.CodeNotFound].
func (k *Keeper) Disconnect(ctx context.Context, id tokenkeeper.ConnectionID, reason string) error {
	rec, err := k.update(ctx, id, func(r *tokenkeeper.Record) {
		r.State = tokenkeeper.StateDisconnected
		r.Tokens = tokenkeeper.SealedTokenSet{}
		r.Pending = tokenkeeper.Pending{}
		r.NextRefreshAt = time.Time{}
		r.DegradedSince = time.Time{}
		r.LastError = reason
	})
	if err != nil {
		return err
	}
	k.entry(id).publish(nil, versionOf(rec))
	k.emit(ctx, tokenkeeper.EventDisconnected, rec, reason)
	return nil
}

// Connection returns the connection, without its tokens.
//
// Errors: [tokenkeeper.CodeNotFound].
func (k *Keeper) Connection(ctx context.Context, id tokenkeeper.ConnectionID) (*tokenkeeper.Connection, error) {
	rec, err := k.cfg.Store.GetConnection(ctx, id)
	if err != nil {
		return nil, k.storeError(id, "read", err)
	}
	c := rec.Connection
	return &c, nil
}

// update applies change to the record with a compare-and-swap, retrying on
// conflicts, and returns the record written.
func (k *Keeper) update(ctx context.Context, id tokenkeeper.ConnectionID, change func(*tokenkeeper.Record)) (*tokenkeeper.Record, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	for {
		rec, err := k.cfg.Store.GetConnection(ctx, id)
		if err != nil {
			return nil, k.storeError(id, "read", err)
		}
		expect := rec.Generation
		change(rec)
		rec.Generation = expect + 1
		rec.UpdatedAt = k.stamp()
		err = k.cfg.Store.UpdateConnection(ctx, rec, expect)
		if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeConflict {
			continue
		}
		if err != nil {
			return nil, k.storeError(id, "update", err)
		}
		return rec, nil
	}
}
