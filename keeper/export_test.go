package keeper

import (
	"context"

	"github.com/tokenkeeper/tokenkeeper"
)

// SetHook installs a function called at each step of a refresh ("sending",
// "received", "committed"), for crash tests. Call it before any use.
func SetHook(k *Keeper, hook func(step string, id tokenkeeper.ConnectionID)) { k.hook = hook }

// LoadToken reads the connection's token from the store, bypassing the
// cache: every call opens the sealed token.
func LoadToken(ctx context.Context, k *Keeper, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
	rec, err := k.cfg.Store.GetConnection(ctx, id)
	if err != nil {
		return tokenkeeper.AccessToken{}, err
	}
	c, err := k.cachedFrom(rec)
	if err != nil || c == nil {
		return tokenkeeper.AccessToken{}, err
	}
	return c.token, nil
}

// SetPrunePageSize sets how many connections each of Prune's listings
// asks for (200 otherwise). Call it before any use.
func SetPrunePageSize(k *Keeper, n int) { k.prunePage = n }
