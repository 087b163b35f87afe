package verify

import (
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
)

// verdict is what is cached: the outcome of every signer for one (repository, digest,
// key set).
type verdict struct {
	signers []SignerResult
}

// verdictCache is apimachinery's size-bounded LRU cache with per-entry expiry, typed for
// verdicts and counting hits and misses. A nil *verdictCache caches nothing.
type verdictCache struct {
	lru        *cache.LRUExpireCache
	hits, miss atomic.Uint64
}

// clockFunc adapts Options.Now to the cache's clock, so tests control expiry.
type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

func newVerdictCache(maxEntries int, now func() time.Time) *verdictCache {
	if maxEntries <= 0 {
		return nil
	}
	return &verdictCache{lru: cache.NewLRUExpireCacheWithClock(maxEntries, clockFunc(now))}
}

func (c *verdictCache) get(key string) (verdict, bool) {
	if c == nil {
		return verdict{}, false
	}
	v, ok := c.lru.Get(key)
	if !ok {
		c.miss.Add(1)
		return verdict{}, false
	}
	c.hits.Add(1)
	return v.(verdict), true
}

func (c *verdictCache) put(key string, v verdict, ttl time.Duration) {
	if c != nil {
		c.lru.Add(key, v, ttl)
	}
}

func (c *verdictCache) stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	return CacheStats{Entries: len(c.lru.Keys()), Hits: c.hits.Load(), Misses: c.miss.Load()}
}

// CacheStats counts cache use since the Verifier was created.
type CacheStats struct {
	Entries      int
	Hits, Misses uint64
}
