package crypto

import "slices"

// KEKSet is every key-encryption key a server can use, found by id. Current wraps new platform
// data keys; previous keys only unwrap, while a rewrap moves their data keys to the current one.
// Tenant-owned keys are not loaded ahead of time: Remote makes a wrapper for one on demand
// through the KMS client, and the caller decides whether that id is allowed (it must be a key
// the tenant registered), because a KEK id read from a database row is not trusted by itself.
type KEKSet struct {
	current KeyWrapper
	loaded  map[string]KeyWrapper
	remote  func(kekID string) KeyWrapper
}

// NewKEKSet returns a set with current and previous keys loaded. remote is nil when no KMS is
// configured.
func NewKEKSet(current KeyWrapper, previous []KeyWrapper, remote func(kekID string) KeyWrapper) *KEKSet {
	s := &KEKSet{current: current, loaded: map[string]KeyWrapper{current.KeyID(): current}, remote: remote}
	for _, w := range previous {
		if _, dup := s.loaded[w.KeyID()]; !dup {
			s.loaded[w.KeyID()] = w
		}
	}
	return s
}

// Current is the KEK new platform data keys are wrapped under.
func (s *KEKSet) Current() KeyWrapper { return s.current }

// Loaded returns the configured wrapper (current or previous) with this id.
func (s *KEKSet) Loaded(kekID string) (KeyWrapper, bool) {
	w, ok := s.loaded[kekID]
	return w, ok
}

// IDs lists the configured KEK ids, current first.
func (s *KEKSet) IDs() []string {
	ids := make([]string, 0, len(s.loaded))
	for id := range s.loaded {
		if id != s.current.KeyID() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return append([]string{s.current.KeyID()}, ids...)
}

// HasRemote reports whether KMS keys other than the loaded ones can be used (a KMS is
// configured).
func (s *KEKSet) HasRemote() bool { return s.remote != nil }

// Remote returns a wrapper for a KMS key by id or ARN; false when no KMS is configured.
func (s *KEKSet) Remote(kekID string) (KeyWrapper, bool) {
	if w, ok := s.loaded[kekID]; ok {
		return w, true
	}
	if s.remote == nil || kekID == "" {
		return nil, false
	}
	return s.remote(kekID), true
}
