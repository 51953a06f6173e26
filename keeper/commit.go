package keeper

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/providertext"
)

// errAgain tells ensure to decide again: the store changed under us.
var errAgain = errors.New("keeper: the record changed; decide again")

// commit persists the new token set before anyone sees it. A failed write
// is retried, with the pair held in memory, for as long as the process
// lives (until Close gives up): the old refresh token is never presented
// again, and the pair exists nowhere else. rec is the record as marked
// before the request.
func (k *Keeper) commit(e *entry, lh *leaseHolder, rec *tokenkeeper.Record, presented tokenkeeper.Secret, tok *oauth2.Token, sentAt time.Time) (*cached, error) {
	lifetime := time.Duration(tok.ExpiresIn) * time.Second
	defaulted := lifetime <= 0
	if defaulted {
		lifetime = k.cfg.DefaultLifetime
	}
	refresh := tokenkeeper.NewSecret(tok.RefreshToken)
	kept := refresh.IsZero() || refresh.Equal(presented)
	if kept {
		refresh = presented // RFC 6749 section 6: the provider may keep it
	}
	scope, _ := tok.Extra("scope").(string)
	// Provider text: the store refuses NUL and invalid UTF-8, and a refused
	// commit would lose the pair just rotated.
	scope = providertext.Clean(scope)
	if scope == "" {
		scope = rec.Tokens.Scope
	}
	set := tokenkeeper.TokenSet{
		AccessToken:  tokenkeeper.NewSecret(tok.AccessToken),
		RefreshToken: refresh,
		Expiry:       truncate(sentAt.Add(lifetime)),
		ExpiresAt:    k.plan(sentAt, lifetime),
		Scope:        scope,
	}
	sealed, err := k.sealSet(e.id, set)
	if err != nil {
		k.log.Error("refresh: cannot seal the new token set; it is lost", "connection", e.id, "error", err)
		return nil, err
	}
	ctx := k.base // only Close giving up ends the retries
	base := rec
	for try := 1; ; try++ {
		next := k.committed(base, sealed, sentAt)
		err := k.writeLeased(ctx, next, base.Generation, lh.lease())
		if err == nil {
			return k.committedOK(e, rec, next, set, lifetime, defaulted, kept), nil
		}
		if ctx.Err() != nil {
			k.log.Error("refresh: closing before the new token set could be persisted; it is lost, and the next refresh will end the connection", "connection", e.id, "error", err)
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "connection %s: the refreshed tokens could not be stored: %w", e.id, err)
		}
		switch tokenkeeper.ErrorCode(err) {
		case tokenkeeper.CodeNotFound:
			k.log.Warn("refresh: the connection was deleted during the refresh; its new tokens are discarded", "connection", e.id)
			return nil, k.storeError(e.id, "commit", err)
		case tokenkeeper.CodeInvalid:
			// A bug, not an outage: retrying the same write cannot succeed.
			k.log.Error("refresh: the store refuses the new token set; it is lost, and the next refresh will end the connection", "connection", e.id, "error", err)
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "connection %s: the refreshed tokens could not be stored: %w", e.id, err)
		}
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict {
			if try <= 3 || try&(try-1) == 0 { // log tries 1, 2, 3, 4, 8, 16, ...
				k.log.Warn("refresh: commit failed; retrying with the new pair held in memory", "connection", e.id, "try", try, "error", err)
			}
			_ = sleep(ctx, min(50*time.Millisecond<<min(try-1, 7), 5*time.Second)+rand.N(20*time.Millisecond), nil)
			continue
		}
		cur, gerr := k.cfg.Store.GetConnection(ctx, e.id)
		if tokenkeeper.ErrorCode(gerr) == tokenkeeper.CodeNotFound {
			k.log.Warn("refresh: the connection was deleted during the refresh; its new tokens are discarded", "connection", e.id)
			return nil, k.storeError(e.id, "commit", gerr)
		}
		if gerr != nil {
			_ = sleep(ctx, 100*time.Millisecond, nil)
			continue
		}
		if !bytes.Equal(cur.Tokens.RefreshToken.Ciphertext, base.Tokens.RefreshToken.Ciphertext) {
			// A reconnect replaced the grant while we refreshed the old one.
			k.log.Warn("refresh: the connection was reconnected during the refresh; the old grant's new tokens are discarded", "connection", e.id)
			return nil, errAgain
		}
		if cur.Lease.Owner != k.cfg.Owner || cur.Lease.Fence != lh.lease().Fence || cur.Generation == base.Generation {
			// We stalled past the lease: it is another's, or (the generation
			// did not move, so the conflict was the lease) it ran out on the
			// store's clock, which is not ours to compare with. Nobody has
			// refreshed since (the stored refresh token is the one we
			// presented): take the lease back if we can, or else write
			// without it, so that the only valid pair is not dropped.
			asked := time.Now()
			l, fresh, aerr := k.cfg.Store.AcquireLease(ctx, e.id, k.cfg.Owner, k.cfg.LeaseTTL)
			switch {
			case aerr == nil:
				lh.replace(l, asked)
				cur = fresh
			case tokenkeeper.ErrorCode(aerr) == tokenkeeper.CodeUnavailable && fresh != nil:
				next := k.committed(cur, sealed, sentAt)
				k.log.Error("refresh: lease lost to another process after the provider rotated; committing without it", "connection", e.id)
				if uerr := k.cfg.Store.UpdateConnection(ctx, next, cur.Generation); uerr == nil {
					return k.committedOK(e, rec, next, set, lifetime, defaulted, kept), nil
				}
				continue
			default:
				_ = sleep(ctx, 100*time.Millisecond, nil)
				continue
			}
		}
		base = cur // a metadata write moved the generation: merge onto it
	}
}

