package nodetest

import (
	"slices"
	"strings"
)

// Partition cuts the cluster into groups: every running node blocks every
// running node outside its group, in both directions, on libp2p (Raft,
// forwarded writes, blob streams, pubsub) and on gossip, so each side
// declares the other dead. Running nodes named in no group form one more
// group together: Partition([]*Node{leader}) isolates the leader. A later
// Partition replaces the earlier one. A node restarted while partitioned
// comes back unblocked; call Partition again.
func (c *Cluster) Partition(groups ...[]*Node) {
	c.t.Helper()
	running := c.Running()
	group := map[*Node]int{}
	for i, g := range groups {
		for _, n := range g {
			if _, dup := group[n]; dup {
				c.t.Fatalf("nodetest: partition: %s is in two groups", n.ID())
			}
			group[n] = i + 1
		}
	}
	for _, n := range running {
		m := n.Mesh()
		var cut []string
		for _, o := range running {
			if o != n && group[o] != group[n] {
				cut = append(cut, o.ID())
			}
		}
		for _, id := range m.Blocked() {
			if !slices.Contains(cut, id) {
				m.Unblock(id)
			}
		}
		if len(cut) == 0 {
			continue
		}
		if err := m.Block(cut...); err != nil {
			c.t.Fatalf("nodetest: partition: %s blocks %s: %v", n.ID(), strings.Join(cut, ","), err)
		}
	}
	var names []string
	for _, g := range groups {
		var ids []string
		for _, n := range g {
			ids = append(ids, n.ID())
		}
		slices.Sort(ids)
		names = append(names, "{"+strings.Join(ids, ",")+"}")
	}
	c.t.Logf("nodetest: partitioned %s from the rest", strings.Join(names, " "))
}

// Heal lifts every partition: each running node unblocks everyone and
// re-joins the nodes it had declared dead. It does not wait; poll for the
// state the test needs (a leader, a converged replica).
func (c *Cluster) Heal() {
	c.t.Helper()
	for _, n := range c.Running() {
		n.Mesh().Unblock()
	}
	c.t.Logf("nodetest: healed")
}

// RunningJobs is the number of jobs n's worker runs now (its
// pwmesh_worker_running_jobs gauge).
func (n *Node) RunningJobs() int {
	mfs, err := n.Registry().Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() == "pwmesh_worker_running_jobs" {
			for _, m := range mf.GetMetric() {
				return int(m.GetGauge().GetValue())
			}
		}
	}
	return -1
}
