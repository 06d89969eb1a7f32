package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/scheduler"
)

func TestJobSubmitParams(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		got     scheduler.JobRequest
		idemKey string
	)
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"POST /jobs": func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			idemKey = r.Header.Get("Idempotency-Key")
			if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
				apiError(w, 400, "bad_request", err.Error())
				return
			}
			writeJSON(w, http.StatusAccepted, scheduler.Job{ID: "job-1", Type: got.Type, State: "queued", Params: got.Params})
		},
	})
	r := cli(t, addr, nil, "job", "submit",
		"--type", "generate_dataset", "--dataset", "ds-1",
		"--params-json", `{"size": 1, "noise": 0.1}`,
		"--param", "size=32", "--param", "severity=mild", "--param", "sampling=0.5", "--param", "seed=7",
		"--priority", "paid", "--gpus", "1", "--gpu-model", "A100", "--gpu-memory-mb", "40000",
		"--timeout", "30m", "--image", "img:1", "--region", "eu", "--network", "bridge", "--idempotency-key", "k-1")
	r.wantCode(t, 0)
	if r.stdout != "job-1\n" {
		t.Errorf("stdout = %q, want the job id", r.stdout)
	}
	mu.Lock()
	defer mu.Unlock()
	var params map[string]any
	if err := json.Unmarshal(got.Params, &params); err != nil {
		t.Fatalf("params %s: %v", got.Params, err)
	}
	want := map[string]any{"size": 32.0, "severity": "mild", "sampling": 0.5, "noise": 0.1, "seed": 7.0}
	if fmt.Sprint(params) != fmt.Sprint(want) {
		t.Errorf("params = %v, want %v", params, want)
	}
	if got.Type != "generate_dataset" || got.Dataset != "ds-1" || got.Priority != "paid" || got.Timeout != "30m" ||
		got.Image != "img:1" || got.Region != "eu" || got.Network != "bridge" ||
		got.Resources != (scheduler.Resources{GPUs: 1, GPUModel: "A100", GPUMemoryMB: 40000}) {
		t.Errorf("request = %+v", got)
	}
	if idemKey != "k-1" {
		t.Errorf("Idempotency-Key = %q", idemKey)
	}
}

func TestJobSubmitJSONAndError(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"POST /jobs": func(w http.ResponseWriter, r *http.Request) {
			var req scheduler.JobRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			if req.Priority == "sprint" {
				apiError(w, http.StatusForbidden, "priority_not_allowed", "a free key may not ask for sprint")
				return
			}
			writeJSON(w, http.StatusAccepted, scheduler.Job{ID: "job-2", Type: req.Type, State: "queued", QueuePosition: 4})
		},
	})
	r := cli(t, addr, nil, "job", "submit", "--type", "generate_dataset", "--json")
	r.wantCode(t, 0)
	var j scheduler.Job
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || j.ID != "job-2" || j.QueuePosition != 4 {
		t.Errorf("--json output %q: %+v, %v", r.stdout, j, err)
	}

	r = cli(t, addr, nil, "job", "submit", "--type", "calibrate", "--dataset", "ds-1", "--priority", "sprint")
	r.wantCode(t, 1)
	if r.stderr != "pwmesh: 403 priority_not_allowed: a free key may not ask for sprint\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestJobSubmitWait(t *testing.T) {
	t.Parallel()
	for _, final := range []string{scheduler.StateSucceeded, scheduler.StateFailed} {
		t.Run(final, func(t *testing.T) {
			t.Parallel()
			var polls atomic.Int32
			addr := fakeAPI(t, map[string]http.HandlerFunc{
				"POST /jobs": func(w http.ResponseWriter, r *http.Request) {
					writeJSON(w, http.StatusAccepted, scheduler.Job{ID: "job-3", State: "queued"})
				},
				"GET /jobs/{id}": jobRoute(func(id string) scheduler.Job {
					j := scheduler.Job{ID: id, Type: "calibrate", State: "running"}
					if polls.Add(1) >= 3 {
						j.State = final
						if final == scheduler.StateFailed {
							j.Error = &scheduler.JobError{Code: "workload_error", Message: "calibration diverged"}
						}
					}
					return j
				}),
			})
			r := cli(t, addr, nil, "job", "submit", "--type", "calibrate", "--dataset", "ds", "--wait", "--poll-interval", "1ms")
			if final == scheduler.StateSucceeded {
				r.wantCode(t, 0)
			} else {
				r.wantCode(t, 1)
				if !strings.Contains(r.stderr, "pwmesh: job job-3 failed: calibration diverged (workload_error)") {
					t.Errorf("stderr = %q", r.stderr)
				}
			}
			if !strings.Contains(r.stdout, "State:") || !strings.Contains(r.stdout, final) {
				t.Errorf("stdout does not show the final job:\n%s", r.stdout)
			}
		})
	}
}

func TestJobWaitExitCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		state  string
		code   int
		stderr string
	}{
		{scheduler.StateSucceeded, 0, ""},
		{scheduler.StateFailed, 1, "pwmesh: job j-failed failed: out of GPU memory (oom)\n"},
		{scheduler.StateCancelled, 1, "pwmesh: job j-cancelled cancelled\n"},
		{scheduler.StateTimedOut, 1, "pwmesh: job j-timed_out timed_out: ran past its 1h timeout (timeout)\n"},
	}
	for _, tc := range cases {
		t.Run(tc.state, func(t *testing.T) {
			t.Parallel()
			var polls atomic.Int32
			addr := fakeAPI(t, map[string]http.HandlerFunc{
				"GET /jobs/{id}": jobRoute(func(id string) scheduler.Job {
					j := scheduler.Job{ID: id, State: "queued"}
					if polls.Add(1) > 2 {
						j.State = tc.state
						switch tc.state {
						case scheduler.StateFailed:
							j.Error = &scheduler.JobError{Code: "oom", Message: "out of GPU memory"}
						case scheduler.StateTimedOut:
							j.Error = &scheduler.JobError{Code: "timeout", Message: "ran past its 1h timeout"}
						}
					}
					return j
				}),
			})
			id := "j-" + tc.state
			r := cli(t, addr, nil, "job", "wait", id, "--poll-interval", "1ms")
			r.wantCode(t, tc.code)
			if r.stdout != id+" "+tc.state+"\n" || r.stderr != tc.stderr {
				t.Errorf("stdout %q, stderr %q; want stderr %q", r.stdout, r.stderr, tc.stderr)
			}
			r = cli(t, addr, nil, "job", "wait", id, "--poll-interval", "1ms", "--json")
			r.wantCode(t, tc.code)
			var j scheduler.Job
			if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || j.State != tc.state {
				t.Errorf("--json stdout %q: %v", r.stdout, err)
			}
		})
	}
}

func TestJobWaitTimeout(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /jobs/{id}": jobRoute(func(id string) scheduler.Job { return scheduler.Job{ID: id, State: "running"} }),
	})
	r := cli(t, addr, nil, "job", "wait", "j1", "--timeout", "20ms", "--poll-interval", "1ms")
	r.wantCode(t, 1)
	if r.stderr != "pwmesh: job j1 still running after 20ms\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestJobWaitNotFound(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /jobs/{id}": func(w http.ResponseWriter, r *http.Request) {
			apiError(w, http.StatusNotFound, "job_not_found", "no job "+r.PathValue("id"))
		},
	})
	r := cli(t, addr, nil, "job", "wait", "nope")
	r.wantCode(t, 1)
	if r.stderr != "pwmesh: 404 job_not_found: no job nope\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestJobListTable(t *testing.T) {
	t.Parallel()
	submitted := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	pages := map[string]string{"": "c2", "c2": ""}
	jobsOf := map[string][]scheduler.Job{
		"": {
			{ID: "job-a", Type: "reconstruct", State: "running", Priority: "paid", Node: "n1", Attempts: 1, SubmittedAt: submitted},
		},
		"c2": {
			{ID: "job-b", Type: "calibrate", State: "queued", Priority: "free", SubmittedAt: submitted,
				QueuePosition: 2, Reason: "waiting for a free A100"},
		},
	}
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /jobs": func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if q.Get("state") != "" && q.Get("state") != "queued" {
				t.Errorf("state = %q", q.Get("state"))
			}
			cursor := q.Get("cursor")
			var next any
			if pages[cursor] != "" {
				next = pages[cursor]
			}
			writeJSON(w, http.StatusOK, map[string]any{"jobs": jobsOf[cursor], "next_cursor": next})
		},
	})
	r := cli(t, addr, nil, "job", "list", "--all")
	r.wantCode(t, 0)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows, got:\n%s", r.stdout)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "ID TYPE STATE PRIORITY NODE ATTEMPTS SUBMITTED QUEUE" {
		t.Errorf("header = %q", lines[0])
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "job-a reconstruct running paid n1 1 2025-03-01T12:00:00Z" {
		t.Errorf("row 1 = %q", lines[1])
	}
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != "job-b calibrate queued free - 0 2025-03-01T12:00:00Z #2: waiting for a free A100" {
		t.Errorf("row 2 = %q", lines[2])
	}
	// Columns line up: every row's STATE starts where the header's does.
	col := strings.Index(lines[0], "STATE")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "running") && !strings.HasPrefix(l[col:], "queued") {
			t.Errorf("row %q is not aligned with the header", l)
		}
	}

	// Without --all: one page and a note on stderr.
	r = cli(t, addr, nil, "job", "list", "--state", "queued")
	r.wantCode(t, 0)
	if strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stderr, "--cursor c2") {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}

	r = cli(t, addr, nil, "job", "list", "--all", "--json")
	r.wantCode(t, 0)
	var jobs []scheduler.Job
	if err := json.Unmarshal([]byte(r.stdout), &jobs); err != nil || len(jobs) != 2 || jobs[1].Reason == "" {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}
}

