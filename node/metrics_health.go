package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/mesh"
	"github.com/pwmesh/pwmesh/node/storage"
)

// Metrics of the mesh's own health: Raft, gossip, replication and the
// mirror. libp2p's own (libp2p_*) come from mesh.Config.Metrics.

// newCommitHistogram registers pwmesh_raft_commit_seconds and returns what
// scheduler.RaftConfig.ObserveCommit calls.
func newCommitHistogram(reg prometheus.Registerer) func(time.Duration) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "pwmesh_raft_commit_seconds",
		Help: "How long a write this node led as Raft leader took from Apply until it was committed by a quorum and applied here, in seconds.",
		// 1 ms to about 4 s.
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 13),
	})
	reg.MustRegister(h)
	return func(d time.Duration) { h.Observe(d.Seconds()) }
}

// memberStates are the gossip states pwmesh_memberlist_members reports,
// each always present (memberlist v0.7.0 does not expose "suspect").
var memberStates = []string{mesh.StateAlive, mesh.StateDead, mesh.StateLeft}

var (
	memberlistMembersDesc = prometheus.NewDesc("pwmesh_memberlist_members",
		"Members this node's gossip knows, itself included, by state (alive; dead: failed; left: gracefully); departed members are forgotten after a while (10 min by default).",
		[]string{"state"}, nil)
	objectsDesc = prometheus.NewDesc("pwmesh_objects",
		"Objects (datasets, RunBundles) in the replicated content index; exported by the Raft leader only.", nil, nil)
	objectsShortDesc = prometheus.NewDesc("pwmesh_objects_short_of_copies",
		"Objects that fewer live nodes hold than the cluster wants (the leader repairs them); exported by the Raft leader only.", nil, nil)
)

// membersCollector counts the gossip members by state at scrape time.
type membersCollector struct{ members func() []mesh.Member }

func (membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- memberlistMembersDesc }

func (c membersCollector) Collect(ch chan<- prometheus.Metric) {
	count := map[string]int{}
	for _, m := range c.members() {
		count[m.State]++
	}
	for _, st := range memberStates {
		ch <- prometheus.MustNewConstMetric(memberlistMembersDesc, prometheus.GaugeValue, float64(count[st]), st)
	}
}

// replicationCollector reads the content index at scrape time and emits
// nothing unless this node leads: every replica counts the same, so a
// sum() over nodes would multiply it.
type replicationCollector struct {
	leads       func() bool
	replication func() storage.Replication
}

func (replicationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- objectsDesc
	ch <- objectsShortDesc
}

func (c replicationCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.leads() {
		return
	}
	r := c.replication()
	ch <- prometheus.MustNewConstMetric(objectsDesc, prometheus.GaugeValue, float64(r.Objects))
	ch <- prometheus.MustNewConstMetric(objectsShortDesc, prometheus.GaugeValue, float64(r.ShortOfCopies))
}

// registerHealthMetrics registers the Raft, gossip, replication and
// mirror series on the node's registry.
func (n *Node) registerHealthMetrics() {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	progress := n.raft.Progress
	n.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pwmesh_raft_leader_changes_total",
			Help: "Raft leaders this node learned of since it started (another node, or the same one in a new term); its first leader counts one.",
		}, func() float64 { return float64(progress().LeaderChanges) }),
		gauge("pwmesh_raft_term", "The Raft term this node is in.", func() float64 { return float64(progress().Term) }),
		gauge("pwmesh_raft_apply_lag", "Raft entries this node knows to be committed and has not applied yet.",
			func() float64 { return float64(progress().ApplyLag()) }),
		gauge("pwmesh_raft_voter", "1 when this node is a voter in the Raft configuration it knows, else 0 (a non-voter or no member).",
			func() float64 { return boolGauge(progress().Voter) }),
		membersCollector{members: n.mesh.Members},
		gauge("pwmesh_memberlist_health_score", "memberlist's awareness score of this node: 0 is healthy; higher means it misses probes (it is slow or its network is), which stretches its probe timeouts.",
			func() float64 { return float64(n.mesh.HealthScore()) }),
		replicationCollector{leads: n.raft.IsLeader, replication: n.storage.Replication},
		gauge("pwmesh_mirror_backlog", "Objects this node has yet to upload to the object store (queued, uploading or waiting to retry).",
			func() float64 { return float64(n.storage.MirrorQueue().Pending) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pwmesh_mirror_upload_errors_total",
			Help: "Upload attempts to the object store that failed on this node (each is retried with backoff, unless the object is gone or damaged).",
		}, func() float64 { return float64(n.storage.MirrorQueue().Failures) }),
	)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
