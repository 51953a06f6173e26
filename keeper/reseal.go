package keeper

import (
	"context"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// ResealProgress reports a re-seal pass: connections looked at, and those
// moved to the primary key.
type ResealProgress struct {
	Seen, Resealed int
}

// Reseal moves every connection's sealed tokens to the Sealer's primary
// key, without downtime: each record is re-sealed under its lease (so no
// refresh interleaves) with a compare-and-swap, and every record always
// opens under a key the Sealer holds. Old keys may be retired once it
// returns. progress, if not nil, is called after each connection.
//
// Errors: the first store or sealing failure; a connection whose lease is
// busy is retried until ctx ends.
func (k *Keeper) Reseal(ctx context.Context, progress func(ResealProgress)) (ResealProgress, error) {
	var p ResealProgress
	primary := k.cfg.Sealer.PrimaryKeyID()
	var after tokenkeeper.ConnectionID
	for {
		page, err := k.cfg.Store.ListConnections(ctx, tokenkeeper.ConnectionFilter{After: after, Limit: 200})
		if err != nil {
			return p, err
		}
		if len(page) == 0 {
			return p, nil
		}
		for _, rec := range page {
			after = rec.ID
			p.Seen++
			if !stale(rec, primary) {
				if progress != nil {
					progress(p)
				}
				continue
			}
			done, err := k.resealOne(ctx, rec.ID, primary)
			if err != nil {
				return p, err
			}
			if done {
				p.Resealed++
			}
			if progress != nil {
				progress(p)
			}
		}
	}
}

func stale(rec *tokenkeeper.Record, primary string) bool {
	a, r := rec.Tokens.AccessToken, rec.Tokens.RefreshToken
	return (!a.IsZero() && a.KeyID != primary) || (!r.IsZero() && r.KeyID != primary)
}

// resealOne re-seals one connection under its lease.
func (k *Keeper) resealOne(ctx context.Context, id tokenkeeper.ConnectionID, primary string) (bool, error) {
	for {
		// Not k.cfg.Owner: a store lets an owner re-acquire its own lease,
		// which would break into this keeper's refresh in flight.
		lease, rec, err := k.cfg.Store.AcquireLease(ctx, id, k.cfg.Owner+"/reseal", k.cfg.LeaseTTL)
		switch tokenkeeper.ErrorCode(err) {
		case tokenkeeper.CodeNotFound:
			return false, nil
		case tokenkeeper.CodeUnavailable:
			if rec == nil {
				return false, err
			}
			if err := sleep(ctx, 50*time.Millisecond, nil); err != nil {
				return false, err
			}
			continue
		}
		if err != nil {
			return false, err
		}
		done, err := k.resealLeased(ctx, rec, lease, primary)
		k.release(id, lease)
		return done, err
	}
}

func (k *Keeper) resealLeased(ctx context.Context, rec *tokenkeeper.Record, lease tokenkeeper.Lease, primary string) (bool, error) {
	if !stale(rec, primary) {
		return false, nil
	}
	access, err := k.open(rec, tokenkeeper.FieldAccessToken)
	if err != nil {
		return false, err
	}
	refresh, err := k.open(rec, tokenkeeper.FieldRefreshToken)
	if err != nil {
		return false, err
	}
	sealed, err := k.sealSet(rec.ID, tokenkeeper.TokenSet{AccessToken: access, RefreshToken: refresh,
		Expiry: rec.Tokens.Expiry, ExpiresAt: rec.Tokens.ExpiresAt, Scope: rec.Tokens.Scope})
	if err != nil {
		return false, err
	}
	next := *rec
	next.Tokens = sealed
	if err := k.writeLeased(ctx, &next, rec.Generation, lease); err != nil {
		return false, err
	}
	return true, nil
}