func TestJobGetCancelLogs(t *testing.T) {
	t.Parallel()
	started := time.Date(2025, 3, 1, 12, 1, 0, 0, time.UTC)
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /jobs/{id}": jobRoute(func(id string) scheduler.Job {
			return scheduler.Job{ID: id, Type: "reconstruct", State: "succeeded", Priority: "paid", Node: "n1",
				Attempts: 2, StartedAt: &started, Metrics: map[string]any{"psnr_db": 31.5},
				RunBundle: &scheduler.BundleRef{CID: "bafkx", SHA256: "ab", Size: 2048}}
		}),
		"POST /jobs/{id}/cancel": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusAccepted, scheduler.Job{ID: r.PathValue("id"), State: "running", CancelRequested: true})
		},
		"GET /jobs/{id}/logs": func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "step 1\nfollow=%s\n", r.URL.Query().Get("follow"))
		},
	})
	r := cli(t, addr, nil, "job", "get", "job-9")
	r.wantCode(t, 0)
	for _, want := range []string{"job-9", "succeeded", "Metric psnr_db:", "31.5", "bafkx (2.0 KiB)", "2025-03-01T12:01:00Z"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("job get output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cli(t, addr, nil, "job", "cancel", "job-9")
	r.wantCode(t, 0)
	if r.stdout != "job-9 cancel requested (state running)\n" {
		t.Errorf("cancel stdout = %q", r.stdout)
	}
	r = cli(t, addr, nil, "job", "logs", "job-9", "-f")
	r.wantCode(t, 0)
	if r.stdout != "step 1\nfollow=1\n" {
		t.Errorf("logs stdout = %q", r.stdout)
	}
}

func TestJobBundleNotSucceeded(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /jobs/{id}": jobRoute(func(id string) scheduler.Job { return scheduler.Job{ID: id, State: "running"} }),
		"GET /jobs/{id}/runbundle": func(w http.ResponseWriter, r *http.Request) {
			apiError(w, http.StatusConflict, "not_ready", "job is running")
		},
	})
	out := filepath.Join(t.TempDir(), "b.tar")
	r := cli(t, addr, nil, "job", "bundle", "j1", "-o", out)
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "job j1 is running") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}

// TestBuildParams: --param values are JSON when they parse, else strings.
func TestBuildParams(t *testing.T) {
	t.Parallel()
	b, err := buildParams(`{"size": 1, "keep": true}`, []string{"size=32", "severity=mild", "mask=[1,2]", "note=a=b", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"size": 32.0, "severity": "mild", "keep": true, "mask": []any{1.0, 2.0}, "note": "a=b", "empty": ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("params = %v, want %v", got, want)
	}
}

// TestJobSubmitChecksTheRegistry: every registered type is offered in the
// help, and a job its Spec refuses fails before any request, with exit 2.
func TestJobSubmitChecksTheRegistry(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t) // nothing may be sent
	help := cli(t, addr, nil, "job", "submit", "--help")
	help.wantCode(t, 0)
	for _, s := range workload.Types() {
		if !strings.Contains(help.stdout, "  "+s.Name+": "+s.Summary) {
			t.Errorf("help does not describe %s:\n%s", s.Name, help.stdout)
		}
		// Its defaults pass the local check: the request goes out (and is refused by the closed port).
		args := []string{"job", "submit", "--type", s.Name}
		if s.NeedsDataset {
			args = append(args, "--dataset", "ds-1")
		}
		if s.NeedsGPU {
			args = append(args, "--gpus", "1")
		}
		if r := cli(t, addr, nil, args...); r.code != 1 || !strings.Contains(r.stderr, "connection refused") {
			t.Errorf("%s with defaults: exit %d\n%s", s.Name, r.code, r.stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--type", "train"}, `--type "train": want one of generate_dataset, calibrate`},
		{[]string{"--type", "generate_dataset", "--param", "size=4"}, "generate_dataset job params: size must be between 8 and 256"},
		{[]string{"--type", "calibrate", "--dataset", "ds-1", "--param", "size=32"}, `parameter "size" does not apply to calibrate jobs`},
		{[]string{"--type", "calibrate"}, "a calibrate job needs --dataset ID"},
		{[]string{"--type", "gpu_selftest"}, "a gpu_selftest job needs --gpus 1 or more"},
	} {
		r := cli(t, addr, nil, append([]string{"job", "submit"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: exit %d, want 2 saying %q\n%s", tc.args, r.code, tc.want, r.stderr)
		}
	}
}