// committedOK publishes a committed token set, then logs and emits what
// the commit should not have waited for.
func (k *Keeper) committedOK(e *entry, before, next *tokenkeeper.Record, set tokenkeeper.TokenSet, lifetime time.Duration, defaulted, kept bool) *cached {
	c := newCached(next, set.AccessToken, lifetime)
	e.publish(c, c.ver)
	k.step("committed", e.id)
	if defaulted {
		k.log.Warn("refresh: the token response has no expires_in; assumed the default lifetime", "connection", e.id, "lifetime", k.cfg.DefaultLifetime)
	}
	if kept {
		k.log.Warn("refresh: the response holds no new refresh token; keeping the stored one", "connection", e.id)
	}
	if k.rejectedUntil.Swap(0) != 0 {
		k.log.Info("refresh: the provider accepts the client credentials again", "connection", e.id)
	}
	ctx := context.Background()
	k.emit(ctx, tokenkeeper.EventRefreshed, next, "")
	if before.Degraded() {
		k.emit(ctx, tokenkeeper.EventRecovered, next, "a refresh succeeded again")
	}
	return c
}

// committed returns base with the new sealed token set, the marker cleared
// and the connection healthy, at generation base.Generation+1.
func (k *Keeper) committed(base *tokenkeeper.Record, set tokenkeeper.SealedTokenSet, sentAt time.Time) *tokenkeeper.Record {
	next := *base
	next.Tokens = set
	next.Pending = tokenkeeper.Pending{}
	next.State = tokenkeeper.StateActive
	next.LastRefreshAt = truncate(sentAt)
	next.NextRefreshAt = set.ExpiresAt.Add(k.grace(set.Expiry.Sub(sentAt)))
	next.LastError = ""
	next.DegradedSince = time.Time{}
	next.Generation = base.Generation + 1
	next.UpdatedAt = k.stamp()
	return &next
}

// plan returns the promise for a token sent at sentAt with lifetime: about
// 80% of the lifetime, with jitter (75% to 85%) so that connections made
// together do not refresh together, and at least two drain graces before
// the provider's expiry.
func (k *Keeper) plan(sentAt time.Time, lifetime time.Duration) time.Time {
	frac := 0.75 + 0.1*rand.Float64()
	at := sentAt.Add(time.Duration(float64(lifetime) * frac))
	if latest := sentAt.Add(lifetime - 2*k.grace(lifetime)); at.After(latest) {
		at = latest
	}
	if at.Before(sentAt) {
		at = sentAt
	}
	return truncate(at)
}

// writeLeased writes rec as the next generation after expect, fenced by
// lease.
func (k *Keeper) writeLeased(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
	rec.Generation = expect + 1
	rec.UpdatedAt = k.stamp()
	return k.cfg.Store.UpdateLeased(ctx, rec, expect, lease)
}

func truncate(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func (k *Keeper) stamp() time.Time { return truncate(k.now()) }
