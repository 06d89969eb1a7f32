package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

func blobStored(s *Storage, ref cas.Ref, kind string) *scheduler.BlobStored {
	return &scheduler.BlobStored{At: s.cfg.Clock.Now(), CID: ref.CID.String(), Size: ref.Size, Kind: kind, Node: s.cfg.NodeID}
}

// replicateRequest asks a node to keep a copy of CID, fetching it from
// From first.
type replicateRequest struct {
	CID  string   `json:"cid"`
	Kind string   `json:"kind"`
	From []string `json:"from,omitempty"`
}

// replicateTimeout bounds one replication (a transfer of up to a few GiB).
const replicateTimeout = 15 * time.Minute

// ServeReplicate answers ReplicateProtocol: fetch the object (verified),
// keep it, record the copy, and answer once the copy is committed.
func (s *Storage) ServeReplicate(ctx context.Context, _ string, req []byte) ([]byte, error) {
	var r replicateRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, fmt.Errorf("storage: replicate: bad request: %w", err)
	}
	c, err := cas.ParseCID(r.CID)
	if err != nil {
		return nil, err
	}
	if err := s.verifyLocal(ctx, c); err != nil {
		if errors.Is(err, cas.ErrCorrupt) {
			if err := s.dropCorrupt(ctx, c, err); err != nil {
				return nil, err
			}
		}
		if err := s.fillFrom(ctx, c, r.From); err != nil {
			return nil, err
		}
	}
	ref, err := s.cfg.Local.Stat(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := s.recordHeld(ctx, ref, r.Kind); err != nil {
		return nil, err
	}
	s.up.enqueue(c)
	return []byte("ok"), nil
}

// fillFrom is fill with preferred sources.
func (s *Storage) fillFrom(ctx context.Context, c cid.Cid, from []string) error {
	var errs []error
	for _, src := range s.sources(c, from) {
		rc, err := src.open(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src.name, err))
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		_, err = s.cfg.Local.PutExpected(ctx, rc, c)
		rc.Close()
		if err != nil {
			if errors.Is(err, cas.ErrCorrupt) {
				s.log.Warn("storage: refused wrong bytes from a source", "cid", c.String(), "source", src.name, "err", err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", src.name, err))
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		s.markVerified(c)
		s.log.Info("storage: fetched a copy", "cid", c.String(), "source", src.name)
		return nil
	}
	if len(errs) == 0 {
		return fmt.Errorf("storage: %s: %w", c, cas.ErrNotFound)
	}
	return fmt.Errorf("storage: fetch %s: %w", c, errors.Join(append(errs, cas.ErrNotFound)...))
}

// targets picks up to n nodes to receive a copy of b: ready, alive, not
// holding it, in regions not yet holding it first, then in an order of
// the object's own (rendezvous hashing).
func (s *Storage) targets(b scheduler.Blob, n int) []string {
	if n <= 0 {
		return nil
	}
	live := s.peers.Live()
	nodes := s.state.Nodes()
	region := map[string]string{}
	for _, nd := range nodes {
		region[nd.ID] = nd.Region
	}
	held := map[string]bool{}
	for _, h := range b.Holders {
		if slices.Contains(live, h) || h == s.cfg.NodeID {
			held[region[h]] = true
		}
	}
	type cand struct {
		id       string
		newPlace bool
	}
	var cs []cand
	for _, nd := range nodes {
		if nd.State != scheduler.NodeReady || holds(b, nd.ID) || !slices.Contains(live, nd.ID) {
			continue
		}
		cs = append(cs, cand{nd.ID, !held[nd.Region]})
	}
	// Rendezvous hashing: each object ranks the nodes its own way, so
	// copies spread over the mesh instead of piling onto one node, and a
	// retry picks the same targets.
	score := func(id string) [32]byte { return sha256.Sum256([]byte(b.CID + "\x00" + id)) }
	slices.SortFunc(cs, func(x, y cand) int {
		if x.newPlace != y.newPlace {
			if x.newPlace {
				return -1
			}
			return 1
		}
		sx, sy := score(x.id), score(y.id)
		return bytes.Compare(sx[:], sy[:])
	})
	var out []string
	for _, c := range cs {
		if len(out) == n {
			break
		}
		// One copy per region until every region has one.
		if c.newPlace && held[region[c.id]] {
			continue
		}
		held[region[c.id]] = true
		out = append(out, c.id)
	}
	for _, c := range cs { // regions exhausted: any node
		if len(out) == n {
			break
		}
		if !slices.Contains(out, c.id) {
			out = append(out, c.id)
		}
	}
	return out
}

// missing is how many more live node copies b needs.
func (s *Storage) missing(b scheduler.Blob) int {
	return s.missingAmong(b, s.peers.Live(), s.state.WantCopies())
}

// missingAmong is missing given the live peers and the wanted copies.
func (s *Storage) missingAmong(b scheduler.Blob, live []string, want int) int {
	n := 0
	for _, h := range b.Holders {
		if h == s.cfg.NodeID || slices.Contains(live, h) {
			n++
		}
	}
	return want - n
}

// replicateOnce asks enough target nodes, in parallel, to copy b; it
// returns when they answered.
func (s *Storage) replicateOnce(ctx context.Context, b scheduler.Blob) {
	ts := s.targets(b, s.missing(b))
	if len(ts) == 0 {
		return
	}
	var from []string
	live := s.peers.Live()
	for _, h := range b.Holders {
		if h == s.cfg.NodeID || slices.Contains(live, h) {
			from = append(from, h)
		}
	}
	req, _ := json.Marshal(replicateRequest{CID: b.CID, Kind: b.Kind, From: from})
	var wg sync.WaitGroup
	for _, t := range ts {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, replicateTimeout)
			defer cancel()
			start := time.Now()
			if _, err := s.peers.Call(cctx, t, ReplicateProtocol, req); err != nil {
				s.log.Warn("storage: replication failed", "cid", b.CID, "to", t, "err", err)
				return
			}
			s.log.Info("storage: replicated", "cid", b.CID, "to", t, "size", b.Size, "took", time.Since(start).String())
		})
	}
	wg.Wait()
}

