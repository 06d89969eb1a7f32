package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/bundle"
)

func metric(t *testing.T, j job, name string) float64 {
	t.Helper()
	v, ok := j.Metrics[name].(float64)
	if !ok {
		t.Fatalf("job %s (%s): metric %q missing or not a number: %v", j.ID, j.Type, name, j.Metrics)
	}
	return v
}

// checkBundle downloads a job's RunBundle, checks it against the job's
// runbundle.sha256 and every manifest hash (in Go and through the CLI), and
// returns the bytes.
func checkBundle(t *testing.T, a *agent, key string, j job) []byte {
	t.Helper()
	if j.RunBundle == nil {
		t.Fatalf("job %s has no runbundle", j.ID)
	}
	req, _ := http.NewRequest("GET", a.url+"/jobs/"+j.ID+"/runbundle", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("runbundle of %s: %d %s", j.ID, resp.StatusCode, buf.Bytes())
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-tar" {
		t.Errorf("runbundle Content-Type %q", ct)
	}
	if et := resp.Header.Get("ETag"); et != `"`+j.RunBundle.CID+`"` {
		t.Errorf("runbundle ETag %q, want %q", et, j.RunBundle.CID)
	}
	sum := sha256.Sum256(buf.Bytes())
	if hex.EncodeToString(sum[:]) != j.RunBundle.SHA256 || int64(buf.Len()) != j.RunBundle.Size {
		t.Fatalf("bundle of %s: sha256 %x size %d, job says %s size %d", j.ID, sum, buf.Len(), j.RunBundle.SHA256, j.RunBundle.Size)
	}
	rep, err := bundle.Verify(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("bundle of %s does not verify: %v", j.ID, err)
	}
	// runbundle.cid names the stored (sealed) object; the plain tar's CID
	// is the one of its SHA-256 (docs/storage.md).
	plainCID, err := cas.CIDFromSHA256(j.RunBundle.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Ref.CID.Equals(plainCID) {
		t.Errorf("bundle CID %s, job's sha256 %s names %s", rep.Ref.CID, j.RunBundle.SHA256, plainCID)
	}
	m := rep.Manifest
	if m.Version != "0.3.0" || m.Execution.JobID != j.ID || m.Execution.Attempts != j.Attempts || m.Timestamp == "" {
		t.Errorf("manifest of %s: version %q job %q attempts %d timestamp %q", j.ID, m.Version, m.Execution.JobID, m.Execution.Attempts, m.Timestamp)
	}
	for _, k := range []string{"psnr_db", "ssim", "runtime_s"} {
		if _, ok := m.Metrics[k]; !ok && j.Type != "calibrate" && j.Type != "generate_dataset" {
			t.Errorf("manifest of %s (%s) lacks metric %s", j.ID, j.Type, k)
		}
	}
	// The CLI verifies the same file and prints the CID.
	f := filepath.Join(t.TempDir(), j.ID+".tar")
	if err := os.WriteFile(f, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pwmeshBin, "bundle", "verify", f).CombinedOutput()
	if err != nil || !strings.Contains(string(out), plainCID.String()) {
		t.Errorf("pwmesh bundle verify: %v: %s", err, out)
	}
	return buf.Bytes()
}

// TestDevNodeEndToEnd runs every job type on a dev node through the HTTP
// API, checks the results against WORKLOAD.md's bars and the bundles against
// their hashes, then kills the node with SIGKILL mid-job and checks that a
// new start keeps everything and runs the interrupted job again.
func TestDevNodeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binary")
	}
	dir := t.TempDir()
	a := startAgent(t, dir, "--slots", "1")
	admin := a.token

	var health map[string]any
	if st, b := a.do("GET", "/health", "", nil, "", &health); st != 200 || health["role"] != "leader" || health["status"] != "ok" {
		t.Fatalf("/health: %d %s", st, b)
	}

	// A paid tenant for the work, a free one for the isolation checks.
	var paid, free struct{ Key string }
	if st, b := a.postJSON("/keys", admin, map[string]string{"tenant": "acme", "tier": "paid"}, &paid); st != 201 {
		t.Fatalf("POST /keys: %d %s", st, b)
	}
	if st, b := a.postJSON("/keys", admin, map[string]string{"tenant": "other", "tier": "free"}, &free); st != 201 {
		t.Fatalf("POST /keys: %d %s", st, b)
	}

	// generate_dataset → a dataset of the tenant.
	gen := a.waitDone(paid.Key, a.submit(paid.Key, map[string]any{"type": "generate_dataset",
		"params": map[string]any{"size": 32, "severity": "moderate", "seed": 3}}).ID)
	if gen.State != "succeeded" || gen.Outputs["dataset"] == "" {
		t.Fatalf("generate_dataset: %+v\n%s", gen, a.logs)
	}
	ds := gen.Outputs["dataset"]
	checkBundle(t, a, paid.Key, gen)
	var dsRec map[string]any
	if st, b := a.do("GET", "/datasets/"+ds, paid.Key, nil, "", &dsRec); st != 200 || dsRec["tenant"] != "acme" {
		t.Fatalf("GET /datasets/%s: %d %s", ds, st, b)
	}
	if st, _ := a.do("GET", "/datasets/"+ds, free.Key, nil, "", nil); st != 404 {
		t.Errorf("another tenant's dataset: %d, want 404", st)
	}

	// The three processing jobs on it.
	ids := map[string]string{}
	for _, typ := range []string{"calibrate", "reconstruct", "calibrate_and_reconstruct"} {
		ids[typ] = a.submit(paid.Key, map[string]any{"type": typ, "dataset": ds}).ID
	}
	jobs := map[string]job{}
	for typ, id := range ids {
		j := a.waitDone(paid.Key, id)
		if j.State != "succeeded" || j.Attempts != 1 || j.Node == "" || j.StartedAt == nil || j.FinishedAt == nil {
			t.Fatalf("%s: %+v\nlogs:\n%s", typ, j, a.logs)
		}
		checkBundle(t, a, paid.Key, j)
		jobs[typ] = j
	}
	cal := jobs["calibrate"]
	if g, b := metric(t, cal, "gain"), metric(t, cal, "bias"); math.Abs(g-1.15) >= 0.01 || math.Abs(b-0.05) >= 0.005 {
		t.Errorf("calibrate: gain %.4f bias %.4f, want 1.15±0.01, 0.05±0.005", g, b)
	}
	car := jobs["calibrate_and_reconstruct"]
	oracle, wrong, calib := metric(t, car, "psnr_oracle_db"), metric(t, car, "psnr_wrong_db"), metric(t, car, "psnr_calibrated_db")
	if oracle < 28 || calib < oracle-0.5 || calib-wrong < 8 || metric(t, car, "rho") < 0.9 {
		t.Errorf("calibrate_and_reconstruct 32x32 moderate: oracle %.2f wrong %.2f calibrated %.2f rho %.3f", oracle, wrong, calib, metric(t, car, "rho"))
	}
	if metric(t, jobs["reconstruct"], "psnr_db") <= 0 {
		t.Errorf("reconstruct: psnr_db %v", jobs["reconstruct"].Metrics["psnr_db"])
	}

	// numpy reads the arrays and the dataset as they are.
	dsBytes := download(t, a, paid.Key, gen)
	t.Run("numpy", func(t *testing.T) { checkNumpy(t, download(t, a, paid.Key, car), dsBytes) })

	// An uploaded dataset (the same bytes) runs the same way.
	var up struct {
		ID     string `json:"id"`
		SHA256 string `json:"sha256"`
	}
	if st, b := a.do("POST", "/datasets?name=upload.npz", paid.Key, bytes.NewReader(dsBytes), "application/octet-stream", &up); st != 201 {
		t.Fatalf("POST /datasets: %d %s", st, b)
	}
	rec := a.waitDone(paid.Key, a.submit(paid.Key, map[string]any{"type": "reconstruct", "dataset": up.ID,
		"params": map[string]any{"gain": 1.15, "bias": 0.05}}).ID)
	if rec.State != "succeeded" || metric(t, rec, "psnr_db") < 28 {
		t.Errorf("reconstruct with θ on the uploaded dataset: %+v", rec)
	}

	// Bad input gets a clear error and changes nothing.
	var before struct{ Jobs []job }
	a.do("GET", "/jobs?limit=1000", paid.Key, nil, "", &before)
	for _, c := range []struct {
		key  string
		body map[string]any
		want int
	}{
		{paid.Key, map[string]any{"type": "teleport", "dataset": ds}, 400},
		{paid.Key, map[string]any{"type": "calibrate"}, 400},
		{paid.Key, map[string]any{"type": "calibrate", "dataset": ds, "timeout": "5h"}, 400},
		{paid.Key, map[string]any{"type": "calibrate", "dataset": ds, "timeout": "-1s"}, 400},
		{paid.Key, map[string]any{"type": "calibrate", "dataset": ds, "params": map[string]any{"bogus": 1}}, 400},
		{free.Key, map[string]any{"type": "generate_dataset", "priority": "sprint"}, 403},
		{free.Key, map[string]any{"type": "calibrate", "dataset": ds}, 404},
		{"", map[string]any{"type": "generate_dataset"}, 401},
	} {
		st, b := a.postJSON("/jobs", c.key, c.body, nil)
		var e apiError
		if st != c.want || jsonUnmarshal(b, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Errorf("POST /jobs %v: %d %s, want %d with an error body", c.body, st, b, c.want)
		}
	}
	var after struct{ Jobs []job }
	a.do("GET", "/jobs?limit=1000", paid.Key, nil, "", &after)
	if len(after.Jobs) != len(before.Jobs) {
		t.Errorf("bad requests created jobs: %d before, %d after", len(before.Jobs), len(after.Jobs))
	}

	// Cancel a running job; time out another. Both run for minutes on a
	// 64×64 dataset unless stopped.
	g64 := a.waitDone(paid.Key, a.submit(paid.Key, map[string]any{"type": "generate_dataset",
		"params": map[string]any{"size": 64, "severity": "severe", "seed": 5}}).ID)
	if g64.State != "succeeded" {
		t.Fatalf("generate_dataset 64: %+v", g64)
	}
	ds64 := g64.Outputs["dataset"]
	long := map[string]any{"iterations": 2000}
	cj := a.submit(paid.Key, map[string]any{"type": "calibrate_and_reconstruct", "dataset": ds64, "params": long})
	a.waitJob(paid.Key, cj.ID, time.Minute, func(j job) bool { return j.State == "running" })
	if st, b := a.do("POST", "/jobs/"+cj.ID+"/cancel", paid.Key, nil, "", nil); st != 202 {
		t.Fatalf("cancel: %d %s", st, b)
	}
	if j := a.waitDone(paid.Key, cj.ID); j.State != "cancelled" {
		t.Errorf("cancelled job ended %s", j.State)
	}
	tj := a.waitDone(paid.Key, a.submit(paid.Key, map[string]any{"type": "calibrate_and_reconstruct", "dataset": ds64, "params": long, "timeout": "1s"}).ID)
	if tj.State != "timed_out" {
		t.Errorf("job with a 1s timeout ended %s (%+v)", tj.State, tj.Error)
	}

	// kill -9 while one job runs and another waits behind it (one slot).
	slow := a.submit(paid.Key, map[string]any{"type": "calibrate_and_reconstruct", "dataset": ds64, "params": map[string]any{"iterations": 300}})
	queued := a.submit(paid.Key, map[string]any{"type": "calibrate", "dataset": ds})
	a.waitJob(paid.Key, slow.ID, time.Minute, func(j job) bool { return j.State == "running" })
	if q := a.getJob(paid.Key, queued.ID); q.State != "queued" || q.QueuePosition != 1 || q.Reason == "" {
		t.Errorf("job behind a busy slot: state %s position %d reason %q", q.State, q.QueuePosition, q.Reason)
	}
	bundleBefore := download(t, a, paid.Key, car)
	a.kill()

	b := startAgent(t, dir, "--slots", "1")
	if b.token != admin {
		t.Errorf("bootstrap token changed across restart")
	}
	// Finished jobs, datasets and bundles are all there.
	if j := b.getJob(paid.Key, car.ID); j.State != "succeeded" || j.RunBundle.SHA256 != car.RunBundle.SHA256 {
		t.Errorf("after restart %s: %+v", car.ID, j)
	}
	if got := download(t, b, paid.Key, car); !bytes.Equal(got, bundleBefore) {
		t.Errorf("bundle of %s changed across restart", car.ID)
	}
	if st, _ := b.do("GET", "/datasets/"+up.ID, paid.Key, nil, "", nil); st != 200 {
		t.Errorf("uploaded dataset after restart: %d", st)
	}
	// The interrupted job runs again; the queued one runs too.
	s := b.waitDone(paid.Key, slow.ID)
	if s.State != "succeeded" || s.Attempts != 2 {
		t.Errorf("interrupted job after restart: state %s attempts %d, want succeeded 2\nlogs:\n%s", s.State, s.Attempts, b.logs)
	}
	checkBundle(t, b, paid.Key, s)
	if q := b.waitDone(paid.Key, queued.ID); q.State != "succeeded" || q.Attempts != 1 {
		t.Errorf("queued job after restart: %s attempts %d", q.State, q.Attempts)
	}
	b.stop()
}

// download fetches a job's RunBundle, or for generate_dataset the dataset it made.
func download(t *testing.T, a *agent, key string, j job) []byte {
	t.Helper()
	path := "/jobs/" + j.ID + "/runbundle"
	if ds := j.Outputs["dataset"]; ds != "" {
		path = "/datasets/" + ds + "/download"
	}
	st, b := a.do("GET", path, key, nil, "", nil)
	if st != 200 {
		t.Fatalf("GET %s: %d %s", path, st, b)
	}
	return b
}

func jsonUnmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("empty body")
	}
	return json.Unmarshal(b, v)
}
