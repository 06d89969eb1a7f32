package node

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/pwmesh/pwmesh/mesh"
	"github.com/pwmesh/pwmesh/scheduler"
)

func TestAdmits(t *testing.T) {
	t.Parallel()
	conf := []scheduler.Server{
		{ID: "a", Address: "peer-a", Voter: true},
		{ID: "b", Address: "peer-b", Voter: true},
		{ID: "w", Address: "peer-w"},
	}
	for _, tc := range []struct {
		name    string
		servers []scheduler.Server
		leader  string
		peer    string
		want    bool
	}{
		{"empty configuration: anyone", nil, "", "peer-x", true},
		{"a voter", conf, "", "peer-b", true},
		{"a non-voter", conf, "", "peer-w", false},
		{"a stranger", conf, "", "peer-x", false},
		{"the leader it follows, not in the configuration", conf, "peer-x", "peer-x", true},
		{"a non-voter while another leads", conf, "peer-a", "peer-w", false},
		{"no address matches an empty leader", conf, "", "", false},
	} {
		if got := admits(tc.servers, tc.leader, tc.peer); got != tc.want {
			t.Errorf("%s: admits = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// appliedFSM records applied entries.
type appliedFSM struct {
	mu      sync.Mutex
	entries []string
}

func (f *appliedFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return nil
}

func (f *appliedFSM) has(s string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.entries, s)
}

func (f *appliedFSM) Snapshot() (raft.FSMSnapshot, error) { return emptySnapshot{}, nil }
func (f *appliedFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type emptySnapshot struct{}

func (emptySnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (emptySnapshot) Release()                          {}

// rawView is a raftView of a hashicorp/raft member, as scheduler.Raft is.
type rawView struct{ r *raft.Raft }

func (v rawView) Servers() ([]scheduler.Server, error) {
	f := v.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []scheduler.Server
	for _, s := range f.Configuration().Servers {
		out = append(out, scheduler.Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

func (v rawView) LeaderAddr() string {
	addr, _ := v.r.LeaderWithID()
	return string(addr)
}

// gated is one member of TestStaleNodeCatchesUpWithALeaderItDoesNotKnow: a
// mesh, its gate, and a Raft over the gated transport on stores that
// outlive a restart.
type gated struct {
	id    string
	mesh  *mesh.Mesh
	gate  *raftGate
	store *raft.InmemStore
	snaps *raft.InmemSnapshotStore
	fsm   *appliedFSM
	raft  *raft.Raft
}

func (g *gated) addr() raft.ServerAddress { return raft.ServerAddress(g.mesh.PeerID()) }

// start (re)starts g's Raft on its stores, with a new FSM.
func (g *gated) start(t *testing.T) {
	t.Helper()
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(g.id)
	// Slow enough that a loaded machine running -race keeps its leader.
	c.HeartbeatTimeout, c.ElectionTimeout = time.Second, time.Second
	c.LeaderLeaseTimeout, c.CommitTimeout = 500*time.Millisecond, 20*time.Millisecond
	c.Logger = hclog.NewNullLogger()
	g.fsm = &appliedFSM{}
	trans := g.mesh.RaftTransport(2*time.Second, hclog.NewNullLogger(), mesh.RaftAllow(g.gate.allow))
	r, err := raft.NewRaft(c, g.fsm, g.store, g.store, g.snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	g.raft = r
	g.gate.open(rawView{r})
}

func (g *gated) stop(t *testing.T) {
	t.Helper()
	if err := g.raft.Shutdown().Error(); err != nil {
		t.Errorf("%s: raft shutdown: %v", g.id, err)
	}
}

// TestStaleNodeCatchesUpWithALeaderItDoesNotKnow: w, a non-voter, is away
// while d becomes a voter and then the leader. Back, w knows only a and
// b as voters: it refuses d's streams, asks a and b (rule 4 of raftGate),
// admits d on their word, and catches up.
func TestStaleNodeCatchesUpWithALeaderItDoesNotKnow(t *testing.T) {
	t.Parallel()
	key := mesh.GenerateClusterKey()
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var members []*gated
	for _, id := range []string{"a", "b", "d", "w"} {
		m, err := mesh.New(mesh.Config{DataDir: t.TempDir(), NodeID: id, Bind: "127.0.0.1", ClusterKey: key, Cluster: t.Name(),
			NodeMeta: func() mesh.NodeMeta { return mesh.NodeMeta{} }, Timings: mesh.Fast()})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = m.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
			_ = m.Close()
		})
		log := slog.New(slog.NewJSONHandler(logs, nil)).With("node_id", id)
		g := &gated{id: id, mesh: m, gate: newRaftGate(m.PeerID(), m, log), store: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore()}
		m.Handle(RaftPeersProtocol, g.gate.serve)
		members = append(members, g)
	}
	for _, g := range members {
		for _, o := range members {
			if err := g.mesh.AddPeer(o.mesh.PeerID(), o.mesh.P2PAddrs()); err != nil {
				t.Fatal(err)
			}
		}
	}
	a, b, d, w := members[0], members[1], members[2], members[3]
	for _, g := range members {
		g.start(t)
		if g != w {
			go g.gate.run(ctx)
		}
	}
	defer func() {
		for _, g := range members {
			g.stop(t)
		}
	}()
	conf := raft.Configuration{Servers: []raft.Server{{ID: "a", Address: a.addr()}, {ID: "b", Address: b.addr()}}}
	for _, g := range []*gated{a, b} {
		if err := g.raft.BootstrapCluster(conf).Error(); err != nil {
			t.Fatal(err)
		}
	}
	leader := func() *gated {
		for _, g := range members {
			if g.raft.State() == raft.Leader {
				return g
			}
		}
		return nil
	}
	// onLeader runs op on the leader until it succeeds (a leadership
	// change on a loaded machine fails it).
	onLeader := func(what string, op func(r *raft.Raft) error) {
		t.Helper()
		waitUntil(t, 60*time.Second, what, func() bool {
			l := leader()
			return l != nil && op(l.raft) == nil
		})
	}
	onLeader("w added as a non-voter", func(r *raft.Raft) error { return r.AddNonvoter("w", w.addr(), 0, 5*time.Second).Error() })
	onLeader("e1 committed", func(r *raft.Raft) error { return r.Apply([]byte("e1"), 5*time.Second).Error() })
	waitUntil(t, 30*time.Second, "w has e1", func() bool { return w.fsm.has("e1") })

	// w goes away; d becomes a voter and the leader.
	w.stop(t)
	onLeader("d added as a voter", func(r *raft.Raft) error { return r.AddVoter("d", d.addr(), 0, 5*time.Second).Error() })
	waitUntil(t, 60*time.Second, "d leads and commits e2", func() bool {
		if d.raft.State() != raft.Leader {
			if cur := leader(); cur != nil && cur != d {
				_ = cur.raft.LeadershipTransferToServer("d", d.addr()).Error()
			}
			return false
		}
		return d.raft.Apply([]byte("e2"), 5*time.Second).Error() == nil
	})

	// Back, w refuses d (not a voter it knows, not its leader) ...
	select {
	case <-w.gate.kick: // a refusal from before is not the one awaited
	default:
	}
	w.start(t)
	waitUntil(t, 30*time.Second, "w refuses d and asks for a vouching round", func() bool { return len(w.gate.kick) == 1 })
	if w.fsm.has("e2") {
		t.Fatal("w took d's entries before anyone vouched for d")
	}
	// ... until a and b vouch for it.
	go w.gate.run(ctx)
	waitUntil(t, 60*time.Second, "w catches up with e2", func() bool { return w.fsm.has("e2") })
	if got := (rawView{w.raft}).LeaderAddr(); got != string(d.addr()) && d.raft.State() == raft.Leader {
		t.Errorf("w follows %q, want d %s", got, d.addr())
	}
	vouched := slices.ContainsFunc(strings.Split(logs.String(), "\n"), func(line string) bool {
		return strings.Contains(line, "vouched for") && strings.Contains(line, `"node_id":"w"`) && strings.Contains(line, d.mesh.PeerID())
	})
	if !vouched {
		t.Errorf("w logged no vouching for d:\n%s", logs.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test to share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitUntil polls cond every 20 ms until it holds, failing the test after
// timeout (nodetest.WaitFor, which this package's own tests cannot import).
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}
