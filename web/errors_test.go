package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("scheduler: submit_job: %w", err) }
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{wrap(scheduler.ErrNotFound), 404, "not_found"},
		{wrap(scheduler.ErrConflict), 409, "conflict"},
		{wrap(scheduler.ErrStaleToken), 409, "conflict"},
		{wrap(scheduler.ErrInvalid), 400, "invalid"},
		{wrap(scheduler.ErrQuota), 429, "quota_exceeded"},
		{wrap(scheduler.ErrNotLeader), 503, "no_leader"},
		{wrap(scheduler.ErrNoLeader), 503, "no_leader"},
		{fmt.Errorf("open: %w", cas.ErrNotFound), 404, "not_found"},
		{&http.MaxBytesError{Limit: 10}, 413, "too_large"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), 503, "timeout"},
		{fmt.Errorf("wrapped: %w", apiError(418, "teapot", "short and stout")), 418, "teapot"},
		{errors.New("disk on fire"), 500, "internal"},
	} {
		e := classify(c.err)
		if e.Status != c.status || e.Code != c.code || e.Message == "" {
			t.Errorf("classify(%v) = %d %q %q, want %d %q", c.err, e.Status, e.Code, e.Message, c.status, c.code)
		}
	}
	// Server faults do not leak their cause to the client.
	if e := classify(errors.New("disk on fire at /var/lib")); e.Message != "internal error" {
		t.Errorf("message %q", e.Message)
	}
}

// A quota's 429 says when to retry where the quota renews with time: API
// calls at the next UTC day, GPU-minutes at the next UTC month; storage
// and queued jobs free up when the tenant acts: no Retry-After.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 31, 23, 59, 30, 0, time.UTC)
	quota := func(name string) error {
		return fmt.Errorf("node: forward submit_job: %w", scheduler.ErrorOfKind("quota_exceeded",
			"submit job j1: quota exceeded: "+name+": tenant acme is at its limit"))
	}
	for _, c := range []struct {
		err  error
		want time.Duration
	}{
		{quota(scheduler.QuotaAPICalls), 30 * time.Second},
		{quota(scheduler.QuotaGPUMinutes), 30 * time.Second},
		{quota(scheduler.QuotaStorage), 0},
		{quota(scheduler.QuotaQueued), 0},
		{scheduler.ErrConflict, 0},
		{&Error{Status: 429, Code: "rate_limited", Message: "slow down", RetryAfter: 1500 * time.Millisecond}, 1500 * time.Millisecond},
	} {
		if got := retryAfter(classify(c.err), c.err, now); got != c.want {
			t.Errorf("retryAfter(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	mid := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)
	if got := retryAfter(classify(quota(scheduler.QuotaAPICalls)), quota(scheduler.QuotaAPICalls), mid); got != 12*time.Hour {
		t.Errorf("calls at noon: %s", got)
	}
	if got := retryAfter(classify(quota(scheduler.QuotaGPUMinutes)), quota(scheduler.QuotaGPUMinutes), mid); got != (16*24+12)*time.Hour {
		t.Errorf("GPU-minutes mid-March: %s", got)
	}
}

// asJob reads the answer of a Writer in any shape it may deliver.
func TestAsJob(t *testing.T) {
	t.Parallel()
	j := scheduler.Job{ID: "job_1", Tenant: "acme", State: scheduler.StateQueued}
	for _, v := range []any{j, &j, map[string]any{"id": "job_1", "tenant": "acme", "state": "queued"}, []byte(`{"id":"job_1"}`)} {
		got, ok := asJob(v)
		if _, isBytes := v.([]byte); isBytes {
			if ok {
				t.Errorf("asJob(bytes) = %+v", got)
			}
			continue
		}
		if !ok || got.ID != "job_1" || got.Tenant != "acme" {
			t.Errorf("asJob(%T) = %+v %v", v, got, ok)
		}
	}
	for _, v := range []any{nil, (*scheduler.Job)(nil), scheduler.Job{}, func() {}} {
		if _, ok := asJob(v); ok {
			t.Errorf("asJob(%T) ok", v)
		}
	}
}

func TestScrubPaths(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"open /tmp/TestX123/001/data/jobs/job_1/out.npy: no such file": "open .../out.npy: no such file",
		`exec: "/usr/bin/python3": not found`:                          `exec: ".../python3": not found`,
		"/var/lib/pwmesh/jobs/job_1/log":                               ".../log",
		"see http://host/a/b and docker.io/library/img":                "see http://host/a/b and docker.io/library/img",
		"no such endpoint: GET /jobs":                                  "no such endpoint: GET /jobs",
		"relative a/b/c stays":                                         "relative a/b/c stays",
		"queued: no node has 2 GPUs":                                   "queued: no node has 2 GPUs",
	} {
		if got := scrubPaths(in); got != want {
			t.Errorf("scrubPaths(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	for in, code := range map[string]string{
		`{"a":1,"b":[1,{"c":2}],"d":{}}`:   "",
		`[]`:                               "",
		`{"a":1,"a":2}`:                    "duplicate_key",
		`{"a":{"b":1,"c":{"b":2}},"b":3}`:  "",
		`{"p":{"size":16,"size":{"x":1}}}`: "duplicate_key",
		`{"p":[{"k":1},{"k":1,"k":2}]}`:    "duplicate_key",
		`{"size":1,"\u0073ize":2}`:         "duplicate_key",
		deep(maxJSONDepth):                 "",
		deep(maxJSONDepth + 1):             "too_deep",
		strings.Repeat("[", 5000) + strings.Repeat("]", 5000): "too_deep",
		`{"a":1} {}`: "invalid_json",
		`{"a":1`:     "invalid_json",
		``:           "invalid_json",
		`{"a" 1}`:    "invalid_json",
	} {
		err := checkJSON([]byte(in))
		var got string
		if err != nil {
			got = classify(err).Code
		}
		if got != code {
			t.Errorf("checkJSON(%.40q) = %v, want code %q", in, err, code)
		}
	}
	err := checkJSON([]byte(`{"params":{"list":[{"size":1,"size":2}]}}`))
	if err == nil || !strings.Contains(err.Error(), "$.params.list[0]") {
		t.Errorf("message does not say where: %v", err)
	}
}
