package web_test

import (
	"net/http"
	"testing"

	"github.com/pwmesh/pwmesh/scheduler"
)

// TestDrainNode: POST /nodes/{id}/drain is an admin's; the node shows
// "draining" while a job runs there and "drained" once none does, and a
// new job is not placed on it.
func TestDrainNode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.globex, map[string]any{"type": "generate_dataset"})
	tok := e.runJob(j.ID, testNow, nil) // registers n1
	before := e.sig()
	wantError(t, e.do("POST", "/nodes/n1/drain", e.globex, nil), http.StatusForbidden, "forbidden")
	wantError(t, e.do("POST", "/nodes/nowhere/drain", e.admin, nil), http.StatusNotFound, "not_found")
	if e.sig() != before {
		t.Fatal("a refused drain changed the state")
	}
	r := e.do("POST", "/nodes/n1/drain", e.admin, nil)
	wantStatus(t, r, http.StatusAccepted)
	var v struct{ ID, State string }
	r.decode(t, &v)
	if v.ID != "n1" || v.State != "draining" {
		t.Fatalf("drain answered %+v, want n1 draining", v)
	}
	// A new job waits: the only node is drained.
	q := e.submit(e.globex, map[string]any{"type": "generate_dataset"})
	if got, _ := e.fsm.Job(q.ID); got.State != scheduler.StateQueued || got.Reason == "" {
		t.Fatalf("job on a drained mesh: %s %q", got.State, got.Reason)
	}
	// The running job finishes; the node is then drained.
	e.apply(&scheduler.CompleteJob{At: testNow, JobID: j.ID, Token: tok, State: scheduler.StateFailed})
	r = e.do("GET", "/nodes", e.admin, nil)
	var list struct{ Nodes []struct{ ID, State string } }
	r.decode(t, &list)
	if len(list.Nodes) != 1 || list.Nodes[0].State != "drained" {
		t.Fatalf("nodes %+v, want n1 drained", list.Nodes)
	}
	// Undrained (an admin's), it is ready again.
	wantError(t, e.do("DELETE", "/nodes/n1/drain", e.globex, nil), http.StatusForbidden, "forbidden")
	r = e.do("DELETE", "/nodes/n1/drain", e.admin, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &v)
	if v.State != "ready" {
		t.Fatalf("undrain answered %+v, want ready", v)
	}
}
