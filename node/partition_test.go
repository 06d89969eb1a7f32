package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

// others returns c's nodes but those given.
func others(c *nodetest.Cluster, not ...*nodetest.Node) []*nodetest.Node {
	var out []*nodetest.Node
	for _, n := range c.Nodes {
		if !slices.Contains(not, n) {
			out = append(out, n)
		}
	}
	return out
}

// agreedLeader is the leader every node of group names, nil while they
// disagree or one of them knows none.
func agreedLeader(group []*nodetest.Node) *nodetest.Node {
	id := ""
	for _, n := range group {
		l := n.Leader()
		if l == "" || (id != "" && l != id) {
			return nil
		}
		id = l
	}
	for _, n := range group {
		if n.ID() == id {
			return n
		}
	}
	return nil
}

// nodeState is the state of node id in n's node table ("" when absent).
func nodeState(n *nodetest.Node, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nodes, err := n.Client.Nodes(ctx)
	if err != nil {
		return ""
	}
	for _, nd := range nodes {
		if nd.ID == id {
			return nd.State
		}
	}
	return ""
}

func jobIDs(t *testing.T, n *nodetest.Node) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	jobs, _, err := n.Client.ListJobs(ctx, client.ListJobsOptions{Limit: 100})
	if err != nil {
		t.Fatalf("list jobs on %s: %v", n, err)
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestLeaderPartitionedAway: the leader is cut off alone. The other two
// voters elect a new leader that takes and finishes a job; the old leader
// cannot commit a write meanwhile. After the heal it rejoins as a follower
// and its replica converges, without the write it could not commit.
func TestLeaderPartitionedAway(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Voters(3)...)
	old := c.WaitForLeader(30 * time.Second)
	for _, n := range c.Nodes {
		c.WaitReady(n, 30*time.Second)
	}
	before := submit(t, old, "generate_dataset", "", `{"size":16,"seed":11}`, scheduler.Resources{})
	waitState(t, old, before.ID, time.Minute, terminal)
	majority := others(c, old)

	start := time.Now()
	c.Partition([]*nodetest.Node{old})
	var next *nodetest.Node
	nodetest.WaitFor(t, 30*time.Second, "a new leader among the majority", func() bool {
		next = agreedLeader(majority)
		return next != nil
	})
	t.Logf("new leader %s after %v", next.ID(), time.Since(start))

	// The old leader cannot commit: whether it still believes it leads or
	// has stepped down, the write fails (503) or outlasts the client.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := old.Client.SubmitJob(ctx, scheduler.JobRequest{Type: "generate_dataset", Params: json.RawMessage(`{"size":16,"seed":12}`)}, "")
	cancel()
	var apiErr *client.APIError
	switch {
	case err == nil:
		t.Fatal("the partitioned old leader committed a write")
	case errors.As(err, &apiErr) && apiErr.Status != http.StatusServiceUnavailable:
		t.Fatalf("write to the partitioned old leader: %v, want 503 or a timeout", err)
	}
	t.Logf("write to the old leader refused: %v", err)

	// The majority goes on: it marks the old leader down and runs a job.
	nodetest.WaitFor(t, 30*time.Second, "the old leader marked down", func() bool {
		return nodeState(next, old.ID()) == scheduler.NodeDown
	})
	j := submit(t, next, "generate_dataset", "", `{"size":16,"seed":13}`, scheduler.Resources{})
	done := waitState(t, next, j.ID, time.Minute, terminal)
	if done.State != scheduler.StateSucceeded || done.Node == old.ID() {
		t.Fatalf("job on the majority: state %s on %s error %+v", done.State, done.Node, done.Error)
	}

	healed := time.Now()
	c.Heal()
	leader := c.WaitForLeader(30 * time.Second)
	if leader == old {
		t.Fatal("the old leader, whose log is behind, leads again")
	}
	waitState(t, old, j.ID, 30*time.Second, func(j scheduler.Job) bool { return j.State == scheduler.StateSucceeded })
	nodetest.WaitFor(t, 30*time.Second, "the old leader ready again", func() bool {
		return nodeState(leader, old.ID()) == scheduler.NodeReady && old.Health().Ready
	})
	t.Logf("old leader caught up %v after the heal", time.Since(healed))
	want := jobIDs(t, leader)
	if len(want) != 2 || !slices.Contains(want, before.ID) || !slices.Contains(want, j.ID) {
		t.Fatalf("jobs on the leader: %v, want %s and %s only", want, before.ID, j.ID)
	}
	nodetest.WaitFor(t, 10*time.Second, "the old leader's replica equal to the leader's", func() bool {
		return slices.Equal(jobIDs(t, old), want)
	})
}

