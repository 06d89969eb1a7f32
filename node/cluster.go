package node

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/mesh"
	"github.com/pwmesh/pwmesh/scheduler"
)

// MaxVoters is the largest Raft voter set; every other node replicates the
// log as a non-voter.
const MaxVoters = 5

// member is a live mesh member with its decoded metadata.
type member struct {
	mesh.Member
	meta mesh.NodeMeta
}

// liveMembers lists the mesh members that are alive, sorted by node ID,
// with their metadata (members whose metadata cannot be read are skipped).
func (n *Node) liveMembers() []member {
	var out []member
	for _, m := range n.mesh.Members() {
		if m.State != "alive" {
			continue
		}
		meta, err := mesh.DecodeMeta(m.Meta)
		if err != nil {
			continue
		}
		out = append(out, member{Member: m, meta: meta})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// watchMembers wakes the leader's member reconciler on every membership
// change. (The mesh itself teaches libp2p each member's addresses and logs
// the change.) It runs for the node's life.
func (n *Node) watchMembers(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-n.mesh.Events():
			if !ok {
				return
			}
			select {
			case n.memberChanged <- struct{}{}:
			default:
			}
		}
	}
}

// bootstrapWhenExpected bootstraps Raft once BootstrapExpect voter-eligible
// nodes are alive in the mesh and none of them belongs to a group yet: the
// BootstrapExpect lowest node IDs become the first voters, and each of them
// bootstraps with that same set once its view has been stable for half a
// second. A node with Raft state, or seeing a member that has some, never
// bootstraps: the running group's leader adds it.
func (n *Node) bootstrapWhenExpected(ctx context.Context) {
	if n.cfg.BootstrapExpect <= 1 {
		return
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	// The candidate set must stay the same for stableRounds checks in a
	// row: views of a mesh that is still forming differ.
	const stableRounds = 5
	var last string
	stable := 0
	for {
		if has, err := n.raft.HasState(); err != nil || has || n.raft.Leader() != "" {
			_ = n.mesh.UpdateMeta() // say so: nobody bootstraps beside us
			return
		}
		var eligible []member
		running := false
		for _, m := range n.liveMembers() {
			running = running || (m.meta.Raft && m.NodeID != n.id)
			if m.meta.Voter {
				eligible = append(eligible, m)
			}
		}
		switch {
		case running:
			// A group exists already: its leader adds this node.
			stable, last = 0, ""
		case len(eligible) >= n.cfg.BootstrapExpect:
			set := eligible[:n.cfg.BootstrapExpect]
			if key := ids(set); key == last {
				stable++
			} else {
				stable, last = 1, key
			}
			if stable >= stableRounds {
				if slices.ContainsFunc(set, func(m member) bool { return m.NodeID == n.id }) {
					var servers []scheduler.Server
					for _, m := range set {
						servers = append(servers, scheduler.Server{ID: m.NodeID, Address: m.meta.PeerID, Voter: true})
					}
					if err := n.raft.Bootstrap(servers); err != nil {
						n.log.Warn("raft bootstrap", "err", err)
					} else {
						n.log.Info("raft bootstrapped", "voters", last)
					}
					_ = n.mesh.UpdateMeta()
				}
				return
			}
		default:
			stable, last = 0, ""
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func ids(ms []member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.NodeID)
	}
	return strings.Join(s, ",")
}

// reconcileMembers runs on the leader: it keeps the Raft configuration and
// the node table in line with the mesh. Alive voter-eligible nodes fill the
// voter set up to an odd size of at most MaxVoters; every other alive node
// is a non-voter. Nodes that left are removed at once; failed nodes are
// marked down (their jobs are requeued by the scheduler) and, when a healthy
// node can take their place, removed from the voter set.
func (n *Node) reconcileMembers(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	since := time.Now()
	for {
		if err := n.reconcileOnce(ctx, since); err != nil && ctx.Err() == nil {
			n.log.Warn("member reconcile", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.memberChanged:
		case <-t.C:
		}
	}
}

// unknownGrace is how long a new leader waits for a member of the Raft
// configuration or the node table to show up in its mesh before taking it
// for dead: a fresh memberlist never learns of nodes that died before it.
const unknownGrace = 30 * time.Second

func (n *Node) reconcileOnce(ctx context.Context, leaderSince time.Time) error {
	servers, err := n.raft.Servers()
	if err != nil {
		return err
	}
	inRaft := map[string]scheduler.Server{}
	voters := 0
	for _, s := range servers {
		inRaft[s.ID] = s
		if s.Voter {
			voters++
		}
	}
	states := map[string]string{}
	incarnations := map[string]string{}
	for _, m := range n.mesh.Members() {
		states[m.NodeID] = m.State
		if meta, err := mesh.DecodeMeta(m.Meta); err == nil {
			incarnations[m.NodeID] = meta.Inc
		}
	}
	if time.Since(leaderSince) > unknownGrace {
		for _, s := range servers {
			if _, ok := states[s.ID]; !ok {
				states[s.ID] = mesh.StateDead
			}
		}
		for _, node := range n.fsm.Nodes() {
			if _, ok := states[node.ID]; !ok {
				states[node.ID] = mesh.StateDead
			}
		}
	}
	live := n.liveMembers()
	eligible := 0
	for _, m := range live {
		if m.meta.Voter {
			eligible++
		}
	}
	// Count the voters that are alive: dead voters keep their seat until a
	// healthy node can take it.
	aliveVoters := 0
	for _, s := range servers {
		if s.Voter && states[s.ID] == "alive" {
			aliveVoters++
		}
	}
	want := min(MaxVoters, max(eligible, aliveVoters))
	if want%2 == 0 && want > 0 {
		want--
	}
	now := n.cfg.Clock.Now()
	// Nodes that left cleanly, or are dead while a replacement is alive.
	for _, s := range servers {
		if s.ID == n.id {
			continue
		}
		st := states[s.ID]
		// A member the mesh does not know yet (a cluster restarting) keeps
		// its seat for unknownGrace; a dead voter gives it up only to a
		// live node able to vote in its place.
		remove := st == "left" || (st == "dead" && (!s.Voter || eligible > aliveVoters))
		if !remove {
			continue
		}
		if err := n.raft.RemoveServer(ctx, s.ID); err != nil {
			return fmt.Errorf("remove %s: %w", s.ID, err)
		}
		n.log.Info("raft server removed", "member", s.ID, "state", st)
		if s.Voter {
			voters--
		}
		delete(inRaft, s.ID)
	}
	for _, m := range live {
		s, ok := inRaft[m.NodeID]
		switch {
		case m.meta.Voter && (!ok || !s.Voter) && voters < want:
			if err := n.raft.AddVoter(ctx, m.NodeID, m.meta.PeerID); err != nil {
				return fmt.Errorf("add voter %s: %w", m.NodeID, err)
			}
			voters++
			n.log.Info("raft voter added", "member", m.NodeID)
		case !ok:
			if err := n.raft.AddNonvoter(ctx, m.NodeID, m.meta.PeerID); err != nil {
				return fmt.Errorf("add non-voter %s: %w", m.NodeID, err)
			}
			n.log.Info("raft non-voter added", "member", m.NodeID)
		}
	}
	// Too many voters (one left, say): the voter set shrinks to an odd
	// size again, by the highest node IDs, never this node — and only while
	// every voter is alive, so that a demotion never costs the quorum.
	if voters > want && want > 0 && aliveVoters >= voters {
		var vs []string
		for _, sv := range servers {
			if sv.Voter && sv.ID != n.id && states[sv.ID] == "alive" {
				vs = append(vs, sv.ID)
			}
		}
		slices.Sort(vs)
		for i := len(vs) - 1; i >= 0 && voters > want; i-- {
			if err := n.raft.DemoteVoter(ctx, vs[i]); err != nil {
				return fmt.Errorf("demote %s: %w", vs[i], err)
			}
			voters--
			n.log.Info("raft voter demoted", "member", vs[i])
		}
	}
	// The node table follows the mesh: failed nodes are marked down (the
	// leader loop then requeues their jobs), nodes that left are marked left,
	// and nodes alive again are marked ready.
	for _, node := range n.fsm.Nodes() {
		st := states[node.ID]
		var want string
		switch {
		case st == "alive" && node.State == scheduler.NodeDown && incarnations[node.ID] == node.Incarnation:
			// Back from a false alarm (a pause, a partition). A node that
			// restarted has a new incarnation and registers itself anew.
			want = scheduler.NodeReady
		case st == "dead" && node.State == scheduler.NodeReady:
			want = scheduler.NodeDown
		case st == "left" && node.State != scheduler.NodeLeft:
			want = scheduler.NodeLeft
		}
		if want == "" || node.ID == n.id {
			continue
		}
		if _, err := n.raft.Apply(ctx, &scheduler.SetNodeState{At: now, ID: node.ID, State: want}); err != nil {
			return fmt.Errorf("node %s %s: %w", node.ID, want, err)
		}
		n.log.Info("node state", "member", node.ID, "state", want)
	}
	return nil
}
