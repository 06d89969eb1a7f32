package scheduler

import (
	"errors"
	"testing"
	"time"
)

// TestDrainNode: a drained node takes no new job (placement passes it
// over, an assignment to it is refused), finishes what it runs, and stays
// drained when it registers again after a restart.
func TestDrainNode(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base() // n1: 2 A100s
	h.must(nodeCmd("n2", "i2", 2, a100s(2)...))
	tok := h.running("j-run", 0)
	h.must(&DrainNode{At: t0, ID: "n1"})
	if _, err := h.apply(&DrainNode{At: t0, ID: "nowhere"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("drain an unknown node: %v", err)
	}
	h.must(submitCmd("j-new", "acme", PriorityPaid, "", 1))
	plan := h.f.currentPlan()
	if len(plan.Assign) != 1 || plan.Assign[0].Node != "n2" {
		t.Fatalf("plan %+v, want j-new on n2", plan.Assign)
	}
	if _, err := h.apply(&AssignJob{At: t0, JobID: "j-new", Node: "n1", Incarnation: "i1", GPUs: []int{1}, ExpiresAt: t0.Add(time.Minute)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("assign to a drained node: %v", err)
	}
	// What it runs goes on and finishes.
	h.must(&RenewLease{At: t0, JobID: "j-run", Token: tok, ExpiresAt: t0.Add(time.Minute)})
	h.must(&CompleteJob{At: t0.Add(time.Second), JobID: "j-run", Token: tok, State: StateSucceeded})
	// A restart does not undo the drain; draining again changes nothing.
	h.must(nodeCmd("n1", "i1b", 2, a100s(2)...))
	h.must(&DrainNode{At: t0, ID: "n1"})
	if n, _ := h.f.Node("n1"); !n.Draining || n.State != NodeReady {
		t.Fatalf("n1 after restart: draining %v state %s", n.Draining, n.State)
	}
	// Undone, it takes jobs again.
	h.must(&DrainNode{At: t0, ID: "n1", Undo: true})
	h.must(&DrainNode{At: t0, ID: "n2"})
	if plan := h.f.currentPlan(); len(plan.Assign) != 1 || plan.Assign[0].Node != "n1" {
		t.Fatalf("after undrain: %+v", plan.Assign)
	}
}
