package docker

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/worker"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// TestEngine runs the probe image on the real engine: what a job's
// container can and cannot do.
func TestEngine(t *testing.T) {
	t.Parallel()
	needEngine(t)
	image := probeImage(t)

	// run runs the probe with order in a fresh job directory and checks
	// that its container is gone afterwards.
	run := func(t *testing.T, e *Executor, ctx context.Context, order map[string]any, timeout time.Duration, log *syncBuffer) (string, error) {
		t.Helper()
		root := jobDir(t, order)
		err := e.Run(ctx, worker.Task{JobID: "job-" + randID(), Root: root, Timeout: timeout, Log: log, Image: image})
		assertNoContainers(t, e)
		return root, err
	}

	// runNet runs the probe's network check (a dial to a listener on the
	// host, and a DNS lookup) in a task that asks for network or not.
	runNet := func(t *testing.T, e *Executor, network, addr string) (map[string]any, string) {
		t.Helper()
		root := jobDir(t, map[string]any{"mode": "net", "tcp": addr, "dns": "example.com"})
		var log syncBuffer
		err := e.Run(t.Context(), worker.Task{JobID: "job-" + randID(), Root: root, Timeout: time.Minute, Log: &log, Image: image, Network: network})
		assertNoContainers(t, e)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, log.String())
		}
		return result(t, root), log.String()
	}

	t.Run("NetworkOnlyWhenAsked", func(t *testing.T) {
		t.Parallel()
		// Without its job network a node gives no task network; with it
		// (TestJobNetworkEgress checks its firewall), the task that asks
		// has an interface besides lo, the same probe not asking has only
		// lo and reaches nothing.
		e := newExec(t, Config{})
		if e.GrantsNetwork() {
			t.Fatal("GrantsNetwork is true before the job network is set up")
		}
		addr, _ := hostListener(t)
		err := e.Run(t.Context(), worker.Task{JobID: "job-" + randID(), Root: jobDir(t, nil), Timeout: time.Minute, Image: image, Network: scheduler.NetworkBridge})
		if !errors.Is(err, worker.ErrNoNetwork) {
			t.Fatalf("no job network: err = %v, want worker.ErrNoNetwork", err)
		}
		if os.Geteuid() != 0 {
			t.Skip("the job network's firewall needs root; the rest is skipped")
		}
		if err := e.SetupJobNetwork(t.Context()); err != nil {
			t.Fatalf("SetupJobNetwork: %v", err)
		}
		t.Cleanup(func() {
			if err := e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		for _, network := range []string{"", scheduler.NetworkNone} {
			r, _ := runNet(t, e, network, addr)
			if got := r["interfaces"]; !equalList(got, []string{"lo"}) {
				t.Errorf("network %q: interfaces = %v, want only lo", network, got)
			}
			if r["tcp_err"] == "" {
				t.Errorf("network %q: dialling %s from the container worked", network, addr)
			}
			if r["dns_err"] == "" {
				t.Errorf("network %q: resolving a name from the container worked", network)
			}
		}
		r, log := runNet(t, e, scheduler.NetworkBridge, addr)
		if got, _ := r["interfaces"].([]any); len(got) < 2 {
			t.Errorf("asked for network: interfaces = %v, want lo and the job network's", got)
		}
		if r["tcp_err"] == "" {
			t.Errorf("asked for network: the job reached the host at %s", addr)
		}
		if !strings.Contains(log, "network: bridge") {
			t.Errorf("the log does not say the job runs with network:\n%s", log)
		}
	})

	t.Run("NetworkForbiddenByNode", func(t *testing.T) {
		t.Parallel()
		// The operator's veto (--no-job-network): a task that asks is
		// refused before any container exists; one that does not ask runs.
		e := newExec(t, Config{NoNetwork: true})
		if e.GrantsNetwork() {
			t.Fatal("GrantsNetwork is true with NoNetwork")
		}
		err := e.Run(t.Context(), worker.Task{JobID: "job-" + randID(), Root: jobDir(t, nil), Timeout: time.Minute, Image: image, Network: scheduler.NetworkBridge})
		if !errors.Is(err, worker.ErrNoNetwork) {
			t.Fatalf("err = %v, want worker.ErrNoNetwork", err)
		}
		assertNoContainers(t, e)
		addr, _ := hostListener(t)
		if r, _ := runNet(t, e, "", addr); !equalList(r["interfaces"], []string{"lo"}) || r["tcp_err"] == "" {
			t.Errorf("without network: %v", r)
		}
	})

	t.Run("WritesOnlyToOutputAndTmp", func(t *testing.T) {
		t.Parallel()
		e := newExec(t, Config{})
		var log syncBuffer
		root, err := run(t, e, t.Context(), map[string]any{"mode": "write"}, time.Minute, &log)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, log.String())
		}
		w, _ := result(t, root)["writes"].(map[string]any)
		for p, wantOK := range map[string]bool{
			"/probe-was-here": false, "/pwm/probe-was-here": false, "/pwm/input/probe-was-here": false, "/pwm/job.json": false,
			"/tmp/probe-was-here": true, "/pwm/output/probe-was-here": true,
		} {
			got, ok := w[p].(string)
			switch {
			case !ok:
				t.Errorf("%s: not tried", p)
			case wantOK && got != "":
				t.Errorf("write %s: %s, want it to work", p, got)
			case !wantOK && got == "":
				t.Errorf("write %s worked, want it refused", p)
			case !wantOK && !strings.Contains(got, "read-only file system"):
				t.Errorf("write %s: %s, want a read-only file system", p, got)
			}
		}
		if _, err := os.Stat(filepath.Join(root, worker.InputDir, "probe-was-here")); err == nil {
			t.Error("the container wrote into the job's input")
		}
		if _, err := os.Stat(filepath.Join(root, worker.OutputDir, "probe-was-here")); err != nil {
			t.Errorf("the container's output is not in the job's output/: %v", err)
		}
	})

	t.Run("UnprivilegedUserNoGPUsAndLogs", func(t *testing.T) {
		t.Parallel()
		e := newExec(t, Config{})
		var log syncBuffer
		root, err := run(t, e, t.Context(), map[string]any{"mode": "env"}, time.Minute, &log)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, log.String())
		}
		r := result(t, root)
		if r["uid"] != 65534.0 || r["gid"] != 65534.0 || r["euid"] != 65534.0 {
			t.Errorf("uid %v gid %v euid %v, want 65534", r["uid"], r["gid"], r["euid"])
		}
		env, _ := r["env"].([]any)
		for _, kv := range env {
			s := kv.(string)
			k, v, _ := strings.Cut(s, "=")
			switch {
			case k == "NVIDIA_VISIBLE_DEVICES" && v != "void":
				t.Errorf("a task without GPUs sees %s", s)
			case strings.HasPrefix(k, "CUDA_") || (strings.HasPrefix(k, "NVIDIA_") && k != "NVIDIA_VISIBLE_DEVICES"):
				t.Errorf("a task without GPUs sees %s", s)
			case strings.HasPrefix(k, "PWMESH_") || strings.HasPrefix(k, "DOCKER_"):
				t.Errorf("the node's setting %s leaked into the container", s)
			}
		}
		// Both streams reach the task's log.
		for _, want := range []string{"uid=65534 gid=65534", "probe: to stderr", "env: HOME=/tmp"} {
			if !log.Contains(want) {
				t.Errorf("the log lacks %q:\n%s", want, log.String())
			}
		}
	})

	t.Run("NoGPUDevices", func(t *testing.T) {
		t.Parallel()
		e := newExec(t, Config{})
		var log syncBuffer
		root, err := run(t, e, t.Context(), map[string]any{"mode": "devices"}, time.Minute, &log)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, log.String())
		}
		r := result(t, root)
		if r["dev_nvidia"] != nil || r["driver_gpus"] != nil || !equalList(r["gpu_env"], []string{"NVIDIA_VISIBLE_DEVICES=void"}) {
			t.Errorf("a task without GPUs sees GPUs: %v", r)
		}
	})

	t.Run("FakeGPUs", func(t *testing.T) {
		t.Parallel()
		// --gpus fake:...: a GPU task runs on an engine without the NVIDIA
		// Container Toolkit (no device request) and sees its GPUs named
		// as a real GPU task would.
		e := newExec(t, Config{FakeGPUs: true})
		uuids := []string{"GPU-fake-node-" + randID() + "-0", "GPU-fake-node-" + randID() + "-1"}
		root := jobDir(t, map[string]any{"mode": "devices"})
		var log syncBuffer
		err := e.Run(t.Context(), worker.Task{JobID: "job-" + randID(), Root: root, Timeout: time.Minute, Log: &log, Image: image, GPUs: uuids})
		assertNoContainers(t, e)
		if err != nil {
			t.Fatalf("a task with fake GPUs failed: %v\n%s", err, log.String())
		}
		r := result(t, root)
		ids := strings.Join(uuids, ",")
		want := []string{"CUDA_VISIBLE_DEVICES=" + ids, "NVIDIA_VISIBLE_DEVICES=" + ids}
		got, _ := r["gpu_env"].([]any)
		var env []string
		for _, kv := range got {
			env = append(env, kv.(string))
		}
		slices.Sort(env)
		if !slices.Equal(env, want) {
			t.Errorf("GPU environment %v, want %v", env, want)
		}
		if r["dev_nvidia"] != nil {
			t.Errorf("a task with fake GPUs sees NVIDIA devices: %v", r["dev_nvidia"])
		}
	})

	t.Run("ExitCode", func(t *testing.T) {
		t.Parallel()
		e := newExec(t, Config{})
		var log syncBuffer
		_, err := run(t, e, t.Context(), map[string]any{"mode": "exit", "code": 3}, time.Minute, &log)
		var ee *worker.ExitError
		if !errors.As(err, &ee) || ee.Code != 3 {
			t.Fatalf("err = %v, want exit status 3", err)
		}
		if !log.Contains("probe: exiting with 3") {
			t.Errorf("the log lacks the probe's last words:\n%s", log.String())
		}
	})

	t.Run("OutOfMemory", func(t *testing.T) {
		t.Parallel()
		e := newExec(t, Config{Memory: 64 << 20, TmpfsBytes: 1 << 20})
		var log syncBuffer
		_, err := run(t, e, t.Context(), map[string]any{"mode": "oom"}, time.Minute, &log)
		var ee *worker.ExitError
		if !errors.As(err, &ee) || ee.Code != 137 {
			t.Fatalf("err = %v, want exit status 137 (killed)\n%s", err, log.String())
		}
		if !log.Contains("the container ran out of memory (limit 64 MiB)") {
			t.Errorf("the log does not say why:\n%s", log.String())
		}
	})

	t.Run("KilledAtTimeout", func(t *testing.T) {
		t.Parallel()
		e := newExec(t, Config{})
		var log syncBuffer
		_, err := run(t, e, t.Context(), map[string]any{"mode": "sleep"}, 2*time.Second, &log)
		if !errors.Is(err, worker.ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout\n%s", err, log.String())
		}
		if !log.Contains("ready") {
			t.Errorf("the probe never started:\n%s", log.String())
		}
	})

	t.Run("KilledOnCancel", func(t *testing.T) {
		t.Parallel()
		e := newExec(t, Config{Memory: 256 << 20, Pids: 64, CPUs: 0.5})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var log syncBuffer
		jobID := "job-" + randID()
		done := make(chan error, 1)
		go func() {
			done <- e.Run(ctx, worker.Task{JobID: jobID, Root: jobDir(t, map[string]any{"mode": "sleep"}), Timeout: time.Hour, Log: &log, Image: image})
		}()
		schedulertest.WaitFor(t, time.Minute, "the probe to start", func() bool { return log.Contains("ready") })
		// While it runs: the engine has the container as it was asked to.
		checkRunningContainer(t, e, jobID)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		assertNoContainers(t, e)
	})

	t.Run("MissingImageIsNotPulled", func(t *testing.T) {
		t.Parallel()
		e := newExec(t, Config{})
		err := e.Run(t.Context(), worker.Task{JobID: "job-" + randID(), Root: jobDir(t, nil), Timeout: time.Minute, Image: "pwmesh-absent-" + randID() + ":none"})
		if !errors.Is(err, ErrImageMissing) {
			t.Fatalf("err = %v, want ErrImageMissing", err)
		}
		assertNoContainers(t, e)
	})

	t.Run("CleanOrphans", func(t *testing.T) {
		t.Parallel()
		mine, other := newExec(t, Config{}), newExec(t, Config{})
		for _, e := range []*Executor{mine, mine, other} {
			cfg := e.containerConfig(worker.Task{JobID: "job-orphan"}, t.TempDir(), image, "none", false)
			cfg.HostConfig.Mounts = nil
			if _, err := e.c.containerCreate(t.Context(), containerName("job-orphan"), cfg); err != nil {
				t.Fatal(err)
			}
		}
		n, err := mine.CleanOrphans(t.Context())
		if err != nil || n != 2 {
			t.Fatalf("CleanOrphans = %d, %v; want 2 removed", n, err)
		}
		assertNoContainers(t, mine)
		left, err := other.c.containerList(t.Context(), LabelNode+"="+other.cfg.NodeID)
		if err != nil || len(left) != 1 {
			t.Fatalf("another node's container: %d left (%v), want it kept", len(left), err)
		}
		if n, err := other.CleanOrphans(t.Context()); err != nil || n != 1 {
			t.Fatalf("CleanOrphans = %d, %v", n, err)
		}
	})
}

