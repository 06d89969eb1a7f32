package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// RaftConfig configures the Raft member that hosts the FSM.
type RaftConfig struct {
	NodeID string // required
	Dir    string // required: raft.db and snapshots live here
	// Transport carries Raft RPCs (required).
	Transport raft.Transport
	// Bootstrap makes this node the first voter of a new cluster when it has
	// no Raft state yet. It is ignored once state exists.
	Bootstrap bool
	// Timings. Defaults: 1 s heartbeat and election, 500 ms leader lease
	// (hashicorp/raft's own; at most half the heartbeat timeout), 20 ms
	// commit. Tighter timings make a loaded group change leaders for
	// nothing (docs/consensus.md, "Raft timings").
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is how many entries trigger a snapshot (default 8192).
	SnapshotThreshold uint64
	// Logger receives Raft's own log lines (RaftLogger; default: discard).
	Logger *slog.Logger
	// LogLevel is Raft's level: "debug", "info", "warn" (default) or "error".
	LogLevel string
	// ApplyTimeout bounds one write when the caller's context has no deadline
	// (default 10 s).
	ApplyTimeout time.Duration
	// ObserveCommit, when set, receives how long each write this member
	// led took from Apply until it was committed and applied here (writes
	// that failed are not observed). It is called on the writer's
	// goroutine and must not block.
	ObserveCommit func(time.Duration)
}

