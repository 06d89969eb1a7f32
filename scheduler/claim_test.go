package scheduler_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// A held job keeps the capacity it would get, so nothing behind it takes it,
// and says why it waits.
func TestPlaceHeldJobKeepsItsCapacity(t *testing.T) {
	t.Parallel()
	in := scheduler.PlaceInput{
		Nodes: []scheduler.Node{{ID: "n1", State: scheduler.NodeReady, Slots: 1, Incarnation: "i"}},
		Queued: []scheduler.Job{
			{ID: "a", Priority: "sprint", Seq: 2},
			{ID: "b", Priority: "free", Seq: 1},
		},
		Held: map[string]bool{"a": true},
	}
	p := scheduler.Place(in)
	if len(p.Assign) != 0 {
		t.Fatalf("assignments %+v, want none (a is held, b must not take its slot)", p.Assign)
	}
	if !strings.Contains(p.Reasons["a"], "announced") {
		t.Fatalf("reason of the held job: %q", p.Reasons["a"])
	}
	in.Held = nil
	if p := scheduler.Place(in); len(p.Assign) != 1 || p.Assign[0].JobID != "a" {
		t.Fatalf("without the hold: %+v", p.Assign)
	}
}

// An assignment (the leader's or a node's claim) of a CPU job to a node
// whose slots are all busy is refused.
func TestAssignRefusesBusySlots(t *testing.T) {
	t.Parallel()
	r := schedulertest.NewRaft(t)
	now := time.Unix(1_800_000_000, 0).UTC()
	schedulertest.MustApply(t, r, &scheduler.RegisterNode{At: now, Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: 1, Incarnation: "i"}})
	for _, id := range []string{"j1", "j2"} {
		schedulertest.MustApply(t, r, &scheduler.SubmitJob{At: now, Job: scheduler.Job{ID: id, Tenant: "acme", Type: "calibrate", Priority: "paid"}})
	}
	schedulertest.MustApply(t, r, &scheduler.AssignJob{At: now, JobID: "j1", Node: "n1", Incarnation: "i", ExpiresAt: now.Add(time.Minute)})
	_, err := r.Apply(t.Context(), &scheduler.AssignJob{Claim: true, At: now, JobID: "j2", Node: "n1", Incarnation: "i", ExpiresAt: now.Add(time.Minute)})
	if !errors.Is(err, scheduler.ErrConflict) {
		t.Fatalf("claim beyond the slots: %v, want ErrConflict", err)
	}
}

// A batch applies each assignment on its own: a refused one does not stop
// the others, and each gets the entry's index as fencing token.
func TestAssignBatch(t *testing.T) {
	t.Parallel()
	r := schedulertest.NewRaft(t)
	now := time.Unix(1_800_000_000, 0).UTC()
	schedulertest.MustApply(t, r, &scheduler.RegisterNode{At: now, Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: 2, Incarnation: "i"}})
	for _, id := range []string{"j1", "j2"} {
		schedulertest.MustApply(t, r, &scheduler.SubmitJob{At: now, Job: scheduler.Job{ID: id, Tenant: "acme", Type: "calibrate", Priority: "paid"}})
	}
	v := schedulertest.MustApply(t, r, &scheduler.AssignBatch{Assignments: []scheduler.AssignJob{
		{At: now, JobID: "j1", Node: "n1", Incarnation: "i", ExpiresAt: now.Add(time.Minute)},
		{At: now, JobID: "nope", Node: "n1", Incarnation: "i", ExpiresAt: now.Add(time.Minute)},
		{At: now, JobID: "j2", Node: "n1", Incarnation: "old", ExpiresAt: now.Add(time.Minute)},
	}})
	res := v.(scheduler.BatchResult)
	if res.Errors[0] != "" || res.Errors[1] == "" || res.Errors[2] == "" {
		t.Fatalf("batch result %+v", res)
	}
	j1, _ := r.FSM().Job("j1")
	j2, _ := r.FSM().Job("j2")
	if j1.State != scheduler.StateRunning || j1.Lease.Token == 0 || j2.State != scheduler.StateQueued {
		t.Fatalf("after the batch: j1 %s, j2 %s", j1.State, j2.State)
	}
	_, err := r.Apply(t.Context(), &scheduler.AssignBatch{Assignments: []scheduler.AssignJob{{At: now, JobID: "nope", Node: "n1", Incarnation: "i"}}})
	if !errors.Is(err, scheduler.ErrConflict) {
		t.Fatalf("all-refused batch: %v, want ErrConflict", err)
	}
}
