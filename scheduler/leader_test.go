package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// openTestRaft starts a single-voter Raft member in dir with fast timings,
// waits until it leads, and shuts it down when the test ends (or earlier,
// through the returned function).
func openTestRaft(t *testing.T, dir string) (*Raft, func()) {
	t.Helper()
	_, trans := raft.NewInmemTransport("")
	r, err := OpenRaft(RaftConfig{
		NodeID: "n1", Dir: dir, Transport: trans, Bootstrap: true,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond,
		LeaderLeaseTimeout: 25 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
	}, NewFSM())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			if err := r.Shutdown(); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
	t.Cleanup(shutdown)
	waitFor(t, 10*time.Second, "leadership", r.IsLeader)
	return r, shutdown
}

type leaderFixture struct {
	t   *testing.T
	r   *Raft
	f   *FSM
	clk *fakeClock
	l   *Leader
}

const testLeaseTTL = 10 * time.Second

func newLeaderFixture(t *testing.T) *leaderFixture {
	t.Helper()
	r, _ := openTestRaft(t, t.TempDir())
	clk := newFakeClock()
	l, err := NewLeader(LeaderConfig{LeaseTTL: testLeaseTTL, Clock: clk}, r.FSM(), r)
	if err != nil {
		t.Fatal(err)
	}
	x := &leaderFixture{t: t, r: r, f: r.FSM(), clk: clk, l: l}
	x.apply(keyCmd("hash-acme", "acme", PriorityPaid))
	for _, c := range storedCmds("cid-ds1") {
		x.apply(c)
	}
	x.apply(datasetCmd("ds1", "acme"))
	return x
}

func (x *leaderFixture) apply(c Command) any {
	x.t.Helper()
	v, err := x.r.Apply(x.t.Context(), c)
	if err != nil {
		x.t.Fatalf("apply %s: %v", c.Type(), err)
	}
	return v
}

func (x *leaderFixture) reconcile() {
	x.t.Helper()
	if err := x.l.Reconcile(x.t.Context()); err != nil {
		x.t.Fatalf("reconcile: %v", err)
	}
}

func (x *leaderFixture) job(id string) Job {
	x.t.Helper()
	j, ok := x.f.Job(id)
	if !ok {
		x.t.Fatalf("job %s not found", id)
	}
	return j
}

func (x *leaderFixture) wantState(id, state string) Job {
	x.t.Helper()
	j := x.job(id)
	if j.State != state {
		x.t.Fatalf("job %s is %s (reason %q), want %s", id, j.State, j.Reason, state)
	}
	return j
}

// startJob submits a paid job asking for gpus GPUs and lets the leader
// assign it.
func (x *leaderFixture) startJob(id string, gpus int) Job {
	x.t.Helper()
	x.apply(submitCmd(id, "acme", PriorityPaid, "ds1", gpus))
	x.reconcile()
	return x.wantState(id, StateRunning)
}

func TestReconcileAssigns(t *testing.T) {
	t.Parallel()
	x := newLeaderFixture(t)
	x.apply(nodeCmd("n1", "i1", 2, a100s(2)...))
	x.apply(submitCmd("gpu", "acme", PriorityPaid, "ds1", 2))
	x.apply(submitCmd("cpu", "acme", PriorityFree, "ds1", 0))
	x.apply(submitCmd("toobig", "acme", PriorityFree, "ds1", 3))
	x.reconcile()

	g := x.wantState("gpu", StateRunning)
	if g.Node != "n1" || g.Attempts != 1 || g.Lease == nil || g.Lease.Token == 0 || len(g.Lease.GPUs) != 2 ||
		g.Lease.Incarnation != "i1" || !g.Lease.ExpiresAt.Equal(t0.Add(testLeaseTTL)) || !g.StartedAt.Equal(t0) {
		t.Fatalf("gpu job = %+v, lease %+v", g, g.Lease)
	}
	x.wantState("cpu", StateRunning)
	if j := x.wantState("toobig", StateQueued); j.Reason != "no ready node has 3 GPU(s)" {
		t.Fatalf("reason = %q", j.Reason)
	}
	// A second pass with nothing new changes nothing.
	before := x.f.LastIndex()
	x.reconcile()
	if x.f.LastIndex() != before {
		t.Fatal("an idle pass committed entries")
	}
}

