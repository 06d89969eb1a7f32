package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDockerScaler: a dev node without GPUs and --scaler docker, on the
// real Docker engine. A GPU job makes the leader build the node image
// (FROM scratch, from the static binary) and start one worker container
// with fake GPUs of the class asked for, joined with the cluster key; the
// job succeeds there at its first attempt; once the worker is idle it is
// drained and its container removed, and the node shows it left.
func TestDockerScaler(t *testing.T) {
	t.Parallel()
	needDocker(t)
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	// An image of its own, so that the test neither rebuilds nor removes
	// the node image `make build` made.
	image := "pwmesh-e2e-node-" + hex.EncodeToString(rnd[:]) + ":test"
	keyPath := writeClusterKey(t)
	a := startAgent(t, t.TempDir(), "--cluster-key", keyPath, "--scaler", "docker", "--scaler-image", image,
		"--scaler-max", "1", "--scaler-idle", "10s", "--scaler-cooldown", "1s")
	containers := func() []string {
		out, err := exec.Command("docker", "ps", "-a", "--filter", "ancestor="+image, "--format", "{{.Names}} {{.State}}").CombinedOutput()
		if err != nil {
			t.Fatalf("docker ps: %v: %s", err, out)
		}
		return strings.Fields(strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		a.stop()
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "ancestor="+image).CombinedOutput()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("docker", "rm", "-f", id).Run()
		}
		if out, err := exec.Command("docker", "image", "rm", "-f", image).CombinedOutput(); err != nil {
			t.Errorf("remove %s: %v: %s", image, err, out)
		}
	})
	j := a.submit(a.token, map[string]any{"type": "generate_dataset", "params": map[string]any{"size": 16, "seed": 9},
		"resources": map[string]any{"gpus": 1, "gpu_model": "H100"}})
	j = a.waitJob(a.token, j.ID, 4*time.Minute, terminal)
	if j.State != "succeeded" || j.Attempts != 1 || j.Node == "" {
		t.Fatalf("GPU job: %s, attempts %d, node %q (%+v)\n%s", j.State, j.Attempts, j.Node, j.Error, a.logs)
	}
	var worker *nodeEntry
	for _, n := range a.nodes(a.token) {
		if n.ID == j.Node {
			worker = &n
		}
	}
	if worker == nil || worker.Role != "worker" {
		t.Fatalf("the job ran on %q, not on a worker: %+v", j.Node, a.nodes(a.token))
	}
	var got struct {
		Nodes []struct {
			ID   string
			GPUs []struct{ Model string }
		}
	}
	a.do("GET", "/nodes", a.token, nil, "", &got)
	for _, n := range got.Nodes {
		if n.ID == j.Node && (len(n.GPUs) != 1 || !strings.Contains(n.GPUs[0].Model, "H100")) {
			t.Fatalf("the worker's GPUs %+v, want one H100", n.GPUs)
		}
	}
	if c := containers(); len(c) != 2 || c[0] != "pwmesh-"+j.Node {
		t.Fatalf("worker containers %v, want pwmesh-%s", c, j.Node)
	}
	// The container is locked down: an unprivileged user, no capabilities,
	// nothing of the host mounted, the key in a file, not in its command.
	out, err := exec.Command("docker", "inspect", "--format",
		"{{.Config.User}}|{{.HostConfig.CapDrop}}|{{.HostConfig.NetworkMode}}|{{len .Mounts}}|{{.HostConfig.SecurityOpt}}|{{.Config.Cmd}}|{{.Config.Env}}",
		"pwmesh-"+j.Node).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect: %v: %s", err, out)
	}
	parts := strings.Split(strings.TrimSpace(string(out)), "|")
	if len(parts) != 7 || parts[0] != "65534:65534" || parts[1] != "[ALL]" || parts[2] != "host" || parts[3] != "0" ||
		!strings.Contains(parts[4], "no-new-privileges") || !strings.Contains(parts[5], "--scaler-managed") ||
		!strings.Contains(parts[5], "--cluster-key /data/cluster.key") || strings.Contains(parts[6], "PWMESH_") {
		t.Fatalf("worker container: %q", parts)
	}
	key := strings.TrimSpace(readFile(t, keyPath))
	if strings.Contains(string(out), key) {
		t.Fatal("the cluster key shows in the container's configuration")
	}
	// Idle for 10 s: drained, its container stopped and removed.
	waitUntil(t, 2*time.Minute, "the idle worker is removed", func() bool {
		for _, n := range a.nodes(a.token) {
			if n.ID == j.Node {
				return n.State == "left" && len(containers()) == 0
			}
		}
		return false
	})
	var sv scalerView
	waitUntil(t, time.Minute, "the scaler counts no worker", func() bool {
		sv = scalerView{}
		a.do("GET", "/scaler", a.token, nil, "", &sv)
		return sv.Current == 0
	})
	if sv.Mode != "docker" || sv.Current != 0 || sv.LastAction == nil || !sv.LastAction.OK || len(sv.LastAction.Remove) != 1 {
		t.Fatalf("GET /scaler after removal: %+v %+v", sv, sv.LastAction)
	}
}
