package web_test

import (
	"net/http"
	"testing"

	"github.com/pwmesh/pwmesh/scheduler"
)

// A free tenant's generate_dataset whose params compile an operator past
// the free tier's bound is refused before anything is written; a paid
// tenant's is accepted, and so is a free one within the bound.
func TestOperatorBoundAtSubmit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := map[string]any{"type": "generate_dataset", "params": map[string]any{"size": 256, "sampling": 1}}
	e.unchanged(func() {
		wantQuota(t, e.doJSON("POST", "/jobs", e.acme, big), scheduler.OperatorBound, "512 MiB", "16 MiB", "free tier")
	})
	// Exactly at the bound: 128×128 at sampling 0.5 is 16 MiB.
	e.submit(e.acme, map[string]any{"type": "generate_dataset", "params": map[string]any{"size": 128, "sampling": 0.5}})
	e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	if j := e.submit(e.globex, big); j.State != scheduler.StateQueued {
		t.Fatalf("paid generate_dataset of 256 at 1: %+v", j)
	}
	// The tenant's tier decides: globex moved to free is bound too.
	free := scheduler.PriorityFree
	e.apply(&scheduler.SetTenant{At: testNow, Tenant: "globex", Tier: &free})
	e.unchanged(func() {
		wantQuota(t, e.doJSON("POST", "/jobs", e.globex, big), scheduler.OperatorBound)
	})
	// A malformed request hears what is wrong with it first.
	wantError(t, e.doJSON("POST", "/jobs", e.acme, map[string]any{"type": "generate_dataset", "params": map[string]any{"size": 256}, "priority": "paid"}),
		http.StatusForbidden, "priority_not_allowed")
}
