package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

func TestSubmitJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ds := e.upload(e.acme, "scan.npz", []byte("measurements"))
	r := e.doJSON("POST", "/jobs", e.acme, map[string]any{
		"type": "reconstruct", "dataset": ds.ID, "params": map[string]any{"iterations": 10},
		"resources": map[string]any{"gpus": 1, "gpu_model": "A100", "gpu_memory_mb": 1024},
		"image":     "ghcr.io/pwm/core:1", "region": "eu",
	})
	wantStatus(t, r, http.StatusAccepted)
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Pwmesh-Node") != "n1" {
		t.Fatalf("headers %v", r.header)
	}
	var j scheduler.Job
	r.decode(t, &j)
	if !strings.HasPrefix(j.ID, "job_") || j.Tenant != "acme" || j.State != "queued" || j.Priority != "free" ||
		j.Dataset != ds.ID || time.Duration(j.Timeout) != time.Hour || j.Resources.GPUs != 1 ||
		j.Image != "ghcr.io/pwm/core:1" || j.Region != "eu" || !j.SubmittedAt.Equal(testNow) ||
		j.QueuePosition != 1 || j.Reason == "" || string(j.Params) != `{"iterations":10}` {
		t.Fatalf("job %+v", j)
	}
	for _, field := range []string{`"lease"`, `"submitted_at":"2026-03-15T12:00:00Z"`} {
		if strings.Contains(string(r.body), field) != (field != `"lease"`) {
			t.Errorf("body %s: %s", r.body, field)
		}
	}
	stored, ok := e.fsm.Job(j.ID)
	if !ok || stored.Tenant != "acme" {
		t.Fatalf("stored %+v", stored)
	}

	// A paid key defaults to paid; sprint defaults to a 4h timeout.
	p := e.submit(e.globex, map[string]any{"type": "generate_dataset"})
	s := e.submit(e.globex, map[string]any{"type": "generate_dataset", "priority": "sprint"})
	c := e.submit(e.globex, map[string]any{"type": "generate_dataset", "priority": "sprint", "timeout": "90m"})
	if p.Priority != "paid" || time.Duration(p.Timeout) != time.Hour ||
		s.Priority != "sprint" || time.Duration(s.Timeout) != 4*time.Hour || time.Duration(c.Timeout) != 90*time.Minute {
		t.Fatalf("paid %+v sprint %+v custom %+v", p, s, c)
	}
	// Admin keys submit under their own tenant.
	if a := e.submit(e.admin, map[string]any{"type": "generate_dataset"}); a.Tenant != "admin" {
		t.Fatalf("admin job tenant %q", a.Tenant)
	}
}

func TestSubmitJobRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *web.Config, d *web.Deps) {
		c.MaxJSONBytes = 1024
		d.ValidateParams = func(typ string, params json.RawMessage) error {
			if strings.Contains(string(params), `"bad"`) {
				return fmt.Errorf("workload: size must be 8 to 256")
			}
			if strings.Contains(string(params), `"alien"`) {
				return fmt.Errorf("workload: %w %q", web.ErrUnknownJobType, typ)
			}
			return nil
		}
	})
	ds := e.upload(e.acme, "scan.npz", []byte("measurements"))
	other := e.upload(e.globex, "theirs.npz", []byte("other"))
	ok := func(extra map[string]any) map[string]any {
		m := map[string]any{"type": "calibrate", "dataset": ds.ID}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name   string
		key    string
		body   any
		hdr    []string
		status int
		code   string
	}{
		{"malformed", e.acme, `{"type":`, nil, 400, "invalid_json"},
		{"not an object", e.acme, `[1]`, nil, 400, "invalid_json"},
		{"unknown field", e.acme, ok(map[string]any{"colour": "red"}), nil, 400, "invalid_json"},
		{"unknown nested field", e.acme, ok(map[string]any{"resources": map[string]any{"cpus": 2}}), nil, 400, "invalid_json"},
		{"trailing data", e.acme, `{"type":"generate_dataset"}x`, nil, 400, "invalid_json"},
		{"too large", e.acme, ok(map[string]any{"image": strings.Repeat("a", 2000)}), nil, 413, "too_large"},
		{"no type", e.acme, map[string]any{"dataset": ds.ID}, nil, 400, "unknown_job_type"},
		{"unknown type", e.acme, ok(map[string]any{"type": "train"}), nil, 400, "unknown_job_type"},
		{"validator unknown type", e.acme, ok(map[string]any{"params": map[string]any{"alien": 1}}), nil, 400, "unknown_job_type"},
		{"bad params", e.acme, ok(map[string]any{"params": map[string]any{"bad": 1}}), nil, 400, "invalid_params"},
		{"params not object", e.acme, ok(map[string]any{"params": []int{1}}), nil, 400, "invalid_params"},
		{"no dataset", e.acme, map[string]any{"type": "calibrate"}, nil, 400, "dataset_required"},
		{"missing dataset", e.acme, ok(map[string]any{"dataset": "ds_nope"}), nil, 404, "dataset_not_found"},
		{"foreign dataset", e.acme, ok(map[string]any{"dataset": other.ID}), nil, 404, "dataset_not_found"},
		{"junk dataset id", e.acme, ok(map[string]any{"dataset": "../etc"}), nil, 404, "dataset_not_found"},
		{"unknown priority", e.acme, ok(map[string]any{"priority": "urgent"}), nil, 400, "invalid_priority"},
		{"free asks paid", e.acme, ok(map[string]any{"priority": "paid"}), nil, 403, "priority_not_allowed"},
		{"free asks sprint", e.acme, ok(map[string]any{"priority": "sprint"}), nil, 403, "priority_not_allowed"},
		{"bad timeout", e.acme, ok(map[string]any{"timeout": "soon"}), nil, 400, "invalid_timeout"},
		{"zero timeout", e.acme, ok(map[string]any{"timeout": "0s"}), nil, 400, "invalid_timeout"},
		{"negative timeout", e.acme, ok(map[string]any{"timeout": "-1h"}), nil, 400, "invalid_timeout"},
		{"long timeout", e.acme, ok(map[string]any{"timeout": "4h1s"}), nil, 400, "invalid_timeout"},
		{"numeric timeout", e.acme, ok(map[string]any{"timeout": 3600}), nil, 400, "invalid_json"},
		{"negative gpus", e.acme, ok(map[string]any{"resources": map[string]any{"gpus": -1}}), nil, 400, "invalid_resources"},
		{"too many gpus", e.acme, ok(map[string]any{"resources": map[string]any{"gpus": 17}}), nil, 400, "invalid_resources"},
		{"negative memory", e.acme, ok(map[string]any{"resources": map[string]any{"gpu_memory_mb": -1}}), nil, 400, "invalid_resources"},
		{"control in model", e.acme, ok(map[string]any{"resources": map[string]any{"gpu_model": "A\x00"}}), nil, 400, "invalid_resources"},
		{"control in image", e.acme, ok(map[string]any{"image": "img\n"}), nil, 400, "invalid_image"},
		{"long image", e.acme, ok(map[string]any{"image": strings.Repeat("i", 257)}), nil, 400, "invalid_image"},
		{"control in region", e.acme, ok(map[string]any{"region": "eu\x1b"}), nil, 400, "invalid_region"},
		{"unknown network", e.acme, ok(map[string]any{"network": "host"}), nil, 400, "invalid_network"},
		{"network not a string", e.acme, ok(map[string]any{"network": true}), nil, 400, "invalid_json"},
		{"free asks network", e.acme, ok(map[string]any{"image": "img:1", "network": "bridge"}), nil, 403, "network_not_allowed"},
		{"network without image", e.globex, map[string]any{"type": "generate_dataset", "network": "bridge"}, nil, 400, "invalid_network"},
		{"long idempotency key", e.acme, ok(nil), []string{"Idempotency-Key", strings.Repeat("k", 257)}, 400, "invalid_idempotency_key"},
	}
	for _, c := range cases {
		e.unchanged(func() {
			r := e.doJSON("POST", "/jobs", c.key, c.body, c.hdr...)
			if r.status != c.status {
				t.Fatalf("%s: status %d, want %d: %s", c.name, r.status, c.status, r.body)
			}
			wantError(t, r, c.status, c.code)
		})
	}
	if jobs, _ := e.fsm.Jobs(scheduler.JobFilter{}); len(jobs) != 0 {
		t.Fatalf("%d jobs stored", len(jobs))
	}
}

