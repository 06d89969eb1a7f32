// Package storage keeps a node's content durable: every object is indexed in
// the replicated state (scheduler.Blob), copied to enough nodes, distinct
// regions first, mirrored to the object store, re-hashed against its CID
// before it is kept or served, repaired when a copy is lost or corrupt, and
// collected once nothing refers to it. Datasets and RunBundles are sealed
// (AES-256-GCM) with their tenant's data key before they are stored.
//
// The leader runs the cluster-wide loops (repair, retention, forgetting);
// every node serves its copies, replicates on request, scrubs what it reads,
// uploads to the mirror and deletes what was forgotten.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/scheduler"
)

// Protocols spoken between nodes.
const (
	// BlobProtocol streams a stored object (request: its CID) from the
	// answering node's own store.
	BlobProtocol = "/pwmesh/blob/1.0.0"
	// ReplicateProtocol asks a node to fetch an object and keep a copy
	// (request: a replicateRequest); it answers once the copy is recorded.
	ReplicateProtocol = "/pwmesh/replicate/1.0.0"
)

// State is what storage reads of the replicated state.
type State interface {
	Blob(cid string) (scheduler.Blob, bool)
	Blobs() []scheduler.Blob
	Durable(cid string) error
	WantCopies() int
	Nodes() []scheduler.Node
	Tombstoned(cid string) bool
	Tenant(name string) (scheduler.Tenant, bool)
	TenantNames() []string
	Datasets(tenant string) []scheduler.Dataset
	ExpiredBundles(now time.Time) []string
	Garbage(cutoff time.Time) []string
	References() []string
	Unindexed() map[string]string
	Watch() <-chan struct{}
}

// Writer commits commands (forwarded to the leader).
type Writer interface {
	Apply(ctx context.Context, c scheduler.Command) (any, error)
}

// Peers reaches the other nodes by node ID.
type Peers interface {
	// Live lists the live members other than this node.
	Live() []string
	// OpenStream bounds the wait for the peer's first byte itself; the
	// transfer runs while ctx lasts.
	OpenStream(ctx context.Context, node, proto string, req []byte) (io.ReadCloser, error)
	Call(ctx context.Context, node, proto string, req []byte) ([]byte, error)
}

// Config configures a Storage.
type Config struct {
	NodeID string    // required
	Local  cas.Store // required: this node's disk
	// Mirror is the object store (nil: none). SharedMirror says whether
	// every node reaches the same one, so that its copies count toward
	// durability and can restore content no node holds any more.
	Mirror       cas.Store
	SharedMirror bool
	// Keys wraps the tenants' data keys (required).
	Keys   *seal.Keyring
	Clock  scheduler.Clock
	Logger *slog.Logger
	// RepairInterval is how often the leader looks for under-replicated
	// content without a change notification (default 5 s).
	RepairInterval time.Duration
	// RepairDelay is how long an object must stay short of copies before
	// the leader repairs it, so that it does not race the node still
	// copying a new object itself (default 10 s).
	RepairDelay time.Duration
	// Grace is how long unreferenced content is kept before it is
	// forgotten, so that an object stored just before its reference is
	// committed is not collected (default 1 h).
	Grace time.Duration
	// VerifyAfter is how long a local object that passed a re-hash is
	// trusted without another (default 0: every read re-hashes, so a copy
	// damaged on disk is never served; a node serving large objects often
	// may trade that for speed).
	VerifyAfter time.Duration
}

// Storage is one node's part of the replicated store.
type Storage struct {
	cfg   Config
	state State
	w     Writer
	peers Peers
	log   *slog.Logger
	store *verified
	up    uploader

	mu       sync.Mutex
	verified map[string]time.Time // cid -> when a full re-hash last passed
	repairs  map[string]*repairState
	short    map[string]time.Time // cid -> when the leader first saw it short of copies
}

// New checks cfg and returns a Storage; Run starts its loops.
func New(cfg Config, state State, w Writer, peers Peers) (*Storage, error) {
	switch {
	case cfg.NodeID == "" || cfg.Local == nil || cfg.Keys == nil:
		return nil, errors.New("storage: NodeID, Local and Keys are required")
	case state == nil || w == nil || peers == nil:
		return nil, errors.New("storage: state, writer and peers are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = scheduler.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RepairInterval <= 0 {
		cfg.RepairInterval = 5 * time.Second
	}
	if cfg.RepairDelay <= 0 {
		cfg.RepairDelay = 10 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = time.Hour
	}
	s := &Storage{cfg: cfg, state: state, w: w, peers: peers, log: cfg.Logger,
		verified: map[string]time.Time{}, repairs: map[string]*repairState{}, short: map[string]time.Time{}}
	s.store = &verified{Store: cfg.Local, s: s}
	s.up = newUploader(s)
	return s, nil
}

// Store is the node's content store for its API and its worker: reads
// re-hash local copies (repairing a corrupt one from another copy) and
// fetch what this node lacks from the holders, other peers or the mirror;
// writes go to the local disk (Keep makes them durable).
func (s *Storage) Store() cas.Store { return s.store }

// Local is the node's own disk store.
func (s *Storage) Local() cas.Store { return s.cfg.Local }

// Run serves until ctx ends: mirror uploads, and deleting forgotten
// content.
func (s *Storage) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.up.run(ctx) })
	wg.Go(func() { s.collectLoop(ctx) })
	wg.Wait()
}

