package worker

import (
	"context"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// holdGPU is an executor whose job runs until it is stopped.
type holdGPU struct{ started chan Task }

func (h *holdGPU) Name() string { return "process" }

func (h *holdGPU) Run(ctx context.Context, t Task) error {
	h.started <- t
	<-ctx.Done()
	return ctx.Err()
}

// TestFailedGPUStopsAndHandsBack: a job on a GPU that fails is stopped and
// handed back (not counted as a lost attempt), and runs again on a GPU
// still in service.
func TestFailedGPUStopsAndHandsBack(t *testing.T) {
	t.Parallel()
	exec := &holdGPU{started: make(chan Task, 4)}
	f := newFixtureWith(t, exec, 1)
	schedulertest.MustApply(t, f.raft, &scheduler.RegisterNode{At: time.Now(), Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: 1,
		Incarnation: "inc1", Executors: []string{"process"},
		GPUs: []scheduler.GPU{{Index: 0, UUID: "GPU-0", Model: "A100", MemoryMB: 40960}, {Index: 1, UUID: "GPU-1", Model: "A100", MemoryMB: 40960}}}})
	id := f.newID("job_")
	schedulertest.MustApply(t, f.raft, &scheduler.SubmitJob{At: time.Now(), Job: scheduler.Job{ID: id, Tenant: "acme", Type: "calibrate",
		Priority: "paid", Resources: scheduler.Resources{GPUs: 1}, Timeout: scheduler.Duration(time.Hour)}})
	first := <-exec.started
	if len(first.GPUs) != 1 {
		t.Fatalf("task GPUs %v", first.GPUs)
	}
	j, _ := f.fsm.Job(id)
	failed := j.Lease.GPUs[0]
	// The node marks the GPU out of service, then stops what ran on it.
	gpus := []scheduler.GPU{{Index: 0}, {Index: 1}}
	gpus[failed].Unhealthy = "XID 79"
	schedulertest.MustApply(t, f.raft, &scheduler.UpdateGPUs{At: time.Now(), Node: "n1", GPUs: gpus})
	if n := f.worker.StopForGPU(failed, "XID 79"); n != 1 {
		t.Fatalf("stopped %d jobs", n)
	}
	if n := f.worker.StopForGPU(1-failed, "XID 79"); n != 0 {
		t.Fatalf("stopped %d jobs on the healthy GPU", n)
	}
	select {
	case again := <-exec.started:
		if again.GPUs[0] == first.GPUs[0] {
			t.Fatalf("ran again on the failed GPU %v", again.GPUs)
		}
	case <-time.After(time.Minute):
		t.Fatal("the job did not run again")
	}
	j = f.wait(id, func(j scheduler.Job) bool { return j.State == scheduler.StateRunning && j.Attempts == 2 })
	if j.Voluntary != 1 || j.Lease.GPUs[0] == failed {
		t.Fatalf("job after the failure: %+v", j)
	}
}