// TestSubmitJobNetwork: network is none unless asked; a paid key may ask
// for the bridge for a job with an image, a free key is told that paid
// tiers may.
func TestSubmitJobNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.doJSON("POST", "/jobs", e.globex, map[string]any{"type": "generate_dataset", "image": "img:1", "network": "bridge"})
	wantStatus(t, r, http.StatusAccepted)
	var j scheduler.Job
	r.decode(t, &j)
	if j.Network != scheduler.NetworkBridge || !strings.Contains(string(r.body), `"network":"bridge"`) {
		t.Fatalf("job %s", r.body)
	}
	if stored, _ := e.fsm.Job(j.ID); stored.Network != scheduler.NetworkBridge {
		t.Fatalf("stored network %q", stored.Network)
	}
	// "none", or nothing, is the default and is not recorded, for any tier.
	for _, req := range []map[string]any{
		{"type": "generate_dataset", "network": "none"},
		{"type": "generate_dataset", "image": "img:1", "network": "none"},
		{"type": "generate_dataset", "image": "img:1"},
	} {
		for _, key := range []string{e.acme, e.globex} {
			r := e.doJSON("POST", "/jobs", key, req)
			wantStatus(t, r, http.StatusAccepted)
			var j scheduler.Job
			r.decode(t, &j)
			if j.Network != "" || strings.Contains(string(r.body), `"network"`) {
				t.Fatalf("%v: job %s", req, r.body)
			}
		}
	}
	// The refusal says what would work.
	r = e.doJSON("POST", "/jobs", e.acme, map[string]any{"type": "generate_dataset", "image": "img:1", "network": "bridge"})
	wantError(t, r, http.StatusForbidden, "network_not_allowed")
	if !strings.Contains(string(r.body), "paid tiers may") {
		t.Errorf("the refusal does not say that paid tiers may ask for network: %s", r.body)
	}
}

func TestSubmitIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	req := map[string]any{"type": "generate_dataset"}
	a := e.submit(e.acme, req, "Idempotency-Key", "k-1")
	b := e.submit(e.acme, req, "Idempotency-Key", "k-1")
	if a.ID != b.ID {
		t.Fatalf("same key made two jobs: %s %s", a.ID, b.ID)
	}
	c := e.submit(e.acme, req, "Idempotency-Key", "k-2")
	d := e.submit(e.globex, req, "Idempotency-Key", "k-1") // keys are per tenant
	n := e.submit(e.acme, req)
	if ids := []string{a.ID, c.ID, d.ID, n.ID}; len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 4 {
		t.Fatalf("ids %v", ids)
	}
	if jobs, _ := e.fsm.Jobs(scheduler.JobFilter{Tenant: "acme"}); len(jobs) != 3 {
		t.Fatalf("acme has %d jobs, want 3", len(jobs))
	}
}

type jobList struct {
	Jobs       []scheduler.Job `json:"jobs"`
	NextCursor *string         `json:"next_cursor"`
}

func TestListJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("GET", "/jobs", e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	if got := strings.TrimSpace(string(r.body)); got != `{"jobs":[],"next_cursor":null}` {
		t.Fatalf("empty list %s", got)
	}
	ds := e.upload(e.acme, "scan.npz", []byte("x"))
	var want []string
	for i := range 5 {
		typ := "generate_dataset"
		body := map[string]any{"type": typ}
		if i%2 == 1 {
			body = map[string]any{"type": "calibrate", "dataset": ds.ID}
		}
		want = append(want, e.submit(e.acme, body).ID)
	}
	e.submit(e.globex, map[string]any{"type": "generate_dataset"})
	e.doJSON("POST", "/jobs/"+want[4]+"/cancel", e.acme, nil)

	// Pages of two, in submission order, cursors opaque.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		path := "/jobs?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var l jobList
		r := e.do("GET", path, e.acme, nil)
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &l)
		for _, j := range l.Jobs {
			got = append(got, j.ID)
		}
		if l.NextCursor == nil {
			break
		}
		cursor = *l.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %v, want %v", got, want)
	}

	var l jobList
	e.do("GET", "/jobs?type=calibrate", e.acme, nil).decode(t, &l)
	if len(l.Jobs) != 2 || l.Jobs[0].ID != want[1] || l.Jobs[1].ID != want[3] {
		t.Fatalf("type filter %+v", l.Jobs)
	}
	e.do("GET", "/jobs?state=cancelled", e.acme, nil).decode(t, &l)
	if len(l.Jobs) != 1 || l.Jobs[0].ID != want[4] {
		t.Fatalf("state filter %+v", l.Jobs)
	}
	e.do("GET", "/jobs?state=queued&type=generate_dataset", e.acme, nil).decode(t, &l)
	if len(l.Jobs) != 2 || l.NextCursor != nil {
		t.Fatalf("both filters %+v", l)
	}

	for _, c := range []struct{ query, code string }{
		{"state=done", "invalid_state"},
		{"type=train", "unknown_job_type"},
		{"limit=0", "invalid_limit"},
		{"limit=1001", "invalid_limit"},
		{"limit=ten", "invalid_limit"},
		{"cursor=junk", "invalid_cursor"},
		{"cursor=5", "invalid_cursor"},
		{"cursor=cAAAAAAAAAAA", "invalid_cursor"},
		{"cursor=c!!!!!!!!!!!", "invalid_cursor"},
	} {
		wantError(t, e.do("GET", "/jobs?"+c.query, e.acme, nil), http.StatusBadRequest, c.code)
	}
}

func TestGetJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	var got scheduler.Job
	r := e.do("GET", "/jobs/"+j.ID, e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &got)
	if got.ID != j.ID || got.State != "queued" || got.QueuePosition != 1 {
		t.Fatalf("got %+v", got)
	}
	e.runJob(j.ID, testNow, nil)
	e.do("GET", "/jobs/"+j.ID, e.acme, nil).decode(t, &got)
	if got.State != "running" || got.Node != "n1" || got.Attempts != 1 || got.StartedAt == nil || got.Lease != nil {
		t.Fatalf("running %+v", got)
	}
	for _, bad := range []string{"a.b", "%2e%2e", strings.Repeat("x", 129), "job%00x", "job%20x"} {
		for _, suffix := range []string{"", "/cancel", "/logs", "/runbundle"} {
			method := "GET"
			if suffix == "/cancel" {
				method = "POST"
			}
			e.unchanged(func() {
				wantError(t, e.do(method, "/jobs/"+bad+suffix, e.acme, nil), http.StatusBadRequest, "invalid_id")
			})
		}
	}
}

func TestCancelJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	r := e.doJSON("POST", "/jobs/"+q.ID+"/cancel", e.acme, nil)
	wantStatus(t, r, http.StatusAccepted)
	var j scheduler.Job
	r.decode(t, &j)
	if j.State != "cancelled" || j.FinishedAt == nil || j.Error == nil || j.Error.Code != "cancelled" {
		t.Fatalf("cancelled %+v", j)
	}
	e.unchanged(func() {
		wantError(t, e.doJSON("POST", "/jobs/"+q.ID+"/cancel", e.acme, nil), http.StatusConflict, "already_finished")
	})

	// A running job is asked to stop; the runner's completion cancels it.
	run := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	tok := e.runJob(run.ID, testNow, nil)
	r = e.doJSON("POST", "/jobs/"+run.ID+"/cancel", e.acme, nil)
	wantStatus(t, r, http.StatusAccepted)
	r.decode(t, &j)
	if j.State != "running" || !j.CancelRequested {
		t.Fatalf("running after cancel %+v", j)
	}
	e.apply(&scheduler.CompleteJob{At: testNow, JobID: run.ID, Token: tok, State: scheduler.StateFailed})
	e.do("GET", "/jobs/"+run.ID, e.acme, nil).decode(t, &j)
	if j.State != "cancelled" {
		t.Fatalf("state %s", j.State)
	}
	wantError(t, e.doJSON("POST", "/jobs/missing/cancel", e.acme, nil), http.StatusNotFound, "not_found")
}

func TestJobLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	r := e.do("GET", "/jobs/"+j.ID+"/logs", e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	if len(r.body) != 0 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("no log yet: %q %v", r.body, r.header)
	}
	e.logs.append(j.ID, "step 1\nstep 2\n")
	r = e.do("GET", "/jobs/"+j.ID+"/logs", e.acme, nil)
	if r.status != 200 || string(r.body) != "step 1\nstep 2\n" {
		t.Fatalf("log %d %q", r.status, r.body)
	}
	wantError(t, e.do("GET", "/jobs/"+j.ID+"/logs?follow=maybe", e.acme, nil), 400, "invalid_follow")

	// A finished job's followed log is written whole and the stream ends.
	e.apply(&scheduler.CancelJob{At: testNow, Tenant: "acme", JobID: j.ID})
	r = e.do("GET", "/jobs/"+j.ID+"/logs?follow=1", e.acme, nil)
	if r.status != 200 || string(r.body) != "step 1\nstep 2\n" {
		t.Fatalf("follow finished %d %q", r.status, r.body)
	}
}

