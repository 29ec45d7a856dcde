package secrets

import (
	"container/list"
	"strconv"
	"sync"
	"unsafe"
)

// listCache keeps recent environment listings as the store returned them: metadata and
// ciphertexts, never plaintext. An entry is valid only for the environment revision it was
// read at; the revision comes with the request's scope (from the scope query, or the scope
// cache, which drops a tenant's entries whenever a revision moves), so a listing changed by any
// replica is read again once this replica has heard of the change (README, Read path). This is
// what makes an audited read of a whole environment the audit append and nothing else.
type listCache struct {
	mu       sync.Mutex
	maxBytes int
	bytes    int
	entries  map[string]*list.Element // of *listEntry
	order    *list.List               // least recently stored first, for eviction
}

type listEntry struct {
	key      string
	revision int64
	recs     []Record
	size     int
}

// recordOverhead is what a cached record costs besides its strings' bytes: the struct itself,
// and the allocation headers and rounding of its strings.
const recordOverhead = int(unsafe.Sizeof(Record{})) + 64

func newListCache(maxBytes int) *listCache {
	return &listCache{maxBytes: maxBytes, entries: map[string]*list.Element{}, order: list.New()}
}

func listKey(envID string, opts ListOptions) string {
	return envID + "\x00" + opts.After + "\x00" + strconv.Itoa(opts.Limit) + "\x00" +
		strconv.FormatBool(opts.WithValues) + strconv.FormatBool(opts.IncludeDeleted)
}

// get returns the listing cached for key at revision. Callers must not modify it.
func (c *listCache) get(key string, revision int64) ([]Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*listEntry)
	if e.revision != revision {
		return nil, false
	}
	return e.recs, true
}

func (c *listCache) put(key string, revision int64, recs []Record) {
	size := len(key)
	for i := range recs {
		size += len(recs[i].Name) + len(recs[i].Note) + len(recs[i].CreatedBy) + len(recs[i].Ciphertext) + recordOverhead
	}
	if size > c.maxBytes/8 {
		return // one huge listing must not flush everything else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		if el.Value.(*listEntry).revision > revision {
			return // never replace a newer listing with an older one
		}
		c.remove(el)
	}
	for c.bytes+size > c.maxBytes && c.order.Len() > 0 {
		c.remove(c.order.Front())
	}
	c.entries[key] = c.order.PushBack(&listEntry{key: key, revision: revision, recs: recs, size: size})
	c.bytes += size
}

func (c *listCache) remove(el *list.Element) {
	e := c.order.Remove(el).(*listEntry)
	delete(c.entries, e.key)
	c.bytes -= e.size
}
