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

// CachedToken returns the token k holds in memory for id, if any, without
// reading the store or refreshing: what Token's hot path would hand out
// while now is before its ExpiresAt.
func CachedToken(k *Keeper, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, bool) {
	v, ok := k.entries.Load(id)
	if !ok {
		return tokenkeeper.AccessToken{}, false
	}
	c := v.(*entry).cur.Load()
	if c == nil {
		return tokenkeeper.AccessToken{}, false
	}
	return c.token, true
}

// Entries returns how many connections k holds in memory.
func Entries(k *Keeper) int {
	n := 0
	k.entries.Range(func(any, any) bool { n++; return true })
	return n
}

// SetKeepAlivePageSize sets how many connections each step of the
// keep-alive scan lists (200 otherwise). Call it before any use.
func SetKeepAlivePageSize(k *Keeper, n int) { k.keepAlivePage = n }