// adopt records the local copies of referenced content that the index
// does not list for this node: content stored before this version kept an
// index, or a copy whose record was dropped while the file stayed. They
// are then counted, replicated and repaired like the rest.
func (s *Storage) adopt(ctx context.Context) {
	unindexed := s.state.Unindexed()
	for _, id := range s.state.References() {
		kind, ok := unindexed[id]
		if !ok {
			b, indexed := s.state.Blob(id)
			if !indexed || holds(b, s.cfg.NodeID) || s.missing(b) <= 0 {
				continue // listed here, or enough copies elsewhere
			}
			kind = b.Kind
		}
		c, err := cas.ParseCID(id)
		if err != nil {
			continue
		}
		ref, err := s.cfg.Local.Stat(ctx, c)
		if err != nil {
			continue // not here
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.recordHeld(rctx, ref, kind)
		cancel()
		if err != nil {
			s.log.Warn("storage: could not index a local copy", "cid", id, "err", err)
			continue
		}
		s.log.Info("storage: indexed a local copy", "cid", id, "kind", kind)
	}
}

// Lead runs the leader's loops until ctx ends (leadership lost): repair of
// under-replicated content, retention, and forgetting garbage.
func (s *Storage) Lead(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.repairLoop(ctx) })
	wg.Go(func() { s.retentionLoop(ctx) })
	wg.Wait()
}

// Keep records this node's copy of ref and has it copied until it meets the
// durability rule (scheduler.FSM.Durable), or ctx ends.
func (s *Storage) Keep(ctx context.Context, ref cas.Ref, kind string) error {
	c := ref.CID.String()
	if err := s.recordHeld(ctx, ref, kind); err != nil {
		return err
	}
	// A shared mirror may be the second copy the rule wants: upload now. A
	// node-local one is a backup: upload once the copies are made, so that
	// it does not compete with them.
	if s.cfg.SharedMirror {
		s.up.enqueue(ref.CID)
	} else {
		defer s.up.enqueue(ref.CID)
	}
	wait := 100 * time.Millisecond
	for {
		if s.state.Durable(c) == nil {
			return nil
		}
		if b, ok := s.state.Blob(c); ok {
			s.replicateOnce(ctx, b)
		}
		// Until the next attempt, every change of the state may be the one
		// that makes it durable (a copy recorded, a dead node declared).
		timer := time.NewTimer(wait)
		for waiting := true; waiting; {
			changed := s.state.Watch()
			err := s.state.Durable(c)
			if err == nil {
				timer.Stop()
				return nil
			}
			select {
			case <-ctx.Done():
				timer.Stop()
				return fmt.Errorf("storage: keep %s: %w (%v)", c, ctx.Err(), err)
			case <-changed:
			case <-timer.C:
				waiting = false
			}
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// applyPatiently commits c, waiting through leader elections (c must be
// safe to apply twice) until ctx ends.
func (s *Storage) applyPatiently(ctx context.Context, c scheduler.Command) (any, error) {
	wait := 100 * time.Millisecond
	for {
		v, err := s.w.Apply(ctx, c)
		if err == nil || !(errors.Is(err, scheduler.ErrNoLeader) || errors.Is(err, scheduler.ErrNotLeader)) {
			return v, err
		}
		s.log.Debug("storage: waiting for a leader", "cmd", c.Type().String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// recordHeld commits that this node holds ref (already recorded is fine).
func (s *Storage) recordHeld(ctx context.Context, ref cas.Ref, kind string) error {
	_, err := s.applyPatiently(ctx, &scheduler.BlobStored{At: s.cfg.Clock.Now(), CID: ref.CID.String(), Size: ref.Size, Kind: kind, Node: s.cfg.NodeID})
	if err != nil && !errors.Is(err, scheduler.ErrConflict) {
		return fmt.Errorf("storage: record %s: %w", ref.CID, err)
	}
	// Wait until this node's replica shows it, so that Durable reads it.
	for {
		changed := s.state.Watch()
		if b, ok := s.state.Blob(ref.CID.String()); ok && holds(b, s.cfg.NodeID) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("storage: record %s: %w", ref.CID, ctx.Err())
		case <-changed:
		}
	}
}

func holds(b scheduler.Blob, node string) bool {
	for _, h := range b.Holders {
		if h == node {
			return true
		}
	}
	return false
}

// dropHeld commits that this node no longer holds c.
func (s *Storage) dropHeld(ctx context.Context, c cid.Cid, reason string) {
	if b, ok := s.state.Blob(c.String()); !ok || !holds(b, s.cfg.NodeID) {
		return
	}
	if _, err := s.w.Apply(ctx, &scheduler.BlobDropped{At: s.cfg.Clock.Now(), CID: c.String(), Node: s.cfg.NodeID, Reason: reason}); err != nil &&
		!errors.Is(err, scheduler.ErrNotFound) {
		s.log.Warn("storage: could not record a dropped copy", "cid", c.String(), "err", err)
	}
}
