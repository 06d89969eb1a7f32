package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pwmesh/pwmesh/cas/bundle"
)

var (
	staticOnce sync.Once
	staticErr  error
)

// needDocker skips t where no Docker engine answers the docker CLI, and
// builds the static pwmesh beside the test's binary: the docker executor
// builds its workload image from it.
func needDocker(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binary")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers here (docker info: %v: %s): skipping the docker executor's end-to-end test", err, strings.TrimSpace(string(out)))
	}
	staticOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", filepath.Join(filepath.Dir(pwmeshBin), "pwmesh-static"), "github.com/pwmesh/pwmesh/cmd/pwmesh")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			staticErr = err
			t.Logf("go build pwmesh-static: %s", out)
		}
	})
	if staticErr != nil {
		t.Fatalf("build the static pwmesh: %v", staticErr)
	}
}

// TestFakeGPUJobInDocker: a dev node with simulated GPUs and the docker
// executor (what `make run` picks where Docker answers) runs a one-GPU job
// to success: its container gets the GPUs' names and no device request,
// which an engine without the NVIDIA Container Toolkit would refuse.
func TestFakeGPUJobInDocker(t *testing.T) {
	t.Parallel()
	needDocker(t)
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	// An image of its own, so that the test neither rebuilds nor removes
	// the workload image `make build` made.
	image := "pwmesh-e2e-workload-" + hex.EncodeToString(rnd[:]) + ":test"
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "image", "rm", "-f", image).CombinedOutput(); err != nil {
			t.Errorf("remove %s: %v: %s", image, err, out)
		}
	})
	a := startAgent(t, t.TempDir(), "--gpus", "fake:1xA100-80GB", "--executor", "docker", "--workload-image", image)
	// Whatever happens, the node stops cleanly (removing its job network
	// and firewall) before the SIGKILL startAgent's cleanup sends; what a
	// node that did not stop cleanly left is removed by hand.
	t.Cleanup(func() {
		a.stop()
		removeJobNetwork(nodeID(t, a))
	})
	if !strings.Contains(a.logs.String(), `"msg":"executor: docker"`) {
		t.Fatalf("the node does not run the docker executor:\n%s", a.logs)
	}
	gen := a.waitDone(a.token, a.submit(a.token, map[string]any{"type": "generate_dataset",
		"params": map[string]any{"size": 16, "seed": 5}}).ID)
	if gen.State != "succeeded" || gen.Outputs["dataset"] == "" {
		t.Fatalf("generate_dataset: %+v\n%s", gen, a.logs)
	}
	j := a.waitDone(a.token, a.submit(a.token, map[string]any{"type": "calibrate", "dataset": gen.Outputs["dataset"],
		"resources": map[string]any{"gpus": 1}}).ID)
	if j.State != "succeeded" {
		t.Fatalf("a one-GPU calibrate job on a fake GPU: %s (%+v)\n%s", j.State, j.Error, a.logs)
	}
	rep, err := bundle.Verify(bytes.NewReader(checkBundle(t, a, a.token, j)))
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Manifest
	if m.Execution.Executor != "docker" || len(m.Execution.GPUs) != 1 {
		t.Errorf("the bundle says executor %q, GPUs %v; want docker and one GPU", m.Execution.Executor, m.Execution.GPUs)
	}
	// A node that made its job network (it runs as root here) removes it,
	// and its firewall chain, when it stops.
	a.stop()
	if !strings.Contains(a.logs.String(), `"job_network":true`) {
		t.Logf("the node gave jobs no network here (not root, or no iptables): nothing to clean up")
		return
	}
	out, err := exec.Command("docker", "network", "ls", "--filter", "label=pwmesh.node", "--format", "{{.Name}} {{.Labels}}").CombinedOutput()
	if err != nil {
		t.Fatalf("docker network ls: %v: %s", err, out)
	}
	id := nodeID(t, a)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "pwmesh.node="+id) {
			t.Errorf("the node's job network is left after it stopped: %s", line)
		}
	}
	if b, err := exec.Command("iptables", "-w", "-S").CombinedOutput(); err == nil && strings.Contains(string(b), "PWMESH-JOBS-") && strings.Contains(string(b), jobChainOf(id)) {
		t.Errorf("the node's firewall chain %s is left after it stopped", jobChainOf(id))
	}
}

// nodeID is the agent's node ID, from its data directory.
func nodeID(t *testing.T, a *agent) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.dataDir, "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// jobChainOf names a node's firewall chain as the docker executor does.
func jobChainOf(nodeID string) string {
	sum := sha256.Sum256([]byte(nodeID))
	return "PWMESH-JOBS-" + hex.EncodeToString(sum[:])[:10]
}

// removeJobNetwork removes, best effort, the job network and firewall
// rules a node left.
func removeJobNetwork(id string) {
	chain := jobChainOf(id)
	h := strings.TrimPrefix(chain, "PWMESH-JOBS-")
	bridge := "pwmj-" + h
	_ = exec.Command("docker", "network", "rm", "pwmesh-jobs-"+h).Run()
	for _, args := range [][]string{
		{"iptables", "-w", "-D", "INPUT", "-i", bridge, "-j", "DROP"},
		{"iptables", "-w", "-D", "DOCKER-USER", "-i", bridge, "-j", chain},
		{"iptables", "-w", "-F", chain},
		{"iptables", "-w", "-X", chain},
		{"ip6tables", "-w", "-D", "INPUT", "-i", bridge, "-j", "DROP"},
		{"ip6tables", "-w", "-D", "FORWARD", "-i", bridge, "-j", "DROP"},
	} {
		_ = exec.Command(args[0], args[1:]...).Run()
	}
}
