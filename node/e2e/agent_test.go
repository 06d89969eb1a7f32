package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var pwmeshBin string

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "scaler-hook" {
		os.Exit(runScalerHook(os.Args[2:]))
	}
	dir, err := os.MkdirTemp("", "pwmesh-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pwmeshBin = filepath.Join(dir, "pwmesh")
	build := exec.Command("go", "build", "-o", pwmeshBin, "github.com/pwmesh/pwmesh/cmd/pwmesh")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build pwmesh:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agent is one `pwmesh agent --dev` process.
type agent struct {
	t       testing.TB
	dataDir string
	cmd     *exec.Cmd
	url     string
	token   string
	logs    *syncBuffer
	done    chan struct{}
	urlc    chan string // the API URL, once printed
}

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

// startAgent starts a dev node on dataDir and waits until it says it is ready.
func startAgent(t *testing.T, dataDir string, extra ...string) *agent {
	t.Helper()
	args := append([]string{"agent", "--dev", "--data-dir", dataDir, "--http", "127.0.0.1:0", "--p2p-port", "0", "--gossip-port", "0",
		"--gpus", "none", "--executor", "process", "--lease-ttl", "3s"}, extra...)
	a := launch(t, args)
	a.waitReady(60 * time.Second)
	return a
}

// launch starts `pwmesh ARGS...` (an agent with --data-dir) without
// waiting for it; waitReady waits until it says it is ready.
func launch(t testing.TB, args []string) *agent {
	t.Helper()
	var dataDir string
	for i, v := range args {
		if v == "--data-dir" && i+1 < len(args) {
			dataDir = args[i+1]
		}
	}
	cmd := exec.Command(pwmeshBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, dataDir: dataDir, cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{}), urlc: make(chan string, 1)}
	cmd.Stderr = a.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := a.urlc
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "API:"); ok {
				select {
				case urlc <- strings.TrimSpace(rest):
				default:
				}
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() { a.kill() })
	return a
}

// waitReady waits until the agent prints its API URL, and reads the
// bootstrap token when it wrote one.
func (a *agent) waitReady(timeout time.Duration) {
	a.t.Helper()
	select {
	case a.url = <-a.urlc:
	case <-a.done:
		a.t.Fatalf("agent exited before it was ready; logs:\n%s", a.logs)
	case <-time.After(timeout):
		a.t.Fatalf("agent not ready after %s; logs:\n%s", timeout, a.logs)
	}
	if tok, err := os.ReadFile(filepath.Join(a.dataDir, "bootstrap-token")); err == nil {
		a.token = strings.TrimSpace(string(tok))
	} else if !errors.Is(err, os.ErrNotExist) {
		a.t.Fatal(err)
	}
}

// kill ends the agent with SIGKILL, as a crash would.
func (a *agent) kill() {
	if a.cmd.Process != nil {
		_ = a.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-a.done
}

// stop asks the agent to leave cleanly and waits for it.
func (a *agent) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		a.t.Errorf("agent did not stop within 30s of SIGTERM; logs:\n%s", a.logs)
		a.kill()
	}
}

// apiError is the contract's error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// send sends one request with the given key ("" for none) and headers,
// and returns the answer's status, headers and body.
func (a *agent) send(method, path, key string, body io.Reader, hdr http.Header) (int, http.Header, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// do sends a request with the given key and decodes a JSON answer into out
// (when non-nil). It returns the status and the raw body.
func (a *agent) do(method, path, key string, body io.Reader, contentType string, out any) (int, []byte) {
	a.t.Helper()
	hdr := http.Header{}
	if contentType != "" {
		hdr.Set("Content-Type", contentType)
	}
	status, _, b := a.send(method, path, key, body, hdr)
	if out != nil && status < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return status, b
}

func (a *agent) postJSON(path, key string, v any, out any) (int, []byte) {
	a.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		a.t.Fatal(err)
	}
	return a.do("POST", path, key, bytes.NewReader(b), "application/json", out)
}

// job is the part of the contract's job the tests read.
type job struct {
	ID            string         `json:"id"`
	Tenant        string         `json:"tenant"`
	Type          string         `json:"type"`
	State         string         `json:"state"`
	Priority      string         `json:"priority"`
	Node          string         `json:"node"`
	Attempts      int            `json:"attempts"`
	QueuePosition int            `json:"queue_position"`
	Reason        string         `json:"reason"`
	Metrics       map[string]any `json:"metrics"`
	RunBundle     *struct {
		CID    string `json:"cid"`
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"runbundle"`
	Outputs map[string]string `json:"outputs"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	SubmittedAt string  `json:"submitted_at"`
	StartedAt   *string `json:"started_at"`
	FinishedAt  *string `json:"finished_at"`
}

func (a *agent) submit(key string, req map[string]any) job {
	a.t.Helper()
	var j job
	if st, b := a.postJSON("/jobs", key, req, &j); st != http.StatusAccepted {
		a.t.Fatalf("POST /jobs %v: %d %s", req, st, b)
	}
	return j
}

func (a *agent) getJob(key, id string) job {
	a.t.Helper()
	var j job
	if st, b := a.do("GET", "/jobs/"+id, key, nil, "", &j); st != http.StatusOK {
		a.t.Fatalf("GET /jobs/%s: %d %s", id, st, b)
	}
	return j
}

// waitJob polls until the job satisfies cond or the deadline passes.
func (a *agent) waitJob(key, id string, timeout time.Duration, cond func(job) bool) job {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		j := a.getJob(key, id)
		if cond(j) {
			return j
		}
		select {
		case <-ctx.Done():
			a.t.Fatalf("job %s: condition not met within %s; last: %+v\nlogs:\n%s", id, timeout, j, a.logs)
		case <-tick.C:
		}
	}
}

func terminal(j job) bool {
	switch j.State {
	case "succeeded", "failed", "cancelled", "timed_out":
		return true
	}
	return false
}

func (a *agent) waitDone(key, id string) job {
	a.t.Helper()
	return a.waitJob(key, id, 3*time.Minute, terminal)
}
