package scheduler

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// fullJob has every field set.
func fullJob() Job {
	started, finished := t0.Add(time.Minute), t0.Add(time.Hour)
	return Job{
		ID: "job-1", Tenant: "acme", Type: "generate_dataset", State: StateSucceeded, Priority: PriorityPaid,
		Dataset: "ds-1", Params: json.RawMessage(`{"seed":7}`),
		Resources: Resources{GPUs: 1, GPUModel: "A100", GPUMemoryMB: 40000},
		Timeout:   Duration(time.Hour), Image: "pwm/core:1", Region: "eu", Network: NetworkBridge, Node: "n1", Attempts: 2,
		QueuePosition: 3, Reason: "waiting", SubmittedAt: t0, StartedAt: &started, FinishedAt: &finished,
		Metrics:   map[string]any{"psnr_db": 31.5, "gain": 1.02},
		RunBundle: &BundleRef{CID: "bafy-bundle", SHA256: "ab12", Size: 4096},
		Outputs:   map[string]string{"dataset": "ds-2"},
		Error:     &JobError{Code: "none", Message: "none"},
		Lease:     &Lease{Node: "n1", Token: 42, ExpiresAt: finished, GPUs: []int{0}, Incarnation: "i1"},
		Seq:       9, CancelRequested: true,
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (run with -update if the change is intended):\n got %s\nwant %s", path, got, want)
	}
}

func TestJobJSONShape(t *testing.T) {
	t.Parallel()
	b, err := json.MarshalIndent(fullJob(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "job.golden.json", append(b, '\n'))

	// Every field name of CONTRACT.md §3 is present.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "tenant", "type", "state", "priority", "dataset", "params", "resources",
		"node", "attempts", "queue_position", "reason", "submitted_at", "started_at", "finished_at",
		"metrics", "runbundle", "outputs", "error"} {
		if _, ok := m[k]; !ok {
			t.Errorf("job JSON lacks %q", k)
		}
	}
	var sub struct {
		Resources map[string]any `json:"resources"`
		RunBundle map[string]any `json:"runbundle"`
		Error     map[string]any `json:"error"`
		Submitted string         `json:"submitted_at"`
	}
	if err := json.Unmarshal(b, &sub); err != nil {
		t.Fatal(err)
	}
	for obj, keys := range map[string][]string{"resources": {"gpus", "gpu_model", "gpu_memory_mb"}, "runbundle": {"cid", "sha256", "size"}, "error": {"code", "message"}} {
		got := map[string]map[string]any{"resources": sub.Resources, "runbundle": sub.RunBundle, "error": sub.Error}[obj]
		for _, k := range keys {
			if _, ok := got[k]; !ok {
				t.Errorf("%s lacks %q", obj, k)
			}
		}
	}
	if _, err := time.Parse(time.RFC3339, sub.Submitted); err != nil || sub.Submitted[len(sub.Submitted)-1] != 'Z' {
		t.Errorf("submitted_at %q is not RFC 3339 UTC", sub.Submitted)
	}

	// It reads back to the same job.
	var back Job
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.MarshalIndent(back, "", "  ")
	if !bytes.Equal(b, b2) {
		t.Fatal("job JSON does not round-trip")
	}
}

func TestQueuedJobJSONOmitsUnsetFields(t *testing.T) {
	t.Parallel()
	j := Job{ID: "j", Tenant: "acme", Type: "calibrate", State: StateQueued, Priority: PriorityFree, SubmittedAt: t0}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"j","tenant":"acme","type":"calibrate","state":"queued","priority":"free","resources":{"gpus":0},"timeout":"0s","attempts":0,"submitted_at":"2025-03-01T12:00:00Z"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func TestDatasetJSONShape(t *testing.T) {
	t.Parallel()
	d := Dataset{ID: "ds-1", Tenant: "acme", Name: "scan.npz", CID: "bafy", SHA256: "ab", Size: 10, CreatedAt: t0}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"ds-1","tenant":"acme","name":"scan.npz","cid":"bafy","sha256":"ab","size":10,"created_at":"2025-03-01T12:00:00Z"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{`"1h"`: time.Hour, `"90s"`: 90 * time.Second, `1000`: time.Microsecond} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("Unmarshal(%s) = %s, %v; want %s", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{`"soon"`, `true`, `1.5`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("Unmarshal(%s) accepted", in)
		}
	}
}

func TestStatesAndPriorities(t *testing.T) {
	t.Parallel()
	all := []string{StateQueued, StateRunning, StateSucceeded, StateFailed, StateCancelled, StateTimedOut}
	for _, s := range all {
		if !ValidState(s) {
			t.Errorf("ValidState(%q) = false", s)
		}
		if Terminal(s) != !slices.Contains([]string{StateQueued, StateRunning}, s) {
			t.Errorf("Terminal(%q) = %v", s, Terminal(s))
		}
	}
	if ValidState("done") || Terminal("done") {
		t.Error("unknown state accepted")
	}
	if !(PriorityRank(PrioritySprint) > PriorityRank(PriorityPaid) && PriorityRank(PriorityPaid) > PriorityRank(PriorityFree) && PriorityRank(PriorityFree) > PriorityRank("x")) {
		t.Error("priority ranks out of order")
	}
}
