package scheduler_test

import (
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// Hand-backs and preemptions do not use up a job's attempts; lost runs do.
func TestVoluntaryRequeuesDoNotCountTowardMaxAttempts(t *testing.T) {
	t.Parallel()
	r := schedulertest.NewRaft(t)
	now := time.Unix(1_800_000_000, 0).UTC()
	schedulertest.MustApply(t, r, &scheduler.RegisterNode{At: now, Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: 1, Incarnation: "i"}})
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: now, Key: scheduler.APIKey{Hash: "h", Tenant: "acme", Tier: "paid"}})
	schedulertest.MustApply(t, r, &scheduler.SubmitJob{At: now, Job: scheduler.Job{ID: "j1", Tenant: "acme", Type: "calibrate", Priority: "paid"}})
	run := func(voluntary bool) scheduler.Job {
		v := schedulertest.MustApply(t, r, &scheduler.AssignJob{At: now, JobID: "j1", Node: "n1", Incarnation: "i", ExpiresAt: now.Add(time.Minute)})
		j := v.(scheduler.Job)
		return schedulertest.MustApply(t, r, &scheduler.RequeueJob{At: now, JobID: "j1", Token: j.Lease.Token, Reason: "x", Voluntary: voluntary}).(scheduler.Job)
	}
	for range scheduler.MaxAttempts + 2 {
		if j := run(true); j.State != scheduler.StateQueued {
			t.Fatalf("after voluntary requeues: %s", j.State)
		}
	}
	var j scheduler.Job
	for range scheduler.MaxAttempts {
		j = run(false)
	}
	if j.State != scheduler.StateFailed || j.Error == nil || j.Error.Code != "too_many_attempts" {
		t.Fatalf("after %d lost runs: %s %+v", scheduler.MaxAttempts, j.State, j.Error)
	}
}