// TestStaleRunnerResultRefused: a GPU worker running a job is cut off from
// everyone. The leader requeues the job and it runs on the other GPU
// worker (attempt 2); the cut-off worker stops its run when it cannot
// renew the lease. The job ends (by a cancel, to keep the test short) with
// the second runner's outcome alone, and after the heal every replica, the
// cut-off worker's included, shows that outcome.
func TestStaleRunnerResultRefused(t *testing.T) {
	t.Parallel()
	// The workers have one slot, the voters two: CPU jobs (the dataset
	// generation) land on a voter, so that the dataset outlives the cut.
	gpu := nodetest.Spec{GPUs: "fake:1xA100-80GB", Slots: 1}
	c := nodetest.Start(t, append(nodetest.Voters(3), gpu, gpu)...)
	leader := c.WaitForLeader(30 * time.Second)
	workers := c.Nodes[3:]
	for _, n := range c.Nodes {
		c.WaitReady(n, 30*time.Second)
	}
	gen := submit(t, leader, "generate_dataset", "", `{"size":64,"seed":21}`, scheduler.Resources{})
	gen = waitState(t, leader, gen.ID, time.Minute, terminal)
	if gen.State != scheduler.StateSucceeded {
		t.Fatalf("generate: %+v", gen.Error)
	}
	if slices.ContainsFunc(workers, func(w *nodetest.Node) bool { return w.ID() == gen.Node }) {
		t.Fatalf("the dataset was generated on worker %s; it would be cut off with it", gen.Node)
	}

	slow := submit(t, leader, "calibrate_and_reconstruct", gen.Outputs["dataset"], `{"iterations":2000}`, scheduler.Resources{GPUs: 1})
	first := waitState(t, leader, slow.ID, time.Minute, func(j scheduler.Job) bool { return j.State == scheduler.StateRunning })
	var a, b *nodetest.Node
	for _, w := range workers {
		if w.ID() == first.Node {
			a = w
		} else {
			b = w
		}
	}
	if a == nil {
		t.Fatalf("GPU job runs on %s, not on a GPU worker", first.Node)
	}
	nodetest.WaitFor(t, 30*time.Second, "the job running on worker A", func() bool { return a.RunningJobs() == 1 })

	cut := time.Now()
	c.Partition([]*nodetest.Node{a})
	second := waitState(t, leader, slow.ID, 30*time.Second, func(j scheduler.Job) bool {
		return j.State == scheduler.StateRunning && j.Node == b.ID()
	})
	t.Logf("requeued and running on worker B %v after the cut: attempts %d token %d (was %d)", time.Since(cut), second.Attempts, second.Lease.Token, first.Lease.Token)
	if second.Attempts != 2 || second.Lease.Token == first.Lease.Token {
		t.Errorf("second run: attempts %d token %d, want attempts 2 and a new token (first: %d)", second.Attempts, second.Lease.Token, first.Lease.Token)
	}
	// A stops its run before its lease runs out, and the leader gives the
	// job to B only then: the two never run it at the same time.
	both := false
	nodetest.WaitFor(t, 30*time.Second, "the job running on worker B", func() bool {
		ra, rb := a.RunningJobs(), b.RunningJobs()
		both = both || (ra == 1 && rb == 1)
		return rb == 1
	})
	if both {
		t.Errorf("workers A and B ran the job at the same time")
	}

	// A cannot renew: it must stop its run within a lease period (5 s); the
	// 20 s bound leaves room for a loaded machine and still comes long
	// before the job would end by itself (over a minute under -race).
	if nodetest.Poll(20*time.Second, func() bool { return a.RunningJobs() == 0 }) {
		t.Logf("worker A stopped its run %v after the cut", time.Since(cut))
	} else {
		t.Errorf("worker A still runs the job %v after it was cut off: a worker that cannot renew its lease must stop it", time.Since(cut))
	}
	if j, _ := leader.Job(slow.ID); j.State != scheduler.StateRunning || j.Node != b.ID() || j.Lease == nil || j.Lease.Token != second.Lease.Token {
		t.Fatalf("job while A is cut off: %s; want running on B (%s) with token %d", jobString(j), b.ID(), second.Lease.Token)
	}

	// The job would run for minutes (under -race): end B's run by a cancel,
	// which only the holder of the current lease can report. Cancelling
	// before the heal also keeps B's busy child from starving the heal.
	cancelJob(t, leader, slow.ID)
	done := waitState(t, leader, slow.ID, time.Minute, terminal)
	t.Logf("job ended %s on %s %v after the cut (attempts %d)", done.State, done.Node, time.Since(cut), done.Attempts)
	if done.State != scheduler.StateCancelled || done.Node != b.ID() || done.Attempts != 2 || done.RunBundle != nil {
		t.Fatalf("final job: state %s on %s attempts %d runbundle %v error %+v; want cancelled by B (%s), attempts 2, no RunBundle",
			done.State, done.Node, done.Attempts, done.RunBundle, done.Error, b.ID())
	}

	c.Heal()
	// A catches up: its replica shows B's outcome, it runs nothing, and
	// nothing it still held (a late completion with token first.Lease.Token
	// would be refused) changes the outcome.
	nodetest.WaitFor(t, 30*time.Second, "worker A back and caught up", func() bool {
		j, ok := a.Job(slow.ID)
		return ok && j.State == done.State
	})
	nodetest.WaitFor(t, 30*time.Second, "worker A ready again", func() bool { return nodeState(leader, a.ID()) == scheduler.NodeReady })
	if n := a.RunningJobs(); n != 0 {
		t.Errorf("worker A runs %d jobs after the heal", n)
	}
	// Every replica agrees, the healed worker's included.
	for _, n := range c.Nodes {
		got := waitState(t, n, slow.ID, 30*time.Second, terminal)
		if got.State != done.State || got.Node != done.Node || got.Attempts != 2 || got.FinishedAt == nil || !got.FinishedAt.Equal(*done.FinishedAt) {
			t.Errorf("replica of %s: state %s on %s attempts %d finished %v", n.ID(), got.State, got.Node, got.Attempts, got.FinishedAt)
		}
	}
	if log, err := os.ReadFile(filepath.Join(a.DataDir, "logs", slow.ID+".log")); err == nil {
		t.Logf("worker A's job log:\n%s", tail(log, 600))
	}
}

// cancelJob asks n to cancel job id, retrying while no leader answers (503).
func cancelJob(t *testing.T, n *nodetest.Node, id string) {
	t.Helper()
	var err error
	nodetest.WaitFor(t, 30*time.Second, "a cancel that is not refused for want of a leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = n.Client.CancelJob(ctx, id)
		var ae *client.APIError
		return !(errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable)
	})
	if err != nil {
		t.Fatalf("cancel %s on %s: %v", id, n, err)
	}
}

func jobString(j scheduler.Job) string {
	b, _ := json.Marshal(j)
	return string(b)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
