package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

func TestOutputFilesRefusesSymlinksAndCountsBytes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string]string{"a.txt": "a", "sub/b.txt": "bb", "runbundle_manifest.json": "{}"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "leak")); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := outputFiles(dir, 1<<20)
	if err == nil || !strings.Contains(err.Error(), "output leak is not a regular file") {
		t.Fatalf("a symlink in the output: err = %v", err)
	}
	if strings.Contains(err.Error(), dir) {
		t.Errorf("the error names the host path: %v", err)
	}
	os.Remove(filepath.Join(dir, "leak"))
	files, manifest, total, err := outputFiles(dir, 5)
	if err != nil || total != 5 || string(manifest) != "{}" || len(files) != 2 {
		t.Fatalf("outputFiles = %d files, manifest %q, total %d, %v", len(files), manifest, total, err)
	}
	if files[0].Path != "a.txt" || files[1].Path != "sub/b.txt" || files[1].Size != 2 {
		t.Errorf("files %+v", files)
	}
	if _, _, _, err := outputFiles(dir, 4); !errors.Is(err, errOutputTooLarge) {
		t.Fatalf("one byte over the limit: err = %v, want errOutputTooLarge", err)
	}
	if files, _, total, err := outputFiles(filepath.Join(dir, "absent"), 1); err != nil || len(files) != 0 || total != 0 {
		t.Fatalf("no output directory: %v %d %v", files, total, err)
	}
}

// writeExec is an executor that writes its job's output files.
type writeExec struct {
	files map[string]int // path in output/ -> size
	runs  atomic.Int32
}

func (e *writeExec) Name() string { return "docker" }

func (e *writeExec) Run(ctx context.Context, t Task) error {
	e.runs.Add(1)
	for p, n := range e.files {
		full := filepath.Join(t.Root, OutputDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, make([]byte, n), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// storedObjects counts what the worker's store holds.
func storedObjects(t *testing.T, f *fixture) int {
	t.Helper()
	n := 0
	if err := f.store.List(t.Context(), func(cas.Ref) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOutputLimit: output one byte over max_output_bytes fails the job
// with output_too_large and stores nothing; output at the limit streams
// into a RunBundle.
func TestOutputLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	for _, tc := range []struct {
		name  string
		files map[string]int
		want  string
	}{
		{"over", map[string]int{"a.bin": limit / 2, "sub/b.bin": limit/2 + 1}, scheduler.StateFailed},
		{"at", map[string]int{"a.bin": limit / 2, "sub/b.bin": limit / 2}, scheduler.StateSucceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exec := &writeExec{files: tc.files}
			f := newFixtureWith(t, exec, 1, func(c *Config) { c.MaxOutputBytes = limit })
			j := f.wait(f.submit("generate_dataset", "", `{}`, time.Minute), done)
			if j.State != tc.want {
				t.Fatalf("job %s: %s %+v, want %s", j.ID, j.State, j.Error, tc.want)
			}
			switch tc.want {
			case scheduler.StateFailed:
				if j.Error == nil || j.Error.Code != "output_too_large" || !strings.Contains(j.Error.Message, "65536") {
					t.Fatalf("error %+v, want output_too_large naming the limit", j.Error)
				}
				if n := storedObjects(t, f); n != 0 {
					t.Errorf("%d objects stored for a job whose output was refused", n)
				}
			default:
				rep := f.bundle(j)
				if len(rep.Manifest.Hashes) != 2 {
					t.Errorf("bundle hashes %v, want the two files", rep.Manifest.Hashes)
				}
			}
		})
	}
}

// TestImagePolicyAtTheWorker: an image the job's tier may not run fails
// the job with image_not_allowed before the executor runs it.
func TestImagePolicyAtTheWorker(t *testing.T) {
	t.Parallel()
	exec := &writeExec{files: map[string]int{"x": 1}}
	f := newFixtureWith(t, exec, 1, func(c *Config) {
		c.Images = ImagePolicy{Builtin: "pwmesh-workload:latest", Allowed: []string{"reg.example/org/*"}}
	})
	schedulertest.MustApply(t, f.raft, &scheduler.RegisterNode{At: time.Now(), Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: 1,
		Incarnation: "inc1", Executors: []string{f.worker.Executor()}}})
	submit := func(prio, image string) scheduler.Job {
		id := f.newID("job_")
		schedulertest.MustApply(t, f.raft, &scheduler.SubmitJob{At: time.Now(), Job: scheduler.Job{ID: id, Tenant: "acme", Type: "generate_dataset",
			Priority: prio, Image: image, Timeout: scheduler.Duration(time.Minute)}})
		return f.wait(id, done)
	}
	for _, tc := range []struct {
		prio, image string
		ok          bool
	}{
		{scheduler.PriorityFree, "reg.example/org/solver:1", false},
		{scheduler.PriorityPaid, "reg.example/other/solver:1", false},
		{scheduler.PriorityPaid, "reg.example/org/solver:1", true},
		{scheduler.PriorityFree, "pwmesh-workload:latest", true},
	} {
		before := exec.runs.Load()
		j := submit(tc.prio, tc.image)
		ran := exec.runs.Load() > before
		switch {
		case tc.ok && (j.State != scheduler.StateSucceeded || !ran):
			t.Errorf("%s %s: %s %+v (ran %v), want it run", tc.prio, tc.image, j.State, j.Error, ran)
		case !tc.ok && (j.State != scheduler.StateFailed || j.Error == nil || j.Error.Code != "image_not_allowed" || ran):
			t.Errorf("%s %s: %s %+v (ran %v), want image_not_allowed before it runs", tc.prio, tc.image, j.State, j.Error, ran)
		}
	}
}

func TestImagePolicyCheck(t *testing.T) {
	t.Parallel()
	p, err := NewImagePolicy("pwmesh-workload:latest", []string{"reg.example/org/*", "solver", "tools/x:1.0", "localhost:5000/lab/*"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prio, image string
		ok          bool
	}{
		{"free", "", true},
		{"free", "pwmesh-workload:latest", true},
		{"free", "solver", false},
		{"paid", "solver", true},
		{"sprint", "solver:2", true},
		{"paid", "solver@sha256:abcd", true},
		{"paid", "solvers", false},
		{"paid", "reg.example/org/a", true},
		{"paid", "reg.example/org/a:1", true},
		{"paid", "reg.example/org/a/b:1", false},
		{"paid", "reg.example/orgx/a", false},
		{"paid", "tools/x:1.0", true},
		{"paid", "tools/x:2.0", false},
		{"paid", "tools/x", false},
		{"paid", "localhost:5000/lab/y:3", true},
	} {
		err := p.Check(tc.prio, tc.image)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrImageNotAllowed)) {
			t.Errorf("Check(%s, %q) = %v, want allowed %v", tc.prio, tc.image, err, tc.ok)
		}
	}
	if err := (ImagePolicy{}).Check("paid", "any:1"); !errors.Is(err, ErrImageNotAllowed) {
		t.Errorf("the zero policy allows an image: %v", err)
	}
	if _, err := NewImagePolicy("", []string{"bad[pattern"}); err == nil {
		t.Error("a malformed pattern accepted")
	}
}
