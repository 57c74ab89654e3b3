package spread

import (
	"container/list"
	"sync"

	"github.com/handoff-dev/handoff/store/blocks"
)

// Small blocks pulled from another member are kept here, so that the next
// read of one on this node is served from memory with no round trip. A
// block never changes once written (a new version of an object is new
// blocks under new ids) and is read only through an object record that
// names it, so a copy is never stale: at worst it outlives its block
// until it is evicted or the block's delete passes through this node.
const (
	copyMax   = 64 << 10 // the largest block kept
	copyTotal = 32 << 20 // the bytes kept in all
)

// copyCache is a byte-bounded LRU of block copies. It is safe for
// concurrent use.
type copyCache struct {
	// mu guards all following fields.
	mu    sync.Mutex
	bytes int
	order *list.List // front: most recently used; values *copyEntry
	byID  map[blocks.ID]*list.Element
}

type copyEntry struct {
	id   blocks.ID
	data []byte
}

func newCopyCache() *copyCache {
	return &copyCache{order: list.New(), byID: make(map[blocks.ID]*list.Element)}
}

// get appends the copy of id to dst, if one is kept.
func (c *copyCache) get(id blocks.ID, dst []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byID[id]
	if e == nil {
		return dst, false
	}
	c.order.MoveToFront(e)
	return append(dst, e.Value.(*copyEntry).data...), true
}

// put keeps a copy of data, a checked block, if it is small enough.
func (c *copyCache) put(id blocks.ID, data []byte) {
	if len(data) > copyMax {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID[id] != nil {
		return
	}
	c.byID[id] = c.order.PushFront(&copyEntry{id: id, data: append([]byte(nil), data...)})
	c.bytes += len(data)
	for c.bytes > copyTotal {
		c.dropLocked(c.order.Back())
	}
}

// drop forgets the copies of ids.
func (c *copyCache) drop(ids ...blocks.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if e := c.byID[id]; e != nil {
			c.dropLocked(e)
		}
	}
}

func (c *copyCache) dropLocked(e *list.Element) {
	ce := c.order.Remove(e).(*copyEntry)
	delete(c.byID, ce.id)
	c.bytes -= len(ce.data)
}
