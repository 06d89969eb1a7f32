package scheduler

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func managedCmd(id, inc, pool string, at time.Time, gpus ...GPU) *RegisterNode {
	c := nodeCmd(id, inc, 2, gpus...)
	c.At, c.Node.Managed, c.Node.Pool = at, true, pool
	return c
}

// scaleFixture: tenant acme with dataset ds1 and one voter without GPUs.
func scaleFixture(t *testing.T) *harness {
	h := newHarness(t)
	h.must(keyCmd("hash-acme", "acme", PriorityPaid))
	h.stored("cid-ds1")
	h.must(datasetCmd("ds1", "acme"))
	h.must(nodeCmd("v1", "iv", 2))
	return h
}

var scaleCfg = ScaleConfig{Mode: ScalerExec, Min: 0, Max: 2, Idle: time.Minute, Cooldown: time.Minute}

// plan runs the planner on the fixture's state at now.
func (h *harness) planScale(now time.Time, cfg ScaleConfig) ScaleDecision {
	return PlanScale(h.f.ScaleInput(now, cfg))
}

func (h *harness) begin(now time.Time, d ScaleDecision) ScaleAction {
	h.tb.Helper()
	if d.Action == nil {
		h.tb.Fatalf("no action: %s", d.Reason)
	}
	v := h.must(&ScaleBegin{At: now, Action: *d.Action, Grace: Duration(5 * time.Minute)})
	return v.(ScaleAction)
}

