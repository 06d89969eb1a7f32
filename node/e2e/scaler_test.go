package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/scaler"
)

// The scaler's end-to-end tests: real `pwmesh agent` processes, and an exec
// hook (this test binary, re-entered as `scaler-hook`) that starts and
// stops real worker processes the way an operator's script would.

// hookRequest is the JSON the leader gives the hook (CONTRACT.md §6).
type hookRequest = scaler.Request

// runScalerHook is the hook: scaler-hook STATE_DIR PWMESH KEY_FILE. It logs
// every request to STATE_DIR/requests.jsonl, starts each added worker as a
// detached process (its PID in STATE_DIR/<id>/pid) after holding while
// STATE_DIR/hold exists (saying so in STATE_DIR/holding: the test kills the
// leader that ran it meanwhile, which the hook outlives), and stops each
// removed worker with SIGTERM, waiting for it to leave.
func runScalerHook(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: scaler-hook STATE_DIR PWMESH KEY_FILE")
		return 2
	}
	dir, bin, key := args[0], args[1], args[2]
	var r hookRequest
	if err := json.NewDecoder(os.Stdin).Decode(&r); err != nil {
		fmt.Fprintln(os.Stderr, "hook: read the request:", err)
		return 2
	}
	line, _ := json.Marshal(r)
	f, err := os.OpenFile(filepath.Join(dir, "requests.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, _ = f.Write(append(line, '\n'))
	_ = f.Close()
	if _, err := os.Stat(filepath.Join(dir, "hold")); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "holding"), nil, 0o600)
		// This is the hook's own process: nothing tells it when the test
		// removes the file, so it looks every 50 ms, for 2 minutes at most.
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(dir, "hold")); errors.Is(err, os.ErrNotExist) {
				break
			}
		}
	}
	for range r.Add {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id := "worker-" + hex.EncodeToString(b[:])
		if err := startWorker(dir, bin, key, id, r); err != nil {
			fmt.Fprintln(os.Stderr, "hook: start", id+":", err)
			return 1
		}
	}
	for _, id := range r.Remove {
		if err := stopWorker(dir, id, time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, "hook: stop", id+":", err)
			return 1
		}
	}
	return 0
}

