package worker

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// noop is an executor whose job does nothing but write one output file: it
// measures the mesh's own overhead per job (Raft commits for submit, assign
// and complete, lease handling, bundle packing and storing).
type noop struct{}

func (noop) Name() string { return "noop" }

func (noop) Run(_ context.Context, t Task) error {
	return os.WriteFile(filepath.Join(t.Root, OutputDir, "ok.txt"), []byte("ok\n"), 0o644)
}

// BenchmarkJobThroughput submits b.N no-op jobs to one node (real Raft on an
// in-memory transport, leader loop, worker with 8 slots) and reports how
// many finish per second.
func BenchmarkJobThroughput(b *testing.B) {
	f := newFixtureWith(b, noop{}, 8)
	ids := make([]string, 0, b.N)
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		ids = append(ids, f.submit("calibrate", "", `{}`, time.Minute))
	}
	last := ids[len(ids)-1]
	schedulertest.WaitFor(b, 5*time.Minute, "all jobs", func() bool {
		for _, id := range []string{ids[0], last} {
			if j, _ := f.fsm.Job(id); !scheduler.Terminal(j.State) {
				return false
			}
		}
		jobs, _ := f.fsm.Jobs(scheduler.JobFilter{State: scheduler.StateSucceeded})
		return len(jobs) == len(ids)
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}
