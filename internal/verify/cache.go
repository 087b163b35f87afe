package verify

import (
	"container/list"
	"sync"
	"time"
)

// verdict is what is cached: the outcome of every signer for one (repository, digest,
// key set).
type verdict struct {
	signers []SignerResult
}

type cacheEntry struct {
	key     string
	v       verdict
	expires time.Time
}

// lruCache is a size-bounded LRU map whose entries also expire. It is safe for concurrent
// use. A nil *lruCache caches nothing.
type lruCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front = most recently used
	items map[string]*list.Element
	hits  uint64
	miss  uint64
}

func newLRUCache(maxEntries int) *lruCache {
	if maxEntries <= 0 {
		return nil
	}
	return &lruCache{max: maxEntries, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *lruCache) get(key string, now time.Time) (verdict, bool) {
	if c == nil {
		return verdict{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		c.miss++
		return verdict{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, key)
		c.miss++
		return verdict{}, false
	}
	c.ll.MoveToFront(el)
	c.hits++
	return e.v, true
}

func (c *lruCache) put(key string, v verdict, expires time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*cacheEntry)
		e.v, e.expires = v, expires
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, v: v, expires: expires})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*cacheEntry).key)
	}
}

func (c *lruCache) stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Entries: c.ll.Len(), Hits: c.hits, Misses: c.miss}
}

// CacheStats counts cache use since the Verifier was created.
type CacheStats struct {
	Entries      int
	Hits, Misses uint64
}

// flight deduplicates concurrent verifications of the same cache key.
type flight struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done chan struct{}
	v    verdict
	err  error
}

// do runs fn once for concurrent callers with the same key; the others wait for its result
// (or for their own ctx to end, see Verifier.signatures).
func (f *flight) begin(key string) (c *call, leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]*call{}
	}
	if c, ok := f.calls[key]; ok {
		return c, false
	}
	c = &call{done: make(chan struct{})}
	f.calls[key] = c
	return c, true
}

func (f *flight) end(key string, c *call) {
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
}
