package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// logFSM records applied entries.
type logFSM struct {
	mu      sync.Mutex
	entries [][]byte
}

func (f *logFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, bytes.Clone(l.Data))
	return len(f.entries)
}

func (f *logFSM) applied() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.entries...)
}

func (f *logFSM) Snapshot() (raft.FSMSnapshot, error) { return noSnapshot{}, nil }
func (f *logFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type noSnapshot struct{}

func (noSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (noSnapshot) Release()                          {}

func TestRaftOverLibp2p(t *testing.T) {
	t.Parallel()
	ms := startMeshes(t, 3, nil)
	joinAll(t, ms) // members' metadata teaches every peerstore the others' addresses

	var servers []raft.Server
	for _, m := range ms {
		servers = append(servers, raft.Server{ID: raft.ServerID(m.cfg.NodeID), Address: raft.ServerAddress(m.PeerID())})
	}
	rafts := make([]*raft.Raft, len(ms))
	fsms := make([]*logFSM, len(ms))
	for i, m := range ms {
		trans := m.RaftTransport(2*time.Second, hclog.NewNullLogger())
		if trans.LocalAddr() != raft.ServerAddress(m.PeerID()) {
			t.Fatalf("LocalAddr = %s, want peer ID %s", trans.LocalAddr(), m.PeerID())
		}
		c := raft.DefaultConfig()
		c.LocalID = raft.ServerID(m.cfg.NodeID)
		c.HeartbeatTimeout = 250 * time.Millisecond
		c.ElectionTimeout = 250 * time.Millisecond
		c.LeaderLeaseTimeout = 125 * time.Millisecond
		c.CommitTimeout = 20 * time.Millisecond
		c.Logger = hclog.NewNullLogger()
		store := raft.NewInmemStore()
		fsms[i] = &logFSM{}
		r, err := raft.NewRaft(c, fsms[i], store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		rafts[i] = r
		t.Cleanup(func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("raft shutdown: %v", err)
			}
		})
	}
	if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	var leader *raft.Raft
	waitFor(t, 15*time.Second, "a raft leader", func() bool {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				leader = r
				return true
			}
		}
		return false
	})
	for i := range 3 {
		if err := leader.Apply(fmt.Appendf(nil, "entry-%d", i), 5*time.Second).Error(); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	for i, f := range fsms {
		waitFor(t, 10*time.Second, fmt.Sprintf("fsm %d has 3 entries", i), func() bool { return len(f.applied()) == 3 })
		if got := f.applied(); string(got[2]) != "entry-2" {
			t.Errorf("fsm %d: %q", i, got)
		}
	}
}