// checkRunningContainer inspects the job's container through the engine.
func checkRunningContainer(t *testing.T, e *Executor, jobID string) {
	t.Helper()
	cs, err := e.c.containerList(t.Context(), LabelNode+"="+e.cfg.NodeID, LabelJob+"="+jobID)
	if err != nil || len(cs) != 1 {
		t.Fatalf("containers of the job: %d (%v), want 1", len(cs), err)
	}
	st, err := e.c.containerInspect(t.Context(), cs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	h := st.HostConfig
	if !st.State.Running || st.Config.User != "65534:65534" || h.NetworkMode != "none" || !h.ReadonlyRootfs || h.Privileged ||
		!slices.Equal(h.CapDrop, []string{"ALL"}) || !slices.Contains(h.SecurityOpt, "no-new-privileges") ||
		h.PidsLimit != 64 || h.Memory != 256<<20 || h.MemorySwap != 256<<20 || h.NanoCPUs != 5e8 || len(h.DeviceRequests) != 0 {
		t.Errorf("the running container is not locked down as asked: running %v user %q host config %+v", st.State.Running, st.Config.User, h)
	}
	// The image's VOLUME /scratch is a small tmpfs, not a volume on disk.
	for _, p := range []string{"/tmp", "/scratch"} {
		if _, ok := h.Tmpfs[p]; !ok {
			t.Errorf("no tmpfs at %s: %v", p, h.Tmpfs)
		}
	}
	for _, m := range st.Mounts {
		if m.Type != "bind" {
			t.Errorf("a %s mount at %s; want only the job directory's binds", m.Type, m.Destination)
		}
	}
}

// hostListener listens on every interface of the host and returns the
// address a container on the default bridge would dial, and whether the
// host has a docker0 address for it.
func hostListener(t *testing.T) (string, bool) {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	if ifc, err := net.InterfaceByName("docker0"); err == nil {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil {
				return net.JoinHostPort(ip.IP.String(), strconv.Itoa(port)), true
			}
		}
	}
	return net.JoinHostPort("172.17.0.1", strconv.Itoa(port)), false
}

func equalList(got any, want []string) bool {
	l, ok := got.([]any)
	if !ok || len(l) != len(want) {
		return false
	}
	for i := range l {
		if l[i] != want[i] {
			return false
		}
	}
	return true
}
