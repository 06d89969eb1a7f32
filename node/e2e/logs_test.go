package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// call sends one request with the given X-Request-Id ("" for none) and
// returns the answer's status, X-Request-Id and body.
func (a *agent) call(method, path, key, reqID string, body io.Reader) (int, string, []byte) {
	a.t.Helper()
	hdr := http.Header{}
	if reqID != "" {
		hdr.Set("X-Request-Id", reqID)
	}
	status, h, b := a.send(method, path, key, body, hdr)
	return status, h.Get("X-Request-Id"), b
}

// TestAgentLogsAreJSON runs a real agent at debug and checks its whole
// stderr: every line one JSON object with time, level and msg, whatever
// wrote it (pwmesh, Raft, libp2p, memberlist); one access line per request
// naming the ID its answer carried, the caller's tenant but never its key.
func TestAgentLogsAreJSON(t *testing.T) {
	t.Parallel()
	a := startAgent(t, filepath.Join(t.TempDir(), "data"), "--log-level", "debug")

	type sent struct {
		method, path, id string
		status           int
	}
	var reqs []sent

	// A client's own ID is kept.
	st, id, b := a.call("GET", "/health", "", "e2e-trace-1", nil)
	if st != http.StatusOK || id != "e2e-trace-1" {
		t.Fatalf("GET /health: %d, X-Request-Id %q: %s", st, id, b)
	}
	reqs = append(reqs, sent{"GET", "/health", id, st})

	// A bad request: its error body names the ID too.
	st, id, b = a.call("POST", "/jobs", a.token, "e2e-bad-2", strings.NewReader("{"))
	var e struct {
		Error struct {
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || st != http.StatusBadRequest || id != "e2e-bad-2" || e.Error.RequestID != "e2e-bad-2" {
		t.Fatalf("POST /jobs with a bad body: %d, X-Request-Id %q: %s (%v)", st, id, b, err)
	}
	reqs = append(reqs, sent{"POST", "/jobs", id, st})

	// An ID that is no sane token is replaced.
	st, id, b = a.call("GET", "/jobs", a.token, `two words"`, nil)
	if st != http.StatusOK || !regexp.MustCompile(`^req_[0-9a-f]{20}$`).MatchString(id) {
		t.Fatalf("GET /jobs: %d, X-Request-Id %q: %s", st, id, b)
	}
	reqs = append(reqs, sent{"GET", "/jobs", id, st})

	// The web UI's pages get IDs as well.
	st, id, _ = a.call("GET", "/ui/login", "", "", nil)
	if st != http.StatusOK || id == "" {
		t.Fatalf("GET /ui/login: %d, X-Request-Id %q", st, id)
	}
	reqs = append(reqs, sent{"GET", "/ui/login", id, st})

	a.stop()
	logs := a.logs.String()
	if strings.Contains(logs, a.token) {
		t.Fatal("the agent logged the admin key")
	}
	var lines []map[string]any
	for i, line := range strings.Split(strings.TrimRight(logs, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stderr line %d is not a JSON object: %q: %v", i+1, line, err)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if s, ok := m[k].(string); !ok || s == "" {
				t.Fatalf("stderr line %d has no %s: %q", i+1, k, line)
			}
		}
		lines = append(lines, m)
	}

	// Raft's, libp2p's and memberlist's lines are among them, in the same
	// shape, named by logger (memberlist's by its "memberlist:" prefix).
	from := map[string]bool{}
	for _, l := range lines {
		lg, _ := l["logger"].(string)
		msg, _ := l["msg"].(string)
		switch {
		case lg == "raft" || strings.HasPrefix(lg, "raft."):
			from["raft"] = true
		case lg == "raft-net":
			from["raft-net"] = true
		case strings.HasPrefix(lg, "libp2p."):
			from["libp2p"] = true
		case strings.HasPrefix(msg, "memberlist:") || strings.HasPrefix(msg, "mesh: member"):
			from["memberlist"] = true
		}
	}
	for _, src := range []string{"raft", "libp2p", "memberlist"} {
		if !from[src] {
			t.Errorf("no line from %s on stderr", src)
		}
	}

	for _, r := range reqs {
		var access, refused int
		for _, l := range lines {
			if l["request_id"] != r.id {
				continue
			}
			switch l["msg"] {
			case "http request":
				access++
				if l["method"] != r.method || l["path"] != r.path || l["status"] != float64(r.status) || l["duration"] == nil {
					t.Errorf("access line of %s %s: %v", r.method, r.path, l)
				}
				if r.path == "/jobs" && (l["tenant"] != "admin" || l["key_id"] == nil) {
					t.Errorf("access line of %s %s lacks the caller: %v", r.method, r.path, l)
				}
			case "request refused":
				refused++
			}
		}
		if access != 1 {
			t.Errorf("%s %s (request %s): %d access lines, want 1", r.method, r.path, r.id, access)
		}
		if r.status == http.StatusBadRequest && refused != 1 {
			t.Errorf("%s %s (request %s): no line saying why it was refused", r.method, r.path, r.id)
		}
	}
}

// An agent that fails once it has started (here: its API address is
// taken) says so in the same JSON shape and exits 1.
func TestAgentFailureIsLogged(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(pwmeshBin, "agent", "--dev", "--data-dir", filepath.Join(t.TempDir(), "data"), "--http", ln.Addr().String(),
		"--p2p-port", "0", "--gossip-port", "0", "--gpus", "none", "--executor", "process")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("agent on a taken address: %v, want exit 1; stderr:\n%s", err, stderr.String())
	}
	var last map[string]any
	for _, line := range strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n") {
		last = nil
		if err := json.Unmarshal([]byte(line), &last); err != nil {
			t.Fatalf("stderr line is not a JSON object: %q", line)
		}
	}
	if last["level"] != "ERROR" || last["msg"] != "agent failed" || !strings.Contains(fmt.Sprint(last["err"]), ln.Addr().String()) || last["node_id"] == nil {
		t.Fatalf("last line %v, want the failure", last)
	}
}