func (c *RaftConfig) withDefaults() error {
	if c.NodeID == "" || c.Dir == "" || c.Transport == nil {
		return fmt.Errorf("scheduler: raft config: NodeID, Dir and Transport are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, time.Second)
	def(&c.ElectionTimeout, time.Second)
	// hashicorp/raft refuses a lease longer than the heartbeat timeout.
	def(&c.LeaderLeaseTimeout, min(500*time.Millisecond, c.HeartbeatTimeout/2))
	def(&c.CommitTimeout, 20*time.Millisecond)
	def(&c.ApplyTimeout, 10*time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Raft is this node's Raft member with the FSM attached.
type Raft struct {
	cfg    RaftConfig
	raft   *raft.Raft
	fsm    *FSM
	store  *raftboltdb.BoltStore
	snaps  raft.SnapshotStore
	notify chan bool

	// Leader changes this member saw: a leader (ID and term) other than
	// the last one it learned of.
	leaderMu      sync.Mutex
	lastLeader    raft.ServerID
	lastTerm      uint64
	leaderChanges atomic.Uint64
	observer      *raft.Observer
}

// OpenRaft opens (or creates) the Raft state in cfg.Dir and starts the member.
func OpenRaft(cfg RaftConfig, fsm *FSM) (*Raft, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("scheduler: raft dir: %w", err)
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(cfg.Dir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("scheduler: open raft log: %w", err)
	}
	logger := RaftLogger(cfg.Logger, "raft", cfg.LogLevel)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, logger.Named("snapshot"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("scheduler: open snapshots: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.Logger = logger
	notify := make(chan bool, 16)
	rc.NotifyCh = notify

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("scheduler: raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: cfg.Transport.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(rc, store, store, snaps, cfg.Transport, conf); err != nil {
				store.Close()
				return nil, fmt.Errorf("scheduler: bootstrap: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, fsm, store, store, snaps, cfg.Transport)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("scheduler: start raft: %w", err)
	}
	m := &Raft{cfg: cfg, raft: r, fsm: fsm, store: store, snaps: snaps, notify: notify}
	// The filter counts on Raft's own goroutine and lets nothing through,
	// so the observer needs no channel reader.
	m.observer = raft.NewObserver(nil, false, m.noteLeader)
	r.RegisterObserver(m.observer)
	// A leader learned before the observer was in place counts too.
	if _, id := r.LeaderWithID(); id != "" {
		m.countLeader(id, r.CurrentTerm())
	}
	return m, nil
}

// noteLeader counts a leader change each time this member learns of a
// leader other than the last one it knew (another node, or the same one
// in a later term); an election without a winner is not a change.
func (r *Raft) noteLeader(o *raft.Observation) bool {
	if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
		r.countLeader(lo.LeaderID, o.Raft.CurrentTerm())
	}
	return false
}

func (r *Raft) countLeader(id raft.ServerID, term uint64) {
	r.leaderMu.Lock()
	defer r.leaderMu.Unlock()
	if id != r.lastLeader || term != r.lastTerm {
		r.lastLeader, r.lastTerm = id, term
		r.leaderChanges.Add(1)
	}
}

// Progress is this member's view of the log and of leadership, for
// metrics.
type Progress struct {
	Term          uint64 // the current term
	LastIndex     uint64 // the last index in this member's log
	CommitIndex   uint64 // the last index it knows to be committed
	AppliedIndex  uint64 // the last index handed to the FSM
	LeaderChanges uint64 // leaders it learned of since it started
	Voter         bool   // a voter in the latest configuration it knows
}

// ApplyLag is how many committed entries wait to be applied here.
func (p Progress) ApplyLag() uint64 {
	if p.CommitIndex < p.AppliedIndex {
		return 0
	}
	return p.CommitIndex - p.AppliedIndex
}

// Progress reads this member's counters; it does not wait on Raft.
func (r *Raft) Progress() Progress {
	p := Progress{
		Term:          r.raft.CurrentTerm(),
		LastIndex:     r.raft.LastIndex(),
		CommitIndex:   r.raft.CommitIndex(),
		AppliedIndex:  r.raft.AppliedIndex(),
		LeaderChanges: r.leaderChanges.Load(),
	}
	if f := r.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.ID == raft.ServerID(r.cfg.NodeID) {
				p.Voter = s.Suffrage == raft.Voter
			}
		}
	}
	return p
}

// FSM returns the state machine.
func (r *Raft) FSM() *FSM { return r.fsm }

// IsLeader reports whether this member leads now.
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// Leader returns the current leader's ID, or "" when none is known.
func (r *Raft) Leader() string {
	_, id := r.raft.LeaderWithID()
	return string(id)
}

// LeadershipChanges delivers true when this member becomes leader and false
// when it stops being leader.
func (r *Raft) LeadershipChanges() <-chan bool { return r.notify }

// Barrier waits until every entry committed before it is applied locally.
func (r *Raft) Barrier(ctx context.Context) error {
	return r.raft.Barrier(r.timeout(ctx)).Error()
}

func (r *Raft) timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return r.cfg.ApplyTimeout
}

// Apply commits one command through Raft on this member, which must be the
// leader, and returns the FSM's answer. Errors from the FSM (ErrNotFound,
// ErrConflict, ...) come back wrapped as they are.
func (r *Raft) Apply(ctx context.Context, c Command) (any, error) {
	b, err := Encode(c)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	f := r.raft.Apply(b, r.timeout(ctx))
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, fmt.Errorf("scheduler: %s: %w", c.Type(), ErrNotLeader)
		}
		return nil, fmt.Errorf("scheduler: %s: %w", c.Type(), err)
	}
	if r.cfg.ObserveCommit != nil {
		r.cfg.ObserveCommit(time.Since(start))
	}
	res, ok := f.Response().(ApplyResult)
	if !ok {
		return nil, fmt.Errorf("scheduler: %s: unexpected response %T", c.Type(), f.Response())
	}
	return res.Value, res.Err
}

// Stats exposes Raft's counters (term, indexes, state) for metrics and /health.
func (r *Raft) Stats() map[string]string { return r.raft.Stats() }

// Shutdown stops the member and closes its log. A sole voter keeps its
// state; in a larger cluster the node package first transfers leadership.
func (r *Raft) Shutdown() error {
	r.raft.DeregisterObserver(r.observer)
	err := r.raft.Shutdown().Error()
	if cerr := r.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// LeaderAddr returns the current leader's transport address ("" when none).
func (r *Raft) LeaderAddr() string {
	addr, _ := r.raft.LeaderWithID()
	return string(addr)
}

// Server is one member of the Raft configuration.
type Server struct {
	ID      string
	Address string
	Voter   bool
}

// Servers returns the latest Raft configuration.
func (r *Raft) Servers() ([]Server, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("scheduler: raft configuration: %w", err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// HasState reports whether this member was ever part of a cluster.
func (r *Raft) HasState() (bool, error) {
	return raft.HasExistingState(r.store, r.store, r.snaps)
}

// Bootstrap makes a new cluster of the given voters. It fails on a member
// that already has state.
func (r *Raft) Bootstrap(voters []Server) error {
	conf := raft.Configuration{}
	for _, s := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address)})
	}
	if err := r.raft.BootstrapCluster(conf).Error(); err != nil {
		return fmt.Errorf("scheduler: bootstrap: %w", err)
	}
	return nil
}

// AddVoter adds or promotes a voter (leader only).
func (r *Raft) AddVoter(ctx context.Context, id, addr string) error {
	return r.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, r.timeout(ctx)).Error()
}

// AddNonvoter adds a member that replicates the log without voting.
func (r *Raft) AddNonvoter(ctx context.Context, id, addr string) error {
	return r.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, r.timeout(ctx)).Error()
}

// RemoveServer removes a member from the configuration (leader only).
func (r *Raft) RemoveServer(ctx context.Context, id string) error {
	return r.raft.RemoveServer(raft.ServerID(id), 0, r.timeout(ctx)).Error()
}

// TransferLeadership hands leadership to another voter and waits for it.
func (r *Raft) TransferLeadership() error {
	return r.raft.LeadershipTransfer().Error()
}

// DemoteVoter keeps a member replicating without a vote (leader only).
func (r *Raft) DemoteVoter(ctx context.Context, id string) error {
	return r.raft.DemoteVoter(raft.ServerID(id), 0, r.timeout(ctx)).Error()
}
