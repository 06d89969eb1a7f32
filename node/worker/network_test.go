package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// netExec is a container executor that records its tasks and runs each
// until it is stopped.
type netExec struct {
	grants  bool
	started chan Task
}

func (e *netExec) Name() string        { return "docker" }
func (e *netExec) GrantsNetwork() bool { return e.grants }

func (e *netExec) Run(ctx context.Context, t Task) error {
	e.started <- t
	<-ctx.Done()
	return ctx.Err()
}

// TestJobNetworkReachesTheExecutor: the job's network travels to the
// executor in Task.Network; a job without one gets none.
func TestJobNetworkReachesTheExecutor(t *testing.T) {
	t.Parallel()
	exec := &netExec{grants: true, started: make(chan Task, 2)}
	f := newFixtureWith(t, exec, 2, func(c *Config) { c.Images.Allowed = []string{"job"} })
	if !f.worker.GrantsNetwork() {
		t.Fatal("GrantsNetwork is false for an executor that grants it")
	}
	schedulertest.MustApply(t, f.raft, &scheduler.RegisterNode{At: time.Now(), Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: 2,
		Incarnation: "inc1", Executors: []string{f.worker.Executor()}, JobNetwork: f.worker.GrantsNetwork()}})
	submit := func(network string) string {
		id := f.newID("job_")
		schedulertest.MustApply(t, f.raft, &scheduler.SubmitJob{At: time.Now(), Job: scheduler.Job{ID: id, Tenant: "acme", Type: "generate_dataset",
			Priority: "paid", Image: "job:1", Network: network, Timeout: scheduler.Duration(time.Hour)}})
		return id
	}
	want := map[string]string{submit(scheduler.NetworkBridge): scheduler.NetworkBridge, submit(""): ""}
	for range want {
		select {
		case task := <-exec.started:
			if w, ok := want[task.JobID]; !ok || task.Network != w || task.Image != "job:1" {
				t.Errorf("task %s: network %q image %q, want network %q", task.JobID, task.Network, task.Image, w)
			}
		case <-time.After(time.Minute):
			t.Fatal("the jobs did not start")
		}
	}
}

// TestProcessRefusesNetwork: the process executor has no way to give a job
// network, or to take the host's away, so it refuses a task that asks.
func TestProcessRefusesNetwork(t *testing.T) {
	t.Parallel()
	p := &Process{Binary: "/nonexistent/pwmesh"}
	err := p.Run(t.Context(), Task{JobID: "j1", Root: t.TempDir(), Timeout: time.Minute, Network: scheduler.NetworkBridge})
	if !errors.Is(err, ErrNoNetwork) {
		t.Fatalf("err = %v, want ErrNoNetwork", err)
	}
	f := newFixture(t)
	if f.worker.GrantsNetwork() {
		t.Error("a worker with the process executor says it grants network")
	}
}