func TestJobLogsFollow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	tok := e.runJob(j.ID, testNow, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/jobs/"+j.ID+"/logs?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+e.acme)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	br := bufio.NewReader(res.Body)
	// The job has no log yet; lines arrive as they are written.
	e.logs.append(j.ID, "line 1\n")
	if l, err := br.ReadString('\n'); err != nil || l != "line 1\n" {
		t.Fatalf("first line %q %v", l, err)
	}
	e.logs.append(j.ID, "line 2\n")
	if l, err := br.ReadString('\n'); err != nil || l != "line 2\n" {
		t.Fatalf("second line %q %v", l, err)
	}
	// Lines written before the job ends are all delivered, then the stream ends.
	e.logs.append(j.ID, "line 3\nline 4\n")
	e.apply(&scheduler.CompleteJob{At: testNow, JobID: j.ID, Token: tok, State: scheduler.StateFailed,
		Error: &scheduler.JobError{Code: "workload", Message: "boom"}})
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read rest: %v", err)
	}
	if string(rest) != "line 3\nline 4\n" {
		t.Fatalf("rest %q", rest)
	}
}

// A client that goes away ends the stream of a job that never finishes.
func TestJobLogsFollowClientGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	e.logs.append(j.ID, "hello\n")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/jobs/"+j.ID+"/logs?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+e.acme)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(res.Body)
	if l, err := br.ReadString('\n'); err != nil || l != "hello\n" {
		t.Fatalf("line %q %v", l, err)
	}
	cancel()
	if _, err := io.ReadAll(br); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
	res.Body.Close()
	// The server's handler returns: its request shows up in the metrics.
	waitFor(t, 10*time.Second, "follow handler to end", func() bool {
		return strings.Contains(string(e.do("GET", "/metrics", "", nil).body),
			`pwmesh_http_requests_total{code="200",method="GET",route="GET /jobs/{id}/logs"} 1`)
	})
}

func TestRunBundle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": 1}})
	path := "/jobs/" + j.ID + "/runbundle"
	wantError(t, e.do("GET", path, e.acme, nil), http.StatusConflict, "not_ready")
	tok := e.runJob(j.ID, testNow, []int{0})
	wantError(t, e.do("GET", path, e.acme, nil), http.StatusConflict, "not_ready")

	bundle := []byte("runbundle_manifest.json...0123456789")
	e.apply(&scheduler.CompleteJob{At: testNow, JobID: j.ID, Token: tok, State: scheduler.StateFailed})
	wantError(t, e.do("GET", path, e.acme, nil), http.StatusConflict, "not_ready")

	ok := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	ref := e.finishJob(ok.ID, testNow, testNow.Add(time.Minute), nil, bundle)
	path = "/jobs/" + ok.ID + "/runbundle"
	r := e.do("GET", path, e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	etag := `"` + ref.CID.String() + `"`
	if string(r.body) != string(bundle) || r.header.Get("Content-Type") != "application/x-tar" ||
		r.header.Get("ETag") != etag ||
		!dispositionNames(r.header.Get("Content-Disposition"), ok.ID+".runbundle.tar") ||
		r.header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("bundle %q headers %v", r.body, r.header)
	}
	r = e.do("GET", path, e.acme, nil, "Range", "bytes=5-9")
	if r.status != http.StatusPartialContent || string(r.body) != string(bundle[5:10]) ||
		r.header.Get("Content-Range") != fmt.Sprintf("bytes 5-9/%d", len(bundle)) {
		t.Fatalf("range %d %q %v", r.status, r.body, r.header)
	}
	r = e.do("GET", path, e.acme, nil, "If-None-Match", etag)
	if r.status != http.StatusNotModified || len(r.body) != 0 {
		t.Fatalf("if-none-match %d %q", r.status, r.body)
	}

	// A bundle the store does not hold is not found.
	gone := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	ref2 := e.finishJob(gone.ID, testNow, testNow, nil, []byte("other bundle"))
	if err := e.store.Delete(context.Background(), ref2.CID); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.do("GET", "/jobs/"+gone.ID+"/runbundle", e.acme, nil), http.StatusNotFound, "bundle_not_found")
}

// BenchmarkSubmitJob posts jobs through the handler into a real Raft and
// reports latency percentiles.
func BenchmarkSubmitJob(b *testing.B) {
	e := newEnv(b)
	body := []byte(`{"type":"generate_dataset","params":{"size":64},"resources":{"gpus":1}}`)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("POST", "/jobs", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+e.globex)
		req.Header.Set("Content-Type", "application/json")
		w := &discardWriter{h: http.Header{}}
		start := time.Now()
		e.handler.ServeHTTP(w, req)
		lat = append(lat, time.Since(start))
		if w.status != http.StatusAccepted {
			b.Fatalf("status %d", w.status)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

// dispositionNames reports whether a Content-Disposition header is an
// attachment named file.
func dispositionNames(h, file string) bool {
	typ, params, err := mime.ParseMediaType(h)
	return err == nil && typ == "attachment" && params["filename"] == file
}