// repairState backs off a CID whose repair keeps failing.
type repairState struct {
	next  time.Time
	wait  time.Duration
	doing bool
}

// repairLoop restores the replication factor of every object in the index:
// on each change of the state and every RepairInterval it starts a repair
// for each object short of copies (at most a few at once).
func (s *Storage) repairLoop(ctx context.Context) {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		changed := s.state.Watch()
		short := map[string]bool{}
		live, want := s.peers.Live(), s.state.WantCopies()
		for _, b := range s.state.Blobs() {
			if s.missingAmong(b, live, want) <= 0 || s.state.Tombstoned(b.CID) {
				continue
			}
			short[b.CID] = true
			// A new object is being copied by the node that stored it:
			// repair only what stays short for RepairDelay.
			if !s.shortFor(b.CID, s.cfg.RepairDelay) || !s.startRepair(b.CID) {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				s.endRepair(b.CID, false)
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				ok := s.repair(ctx, b)
				s.endRepair(b.CID, ok)
			})
		}
		s.forgetShort(short)
		t := time.NewTimer(s.cfg.RepairInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
			// A pass reads the whole index: at most a few a second, however
			// often the state changes (lease renewals are frequent).
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		case <-t.C:
		}
		t.Stop()
	}
}

// shortFor notes that c is short of copies and says whether it has been
// for at least d (as this leader saw it).
func (s *Storage) shortFor(c string, d time.Duration) bool {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	first, ok := s.short[c]
	if !ok {
		s.short[c] = now
		return d <= 0
	}
	return now.Sub(first) >= d
}

// forgetShort drops the notes of objects no longer short.
func (s *Storage) forgetShort(still map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.short {
		if !still[c] {
			delete(s.short, c)
		}
	}
}

func (s *Storage) startRepair(c string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repairs[c]
	if r == nil {
		r = &repairState{}
		s.repairs[c] = r
	}
	if r.doing || s.cfg.Clock.Now().Before(r.next) {
		return false
	}
	r.doing = true
	return true
}

func (s *Storage) endRepair(c string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repairs[c]
	if r == nil {
		return
	}
	r.doing = false
	if ok {
		delete(s.repairs, c)
		return
	}
	r.wait = min(max(2*r.wait, time.Second), time.Minute)
	r.next = s.cfg.Clock.Now().Add(r.wait)
}

// repair copies b to the nodes it lacks; the leader's own disk is a target
// like any other node, and when no live node holds b the copies come from
// the mirror.
func (s *Storage) repair(ctx context.Context, b scheduler.Blob) bool {
	s.log.Info("storage: repairing an under-replicated object", "cid", b.CID, "holders", b.Holders, "want", s.state.WantCopies())
	need := s.missing(b)
	// The leader itself may be the best target: ask it like the others by
	// taking the copy directly.
	if need > 0 && !holds(b, s.cfg.NodeID) && s.selfIsTarget(b, need) {
		c, err := cas.ParseCID(b.CID)
		if err == nil {
			if _, err := s.ServeReplicate(ctx, s.cfg.NodeID, mustJSON(replicateRequest{CID: b.CID, Kind: b.Kind})); err != nil {
				s.log.Warn("storage: repair onto the leader failed", "cid", c.String(), "err", err)
			}
		}
		if nb, ok := s.state.Blob(b.CID); ok {
			b = nb
		}
	}
	s.replicateOnce(ctx, b)
	nb, ok := s.state.Blob(b.CID)
	return !ok || s.missing(nb) <= 0
}

// selfIsTarget says whether this node is among the targets targets() would
// pick if it were a peer.
func (s *Storage) selfIsTarget(b scheduler.Blob, need int) bool {
	for _, nd := range s.state.Nodes() {
		if nd.ID == s.cfg.NodeID {
			return nd.State == scheduler.NodeReady && len(s.targets(b, need)) < need
		}
	}
	return false
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs always marshal
	}
	return b
}