func TestReconcileRequeuesExpiredLease(t *testing.T) {
	t.Parallel()
	x := newLeaderFixture(t)
	x.apply(nodeCmd("n1", "i1", 2, a100s(1)...))
	j := x.startJob("j1", 1)

	// Renewed in time: nothing happens.
	x.clk.Advance(testLeaseTTL - time.Second)
	x.apply(&RenewLease{At: x.clk.Now(), JobID: "j1", Token: j.Lease.Token, ExpiresAt: x.clk.Now().Add(testLeaseTTL)})
	x.clk.Advance(testLeaseTTL - time.Second)
	x.reconcile()
	x.wantState("j1", StateRunning)

	x.clk.Advance(2 * time.Second)
	x.reconcile()
	q := x.wantState("j1", StateQueued)
	if !strings.Contains(q.Reason, "lease") || q.Attempts != 1 || q.Lease != nil {
		t.Fatalf("requeued job = %+v", q)
	}
	// The runner's late completion is fenced off.
	_, err := x.r.Apply(t.Context(), &CompleteJob{At: x.clk.Now(), JobID: "j1", Token: j.Lease.Token, State: StateSucceeded})
	if !errors.Is(err, ErrStaleToken) {
		t.Fatalf("late completion: %v, want ErrStaleToken", err)
	}
	x.reconcile()
	if r := x.wantState("j1", StateRunning); r.Attempts != 2 || r.Lease.Token <= j.Lease.Token {
		t.Fatalf("restarted job = %+v lease %+v", r, r.Lease)
	}
}

func TestReconcileRequeuesFromDownNode(t *testing.T) {
	t.Parallel()
	x := newLeaderFixture(t)
	x.apply(nodeCmd("n1", "i1", 1))
	x.startJob("j1", 0)
	x.apply(nodeCmd("n2", "i1", 1))
	x.apply(&SetNodeState{At: x.clk.Now(), ID: "n1", State: NodeDown})
	// The node may only be cut off, its runner still at work: the job
	// stays leased until the lease is over.
	x.reconcile()
	x.wantState("j1", StateRunning)
	x.clk.Advance(testLeaseTTL + time.Second)
	x.reconcile()
	q := x.wantState("j1", StateQueued)
	if !strings.Contains(q.Reason, "node n1 failed") || q.Attempts != 1 || q.Voluntary != 0 {
		t.Fatalf("requeued job = %+v", q)
	}
	x.reconcile()
	if r := x.wantState("j1", StateRunning); r.Node != "n2" || r.Attempts != 2 {
		t.Fatalf("restarted job = %+v", r)
	}
}

func TestReconcileRequeuesFromRestartedNode(t *testing.T) {
	t.Parallel()
	x := newLeaderFixture(t)
	x.apply(nodeCmd("n1", "i1", 0, a100s(1)...))
	x.startJob("j1", 1)
	x.apply(nodeCmd("n1", "i2", 0, a100s(1)...)) // the process restarted
	x.reconcile()
	if q := x.wantState("j1", StateQueued); !strings.Contains(q.Reason, "restarted") {
		t.Fatalf("reason = %q", q.Reason)
	}
	x.reconcile()
	if r := x.wantState("j1", StateRunning); r.Lease.Incarnation != "i2" || r.Attempts != 2 {
		t.Fatalf("restarted job lease = %+v", r.Lease)
	}
}

