package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Blob kinds: what a stored object is for.
const (
	BlobBundle   = "bundle"
	BlobDataset  = "dataset"
	BlobOperator = "operator"
)

// DefaultReplicas is the replication factor of a cluster that set none.
const DefaultReplicas = 2

// BundleRetention is how long a free-tier RunBundle is kept.
const BundleRetention = 30 * 24 * time.Hour

// Blob is the replicated index entry of one stored object: where its copies
// are. The object itself lives in the nodes' stores (and the mirror).
type Blob struct {
	CID  string `json:"cid"`
	Size int64  `json:"size"`
	Kind string `json:"kind"`
	// Holders are the nodes that reported a verified copy, sorted.
	Holders []string `json:"holders"`
	// Mirrored is set once a node with a shared object store holds a copy
	// there.
	Mirrored  bool      `json:"mirrored,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// SealedKey is a tenant's data key wrapped by a cluster master key (see
// cas/seal): Version names it in every object sealed with it.
type SealedKey struct {
	Version uint32 `json:"version"`
	Master  string `json:"master"`
	Sealed  []byte `json:"sealed"`
}

// ClusterConfig holds the settings every node reads from the log.
type ClusterConfig struct {
	// Replicas is the replication factor (0 means DefaultReplicas).
	Replicas int `json:"replicas"`
}

// EffectiveReplicas returns the replication factor in force.
func (c ClusterConfig) EffectiveReplicas() int {
	if c.Replicas <= 0 {
		return DefaultReplicas
	}
	return c.Replicas
}

// BlobStored records that Node holds a verified copy of CID.
type BlobStored struct {
	At   time.Time `json:"at"`
	CID  string    `json:"cid"`
	Size int64     `json:"size"`
	Kind string    `json:"kind"`
	Node string    `json:"node"`
}

// BlobDropped records that Node no longer holds CID (a corrupt copy was
// removed, or garbage collection reclaimed it).
type BlobDropped struct {
	At     time.Time `json:"at"`
	CID    string    `json:"cid"`
	Node   string    `json:"node"`
	Reason string    `json:"reason,omitempty"`
}

// BlobMirrored records that CID is stored in the shared object store.
type BlobMirrored struct {
	At  time.Time `json:"at"`
	CID string    `json:"cid"`
	// Gone marks the mirror's copy deleted.
	Gone bool `json:"gone,omitempty"`
}

// ExpireBundles ends the retention of the named jobs' RunBundles.
type ExpireBundles struct {
	At   time.Time `json:"at"`
	Jobs []string  `json:"jobs"`
}

// ForgetBlobs removes unreferenced objects from the index and leaves a
// tombstone that tells every node to delete its copy.
type ForgetBlobs struct {
	At   time.Time `json:"at"`
	CIDs []string  `json:"cids"`
}

// PutTenantKeys replaces a tenant's wrapped data keys. Every version the
// tenant had must still be there (rewrapped or not): a key is never lost,
// or the content sealed with it would be.
type PutTenantKeys struct {
	At     time.Time   `json:"at"`
	Tenant string      `json:"tenant"`
	Keys   []SealedKey `json:"keys"`
	// PrevGen is the tenant's KeysGen the proposer read; any other is
	// refused with ErrConflict (read again and retry).
	PrevGen uint64 `json:"prev_gen"`
}

// SetClusterConfig changes the cluster settings.
type SetClusterConfig struct {
	At     time.Time     `json:"at"`
	Config ClusterConfig `json:"config"`
}

func (BlobStored) Type() CommandType       { return CmdBlobStored }
func (BlobDropped) Type() CommandType      { return CmdBlobDropped }
func (BlobMirrored) Type() CommandType     { return CmdBlobMirrored }
func (ExpireBundles) Type() CommandType    { return CmdExpireBundles }
func (ForgetBlobs) Type() CommandType      { return CmdForgetBlobs }
func (PutTenantKeys) Type() CommandType    { return CmdPutTenantKeys }
func (SetClusterConfig) Type() CommandType { return CmdSetClusterConfig }

// tombstoneTTL is how long a forgotten CID's tombstone stays in the state.
const tombstoneTTL = 7 * 24 * time.Hour

func (s *state) blobStored(c *BlobStored) (Blob, error) {
	if c.CID == "" || c.Node == "" || c.Size < 0 {
		return Blob{}, fmt.Errorf("blob stored: %w: cid and node are required", ErrInvalid)
	}
	switch c.Kind {
	case BlobBundle, BlobDataset, BlobOperator:
	default:
		return Blob{}, fmt.Errorf("blob stored %s: %w: kind %q", c.CID, ErrInvalid, c.Kind)
	}
	b, ok := s.blobs[c.CID]
	if !ok {
		b = &Blob{CID: c.CID, Size: c.Size, Kind: c.Kind, CreatedAt: c.At}
		s.blobs[c.CID] = b
	} else if b.Size != c.Size {
		return Blob{}, fmt.Errorf("blob stored %s: %w: size %d, index has %d", c.CID, ErrConflict, c.Size, b.Size)
	}
	delete(s.tombstones, c.CID)
	if i, found := slices.BinarySearch(b.Holders, c.Node); !found {
		b.Holders = slices.Insert(b.Holders, i, c.Node)
	} else {
		return Blob{}, fmt.Errorf("blob stored %s on %s: %w: already recorded", c.CID, c.Node, ErrConflict)
	}
	return cloneBlob(b), nil
}

func (s *state) blobDropped(c *BlobDropped) (Blob, error) {
	b, ok := s.blobs[c.CID]
	if !ok {
		return Blob{}, fmt.Errorf("blob %s: %w", c.CID, ErrNotFound)
	}
	i, found := slices.BinarySearch(b.Holders, c.Node)
	if !found {
		return Blob{}, fmt.Errorf("blob %s on %s: %w", c.CID, c.Node, ErrNotFound)
	}
	b.Holders = slices.Delete(b.Holders, i, i+1)
	return cloneBlob(b), nil
}

func (s *state) blobMirrored(c *BlobMirrored) (Blob, error) {
	b, ok := s.blobs[c.CID]
	if !ok {
		return Blob{}, fmt.Errorf("blob %s: %w", c.CID, ErrNotFound)
	}
	if b.Mirrored == !c.Gone {
		return Blob{}, fmt.Errorf("blob %s: %w: mirrored is already %v", c.CID, ErrConflict, b.Mirrored)
	}
	b.Mirrored = !c.Gone
	return cloneBlob(b), nil
}

func (s *state) expireBundles(c *ExpireBundles) (int, error) {
	n := 0
	for _, id := range c.Jobs {
		j, ok := s.jobs[id]
		if !ok || j.RunBundle == nil || j.BundleExpired {
			continue
		}
		j.BundleExpired = true
		s.keep(j)
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("expire bundles: %w: nothing to expire", ErrConflict)
	}
	return n, nil
}

func (s *state) forgetBlobs(c *ForgetBlobs) ([]string, error) {
	refs := s.references()
	var gone []string
	for _, id := range c.CIDs {
		if refs[id] {
			continue
		}
		if _, ok := s.blobs[id]; ok {
			delete(s.blobs, id)
			s.tombstones[id] = c.At
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return nil, fmt.Errorf("forget blobs: %w: nothing unreferenced to forget", ErrConflict)
	}
	// Old tombstones go with any forget: every node has had a week to act.
	for id, at := range s.tombstones {
		if c.At.Sub(at) > tombstoneTTL {
			delete(s.tombstones, id)
		}
	}
	return gone, nil
}

func (s *state) putTenantKeys(c *PutTenantKeys) (Tenant, error) {
	t, ok := s.tenants[c.Tenant]
	if !ok {
		return Tenant{}, fmt.Errorf("tenant %s: %w", c.Tenant, ErrNotFound)
	}
	if c.PrevGen != t.KeysGen {
		return Tenant{}, fmt.Errorf("tenant %s keys: %w: changed since read (generation %d, now %d)", c.Tenant, ErrConflict, c.PrevGen, t.KeysGen)
	}
	seen := map[uint32]bool{}
	for _, k := range c.Keys {
		if k.Version == 0 || k.Master == "" || len(k.Sealed) == 0 {
			return Tenant{}, fmt.Errorf("tenant %s keys: %w: version, master and sealed key are required", c.Tenant, ErrInvalid)
		}
		if seen[k.Version] {
			return Tenant{}, fmt.Errorf("tenant %s keys: %w: version %d repeated", c.Tenant, ErrInvalid, k.Version)
		}
		seen[k.Version] = true
	}
	for _, k := range t.Keys {
		if !seen[k.Version] {
			return Tenant{}, fmt.Errorf("tenant %s keys: %w: version %d would be lost", c.Tenant, ErrConflict, k.Version)
		}
	}
	keys := slices.Clone(c.Keys)
	slices.SortFunc(keys, func(a, b SealedKey) int { return int(a.Version) - int(b.Version) })
	t.Keys = keys
	t.KeysGen++
	return cloneTenant(t), nil
}

func (s *state) setClusterConfig(c *SetClusterConfig) (ClusterConfig, error) {
	if c.Config.Replicas < 0 || c.Config.Replicas > 16 {
		return ClusterConfig{}, fmt.Errorf("cluster config: %w: replicas %d not in 1..16", ErrInvalid, c.Config.Replicas)
	}
	s.config = c.Config
	return s.config, nil
}

// references is the set of CIDs something refers to: datasets (their
// stored form), RunBundles still kept, operators.
func (s *state) references() map[string]bool {
	set := map[string]bool{}
	for _, d := range s.datasets {
		set[d.Stored()] = true
	}
	for _, j := range s.jobs {
		if j.RunBundle != nil && !j.BundleExpired {
			set[j.RunBundle.CID] = true
		}
	}
	for _, r := range s.operators {
		set[r.CID] = true
	}
	return set
}

// Unindexed lists, with their kinds, the CIDs something refers to that the
// blob index lacks (content stored before the index existed), sorted.
func (f *FSM) Unindexed() map[string]string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[string]string{}
	add := func(c, kind string) {
		if _, ok := f.s.blobs[c]; !ok && c != "" {
			out[c] = kind
		}
	}
	for _, d := range f.s.datasets {
		add(d.Stored(), BlobDataset)
	}
	for _, j := range f.s.jobs {
		if j.RunBundle != nil && !j.BundleExpired {
			add(j.RunBundle.CID, BlobBundle)
		}
	}
	for _, r := range f.s.operators {
		add(r.CID, BlobOperator)
	}
	return out
}

// readyNodes counts the nodes in state ready.
func (s *state) readyNodes() int {
	n := 0
	for _, nd := range s.nodes {
		if nd.State == NodeReady {
			n++
		}
	}
	return n
}

// liveHolders counts b's holders that are ready nodes.
func (s *state) liveHolders(b *Blob) int {
	n := 0
	for _, h := range b.Holders {
		if nd, ok := s.nodes[h]; ok && nd.State == NodeReady {
			n++
		}
	}
	return n
}

// wantCopies is how many node copies an object needs: the replication
// factor, or every ready node when there are fewer.
func (s *state) wantCopies() int {
	return max(1, min(s.config.EffectiveReplicas(), s.readyNodes()))
}

// durable checks the rule of a succeeded job and a registered dataset: its
// content is on the wanted number of live nodes, or on one live node and the
// shared object store.
func (s *state) durable(cid string) error {
	b, ok := s.blobs[cid]
	if !ok {
		return fmt.Errorf("%w: content %s is not stored on any node", ErrNotDurable, cid)
	}
	live, want := s.liveHolders(b), s.wantCopies()
	if live >= want || (live >= 1 && b.Mirrored) {
		return nil
	}
	return fmt.Errorf("%w: content %s is on %d of %d nodes and not in the object store", ErrNotDurable, cid, live, want)
}

func cloneBlob(b *Blob) Blob {
	c := *b
	c.Holders = slices.Clone(b.Holders)
	return c
}

func cloneTenant(t *Tenant) Tenant {
	c := *t
	c.Keys = slices.Clone(t.Keys)
	c.QuotaOverrides = maps.Clone(t.QuotaOverrides)
	for i := range c.Keys {
		c.Keys[i].Sealed = slices.Clone(c.Keys[i].Sealed)
	}
	return c
}

// Blob returns the index entry of cid.
func (f *FSM) Blob(cid string) (Blob, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, ok := f.s.blobs[cid]
	if !ok {
		return Blob{}, false
	}
	return cloneBlob(b), true
}

// Blobs returns every index entry, sorted by CID.
func (f *FSM) Blobs() []Blob {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Blob, 0, len(f.s.blobs))
	for _, k := range slices.Sorted(maps.Keys(f.s.blobs)) {
		out = append(out, cloneBlob(f.s.blobs[k]))
	}
	return out
}

// Tombstoned reports whether cid was forgotten (its copies are garbage).
func (f *FSM) Tombstoned(cid string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.s.tombstones[cid]
	return ok
}

// Durable reports (nil) whether cid meets the durability rule now.
func (f *FSM) Durable(cid string) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.durable(cid)
}

// WantCopies is the number of node copies every object should have now.
func (f *FSM) WantCopies() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.wantCopies()
}

// Config returns the cluster settings.
func (f *FSM) Config() ClusterConfig {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.config
}

// Garbage lists indexed CIDs that nothing refers to any more, created
// before cutoff, sorted.
func (f *FSM) Garbage(cutoff time.Time) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	refs := f.s.references()
	var out []string
	for id, b := range f.s.blobs {
		if !refs[id] && b.CreatedAt.Before(cutoff) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// ExpiredBundles lists succeeded jobs of free-tier tenants whose RunBundle
// is older than BundleRetention at now and not yet expired, sorted.
func (f *FSM) ExpiredBundles(now time.Time) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []string
	for id, j := range f.s.jobs {
		if j.RunBundle == nil || j.BundleExpired || j.FinishedAt == nil {
			continue
		}
		t, ok := f.s.tenants[j.Tenant]
		if ok && t.Tier != PriorityFree && t.Tier != "" {
			continue // paid tiers keep their bundles
		}
		if now.Sub(*j.FinishedAt) >= BundleRetention {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// StoredBytes is a tenant's stored content in bytes, each object counted
// once however many datasets or bundles share it and however many copies
// exist.
func (f *FSM) StoredBytes(tenant string) int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.storedBytes(tenant)
}

// storedBytes is StoredBytes under the caller's lock: datasets, kept
// RunBundles, and the operators the tenant's jobs compiled.
func (s *state) storedBytes(tenant string) int64 {
	total := int64(0)
	for _, n := range s.storedObjects(tenant) {
		total += n
	}
	return total
}

// storedObjects maps each object the tenant stores to its size.
func (s *state) storedObjects(tenant string) map[string]int64 {
	sizes := map[string]int64{}
	for _, d := range s.datasets {
		if d.Tenant == tenant {
			sizes[d.Stored()] = d.StoredBytes()
		}
	}
	for _, j := range s.kept[tenant] {
		if j.RunBundle != nil && !j.BundleExpired {
			sizes[j.RunBundle.CID] = j.RunBundle.Size
		}
	}
	for k, t := range s.operatorTenant {
		if ref, ok := s.operators[k]; ok && t == tenant {
			sizes[ref.CID] = ref.Size
		}
	}
	return sizes
}

// TenantNames lists every tenant, sorted.
func (f *FSM) TenantNames() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Sorted(maps.Keys(f.s.tenants))
}
