package node_test

import (
	"slices"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// reportPercentiles adds p50/p99/max of ds (in milliseconds) to b's output.
func reportPercentiles(b *testing.B, ds []time.Duration, unit string) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(q*float64(len(ds)-1) + 0.5)
		return float64(ds[i].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms-"+unit)
	b.ReportMetric(at(0.99), "p99-ms-"+unit)
	b.ReportMetric(float64(ds[len(ds)-1].Microseconds())/1000, "max-ms-"+unit)
}

// BenchmarkLeaderFailover kills the leader of a 3-voter in-process cluster
// b.N times and measures how long the other two take to agree on a new
// leader, with nodetest's Raft timings (200/200/100 ms) and with the
// production defaults (scheduler.RaftConfig: 1 s/1 s/500 ms). Run it with
// -benchtime 20x or more.
func BenchmarkLeaderFailover(b *testing.B) {
	b.Run("raft=nodetest", func(b *testing.B) { benchLeaderFailover(b, nodetest.Options{}) })
	b.Run("raft=default", func(b *testing.B) {
		benchLeaderFailover(b, nodetest.Options{RaftHeartbeat: time.Second, RaftElection: time.Second, RaftLeaderLease: 500 * time.Millisecond})
	})
}

func benchLeaderFailover(b *testing.B, o nodetest.Options) {
	c := nodetest.StartWith(b, o, nodetest.Voters(3)...)
	var ds []time.Duration
	for b.Loop() {
		leader := c.WaitForLeader(time.Minute)
		start := time.Now()
		c.Kill(leader)
		next := c.WaitForLeader(time.Minute)
		ds = append(ds, time.Since(start))
		if next == leader {
			b.Fatal("killed leader still leads")
		}
		c.Restart(leader)
	}
	reportPercentiles(b, ds, "failover")
}

// BenchmarkSubmitToStart submits jobs to a follower of a 3-voter cluster and
// measures submit (HTTP request sent) to start (the job's lease committed).
func BenchmarkSubmitToStart(b *testing.B) {
	c := nodetest.Start(b, nodetest.Voters(3)...)
	leader := c.WaitForLeader(time.Minute)
	var follower *nodetest.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
		}
	}
	c.WaitReady(follower, time.Minute)
	var ds []time.Duration
	for b.Loop() {
		start := time.Now()
		j := benchSubmit(b, follower, scheduler.Resources{})
		var started scheduler.Job
		nodetest.WaitFor(b, time.Minute, "job start", func() bool {
			var ok bool
			started, ok = follower.Job(j.ID)
			return ok && started.StartedAt != nil
		})
		ds = append(ds, started.StartedAt.Sub(start))
		nodetest.WaitFor(b, time.Minute, "job end", func() bool {
			j, _ := follower.Job(j.ID)
			return scheduler.Terminal(j.State)
		})
	}
	reportPercentiles(b, ds, "submit-to-start")
}

// BenchmarkDeadWorkerRequeue kills the worker running a job and measures
// the time until the job is back in the queue (failure detection, the node
// marked down, the requeue committed).
func BenchmarkDeadWorkerRequeue(b *testing.B) {
	specs := append(nodetest.Voters(3), nodetest.Spec{GPUs: "fake:1xA100-80GB"})
	c := nodetest.Start(b, specs...)
	leader := c.WaitForLeader(time.Minute)
	gpu := c.Nodes[3]
	var ds []time.Duration
	for b.Loop() {
		c.WaitReady(gpu, time.Minute)
		j := benchSubmit(b, leader, scheduler.Resources{GPUs: 1})
		nodetest.WaitFor(b, time.Minute, "job running on the GPU node", func() bool {
			j, _ := leader.Job(j.ID)
			return j.State == scheduler.StateRunning && j.Node == gpu.ID()
		})
		start := time.Now()
		c.Kill(gpu)
		nodetest.WaitFor(b, time.Minute, "job requeued", func() bool {
			j, _ := leader.Job(j.ID)
			return j.State == scheduler.StateQueued
		})
		ds = append(ds, time.Since(start))
		c.Restart(gpu)
		nodetest.WaitFor(b, 2*time.Minute, "job done", func() bool {
			j, _ := leader.Job(j.ID)
			return scheduler.Terminal(j.State)
		})
	}
	reportPercentiles(b, ds, "detect-to-requeue")
}

func benchSubmit(b *testing.B, n *nodetest.Node, res scheduler.Resources) scheduler.Job {
	b.Helper()
	j, err := n.Client.SubmitJob(b.Context(), scheduler.JobRequest{Type: "generate_dataset", Params: []byte(`{"size":8}`), Resources: res}, "")
	if err != nil {
		b.Fatal(err)
	}
	return j
}
