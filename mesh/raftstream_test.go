package mesh

import (
	"bytes"
	"fmt"
	"io"
	"sync"
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
	old := ms[0].newStreamLayer()
	cur := ms[0].newStreamLayer()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	peerLayer := ms[1].newStreamLayer()
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
