package node_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// jobGateEnv names a FIFO that a job's child process (this test binary,
// re-entered by the process executor) reads one line from before it runs
// the workload: a job so gated stays running, with its lease renewed,
// until the test lets it go. Only children of nodes configured with
// jobGate.configure have it in their environment.
const jobGateEnv = "PWMESH_TEST_JOB_GATE"

// init waits at the gate in a job's child process; it runs before TestMain
// (and so before nodetest.MaybeRunChild runs the workload).
func init() {
	path := os.Getenv(jobGateEnv)
	if path == "" {
		return
	}
	for {
		// Open blocks until the test opens the FIFO for writing. A child
		// that shared the opening with another and saw only the end of
		// the stream waits again for a line of its own.
		f, err := os.Open(path)
		if err != nil {
			os.Exit(98)
		}
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		if line != "" {
			return
		}
	}
}

// jobGate holds the jobs of the nodes it configures until release.
type jobGate struct{ path string }

func newJobGate(t *testing.T) *jobGate {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job-gate")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	return &jobGate{path: path}
}

// configure makes a node's job children wait at the gate (nodetest.Spec's
// Configure).
func (g *jobGate) configure(cfg *node.Config) {
	cfg.ChildEnv = append(slices.Clip(cfg.ChildEnv), jobGateEnv+"="+g.path)
}

// release lets one child waiting at the gate go on, waiting (up to
// timeout) for one to arrive there.
func (g *jobGate) release(t *testing.T, timeout time.Duration) {
	t.Helper()
	nodetest.WaitFor(t, timeout, "a job's process waiting at the gate", func() bool {
		// Without a reader, a non-blocking open for writing fails (ENXIO).
		f, err := os.OpenFile(g.path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return false
		}
		defer f.Close()
		_, err = f.WriteString("go\n")
		return err == nil
	})
}

// waitNodeState waits until GET /nodes, asked of n, shows node id in state
// want (nodeState).
func waitNodeState(t *testing.T, n *nodetest.Node, id, want string) {
	t.Helper()
	got := ""
	if !nodetest.Poll(30*time.Second, func() bool { got = nodeState(n, id); return got == want }) {
		t.Fatalf("GET /nodes on %s shows %s %q, want %q", n, id, got, want)
	}
}

// TestDrainWorkerFinishesItsJob: a worker drained through the API while its
// job runs lets the job finish (succeeded, one attempt: neither stopped nor
// run again) and shows "draining" meanwhile, then "drained"; a job submitted
// after the drain waits with a reason although the worker has a free GPU; a
// restart of the worker keeps it drained; undrained, it runs the waiting
// job.
func TestDrainWorkerFinishesItsJob(t *testing.T) {
	t.Parallel()
	gate := newJobGate(t)
	// Two GPUs: without the drain, the second job would start on the
	// worker's free GPU while the first runs. The voters have none.
	worker := nodetest.Spec{GPUs: "fake:2xA100-80GB", Configure: gate.configure}
	c := nodetest.Start(t, append(nodetest.Voters(3), worker)...)
	leader := c.WaitForLeader(30 * time.Second)
	w := c.Nodes[3]
	c.WaitReady(w, 30*time.Second)
	ctx := context.Background()
	gpu := scheduler.Resources{GPUs: 1}

	first := submit(t, leader, "generate_dataset", "", `{"size":16,"seed":31}`, gpu)
	run := waitState(t, leader, first.ID, time.Minute, func(j scheduler.Job) bool { return j.State == scheduler.StateRunning })
	if run.Node != w.ID() {
		t.Fatalf("GPU job runs on %s, want the worker %s", run.Node, w.ID())
	}

	// Drained through a follower, which forwards the write to the leader.
	var via *nodetest.Node
	for _, n := range c.Nodes[:3] {
		if n != leader {
			via = n
			break
		}
	}
	v, err := via.Client.DrainNode(ctx, w.ID())
	if err != nil {
		t.Fatalf("drain %s: %v", w.ID(), err)
	}
	if v.ID != w.ID() || v.State != "draining" {
		t.Fatalf("drain answered %+v, want %s draining", v, w.ID())
	}
	// The gate holds the job: the worker is draining on every node's view.
	for _, n := range c.Nodes {
		waitNodeState(t, n, w.ID(), "draining")
	}

	second := submit(t, leader, "generate_dataset", "", `{"size":16,"seed":32}`, gpu)
	waiting := waitState(t, leader, second.ID, 30*time.Second, func(j scheduler.Job) bool { return j.Reason != "" })
	if waiting.State != scheduler.StateQueued || waiting.Node != "" {
		t.Fatalf("job submitted after the drain: %s on %q, want queued on none", waiting.State, waiting.Node)
	}
	t.Logf("job submitted after the drain waits: %s", waiting.Reason)

	gate.release(t, 30*time.Second)
	done := waitState(t, leader, first.ID, time.Minute, terminal)
	if done.State != scheduler.StateSucceeded || done.Attempts != 1 || done.Node != w.ID() {
		t.Fatalf("job that ran through the drain: %s attempts %d on %s error %+v; want succeeded, attempts 1, on %s",
			done.State, done.Attempts, done.Node, done.Error, w.ID())
	}
	waitNodeState(t, leader, w.ID(), "drained")
	if j, _ := leader.Job(second.ID); j.State != scheduler.StateQueued {
		t.Fatalf("job submitted after the drain: %s on %q once the worker was drained, want queued", j.State, j.Node)
	}

	// A restart (a clean stop, then a new process on the same data
	// directory) keeps the drain.
	before, _ := leader.State().Node(w.ID())
	c.Stop(w)
	c.Restart(w)
	nodetest.WaitFor(t, 30*time.Second, "the restarted worker registered", func() bool {
		n, ok := leader.State().Node(w.ID())
		return ok && n.Incarnation != before.Incarnation && n.State == scheduler.NodeReady
	})
	if n, _ := leader.State().Node(w.ID()); !n.Draining {
		t.Fatalf("worker after its restart: %+v, want still draining", n)
	}
	waitNodeState(t, leader, w.ID(), "drained")
	if j, _ := leader.Job(second.ID); j.State != scheduler.StateQueued {
		t.Fatalf("job submitted after the drain: %s on %q after the worker's restart, want queued", j.State, j.Node)
	}

	v, err = leader.Client.UndrainNode(ctx, w.ID())
	if err != nil {
		t.Fatalf("undrain %s: %v", w.ID(), err)
	}
	if v.State != scheduler.NodeReady {
		t.Fatalf("undrain answered %+v, want ready", v)
	}
	run = waitState(t, leader, second.ID, time.Minute, func(j scheduler.Job) bool { return j.State != scheduler.StateQueued })
	if run.Node != w.ID() {
		t.Fatalf("the waiting job went %s on %q, want running on the undrained worker %s", run.State, run.Node, w.ID())
	}
	gate.release(t, 30*time.Second)
	done = waitState(t, leader, second.ID, time.Minute, terminal)
	if done.State != scheduler.StateSucceeded || done.Attempts != 1 || done.Node != w.ID() {
		t.Fatalf("the waiting job: %s attempts %d on %s error %+v; want succeeded, attempts 1, on %s",
			done.State, done.Attempts, done.Node, done.Error, w.ID())
	}
	waitNodeState(t, leader, w.ID(), scheduler.NodeReady)
}
