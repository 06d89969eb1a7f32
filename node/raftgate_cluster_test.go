package node_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/pwmesh/pwmesh/mesh"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

func raftStat(t *testing.T, n *nodetest.Node, key string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(n.RaftStats()[key], 10, 64)
	if err != nil {
		t.Fatalf("%s: raft stat %s: %v", n.ID(), key, err)
	}
	return v
}

// TestOnlyVotersSpeakRaft: two holders of the cluster key that are no
// voters — a bare libp2p host, and a worker of the cluster (a Raft
// non-voter) — send real Raft RPCs, in hashicorp/raft's wire format, to a
// follower voter and to the leader of a running cluster: an AppendEntries
// with a higher term carrying a forged admin key that fits the log, a
// RequestVote with a higher term and a TimeoutNow. Every one fails, no
// node takes the forged term or follows the forger, the leader keeps its
// term's leadership, the forged key is nowhere, and the cluster still
// commits.
func TestOnlyVotersSpeakRaft(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, append(nodetest.Voters(3), nodetest.Spec{})...)
	leader := c.WaitForLeader(30 * time.Second)
	worker := c.Nodes[3]
	c.WaitReady(worker, 30*time.Second)
	var follower *nodetest.Node
	for _, n := range c.Nodes[:3] {
		if n != leader {
			follower = n
			break
		}
	}
	nodetest.WaitFor(t, 30*time.Second, "the worker a non-voter of the configuration", func() bool {
		servers, err := leader.RaftServers()
		if err != nil {
			return false
		}
		for _, s := range servers {
			if s.ID == worker.ID() {
				return !s.Voter
			}
		}
		return false
	})
	intruder := intruderHost(t, c)
	for _, n := range []*nodetest.Node{leader, follower} {
		if err := intruder.AddPeer(n.Mesh().PeerID(), n.Mesh().P2PAddrs()); err != nil {
			t.Fatal(err)
		}
	}
	term := raftStat(t, leader, "term")
	forgedTerm := term + 100
	cmd, err := scheduler.Encode(&scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{ID: "key_forged", Hash: "forged", Tenant: "evil", Tier: scheduler.PriorityPaid, Admin: true}})
	if err != nil {
		t.Fatal(err)
	}

	// The worker's own Raft transport is taken over: from here on its
	// host speaks Raft as the test says.
	for _, from := range []*mesh.Mesh{intruder, worker.Mesh()} {
		trans := from.RaftTransport(5*time.Second, hclog.NewNullLogger())
		header := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("forger"), Addr: []byte(from.PeerID())}
		for _, to := range []*nodetest.Node{follower, leader} {
			id, addr := raft.ServerID(to.ID()), raft.ServerAddress(to.Mesh().PeerID())
			last, lastTerm := raftStat(t, to, "last_log_index"), raftStat(t, to, "last_log_term")
			ae := &raft.AppendEntriesRequest{RPCHeader: header, Term: forgedTerm, PrevLogEntry: last, PrevLogTerm: lastTerm,
				Entries:           []*raft.Log{{Index: last + 1, Term: forgedTerm, Type: raft.LogCommand, Data: cmd}},
				LeaderCommitIndex: last + 1}
			var aer raft.AppendEntriesResponse
			if err := trans.AppendEntries(id, addr, ae, &aer); err == nil {
				t.Errorf("AppendEntries from %s to %s answered: %+v", from.PeerID(), to.ID(), aer)
			}
			rv := &raft.RequestVoteRequest{RPCHeader: header, Term: forgedTerm, LastLogIndex: last + 100, LastLogTerm: forgedTerm}
			var rvr raft.RequestVoteResponse
			if err := trans.RequestVote(id, addr, rv, &rvr); err == nil {
				t.Errorf("RequestVote from %s to %s answered: %+v", from.PeerID(), to.ID(), rvr)
			}
			var tnr raft.TimeoutNowResponse
			if err := trans.TimeoutNow(id, addr, &raft.TimeoutNowRequest{RPCHeader: header}, &tnr); err == nil {
				t.Errorf("TimeoutNow from %s to %s answered: %+v", from.PeerID(), to.ID(), tnr)
			}
		}
		if err := trans.(raft.WithClose).Close(); err != nil {
			t.Error(err)
		}
	}

	// The forger's term (term+100) is the tell: a loaded machine running
	// -race may hold an election of its own meanwhile (term+1, +2), which
	// is logged, not failed.
	ids := map[string]bool{}
	for _, n := range c.Nodes {
		ids[n.ID()] = true
	}
	for _, n := range c.Nodes[:3] {
		got := raftStat(t, n, "term")
		if got >= forgedTerm {
			t.Errorf("%s: term %d, the forger's is %d", n.ID(), got, forgedTerm)
		} else if got != term {
			t.Logf("%s: term %d → %d: an election of the cluster's own on a loaded machine", n.ID(), term, got)
		}
		if l := n.Leader(); l != "" && !ids[l] {
			t.Errorf("%s follows %q, no node of the cluster", n.ID(), l)
		}
		if got == term && n.Leader() != "" && n.Leader() != leader.ID() {
			t.Errorf("%s follows %s in the leader's term, want %s", n.ID(), n.Leader(), leader.ID())
		}
		if _, ok := n.State().KeyByID("key_forged"); ok {
			t.Errorf("%s: the forged admin key was applied", n.ID())
		}
	}
	// The cluster still commits.
	leader = c.WaitForLeader(30 * time.Second)
	if _, err := leader.Apply(context.Background(), &scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{ID: "key_after", Hash: "after", Tenant: "acme", Tier: scheduler.PriorityFree}}); err != nil {
		t.Fatalf("apply after the attempts: %v", err)
	}
	nodetest.WaitFor(t, 30*time.Second, "the follower has the new key", func() bool {
		_, ok := follower.State().KeyByID("key_after")
		return ok
	})
}

// TestNonvoterAddedLaterGetsTheLog: a worker that left the cluster (and
// was removed from the Raft configuration) comes back and is added again
// as a non-voter: it receives what was committed while it was away.
func TestNonvoterAddedLaterGetsTheLog(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, append(nodetest.Voters(3), nodetest.Spec{})...)
	leader := c.WaitForLeader(30 * time.Second)
	worker := c.Nodes[3]
	c.WaitReady(worker, 30*time.Second)
	inConfig := func(id string) (in, voter bool) {
		servers, err := c.WaitForLeader(30 * time.Second).RaftServers()
		if err != nil {
			return false, false
		}
		for _, s := range servers {
			if s.ID == id {
				return true, s.Voter
			}
		}
		return false, false
	}
	c.Stop(worker)
	nodetest.WaitFor(t, 30*time.Second, "the worker removed from the configuration", func() bool {
		in, _ := inConfig(worker.ID())
		return !in
	})
	leader = c.WaitForLeader(30 * time.Second)
	if _, err := leader.Apply(context.Background(), &scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{ID: "key_while_away", Hash: "away", Tenant: "acme", Tier: scheduler.PriorityFree}}); err != nil {
		t.Fatal(err)
	}
	c.Restart(worker)
	nodetest.WaitFor(t, 30*time.Second, "the worker a non-voter again", func() bool {
		in, voter := inConfig(worker.ID())
		return in && !voter
	})
	nodetest.WaitFor(t, 30*time.Second, "the worker has what was committed while it was away", func() bool {
		_, ok := worker.State().KeyByID("key_while_away")
		return ok
	})
}
