package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// RaftPeersProtocol is the libp2p protocol on which a node tells a peer the
// servers of its latest Raft configuration (raftGate's vouching). Any
// holder of the cluster key may ask: the answer names node and peer IDs,
// which gossip carries anyway.
const RaftPeersProtocol = "/pwmesh/raft-peers/1.0.0"

const (
	// vouchEvery is the least time between two vouching rounds, however
	// many streams are refused meanwhile.
	vouchEvery = 2 * time.Second
	// vouchTimeout bounds the questions of one round.
	vouchTimeout = 3 * time.Second
)

// raftView is what the gate reads of Raft: *scheduler.Raft.
type raftView interface {
	// Servers is the latest configuration (an atomic read in
	// hashicorp/raft, not a trip through its main loop).
	Servers() ([]scheduler.Server, error)
	// LeaderAddr is the peer ID of the leader this member follows, "" when
	// none.
	LeaderAddr() string
}

// raftGate decides which peers may speak Raft to this node (the mesh's
// RaftAllow). Holding the cluster key is not enough: every mesh node is a
// Raft non-voter, and a non-voter or a stolen key must not be able to
// send AppendEntries or RequestVote with a higher term and overwrite a
// voter's log. hashicorp/raft sends RPCs only from voters (candidates and
// leaders), so a peer is admitted when
//
//  1. this node's latest configuration is empty: it was never bootstrapped
//     nor reached by a leader, and the first leader to reach it (one that
//     added it with AddNonvoter or AddVoter) must get in. This is trust on
//     first contact: until then any holder of the cluster key may feed it;
//  2. the peer is a voter of this node's latest configuration (the first
//     voters bootstrap with the same configuration, so they admit each
//     other at once; a node added later is in the leader's configuration
//     before the leader sends it anything);
//  3. the peer is the leader this node follows now: a node replaying the
//     log from its start passes through old configurations that may not
//     name its leader, and must not cut it off halfway;
//  4. a voter of this node's latest configuration vouches for it: a node
//     whose configuration is stale (it was away while the membership
//     changed, and now a leader it does not know, or knows as a non-voter,
//     calls it) asks, after a refusal, the voters it knows for their own
//     latest configuration over RaftPeersProtocol, and admits the voters
//     they list. A peer a known voter lists is no less trustworthy than
//     that voter, which could send this node AppendEntries itself. When
//     none of the voters it knows is left to answer, the node stays cut
//     off (refusals at warn) until an operator empties its raft folder, so
//     that it joins as a new node.
//
// The check runs when a stream opens and before each read from it, so a
// peer that stops being admitted loses its open streams too.
type raftGate struct {
	self string // this node's peer ID
	net  caller
	log  *slog.Logger

	view    atomic.Pointer[viewBox]         // nil until Raft is open
	vouched atomic.Pointer[map[string]bool] // peer IDs of voters the last round heard of
	kick    chan struct{}                   // a refusal asks for a round
}

type viewBox struct{ v raftView }

func newRaftGate(self string, net caller, log *slog.Logger) *raftGate {
	return &raftGate{self: self, net: net, log: log, kick: make(chan struct{}, 1)}
}

// open starts admitting peers by r's configuration; until then every peer
// is refused (Raft is not running, and its peers retry).
func (g *raftGate) open(r raftView) { g.view.Store(&viewBox{r}) }

// allow is the mesh's RaftAllow: rules 1 to 4 of raftGate. A refusal asks
// for a vouching round.
func (g *raftGate) allow(peerID string) bool {
	b := g.view.Load()
	if b == nil {
		return false
	}
	servers, err := b.v.Servers()
	if err != nil {
		return false
	}
	if admits(servers, b.v.LeaderAddr(), peerID) {
		return true
	}
	if v := g.vouched.Load(); v != nil && (*v)[peerID] {
		return true
	}
	select {
	case g.kick <- struct{}{}:
	default:
	}
	return false
}

// admits is rules 1 to 3 of raftGate: an empty configuration, a voter of
// it, or the leader this node follows.
func admits(servers []scheduler.Server, leader, peerID string) bool {
	if len(servers) == 0 || (leader != "" && peerID == leader) {
		return true
	}
	return slices.ContainsFunc(servers, func(s scheduler.Server) bool { return s.Voter && s.Address == peerID })
}

// run answers refusals with vouching rounds, at most one per vouchEvery,
// until ctx ends.
func (g *raftGate) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		}
		g.vouch(ctx)
		t := time.NewTimer(vouchEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// vouch asks every other voter of the latest configuration for its own
// and, when one answered at least, replaces the vouched set with the
// voters they list (rule 4 of raftGate).
func (g *raftGate) vouch(ctx context.Context) {
	b := g.view.Load()
	if b == nil {
		return
	}
	servers, err := b.v.Servers()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, vouchTimeout)
	defer cancel()
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		next  = map[string]bool{}
		heard []string
	)
	for _, s := range servers {
		if !s.Voter || s.Address == g.self {
			continue
		}
		wg.Go(func() {
			resp, err := g.net.Call(ctx, s.Address, RaftPeersProtocol, nil)
			var a raftPeersAnswer
			if err == nil {
				err = json.Unmarshal(resp, &a)
			}
			if err != nil {
				g.log.Debug("raft: a voter did not tell its configuration", "member", s.ID, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			heard = append(heard, s.ID)
			for _, p := range a.Servers {
				if p.Voter {
					next[p.Address] = true
				}
			}
		})
	}
	wg.Wait()
	if len(heard) == 0 {
		g.log.Warn("raft: no voter of this node's configuration answered; a leader this node does not know cannot reach it")
		return
	}
	slices.Sort(heard)
	if old := g.vouched.Swap(&next); old == nil || !maps.Equal(*old, next) {
		g.log.Info("raft: voters vouched for by the configuration's voters", "by", heard, "voters", slices.Sorted(maps.Keys(next)))
	}
}

// raftPeer is one server of a RaftPeersProtocol answer.
type raftPeer struct {
	ID      string `json:"id"`
	Address string `json:"address"` // its peer ID
	Voter   bool   `json:"voter"`
}

// raftPeersAnswer is the answer of RaftPeersProtocol.
type raftPeersAnswer struct {
	Servers []raftPeer `json:"servers"`
}

// serve answers RaftPeersProtocol with this node's latest configuration.
func (g *raftGate) serve(_ context.Context, _ string, _ []byte) ([]byte, error) {
	b := g.view.Load()
	if b == nil {
		return nil, errors.New("raft is not open yet")
	}
	servers, err := b.v.Servers()
	if err != nil {
		return nil, err
	}
	a := raftPeersAnswer{Servers: []raftPeer{}}
	for _, s := range servers {
		a.Servers = append(a.Servers, raftPeer{ID: s.ID, Address: s.Address, Voter: s.Voter})
	}
	return json.Marshal(a)
}

// RaftStats is Raft's view of itself on this node (term, last log index,
// state, ...), for tests and diagnostics.
func (n *Node) RaftStats() map[string]string { return n.raft.Stats() }
