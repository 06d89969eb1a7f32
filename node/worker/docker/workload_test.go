package docker

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas/bundle"
	"github.com/pwmesh/pwmesh/node/worker"
)

// TestDockerfileMatchesBuild: the image make build makes and the one a
// node builds itself are the same.
func TestDockerfileMatchesBuild(t *testing.T) {
	t.Parallel()
	for dir, want := range map[string]string{"workload": workloadDockerfile, "node": nodeDockerfile} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "build", dir, "Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("build/%s/Dockerfile and its copy in the package differ:\n%s\n---\n%s", dir, b, want)
		}
	}
}

// TestBuiltinWorkload builds the static pwmesh and the workload image from
// it, then runs a generate_dataset job in it end to end.
func TestBuiltinWorkload(t *testing.T) {
	t.Parallel()
	needEngine(t)
	bin := goBuild(t, t.TempDir(), StaticBinaryName, "github.com/pwmesh/pwmesh/cmd/pwmesh", "-s -w")
	image := "pwmesh-workload-test-" + randID() + ":latest"
	e := newExec(t, Config{WorkloadImage: image, WorkloadBinary: bin})
	t.Cleanup(func() { removeImage(t, image) })
	if err := e.EnsureImage(t.Context(), bin); err != nil {
		t.Fatal(err)
	}
	img, err := e.c.imageInspect(t.Context(), image)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config.Labels[LabelImage] != "workload" || len(img.Config.Labels[LabelBinary]) != 64 {
		t.Errorf("image labels %v", img.Config.Labels)
	}
	// A second call finds the image up to date.
	if err := e.EnsureImage(t.Context(), bin); err != nil {
		t.Fatal(err)
	}
	if again, err := e.c.imageInspect(t.Context(), image); err != nil || again.ID != img.ID {
		t.Errorf("the image was rebuilt from the same binary: %s, then %s (%v)", img.ID, again.ID, err)
	}
	// Another binary (the same one with a byte appended, as an upgrade
	// would bring) makes it rebuild, and the stale image goes.
	other := filepath.Join(t.TempDir(), StaticBinaryName)
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, append(b, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := e.EnsureImage(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	if again, err := e.c.imageInspect(t.Context(), image); err != nil || again.ID == img.ID {
		t.Errorf("the image was not rebuilt from another binary (%v)", err)
	}
	if _, err := e.c.imageInspect(t.Context(), img.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the stale image %s is still there (%v)", img.ID, err)
	}

	t.Run("GenerateDataset", func(t *testing.T) {
		root := workloadJob(t, "generate_dataset", `{"size":32,"seed":3}`)
		var log syncBuffer
		if err := e.Run(t.Context(), worker.Task{JobID: "job-gen", Root: root, Timeout: 2 * time.Minute, Log: &log}); err != nil {
			t.Fatalf("run: %v\n%s", err, log.String())
		}
		assertNoContainers(t, e)
		b, err := os.ReadFile(filepath.Join(root, worker.OutputDir, bundle.ManifestName))
		if err != nil {
			t.Fatalf("no manifest in output/: %v\n%s", err, log.String())
		}
		var m bundle.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.SpecID == "" {
			t.Errorf("manifest without spec_id: %s", b)
		}
		for _, name := range []string{"spec.json", "x_gt.npy", "y.npy", "x_gt.png"} {
			if st, err := os.Stat(filepath.Join(root, worker.OutputDir, name)); err != nil || st.Size() == 0 {
				t.Errorf("output/%s: %v", name, err)
			}
		}
		for _, name := range []string{worker.DatasetFile, worker.DatasetNameFile} {
			if _, err := os.Stat(filepath.Join(root, worker.ExportDir, name)); err != nil {
				t.Errorf("export/%s: %v", name, err)
			}
		}
		if !log.Contains("running generate_dataset") {
			t.Errorf("the workload's log is missing:\n%s", log.String())
		}
	})

	t.Run("InvalidParams", func(t *testing.T) {
		root := workloadJob(t, "generate_dataset", `{"bogus":1}`)
		var log syncBuffer
		err := e.Run(t.Context(), worker.Task{JobID: "job-bad", Root: root, Timeout: time.Minute, Log: &log})
		var ee *worker.ExitError
		if !errors.As(err, &ee) || ee.Code != worker.ExitInvalidInput {
			t.Fatalf("err = %v, want exit status %d\n%s", err, worker.ExitInvalidInput, log.String())
		}
		// The workload's error.json reaches the job directory, where the
		// worker reads it.
		var ce worker.ChildError
		b, _ := os.ReadFile(filepath.Join(root, worker.ErrorFile))
		if err := json.Unmarshal(b, &ce); err != nil || ce.Code != "invalid_input" {
			t.Errorf("error.json = %q (%v), want code invalid_input", b, err)
		}
		assertNoContainers(t, e)
	})
}

// workloadJob lays out a job directory as worker.prepare does.
func workloadJob(t *testing.T, typ, params string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "job")
	for _, d := range []string{worker.InputDir, worker.OutputDir, worker.ExportDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeJSONFile(t, filepath.Join(root, worker.JobFile), worker.JobSpec{ID: "job-" + randID(), Type: typ, Params: json.RawMessage(params), Attempt: 1})
	return root
}