func TestReconcileTimesOut(t *testing.T) {
	t.Parallel()
	x := newLeaderFixture(t)
	x.apply(nodeCmd("n1", "i1", 1))
	c := submitCmd("j1", "acme", PriorityPaid, "ds1", 0)
	c.Job.Timeout = Duration(time.Minute)
	x.apply(c)
	x.reconcile()
	j := x.wantState("j1", StateRunning)

	// The runner keeps renewing; at timeout+grace the leader stops waiting.
	renew := func() {
		x.apply(&RenewLease{At: x.clk.Now(), JobID: "j1", Token: j.Lease.Token, ExpiresAt: x.clk.Now().Add(testLeaseTTL)})
	}
	for x.clk.Now().Before(t0.Add(time.Minute + testLeaseTTL)) {
		renew()
		x.reconcile()
		x.wantState("j1", StateRunning)
		x.clk.Advance(5 * time.Second)
	}
	x.clk.Advance(time.Second)
	x.reconcile()
	to := x.wantState("j1", StateTimedOut)
	if to.Error == nil || to.Error.Code != "timed_out" || to.Lease != nil || to.FinishedAt == nil {
		t.Fatalf("timed-out job = %+v", to)
	}
}

// A job whose runner vanished (no renewals) after its time is up is timed
// out, not started again.
func TestReconcileTimeoutBeatsLeaseExpiry(t *testing.T) {
	t.Parallel()
	x := newLeaderFixture(t)
	x.apply(nodeCmd("n1", "i1", 1))
	c := submitCmd("j1", "acme", PriorityPaid, "ds1", 0)
	c.Job.Timeout = Duration(time.Second)
	x.apply(c)
	x.reconcile()
	x.clk.Advance(time.Hour)
	x.reconcile()
	x.wantState("j1", StateTimedOut)
}

func TestReconcileSprintPreemption(t *testing.T) {
	t.Parallel()
	x := newLeaderFixture(t)
	x.apply(nodeCmd("n1", "i1", 0, a100s(1)...))
	x.apply(submitCmd("free", "acme", PriorityFree, "ds1", 1))
	x.reconcile()
	free := x.wantState("free", StateRunning)

	x.apply(submitCmd("sprint", "acme", PrioritySprint, "ds1", 1))
	x.reconcile()
	if q := x.wantState("free", StateQueued); q.Reason != "preempted by sprint job sprint" && !strings.Contains(q.Reason, "busy") {
		t.Fatalf("preempted job reason = %q", q.Reason)
	}
	x.wantState("sprint", StateQueued)
	_, err := x.r.Apply(t.Context(), &CompleteJob{At: x.clk.Now(), JobID: "free", Token: free.Lease.Token, State: StateSucceeded})
	if !errors.Is(err, ErrStaleToken) {
		t.Fatalf("preempted runner's completion: %v, want ErrStaleToken", err)
	}

	x.reconcile()
	x.wantState("sprint", StateRunning)
	if q := x.wantState("free", StateQueued); !strings.Contains(q.Reason, "busy") || q.QueuePosition != 1 {
		t.Fatalf("preempted job = position %d reason %q", q.QueuePosition, q.Reason)
	}
}

func TestRunAssignsSubmittedJob(t *testing.T) {
	t.Parallel()
	r, _ := openTestRaft(t, t.TempDir())
	l, err := NewLeader(LeaderConfig{Tick: time.Hour}, r.FSM(), r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for _, c := range []Command{keyCmd("hash-acme", "acme", PriorityPaid), storedCmds("cid-ds1")[0], storedCmds("cid-ds1")[1], storedCmds("cid-ds1")[2], datasetCmd("ds1", "acme"),
		nodeCmd("n1", "i1", 1), submitCmd("j1", "acme", PriorityPaid, "ds1", 0)} {
		if _, err := r.Apply(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "j1 to start", func() bool {
		j, ok := r.FSM().Job("j1")
		return ok && j.State == StateRunning
	})
}

func TestNewLeaderValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewLeader(LeaderConfig{}, nil, nil); err == nil {
		t.Fatal("NewLeader accepted a nil FSM")
	}
}
