package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/worker"
)

// needEngine skips tb where no Docker socket exists; where one does, the
// engine must answer.
func needEngine(tb testing.TB) {
	tb.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = DefaultHost
	}
	if u, err := url.Parse(host); err == nil && u.Scheme == "unix" {
		if _, err := os.Stat(u.Path); err != nil {
			tb.Skipf("docker: no Docker engine socket at %s (%v): skipping the tests that need a real engine", u.Path, err)
		}
	}
	c, err := newClient("")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.ping(ctx); err != nil {
		tb.Fatalf("the Docker socket exists but the engine does not answer: %v", err)
	}
}

func randID() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// goBuild compiles a package statically into dir and returns the binary.
func goBuild(tb testing.TB, dir, name, pkg string, ldflags string) string {
	tb.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// probeImage builds the probe (testdata/probe) into an image FROM scratch,
// labelled pwmesh.test and declaring a volume; it is removed at cleanup.
func probeImage(tb testing.TB) string {
	tb.Helper()
	id := randID()
	bin := goBuild(tb, tb.TempDir(), "probe", "./testdata/probe", "-s -w")
	c, err := newClient("")
	if err != nil {
		tb.Fatal(err)
	}
	tag := "pwmesh-probe-" + id + ":test"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	df := "FROM scratch\nCOPY probe /probe\nVOLUME /scratch\nENTRYPOINT [\"/probe\"]\n"
	labels := map[string]string{"pwmesh.test": id}
	if err := c.build(ctx, tag, labels, df, []contextFile{{Name: "probe", Path: bin, Mode: 0o755}}, nil); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { removeImage(tb, tag) })
	return tag
}

func removeImage(tb testing.TB, tag string) {
	tb.Helper()
	c, err := newClient("")
	if err != nil {
		tb.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.imageRemove(ctx, tag, true); err != nil {
		tb.Errorf("remove image %s: %v", tag, err)
	}
}

// newExec is an executor with a node ID of its own; at cleanup nothing
// labelled with it may remain.
func newExec(tb testing.TB, cfg Config) *Executor {
	tb.Helper()
	if cfg.NodeID == "" {
		cfg.NodeID = "pwmesh-test-" + randID()
	}
	e, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if n, err := e.CleanOrphans(ctx); err != nil || n != 0 {
			tb.Errorf("containers of %s left behind: %d removed at cleanup (%v)", cfg.NodeID, n, err)
		}
	})
	return e
}

// assertNoContainers checks that no container labelled with e's node
// remains.
func assertNoContainers(tb testing.TB, e *Executor) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := e.c.containerList(ctx, LabelNode+"="+e.cfg.NodeID)
	if err != nil {
		tb.Fatal(err)
	}
	if len(cs) != 0 {
		tb.Errorf("%d containers labelled %s=%s remain: %+v", len(cs), LabelNode, e.cfg.NodeID, cs)
	}
}

// jobDir lays out a job directory as worker.prepare does, with the
// probe's order in input/probe.json.
func jobDir(tb testing.TB, order any) string {
	tb.Helper()
	root := filepath.Join(tb.TempDir(), "job")
	for _, d := range []string{worker.InputDir, worker.OutputDir, worker.ExportDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	writeJSONFile(tb, filepath.Join(root, worker.JobFile), worker.JobSpec{ID: "job-" + randID(), Type: "probe", Attempt: 1})
	if order != nil {
		writeJSONFile(tb, filepath.Join(root, worker.InputDir, "probe.json"), order)
		if err := os.Chmod(filepath.Join(root, worker.InputDir, "probe.json"), 0o444); err != nil {
			tb.Fatal(err)
		}
	}
	return root
}

func writeJSONFile(tb testing.TB, path string, v any) {
	tb.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// result reads the probe's result.json.
func result(tb testing.TB, root string) map[string]any {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(root, worker.OutputDir, "result.json"))
	if err != nil {
		tb.Fatalf("the probe wrote no result: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// syncBuffer is a task log read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Contains(sub string) bool { return strings.Contains(s.String(), sub) }