// TestScalerUpAndDown walks the scaler from no GPU worker up to --scaler-max
// and back to none, with every decision taken from the replicated state.
func TestScalerUpAndDown(t *testing.T) {
	t.Parallel()
	h := scaleFixture(t)
	for _, id := range []string{"j1", "j2", "j3"} {
		h.must(submitCmd(id, "acme", PriorityPaid, "ds1", 1))
	}
	d := h.planScale(t0, scaleCfg)
	if d.Action == nil || d.Action.Add != 2 || d.Action.Pool != PoolShared || d.Action.GPUs != 1 || d.Desired != 2 || d.Current != 0 {
		t.Fatalf("three GPU jobs and no GPU worker: %+v (%s)", d.Action, d.Reason)
	}
	a := h.begin(t0, d)
	// One action at a time: the planner waits, a second begin is refused.
	if d := h.planScale(t0, scaleCfg); d.Action != nil {
		t.Fatalf("planned %+v while action %d is pending", d.Action, a.ID)
	}
	if _, err := h.apply(&ScaleBegin{At: t0, Action: ScaleAction{Add: 1}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second begin: %v", err)
	}
	if _, err := h.apply(&ScaleEnd{At: t0, ID: a.ID + 100, OK: true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("end of an unknown action: %v", err)
	}
	h.must(&ScaleEnd{At: t0, ID: a.ID, OK: true})
	if st := h.f.Scaler(); st.Pending != nil || len(st.Launching) != 1 || st.Launching[0].Count != 2 || st.Last() == nil || !st.Last().OK {
		t.Fatalf("after the action: %+v", st)
	}
	// Asked for, not arrived: nothing more is asked for (at max anyway).
	if d := h.planScale(t0.Add(10*time.Second), scaleCfg); d.Action != nil || d.Desired != 2 {
		t.Fatalf("while workers start: %+v desired %d (%s)", d.Action, d.Desired, d.Reason)
	}
	h.must(managedCmd("w1", "i1", "", t0.Add(20*time.Second), a100s(1)...))
	h.must(managedCmd("w2", "i2", "", t0.Add(20*time.Second), a100s(1)...))
	if st := h.f.Scaler(); len(st.Launching) != 0 {
		t.Fatalf("launches left after both arrived: %+v", st.Launching)
	}
	// Two run, one waits: at max, nothing to add.
	t1 := t0.Add(30 * time.Second)
	h.must(&AssignJob{At: t1, JobID: "j1", Node: "w1", Incarnation: "i1", GPUs: []int{0}, ExpiresAt: t1.Add(time.Hour)})
	h.must(&AssignJob{At: t1, JobID: "j2", Node: "w2", Incarnation: "i2", GPUs: []int{0}, ExpiresAt: t1.Add(time.Hour)})
	if d := h.planScale(t1, scaleCfg); d.Action != nil || d.Current != 2 {
		t.Fatalf("at max with a job waiting: %+v (%s)", d.Action, d.Reason)
	}
	// A running worker is never removed: not by the planner, not by a begin.
	if _, err := h.apply(&ScaleBegin{At: t1, Action: ScaleAction{Remove: []string{"w1"}}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("remove a worker that runs a job: %v", err)
	}
	if _, err := h.apply(&ScaleBegin{At: t1, Action: ScaleAction{Remove: []string{"v1"}}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("remove a node no scaler started: %v", err)
	}
	t2 := t1.Add(10 * time.Second)
	h.must(&CompleteJob{At: t2, JobID: "j1", Token: h.job("j1").Lease.Token, State: StateSucceeded})
	h.must(&AssignJob{At: t2, JobID: "j3", Node: "w1", Incarnation: "i1", GPUs: []int{0}, ExpiresAt: t2.Add(time.Hour)})
	t3 := t2.Add(5 * time.Second)
	h.must(&CompleteJob{At: t3, JobID: "j2", Token: h.job("j2").Lease.Token, State: StateSucceeded})
	h.must(&CompleteJob{At: t3.Add(5 * time.Second), JobID: "j3", Token: h.job("j3").Lease.Token, State: StateSucceeded})
	// Idle, but not for --scaler-idle yet.
	if d := h.planScale(t3.Add(30*time.Second), scaleCfg); d.Action != nil {
		t.Fatalf("removed before idle: %+v", d.Action)
	}
	// w2 went idle first and goes first; both go once idle long enough.
	d = h.planScale(t3.Add(61*time.Second), scaleCfg)
	if d.Action == nil || !slices.Equal(d.Action.Remove, []string{"w2"}) || d.Desired != 1 {
		t.Fatalf("w2 idle for a minute: %+v (%s)", d.Action, d.Reason)
	}
	d = h.planScale(t3.Add(70*time.Second), scaleCfg)
	if d.Action == nil || !slices.Equal(d.Action.Remove, []string{"w2", "w1"}) || d.Desired != 0 {
		t.Fatalf("both idle: %+v (%s)", d.Action, d.Reason)
	}
	// --scaler-min keeps one.
	if d := h.planScale(t3.Add(70*time.Second), ScaleConfig{Min: 1, Max: 2, Idle: time.Minute, Cooldown: time.Minute}); d.Action == nil || len(d.Action.Remove) != 1 {
		t.Fatalf("with min 1: %+v (%s)", d.Action, d.Reason)
	}
	a = h.begin(t3.Add(70*time.Second), d)
	for _, id := range []string{"w1", "w2"} {
		if n, _ := h.f.Node(id); !n.Draining {
			t.Fatalf("%s not drained by the removal's begin", id)
		}
	}
	// An operator cannot undrain a worker the scaler is stopping.
	if _, err := h.apply(&DrainNode{At: t3, ID: "w1", Undo: true}); !errors.Is(err, ErrConflict) {
		t.Fatalf("undrain during a removal: %v", err)
	}
	h.must(&ScaleEnd{At: t3.Add(71 * time.Second), ID: a.ID, OK: true})
	// A hook may return before its workers are gone: they are not chosen
	// again while they leave.
	if d := h.planScale(t3.Add(3*time.Minute), ScaleConfig{Max: 2, Idle: time.Minute}); d.Action != nil {
		t.Fatalf("removed again while leaving: %+v", d.Action)
	}
	h.must(&SetNodeState{At: t3.Add(72 * time.Second), ID: "w1", State: NodeLeft})
	h.must(&SetNodeState{At: t3.Add(72 * time.Second), ID: "w2", State: NodeLeft})
	if d := h.planScale(t3.Add(80*time.Second), scaleCfg); d.Action != nil || d.Current != 0 || d.Desired != 0 {
		t.Fatalf("after removal: %+v current %d desired %d (%s)", d.Action, d.Current, d.Desired, d.Reason)
	}
	// The state survives a snapshot.
	g := NewFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, g), snapshotBytes(t, h.f)) {
		t.Fatal("the scaler's state differs after a snapshot and restore")
	}
	if st := g.Scaler(); len(st.Recent) != 2 {
		t.Fatalf("restored %d recent actions, want 2", len(st.Recent))
	}
}

// TestScalerCooldownAndBackoff: a failed action is retried after a
// backoff, not at once; an interrupted one (the leader changed) keeps its
// workers counted as starting, so it is not repeated; a removal waits the
// cooldown after an addition.
func TestScalerCooldownAndBackoff(t *testing.T) {
	t.Parallel()
	h := scaleFixture(t)
	h.must(submitCmd("j1", "acme", PriorityPaid, "ds1", 1))
	a := h.begin(t0, h.planScale(t0, scaleCfg))
	h.must(&ScaleEnd{At: t0.Add(time.Second), ID: a.ID, Error: "hook: exit status 1"})
	st := h.f.Scaler()
	if st.Failures != 1 || len(st.Launching) != 0 || !st.NextTry.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("after a failure: %+v", st)
	}
	if d := h.planScale(t0.Add(3*time.Second), scaleCfg); d.Action != nil {
		t.Fatalf("retried before the backoff: %+v", d.Action)
	}
	// After the backoff, but within the cooldown of the failed attempt of
	// the same kind: it still waits.
	if d := h.planScale(t0.Add(7*time.Second), scaleCfg); d.Action != nil {
		t.Fatalf("retried within the cooldown: %+v (%s)", d.Action, d.Reason)
	}
	t1 := t0.Add(61 * time.Second)
	a = h.begin(t1, h.planScale(t1, scaleCfg))
	// The leader dies; the next one marks the action interrupted.
	h.must(&ScaleEnd{At: t1.Add(time.Second), ID: a.ID, Interrupted: true})
	st = h.f.Scaler()
	if len(st.Launching) != 1 || st.Failures != 1 || st.Last().OK || st.Last().Error == "" {
		t.Fatalf("interrupted: %+v", st)
	}
	// Its worker still counts as starting: no second one, even after the
	// cooldown, until its grace ends.
	if d := h.planScale(t1.Add(2*time.Minute), scaleCfg); d.Action != nil {
		t.Fatalf("repeated an interrupted action: %+v", d.Action)
	}
	if d := h.planScale(t1.Add(6*time.Minute), scaleCfg); d.Action == nil || d.Action.Add != 1 {
		t.Fatalf("a worker that never came is asked for again after its grace: %+v (%s)", d.Action, d.Reason)
	}
	// A worker that arrives idle right after an addition is not removed
	// within the cooldown, even when idle for longer than --scaler-idle.
	cfg := scaleCfg
	cfg.Idle, cfg.Cooldown = time.Second, 10*time.Minute
	h.must(managedCmd("w1", "i1", "", t1.Add(3*time.Second), a100s(1)...))
	h.must(&CancelJob{At: t1, JobID: "j1", Tenant: "acme"})
	if d := h.planScale(t1.Add(5*time.Minute), cfg); d.Action != nil {
		t.Fatalf("removed within the cooldown of an addition: %+v", d.Action)
	}
	if d := h.planScale(t1.Add(11*time.Minute), cfg); d.Action == nil || !slices.Equal(d.Action.Remove, []string{"w1"}) {
		t.Fatalf("after the cooldown: %+v (%s)", d.Action, d.Reason)
	}
}

// TestScalerKindsOfWorkers: jobs that need an A100 in pool acme get
// workers of that kind; a worker of another pool does not satisfy them and
// is not removed while its own pool's jobs wait.
func TestScalerKindsOfWorkers(t *testing.T) {
	t.Parallel()
	h := scaleFixture(t)
	h.must(&SetTenant{At: t0, Tenant: "acme", Pool: ptrTo("acme"), PoolOnly: ptrTo(true)})
	j := submitCmd("j1", "acme", PriorityPaid, "ds1", 2)
	j.Job.Resources.GPUModel = "A100"
	h.must(j)
	cfg := scaleCfg
	cfg.Max = 4
	d := h.planScale(t0, cfg)
	if d.Action == nil || d.Action.Pool != "acme" || d.Action.GPUClass != "A100" || d.Action.GPUs != 2 || d.Action.Add != 1 {
		t.Fatalf("A100 job of pool acme: %+v (%s)", d.Action, d.Reason)
	}
	a := h.begin(t0, d)
	h.must(&ScaleEnd{At: t0, ID: a.ID, OK: true})
	// A shared-pool worker, or one without an A100, is not what was asked.
	h.must(managedCmd("w-shared", "i1", "", t0, a100s(2)...))
	h.must(managedCmd("w-t4", "i2", "acme", t0, GPU{Index: 0, Model: "Tesla T4", MemoryMB: 16384}))
	if st := h.f.Scaler(); len(st.Launching) != 1 || st.Launching[0].Count != 1 {
		t.Fatalf("the wrong workers were counted as arrived: %+v", st.Launching)
	}
	h.must(managedCmd("w-acme", "i3", "acme", t0, a100s(2)...))
	if st := h.f.Scaler(); len(st.Launching) != 0 {
		t.Fatalf("the right worker was not counted: %+v", st.Launching)
	}
}

// TestScalerOnlyForWhatAWorkerCanRun: jobs no new worker could run (another
// region than the workers', an image without a Docker executor) ask for
// none; at --scaler-max, idle workers of the wrong kind make room for the
// kind that is missing; a worker placement is about to use is not idle; a
// failed removal gives its workers jobs again.
func TestScalerOnlyForWhatAWorkerCanRun(t *testing.T) {
	t.Parallel()
	h := scaleFixture(t)
	docker := ScaleConfig{Mode: ScalerDocker, Max: 2, Idle: time.Minute, Cooldown: time.Minute, Executors: []string{"process"}, Region: "eu"}
	us := submitCmd("j-us", "acme", PriorityPaid, "ds1", 1)
	us.Job.Region = "us"
	h.must(us)
	img := submitCmd("j-img", "acme", PriorityPaid, "ds1", 1)
	img.Job.Image = "registry.example/solver:1"
	h.must(img)
	if d := h.planScale(t0, docker); d.Action != nil || !strings.Contains(d.Reason, "2 GPU job(s) wait for what no worker") {
		t.Fatalf("jobs no docker worker could run: %+v (%s)", d.Action, d.Reason)
	}
	// An exec hook is told the region, and its workers may run images.
	exec := docker
	exec.Mode, exec.Region, exec.Executors = ScalerExec, "", []string{"process", "docker"}
	if d := h.planScale(t0, exec); d.Action == nil || d.Action.Add != 1 || !strings.Contains(d.Reason, "2 GPU job(s) wait for capacity") {
		t.Fatalf("the exec hook: %+v (%s)", d.Action, d.Reason)
	}
	h.must(&CancelJob{At: t0, JobID: "j-us", Tenant: "acme"})
	h.must(&CancelJob{At: t0, JobID: "j-img", Tenant: "acme"})

	// Two idle A100 workers at max 2; an H100 job waits.
	h.must(managedCmd("w1", "i1", "", t0, a100s(1)...))
	h.must(managedCmd("w2", "i2", "", t0, a100s(1)...))
	h100 := submitCmd("j-h100", "acme", PriorityPaid, "ds1", 1)
	h100.Job.Resources.GPUModel = "H100"
	h100.At = t0.Add(2 * time.Minute)
	h.must(h100)
	t1 := t0.Add(2 * time.Minute)
	d := h.planScale(t1, docker)
	if d.Action == nil || len(d.Action.Remove) != 2 || d.Desired != 2 {
		t.Fatalf("at max with the wrong kind idle: %+v (%s)", d.Action, d.Reason)
	}
	// The removal fails: both take jobs again.
	a := h.begin(t1, d)
	h.must(&ScaleEnd{At: t1, ID: a.ID, Error: "docker: no such container"})
	for _, id := range []string{"w1", "w2"} {
		if n, _ := h.f.Node(id); n.Draining {
			t.Fatalf("%s still drained after a failed removal", id)
		}
	}
	// A job placement gives to w1 keeps w1 from being idle.
	h.must(submitCmd("j-a100", "acme", PriorityPaid, "ds1", 1))
	t2 := t1.Add(10 * time.Minute)
	d = h.planScale(t2, docker)
	if d.Action == nil || !slices.Equal(d.Action.Remove, []string{"w2"}) {
		t.Fatalf("a worker about to run a job was chosen, or none: %+v (%s)", d.Action, d.Reason)
	}
}
