package web_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// TestGetJobWaitsForAChange: GET /jobs/{id}?wait= answers when the job
// leaves the state the client saw, so following a job costs a call per
// change.
func TestGetJobWaitsForAChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.globex, map[string]any{"type": "generate_dataset"})
	got := make(chan resp, 1)
	go func() { got <- e.do("GET", "/jobs/"+j.ID+"?wait=20s&state=queued", e.globex, nil) }()
	// It waits while the job stays queued...
	select {
	case r := <-got:
		t.Fatalf("answered before the job changed: %d %s", r.status, r.body)
	case <-time.After(100 * time.Millisecond):
	}
	// ...and answers when it starts.
	e.runJob(j.ID, testNow, nil)
	r := <-got
	wantStatus(t, r, http.StatusOK)
	var v scheduler.Job
	r.decode(t, &v)
	if v.State != scheduler.StateRunning {
		t.Fatalf("state %s, want running", v.State)
	}
	// A state other than the job's answers at once; so does wait=0s.
	for _, q := range []string{"?wait=20s&state=queued", "?wait=0s"} {
		r := e.do("GET", "/jobs/"+j.ID+q, e.globex, nil)
		wantStatus(t, r, http.StatusOK)
	}
	for _, q := range []string{"?wait=forever", "?wait=-1s", "?wait=2h", "?wait=1s&state=sleeping"} {
		r := e.do("GET", "/jobs/"+j.ID+q, e.globex, nil)
		wantStatus(t, r, http.StatusBadRequest)
	}
	// Another tenant's job is not found, wait or not.
	wantStatus(t, e.do("GET", "/jobs/"+j.ID+"?wait=5s", e.acme, nil), http.StatusNotFound)
}
