package httpapi

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// DefaultAPIKeyCacheTTL is how long a server answers an API key from memory before it
// reads the key's record again, when Config.APIKeyCacheTTL is zero.
const DefaultAPIKeyCacheTTL = 2 * time.Second

// keyCache keeps the records of API keys that were found, for a short time: one read of
// the store per key per TTL instead of one per request (a primary-key read costs more CPU
// than the rest of a token request). Only keys that exist are kept, so its size is bounded
// by the number of keys in the store. A key revoked through this server is dropped at
// once; one revoked elsewhere (another replica, the CLI on the store) stops working within
// the TTL. The whole key is still hashed and compared on every request: the cache holds
// records, never keys.
type keyCache struct {
	ttl   time.Duration // <= 0: no cache
	now   func() time.Time
	store tokenkeeper.APIKeyStore
	m     sync.Map // tokenkeeper.APIKeyID -> *cachedKey
	// drops counts drop calls: a read that overlapped one does not cache its
	// record, which may predate the revocation.
	drops atomic.Int64
}

type cachedKey struct {
	rec   *tokenkeeper.APIKey
	until time.Time
}

// get returns the record of id, from memory while it is fresh.
func (c *keyCache) get(ctx context.Context, id tokenkeeper.APIKeyID) (*tokenkeeper.APIKey, error) {
	if c.ttl <= 0 {
		return c.store.GetAPIKey(ctx, id)
	}
	now := c.now()
	if v, ok := c.m.Load(id); ok {
		if ck := v.(*cachedKey); now.Before(ck.until) {
			return ck.rec, nil
		}
	}
	drops := c.drops.Load()
	rec, err := c.store.GetAPIKey(ctx, id)
	switch {
	case err == nil && c.drops.Load() == drops:
		c.m.Store(id, &cachedKey{rec: rec, until: now.Add(c.ttl)})
	case tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound:
		c.m.Delete(id)
	}
	return rec, err
}

// drop forgets id, after this server revoked it. A read of the store that
// began before the drop does not cache what it read.
func (c *keyCache) drop(id tokenkeeper.APIKeyID) {
	c.drops.Add(1)
	c.m.Delete(id)
}
