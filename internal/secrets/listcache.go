package secrets

import (
	"strconv"
	"sync"
)

// listCache keeps recent environment listings as the store returned them: metadata and
// ciphertexts, never plaintext. An entry is valid only for the environment revision it was
// read at; the revision comes from the scope query every request runs anyway, so a listing
// changed by any replica is read again on the next request. This is what makes an audited
// read of a whole environment one query plus the audit append.
type listCache struct {
	mu       sync.Mutex
	maxBytes int
	bytes    int
	entries  map[string]*listEntry
	order    []string // insertion order, oldest first, for eviction
}

type listEntry struct {
	revision int64
	recs     []Record
	size     int
}

func newListCache(maxBytes int) *listCache {
	return &listCache{maxBytes: maxBytes, entries: map[string]*listEntry{}}
}

func listKey(envID string, opts ListOptions) string {
	return envID + "\x00" + opts.After + "\x00" + strconv.Itoa(opts.Limit) + "\x00" +
		strconv.FormatBool(opts.WithValues) + strconv.FormatBool(opts.IncludeDeleted)
}

// get returns the listing cached for key at revision. Callers must not modify it.
func (c *listCache) get(key string, revision int64) ([]Record, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || e.revision != revision {
		return nil, false
	}
	return e.recs, true
}

func (c *listCache) put(key string, revision int64, recs []Record) {
	if c == nil {
		return
	}
	size := len(key)
	for i := range recs {
		size += len(recs[i].Name) + len(recs[i].Note) + len(recs[i].CreatedBy) + len(recs[i].Ciphertext) + 128
	}
	if size > c.maxBytes/8 {
		return // one huge listing must not flush everything else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; ok {
		if old.revision > revision {
			return // never replace a newer listing with an older one
		}
		c.bytes -= old.size
		delete(c.entries, key)
	} else {
		c.order = append(c.order, key)
	}
	for c.bytes+size > c.maxBytes && len(c.order) > 0 {
		oldest := c.order[0]
		c.order = c.order[1:]
		if e, ok := c.entries[oldest]; ok && oldest != key {
			c.bytes -= e.size
			delete(c.entries, oldest)
		}
	}
	c.entries[key] = &listEntry{revision: revision, recs: recs, size: size}
	c.bytes += size
}
