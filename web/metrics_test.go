package web_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/web"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	e.do("GET", "/jobs/"+j.ID, e.acme, nil)
	e.do("GET", "/jobs/nope", e.acme, nil)
	e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	e.doJSON("POST", "/jobs/"+j.ID+"/cancel", e.acme, nil)
	e.do("GET", "/no/such/path", "", nil)

	r := e.do("GET", "/metrics", "", nil)
	wantStatus(t, r, 200)
	body := string(r.body)
	for _, want := range []string{
		`pwmesh_http_requests_total{code="202",method="POST",route="POST /jobs"} 2`,
		`pwmesh_http_requests_total{code="200",method="GET",route="GET /jobs/{id}"} 1`,
		`pwmesh_http_requests_total{code="404",method="GET",route="GET /jobs/{id}"} 1`,
		`pwmesh_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`pwmesh_http_request_duration_seconds_bucket{route="POST /jobs",le="+Inf"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "job_") || strings.Contains(body, "/no/such") {
		t.Error("a raw path leaked into a label")
	}
}

// New refuses a registry that already holds its metrics (a second Server on
// the same registry) instead of panicking.
func TestNewValidates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	deps := web.Deps{State: e.fsm, Writer: e.raft, Store: e.store, Datasets: plainDatasets{e}, Cluster: e.cluster, JobTypes: testJobTypes}
	if _, err := web.New(web.Config{Registry: e.reg}, deps); err == nil {
		t.Fatal("second registration accepted")
	}
	if _, err := web.New(web.Config{}, deps); err == nil {
		t.Fatal("missing registry accepted")
	}
	if _, err := web.New(web.Config{Registry: prometheus.NewRegistry()}, web.Deps{State: e.fsm}); err == nil {
		t.Fatal("missing deps accepted")
	}
	if _, err := web.New(web.Config{Registry: prometheus.NewRegistry()}, deps); err != nil {
		t.Fatal(err)
	}
}