func startWorker(dir, bin, key, id string, r hookRequest) error {
	wd := filepath.Join(dir, id)
	if err := os.MkdirAll(wd, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(wd, "node-id"), []byte(id+"\n"), 0o600); err != nil {
		return err
	}
	model := r.GPUClass
	if model == "" {
		model = "A100"
	}
	log, err := os.Create(filepath.Join(wd, "log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(bin, "agent", "--voter", "never", "--scaler-managed", "--join", strings.Join(r.Join, ","),
		"--cluster-key", key, "--gpus", fmt.Sprintf("fake:%dx%s-80GB", max(r.GPUs, 1), model), "--pool", r.Pool,
		"--data-dir", wd, "--http", "127.0.0.1:0", "--gossip-port", "0", "--p2p-port", "0", "--bind", "127.0.0.1",
		"--executor", "process", "--lease-ttl", "15s")
	if r.Region != "" {
		cmd.Args = append(cmd.Args, "--region", r.Region)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(wd, "pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
}

// stopWorker sends SIGTERM and waits until the process is gone (a zombie
// counts as gone), then SIGKILL.
func stopWorker(dir, id string, wait time.Duration) error {
	b, err := os.ReadFile(filepath.Join(dir, id, "pid"))
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	// The worker is not this process's child (the hook that started it
	// has exited): no wait to block on, so its /proc entry is looked at
	// every 50 ms until the deadline.
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !alive(pid) {
			return os.Remove(filepath.Join(dir, id, "pid"))
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("pid %d did not stop within %s of SIGTERM", pid, wait)
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command's closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// killWorkers ends whatever workers a test's hook left.
func killWorkers(dir string) {
	pids, _ := filepath.Glob(filepath.Join(dir, "*", "pid"))
	for _, p := range pids {
		b, _ := os.ReadFile(p)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func readRequests(t *testing.T, dir string) []hookRequest {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "requests.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []hookRequest
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r hookRequest
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("hook request %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeClusterKey(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cluster.key")
	if code, out := pwmesh(t, "", nil, "keygen", "-o", path); code != 0 {
		t.Fatalf("pwmesh keygen: %d %s", code, out)
	}
	return path
}

type scalerView struct {
	Mode       string `json:"mode"`
	Min, Max   int
	Current    int    `json:"current"`
	Desired    int    `json:"desired"`
	Starting   int    `json:"starting"`
	Reason     string `json:"reason"`
	LastAction *struct {
		Add    int      `json:"add"`
		Remove []string `json:"remove"`
		OK     bool     `json:"ok"`
		Error  string   `json:"error"`
	} `json:"last_action"`
}

type nodeEntry struct {
	ID      string `json:"id"`
	Role    string `json:"role"`
	State   string `json:"state"`
	Managed bool   `json:"managed"`
}

func (a *agent) nodes(key string) []nodeEntry {
	a.t.Helper()
	var out struct{ Nodes []nodeEntry }
	if st, b := a.do("GET", "/nodes", key, nil, "", &out); st != 200 {
		a.t.Fatalf("GET /nodes: %d %s", st, b)
	}
	return out.Nodes
}

// waitUntil polls cond every 100 ms until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s", what, timeout)
		case <-tick.C:
		}
	}
}

// TestScalerExecHookAcrossLeaderKill: three voters without GPUs and an exec
// hook that starts real worker processes. Three GPU jobs ask for workers;
// the leader asks the hook for --scaler-max (2), and is killed while the
// hook runs; the next leader neither repeats nor loses the decision: the
// two workers join, all three jobs succeed on them at their first attempt,
// the scaler never wants more than 2, and once idle both workers are
// drained and stopped through the hook, leaving the mesh cleanly.
func TestScalerExecHookAcrossLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five agents")
	}
	t.Parallel()
	key := writeClusterKey(t)
	state := t.TempDir()
	t.Cleanup(func() { killWorkers(state) })
	if err := os.WriteFile(filepath.Join(state, "hold"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	token := "pwm_e2e_scaler_admin_token"
	gossip := []int{freePort(t), freePort(t), freePort(t)}
	var join []string
	for _, p := range gossip {
		join = append(join, fmt.Sprintf("127.0.0.1:%d", p))
	}
	var voters []*agent
	for i := range 3 {
		args := []string{"agent", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--bind", "127.0.0.1",
			"--gossip-port", strconv.Itoa(gossip[i]), "--p2p-port", "0", "--join", strings.Join(join, ","),
			"--bootstrap-expect", "3", "--cluster-key", key, "--bootstrap-token", token, "--gpus", "none",
			"--executor", "process", "--lease-ttl", "15s",
			"--scaler", fmt.Sprintf("exec:%s scaler-hook %s %s %s", self, state, pwmeshBin, key),
			"--scaler-max", "2", "--scaler-idle", "3s", "--scaler-cooldown", "2s"}
		voters = append(voters, launch(t, args))
	}
	for _, v := range voters {
		v.waitReady(2 * time.Minute)
	}
	a := voters[0]
	var sv scalerView
	if st, b := a.do("GET", "/scaler", token, nil, "", &sv); st != 200 || sv.Mode == "" {
		t.Fatalf("GET /scaler: %d %s", st, b)
	}
	var ids []string
	for range 3 {
		ids = append(ids, a.submit(token, map[string]any{"type": "generate_dataset", "params": map[string]any{"size": 16, "seed": 3},
			"resources": map[string]any{"gpus": 1}}).ID)
	}
	// The hook is asked for two workers and holds; kill the leader now.
	waitUntil(t, time.Minute, "the hook is asked for workers", func() bool {
		_, err := os.Stat(filepath.Join(state, "holding"))
		return err == nil
	})
	var leader *agent
	for _, v := range voters {
		for _, n := range v.nodes(token) {
			if n.Role == "leader" && strings.TrimSpace(readFile(t, filepath.Join(v.dataDir, "node-id"))) == n.ID {
				leader = v
			}
		}
	}
	if leader == nil {
		t.Fatal("no leader among the voters")
	}
	leader.kill()
	if err := os.Remove(filepath.Join(state, "hold")); err != nil {
		t.Fatal(err)
	}
	var rest []*agent
	for _, v := range voters {
		if v != leader {
			rest = append(rest, v)
		}
	}
	a = rest[0]
	for _, id := range ids {
		j := a.waitJob(token, id, 3*time.Minute, terminal)
		if j.State != "succeeded" || j.Attempts != 1 || !strings.HasPrefix(j.Node, "worker-") {
			t.Fatalf("job %s: %s, attempts %d, on %q (%+v)", id, j.State, j.Attempts, j.Node, j.Error)
		}
	}
	for _, n := range a.nodes(token) {
		if strings.HasPrefix(n.ID, "worker-") != n.Managed {
			t.Errorf("node %s shows managed %v", n.ID, n.Managed)
		}
	}
	// Idle: both workers are drained and stopped through the hook.
	waitUntil(t, 2*time.Minute, "the managed workers are removed", func() bool {
		left := 0
		for _, n := range a.nodes(token) {
			if strings.HasPrefix(n.ID, "worker-") && n.State == "left" {
				left++
			}
		}
		return left == 2
	})
	waitUntil(t, time.Minute, "the scaler sees none", func() bool {
		sv = scalerView{}
		a.do("GET", "/scaler", token, nil, "", &sv)
		return sv.Current == 0 && sv.Desired == 0
	})
	added, removed := 0, 0
	for _, r := range readRequests(t, state) {
		added += r.Add
		removed += len(r.Remove)
		if r.Desired > 2 || r.Current+r.Add > 2 {
			t.Errorf("a request above --scaler-max 2: %+v", r)
		}
		if r.Add > 0 && (len(r.Join) == 0 || r.Pool != "shared" || r.GPUs != 1) {
			t.Errorf("an add request without what a hook needs: %+v", r)
		}
	}
	if added != 2 || removed != 2 {
		t.Fatalf("the hook was asked to add %d and remove %d workers, want 2 and 2 (requests: %+v)", added, removed, readRequests(t, state))
	}
	if sv.LastAction == nil || !sv.LastAction.OK || len(sv.LastAction.Remove) == 0 {
		t.Fatalf("last action %+v", sv.LastAction)
	}
	// The CLI shows the same.
	code, out := pwmesh(t, "", []string{"PWMESH_ADDR=" + a.url, "PWMESH_TOKEN=" + token}, "scaler")
	if code != 0 || !strings.Contains(out, "exec") || !strings.Contains(out, "last action") || !strings.Contains(out, ": ok") {
		t.Fatalf("pwmesh scaler: %d\n%s", code, out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
