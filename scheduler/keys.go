package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// reservedTenants are names no ordinary key may take: they belong to the
// operators of the mesh (the bootstrap admin's tenant is "admin").
var reservedTenants = []string{"admin", "bootstrap", "internal", "pwmesh", "root", "system"}

// ReservedTenant reports whether name is kept for the mesh itself: only an
// admin key may be created in such a tenant.
func ReservedTenant(name string) bool {
	return slices.Contains(reservedTenants, strings.ToLower(name))
}

// KeyIDOf is the ID of a key stored without one: derived from its hash, so
// every replica derives the same.
func KeyIDOf(hash string) string {
	if len(hash) > 16 {
		hash = hash[:16]
	}
	return "key_" + hash
}

// RevokeKey deletes an API key: from then on it authenticates nothing.
type RevokeKey struct {
	At time.Time `json:"at"`
	ID string    `json:"id"`
	// Tenant, when set, must be the key's tenant (a tenant revoking its
	// own key); "" lets an admin revoke any key.
	Tenant string `json:"tenant,omitempty"`
}

// TouchKeys records when keys were last used. It only moves LastUsedAt
// forward, so applying it twice changes nothing; unknown IDs are skipped
// (the key may have been revoked since).
type TouchKeys struct {
	At   time.Time            `json:"at"`
	Used map[string]time.Time `json:"used"` // key ID -> last use
}

func (RevokeKey) Type() CommandType { return CmdRevokeKey }
func (TouchKeys) Type() CommandType { return CmdTouchKeys }

func (s *state) createKey(c *CreateKey) (APIKey, error) {
	k := c.Key
	if k.Hash == "" || k.Tenant == "" || PriorityRank(k.Tier) < 0 || k.Tier == PrioritySprint {
		return APIKey{}, fmt.Errorf("create key: %w: tenant and a tier of free or paid are required", ErrInvalid)
	}
	if !k.Admin && ReservedTenant(k.Tenant) {
		return APIKey{}, fmt.Errorf("create key: %w: tenant name %q is reserved", ErrInvalid, k.Tenant)
	}
	if _, ok := s.keys[k.Hash]; ok {
		return APIKey{}, fmt.Errorf("create key: %w: key exists", ErrConflict)
	}
	if k.ID == "" {
		k.ID = KeyIDOf(k.Hash)
	}
	if _, ok := s.keyIDs[k.ID]; ok {
		return APIKey{}, fmt.Errorf("create key: %w: key id %s exists", ErrConflict, k.ID)
	}
	if k.ExpiresAt != nil {
		e := *k.ExpiresAt
		k.ExpiresAt = &e
	}
	t, ok := s.tenants[k.Tenant]
	if !ok {
		t = &Tenant{Name: k.Tenant, CreatedAt: c.At}
		s.tenants[k.Tenant] = t
	}
	// The tenant's tier is the highest tier of its keys.
	if PriorityRank(k.Tier) > PriorityRank(t.Tier) {
		t.Tier = k.Tier
	}
	k.CreatedAt = c.At
	k.LastUsedAt = time.Time{}
	s.putKey(&k)
	return cloneKey(&k), nil
}

// putKey stores k and indexes its ID (derived when it has none).
func (s *state) putKey(k *APIKey) {
	if k.ID == "" {
		k.ID = KeyIDOf(k.Hash)
	}
	s.keys[k.Hash] = k
	s.keyIDs[k.ID] = k.Hash
}

func (s *state) revokeKey(c *RevokeKey) (APIKey, error) {
	h, ok := s.keyIDs[c.ID]
	k := s.keys[h]
	if !ok || k == nil || (c.Tenant != "" && k.Tenant != c.Tenant) {
		return APIKey{}, fmt.Errorf("key %s: %w", c.ID, ErrNotFound)
	}
	if k.Admin {
		admins := 0
		for _, o := range s.keys {
			if o.Admin {
				admins++
			}
		}
		if admins == 1 {
			return APIKey{}, fmt.Errorf("revoke key %s: %w: it is the last admin key", c.ID, ErrConflict)
		}
	}
	delete(s.keys, h)
	delete(s.keyIDs, c.ID)
	return cloneKey(k), nil
}

func (s *state) touchKeys(c *TouchKeys) (int, error) {
	n := 0
	for id, at := range c.Used {
		if k := s.keys[s.keyIDs[id]]; k != nil && at.After(k.LastUsedAt) {
			k.LastUsedAt = at
			n++
		}
	}
	return n, nil
}

func cloneKey(k *APIKey) APIKey {
	c := *k
	if k.ExpiresAt != nil {
		e := *k.ExpiresAt
		c.ExpiresAt = &e
	}
	return c
}

// Key looks up an API key by the hex SHA-256 of its secret. An expired key
// is returned as stored: the reader checks Expired with its own clock.
func (f *FSM) Key(hash string) (APIKey, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	k, ok := f.s.keys[hash]
	if !ok {
		return APIKey{}, false
	}
	return cloneKey(k), true
}

// KeyByID looks up an API key by its ID.
func (f *FSM) KeyByID(id string) (APIKey, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	k, ok := f.s.keys[f.s.keyIDs[id]]
	if !ok {
		return APIKey{}, false
	}
	return cloneKey(k), true
}

// Keys lists the keys of tenant ("" for every tenant's), oldest first,
// then by ID.
func (f *FSM) Keys(tenant string) []APIKey {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []APIKey
	for _, h := range slices.Sorted(maps.Keys(f.s.keys)) {
		if k := f.s.keys[h]; tenant == "" || k.Tenant == tenant {
			out = append(out, cloneKey(k))
		}
	}
	slices.SortStableFunc(out, func(a, b APIKey) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// KeyCount is the number of stored keys (zero before bootstrap).
func (f *FSM) KeyCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.s.keys)
}