// TestRaftTransportTakeover: a second transport takes the protocol over,
// and closing the first one afterwards does not unregister the second.
func TestRaftTransportTakeover(t *testing.T) {
	t.Parallel()
	ms := startMeshes(t, 2, nil)
	if err := ms[1].AddPeer(ms[0].PeerID(), ms[0].P2PAddrs()); err != nil {
		t.Fatal(err)
	}
	old := ms[0].newStreamLayer(nil)
	cur := ms[0].newStreamLayer(nil)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	peerLayer := ms[1].newStreamLayer(nil)
	defer peerLayer.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := cur.Accept()
		if err == nil {
			_, err = c.Write([]byte("ok"))
			c.Close()
		}
		accepted <- err
	}()
	c, err := peerLayer.Dial(raft.ServerAddress(ms[0].PeerID()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != ms[0].PeerID() || c.RemoteAddr().Network() != "libp2p" {
		t.Errorf("RemoteAddr = %s/%s", c.RemoteAddr().Network(), c.RemoteAddr())
	}
	buf, err := io.ReadAll(c)
	if err != nil || string(buf) != "ok" {
		t.Errorf("read %q, %v", buf, err)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if _, err := peerLayer.Dial("not-a-peer-id", time.Second); err == nil {
		t.Error("dial of a bad address succeeded")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// soloRaft starts a Raft of one voter over m's transport with opts, with
// the tests' short timings, and waits until it leads.
func soloRaft(t *testing.T, m *Mesh, fsm raft.FSM, opts ...RaftOption) *raft.Raft {
	t.Helper()
	trans := m.RaftTransport(2*time.Second, hclog.NewNullLogger(), opts...)
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(m.cfg.NodeID)
	c.HeartbeatTimeout = 250 * time.Millisecond
	c.ElectionTimeout = 250 * time.Millisecond
	c.LeaderLeaseTimeout = 125 * time.Millisecond
	c.CommitTimeout = 20 * time.Millisecond
	c.Logger = hclog.NewNullLogger()
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(c, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("raft shutdown: %v", err)
		}
	})
	conf := raft.Configuration{Servers: []raft.Server{{ID: c.LocalID, Address: trans.LocalAddr()}}}
	if err := r.BootstrapCluster(conf).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the raft leads", func() bool { return r.State() == raft.Leader })
	return r
}

// TestRaftTransportRefusesPeersNotAllowed: a peer with the cluster key that
// the allow function refuses sends a real AppendEntries, with a higher term
// and a forged entry that fits the log, and a real RequestVote: both fail,
// and the Raft's term, log and leadership do not move; the refusal is
// logged once with the peer ID however often it is repeated. Then the
// same peer, allowed, takes the Raft over with the same RPC: the filter is
// all that stopped it.
func TestRaftTransportRefusesPeersNotAllowed(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	key := GenerateClusterKey()
	cfg := testConfig(t)
	cfg.ClusterKey, cfg.Logger = key, slog.New(slog.NewJSONHandler(logs, nil))
	victim := startMesh(t, cfg)
	cfg = testConfig(t)
	cfg.ClusterKey = key
	intruder := startMesh(t, cfg)
	if err := intruder.AddPeer(victim.PeerID(), victim.P2PAddrs()); err != nil {
		t.Fatal(err)
	}
	var allowed atomic.Bool
	var asked atomic.Int64
	fsm := &logFSM{}
	r := soloRaft(t, victim, fsm, RaftAllow(func(peerID string) bool {
		asked.Add(1)
		return peerID == victim.PeerID() || allowed.Load()
	}))
	if err := r.Apply([]byte("real"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	term, last := r.CurrentTerm(), r.LastIndex()
	lastTerm, _ := strconv.ParseUint(r.Stats()["last_log_term"], 10, 64)

	attacker := intruder.RaftTransport(2*time.Second, hclog.NewNullLogger())
	defer attacker.(raft.WithClose).Close()
	to, addr := raft.ServerID(victim.cfg.NodeID), raft.ServerAddress(victim.PeerID())
	header := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte(intruder.PeerID())}
	forged := &raft.AppendEntriesRequest{
		RPCHeader: header, Term: term + 10, PrevLogEntry: last, PrevLogTerm: lastTerm,
		Entries:           []*raft.Log{{Index: last + 1, Term: term + 10, Type: raft.LogCommand, Data: []byte("forged")}},
		LeaderCommitIndex: last + 1,
	}
	vote := &raft.RequestVoteRequest{RPCHeader: header, Term: term + 10, LastLogIndex: last + 100, LastLogTerm: term + 10}
	for range 5 {
		var resp raft.AppendEntriesResponse
		if err := attacker.AppendEntries(to, addr, forged, &resp); err == nil {
			t.Fatalf("AppendEntries from a refused peer answered: %+v", resp)
		}
		var vresp raft.RequestVoteResponse
		if err := attacker.RequestVote(to, addr, vote, &vresp); err == nil {
			t.Fatalf("RequestVote from a refused peer answered: %+v", vresp)
		}
	}
	if r.State() != raft.Leader || r.CurrentTerm() != term || r.LastIndex() != last {
		t.Errorf("after refused RPCs: state %s term %d last index %d, want leader, %d, %d", r.State(), r.CurrentTerm(), r.LastIndex(), term, last)
	}
	if got := fsm.applied(); len(got) != 1 || string(got[0]) != "real" {
		t.Errorf("fsm %q", got)
	}
	if asked.Load() == 0 {
		t.Error("the allow function was never asked")
	}
	out := logs.String()
	if n := strings.Count(out, "raft stream refused"); n != 1 {
		t.Errorf("%d refusal lines in 10 refusals, want 1 (rate-limited):\n%s", n, out)
	}
	if !strings.Contains(out, intruder.PeerID()) || !strings.Contains(out, `"level":"WARN"`) {
		t.Errorf("refusal not logged at warn with the peer ID:\n%s", out)
	}

	// The control: the same peer, allowed, overwrites the log as a leader.
	allowed.Store(true)
	var resp raft.AppendEntriesResponse
	if err := attacker.AppendEntries(to, addr, forged, &resp); err != nil || !resp.Success {
		t.Fatalf("allowed AppendEntries: %+v, %v", resp, err)
	}
	waitFor(t, 10*time.Second, "the forged entry applied", func() bool { return len(fsm.applied()) == 2 })
	if r.CurrentTerm() != term+10 || r.State() == raft.Leader {
		t.Errorf("allowed forger: term %d state %s", r.CurrentTerm(), r.State())
	}
}

// TestRaftStreamCutWhenPeerStopsBeingAllowed: a stream accepted from an
// allowed peer is reset at the next read once the peer is refused.
func TestRaftStreamCutWhenPeerStopsBeingAllowed(t *testing.T) {
	t.Parallel()
	ms := startMeshes(t, 2, nil)
	if err := ms[1].AddPeer(ms[0].PeerID(), ms[0].P2PAddrs()); err != nil {
		t.Fatal(err)
	}
	var allowed atomic.Bool
	allowed.Store(true)
	server := ms[0].newStreamLayer(func(string) bool { return allowed.Load() })
	defer server.Close()
	client := ms[1].newStreamLayer(nil)
	defer client.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := server.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := client.Dial(raft.ServerAddress(ms[0].PeerID()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	buf := make([]byte, 3)
	if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "one" {
		t.Fatalf("read %q, %v", buf, err)
	}
	allowed.Store(false)
	if _, err := c.Write([]byte("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Read(buf); !errors.Is(err, ErrRaftPeerRefused) {
		t.Fatalf("read after the peer was refused: %v, want ErrRaftPeerRefused", err)
	}
	if _, err := io.ReadAll(c); err == nil {
		t.Error("the refused peer's stream ended cleanly, want a reset")
	}
}

func TestRefusalLogIsRateLimited(t *testing.T) {
	t.Parallel()
	var l refusalLog
	t0 := time.Unix(1000, 0)
	if ok, n := l.take(t0); !ok || n != 0 {
		t.Fatalf("first refusal: %v %d", ok, n)
	}
	for i := range 3 {
		if ok, _ := l.take(t0.Add(time.Duration(i+1) * time.Second)); ok {
			t.Fatalf("refusal %d within the period logged", i)
		}
	}
	if ok, n := l.take(t0.Add(refusalLogEvery)); !ok || n != 3 {
		t.Fatalf("after the period: %v with %d not logged, want true, 3", ok, n)
	}
	if ok, _ := l.take(t0.Add(refusalLogEvery + time.Millisecond)); ok {
		t.Fatal("a second line within the new period")
	}
}
