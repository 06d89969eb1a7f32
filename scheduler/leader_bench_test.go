package scheduler_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// BenchmarkLeaderPlacements1000Nodes measures placements on a leader that
// knows 1,000 GPU nodes (a real one-node Raft commits every assignment):
// b.N one-GPU jobs (at most 8,000: the GPUs there are) wait in the queue,
// then the leader loop starts and assigns
// them. It reports placements per second and the time from the loop's start
// to each job's assignment.
func BenchmarkLeaderPlacements1000Nodes(b *testing.B) {
	r := schedulertest.NewRaft(b)
	now := time.Now().UTC()
	ctx := context.Background()
	models := []string{"A100-80GB", "H100-80GB", "T4-16GB", "L4-24GB"}
	for i := range 1000 {
		var gpus []scheduler.GPU
		for g := range 8 {
			gpus = append(gpus, scheduler.GPU{Index: g, UUID: fmt.Sprintf("GPU-%d-%d", i, g), Model: models[i%len(models)], MemoryMB: 16384})
		}
		schedulertest.MustApply(b, r, &scheduler.RegisterNode{At: now, Node: scheduler.Node{
			ID: fmt.Sprintf("n%04d", i), State: scheduler.NodeReady, Slots: 4, Incarnation: "i", GPUs: gpus}})
	}
	ids := make([]string, 0, b.N)
	for i := range b.N {
		id := fmt.Sprintf("j%06d", i)
		ids = append(ids, id)
		j := scheduler.Job{ID: id, Tenant: "t", Type: "calibrate", Priority: "paid", Timeout: scheduler.Duration(time.Hour),
			Resources: scheduler.Resources{GPUs: 1, GPUModel: models[i%len(models)][:2]}}
		if _, err := r.Apply(ctx, &scheduler.SubmitJob{At: time.Now().UTC(), Job: j}); err != nil {
			b.Fatal(err)
		}
	}
	l, err := scheduler.NewLeader(scheduler.LeaderConfig{LeaseTTL: time.Hour, Tick: 10 * time.Millisecond}, r.FSM(), r)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(lctx) })
	defer func() { stop(); wg.Wait() }()
	schedulertest.WaitFor(b, 10*time.Minute, "every job assigned", func() bool {
		running, _ := r.FSM().Jobs(scheduler.JobFilter{State: scheduler.StateRunning})
		return len(running) == len(ids)
	})
	elapsed := time.Since(start)
	b.StopTimer()
	// Every job was placed and committed within elapsed: the slowest
	// placement's latency, and so a bound on the p99.
	b.ReportMetric(float64(len(ids))/elapsed.Seconds(), "placements/s")
	b.ReportMetric(float64(elapsed.Microseconds())/1000, "ms-to-place-all")
}
