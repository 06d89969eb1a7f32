package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pwmesh/pwmesh/node/worker"
	"github.com/pwmesh/pwmesh/scheduler"
)

// Labels on what the executor creates.
const (
	LabelNode = "pwmesh.node" // every container: the node that runs it
	LabelJob  = "pwmesh.job"  // every container: its job
	// LabelImage is "workload" on the built-in workload's image.
	LabelImage = "pwmesh.image"
	// LabelBinary on the workload image: the SHA-256 of the static binary
	// it was built from, so that a node rebuilds an image that is stale.
	LabelBinary = "pwmesh.workload.sha256"
)

// Defaults.
const (
	DefaultWorkloadImage = "pwmesh-workload:latest"
	// StaticBinaryName is the static (CGO_ENABLED=0) pwmesh binary that
	// `make build` puts beside bin/pwmesh; the workload image is built
	// from it.
	StaticBinaryName  = "pwmesh-static"
	DefaultMemory     = 4 << 30  // bytes
	DefaultCPUs       = 1.0      // CPUs
	DefaultPids       = 512      // processes and threads
	DefaultTmpfsBytes = 64 << 20 // bytes
)

// Where the job directory appears in a container.
const (
	ContainerRoot = "/pwm"
	containerTmp  = "/tmp"
	// nobody:nogroup: no user a host file belongs to.
	containerUser = "65534:65534"
)

// ErrImageMissing: a job's image is not on this node. Images are never
// pulled by the executor.
var ErrImageMissing = errors.New("docker: image missing")

// Config configures the docker executor. The zero value of every field but
// NodeID is a working default.
type Config struct {
	// NodeID labels every container, so that a restarted node finds and
	// removes what an earlier life of it left (required).
	NodeID string
	// Host is the engine's address: unix:///path or tcp://host:port
	// (default: $DOCKER_HOST, else unix:///var/run/docker.sock).
	Host string
	// WorkloadImage runs jobs that name no image (default
	// pwmesh-workload:latest).
	WorkloadImage string
	// WorkloadBinary is the static pwmesh binary the workload image is
	// built from when it is missing (default: pwmesh-static beside this
	// executable).
	WorkloadBinary string
	// NoNetwork forbids network to every task (the operator's veto,
	// --no-job-network): a task that asks for it is refused. Otherwise a
	// task that asks (Task.Network "bridge", which the API grants only to
	// paid tiers and only for jobs with an image) runs on this node's job
	// network once SetupJobNetwork has made it and its firewall; every
	// other container has no network at all.
	NoNetwork bool
	// MeshPorts are ports that a job on the job network may not reach on
	// any machine: the mesh's gossip, p2p and HTTP ports.
	MeshPorts []int
	// FakeGPUs: the node's GPUs are simulated (--gpus fake:SPEC). A task
	// with GPUs then gets the environment a real GPU task gets
	// (NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES naming its GPUs)
	// but no device request, which an engine without the NVIDIA
	// Container Toolkit refuses and which would name no real device.
	FakeGPUs bool
	// Memory limits each container's memory in bytes, swap included
	// (default 4 GiB).
	Memory int64
	// CPUs limits each container's CPU time, in CPUs (default 1).
	CPUs float64
	// Pids limits each container's processes and threads (default 512).
	Pids int64
	// TmpfsBytes sizes the tmpfs at /tmp, the only writable place besides
	// /pwm/output; it counts against Memory (default 64 MiB).
	TmpfsBytes int64
	// KillTimeout bounds the wait for a killed container to stop and for
	// the engine's cleanup calls (default 30 s).
	KillTimeout time.Duration
	Logger      *slog.Logger
}

// Executor runs each task in its own locked-down container.
type Executor struct {
	cfg     Config
	c       *client
	log     *slog.Logger
	buildMu sync.Mutex // one image build at a time

	netMu  sync.Mutex
	jobNet *firewall // the job network's firewall, once set up
}

var _ worker.Executor = (*Executor)(nil)

// New validates cfg; it does not contact the engine (see Ping).
func New(cfg Config) (*Executor, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("docker: NodeID is required")
	}
	if cfg.WorkloadImage == "" {
		cfg.WorkloadImage = DefaultWorkloadImage
	}
	if cfg.WorkloadBinary == "" {
		if exe, err := os.Executable(); err == nil {
			cfg.WorkloadBinary = filepath.Join(filepath.Dir(exe), StaticBinaryName)
		}
	}
	if cfg.Memory <= 0 {
		cfg.Memory = DefaultMemory
	}
	if cfg.CPUs <= 0 {
		cfg.CPUs = DefaultCPUs
	}
	if cfg.Pids <= 0 {
		cfg.Pids = DefaultPids
	}
	if cfg.TmpfsBytes <= 0 {
		cfg.TmpfsBytes = DefaultTmpfsBytes
	}
	if cfg.KillTimeout <= 0 {
		cfg.KillTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := newClient(cfg.Host)
	if err != nil {
		return nil, err
	}
	return &Executor{cfg: cfg, c: c, log: cfg.Logger}, nil
}

// Name is "docker".
func (e *Executor) Name() string { return "docker" }

// GrantsNetwork reports whether a task that asks for network gets it
// here: once SetupJobNetwork succeeded, unless Config.NoNetwork.
func (e *Executor) GrantsNetwork() bool {
	e.netMu.Lock()
	defer e.netMu.Unlock()
	return !e.cfg.NoNetwork && e.jobNet != nil
}

// JobNetwork is the name of this node's job network.
func (e *Executor) JobNetwork() string { return namesFor(e.cfg.NodeID).Network }

// SetupJobNetwork makes this node's job network (a bridge network of its
// own, containers on it unable to reach each other) and installs its
// firewall (firewall.go). Until it succeeds, and where it fails (no
// iptables, not root, an engine run with --iptables=false), no task gets
// network: the node then advertises none, and the error says why. With
// Config.NoNetwork it does nothing. It is safe to repeat.
func (e *Executor) SetupJobNetwork(ctx context.Context) error {
	if e.cfg.NoNetwork {
		return nil
	}
	names := namesFor(e.cfg.NodeID)
	fw, err := newFirewall(ctx, names, e.cfg.MeshPorts)
	if err != nil {
		return err
	}
	// The rules go in before any container can be on the network.
	if err := fw.install(ctx); err != nil {
		return err
	}
	if err := e.c.ensureNetwork(ctx, names, e.cfg.NodeID); err != nil {
		_ = fw.remove(context.WithoutCancel(ctx))
		return err
	}
	e.netMu.Lock()
	e.jobNet = fw
	e.netMu.Unlock()
	return nil
}

// Close removes the job network and its firewall, if SetupJobNetwork made
// them. Call it once no task runs.
func (e *Executor) Close() error {
	e.netMu.Lock()
	fw := e.jobNet
	e.jobNet = nil
	e.netMu.Unlock()
	if fw == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.KillTimeout)
	defer cancel()
	// The network goes first: while it cannot (a container still on
	// it), its firewall stays.
	if err := e.c.networkRemove(ctx, fw.names.Network); err != nil {
		return fmt.Errorf("docker: remove the job network (its firewall stays): %w", err)
	}
	return fw.remove(ctx)
}

// WorkloadImage is the image of jobs that name none.
func (e *Executor) WorkloadImage() string { return e.cfg.WorkloadImage }

// Ping reports whether the engine answers and speaks API 1.41 or newer.
func (e *Executor) Ping(ctx context.Context) error { return e.c.ping(ctx) }

// HasImage reports whether the engine holds image name.
func (e *Executor) HasImage(ctx context.Context, name string) (bool, error) {
	_, err := e.c.imageInspect(ctx, name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

// CleanOrphans removes every container labelled with this node's ID: what
// an earlier life of the node left when it died. Call it when the node
// starts, before any job runs here. It returns how many it removed.
func (e *Executor) CleanOrphans(ctx context.Context) (int, error) {
	cs, err := e.c.containerList(ctx, LabelNode+"="+e.cfg.NodeID)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, c := range cs {
		if err := e.c.containerRemove(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
		e.log.Info("docker: removed a container left by an earlier run", "job_id", c.Labels[LabelJob], "container", shortID(c.ID))
	}
	return n, errors.Join(errs...)
}

// Run runs t in a new container and removes the container afterwards. It
// returns nil on a zero exit, worker.ErrTimeout when the container was
// killed at t.Timeout, ctx's error when ctx ended first (the container is
// killed), or *worker.ExitError. A task that asks for network where it may
// not have it is refused with worker.ErrNoNetwork before anything runs.
func (e *Executor) Run(ctx context.Context, t worker.Task) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	network, err := e.network(ctx, t)
	if err != nil {
		return err
	}
	logw := t.Log
	if logw == nil {
		logw = io.Discard
	}
	runCtx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	// stopped says why a run whose runCtx ended stopped.
	stopped := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case runCtx.Err() != nil:
			return worker.ErrTimeout
		}
		return err
	}
	root, err := filepath.Abs(t.Root)
	if err != nil {
		return fmt.Errorf("docker: job directory: %w", err)
	}
	builtin := t.Image == ""
	image := t.Image
	if builtin {
		image = e.cfg.WorkloadImage
	}
	img, err := e.image(runCtx, image, builtin)
	if err != nil {
		return stopped(err)
	}
	if network != "none" {
		fmt.Fprintf(logw, "network: bridge, on this node's job network %s (the job asked for it; no host, link-local, loopback or mesh addresses)\n", network)
	}
	if err := prepareDirs(root, builtin); err != nil {
		return fmt.Errorf("docker: prepare %s: %w", root, err)
	}
	cfg := e.containerConfig(t, root, image, network, builtin)
	// A VOLUME of the image would be an anonymous volume on the engine's
	// disk, writable and unbounded: a small tmpfs takes its place.
	for v := range img.Config.Volumes {
		v = path.Clean(v)
		_, ok := cfg.HostConfig.Tmpfs[v]
		if ok || slices.ContainsFunc(cfg.HostConfig.Mounts, func(m mount) bool { return m.Target == v }) {
			continue
		}
		cfg.HostConfig.Tmpfs[v] = tmpfsOptions(e.cfg.TmpfsBytes)
	}
	return e.run(ctx, runCtx, t.JobID, cfg, logw, stopped)
}

// network is the container's network mode for t: "none" unless the task
// asks for the bridge, and this node allows it, for an image of its own:
// then the job network, its firewall checked (and rebuilt if someone took
// rules away) first.
func (e *Executor) network(ctx context.Context, t worker.Task) (string, error) {
	switch t.Network {
	case "", scheduler.NetworkNone:
		return "none", nil
	case scheduler.NetworkBridge:
	default:
		return "", fmt.Errorf("docker: network %q is not one of none, bridge", t.Network)
	}
	switch {
	case e.cfg.NoNetwork:
		return "", fmt.Errorf("%w: its operator forbids network to jobs (--no-job-network)", worker.ErrNoNetwork)
	case t.Image == "":
		return "", fmt.Errorf("%w: the built-in workload runs without network", worker.ErrNoNetwork)
	}
	e.netMu.Lock()
	fw := e.jobNet
	e.netMu.Unlock()
	if fw == nil {
		return "", fmt.Errorf("%w: its job network and firewall are not set up", worker.ErrNoNetwork)
	}
	if err := fw.check(ctx); err != nil {
		e.log.Warn("docker: the job network's firewall rules are missing; installing them again", "job_id", t.JobID, "err", err)
		if err := fw.install(ctx); err != nil {
			return "", fmt.Errorf("%w: its job network's firewall cannot be installed: %v", worker.ErrNoNetwork, err)
		}
	}
	return fw.names.Network, nil
}

// image inspects an image; the built-in one is built when missing.
func (e *Executor) image(ctx context.Context, name string, builtin bool) (imageInfo, error) {
	img, err := e.c.imageInspect(ctx, name)
	if !errors.Is(err, ErrNotFound) {
		return img, err
	}
	if !builtin {
		return img, fmt.Errorf("%w: %s is not on this node, and images are never pulled: docker load (or pull) it there first", ErrImageMissing, name)
	}
	if err := e.EnsureImage(ctx, e.cfg.WorkloadBinary); err != nil {
		return img, err
	}
	return e.c.imageInspect(ctx, name)
}

// run creates, starts and waits for one container, and always removes it.
func (e *Executor) run(ctx, runCtx context.Context, jobID string, cfg containerConfig, logw io.Writer, stopped func(error) error) error {
	// The engine's bookkeeping calls run on contexts of their own: a
	// container created while a cancel came in must still be known, and
	// removed.
	cctx, cancel := e.engineCtx(ctx)
	id, err := e.c.containerCreate(cctx, containerName(jobID), cfg)
	cancel()
	if err != nil {
		return stopped(err)
	}
	defer func() {
		rctx, cancel := e.engineCtx(ctx)
		defer cancel()
		if err := e.c.containerRemove(rctx, id); err != nil {
			e.log.Warn("docker: remove container", "job_id", jobID, "container", shortID(id), "err", err)
		}
	}()
	if runCtx.Err() != nil {
		return stopped(nil)
	}
	sctx, cancel := e.engineCtx(ctx)
	err = e.c.containerStart(sctx, id)
	cancel()
	if err != nil {
		return stopped(err)
	}
	// Logs are followed, and the exit waited for, until the container
	// stops; both goroutines are waited for below.
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()
	logsDone := make(chan error, 1)
	go func() { logsDone <- e.c.containerLogs(bg, id, logw) }()
	type exit struct {
		code int
		err  error
	}
	waited := make(chan exit, 1)
	go func() {
		code, err := e.c.containerWait(bg, id)
		waited <- exit{code, err}
	}()
	var (
		res    exit
		killed bool
	)
	select {
	case res = <-waited:
	case <-runCtx.Done():
		killed = true
		kctx, cancel := e.engineCtx(ctx)
		if err := e.c.containerKill(kctx, id); err != nil {
			e.log.Warn("docker: kill container", "job_id", jobID, "container", shortID(id), "err", err)
		}
		cancel()
		t := time.NewTimer(e.cfg.KillTimeout)
		select {
		case res = <-waited:
		case <-t.C:
			stopBg()
			res = <-waited
		}
		t.Stop()
	}
	// The log stream ends with the container; one that hangs is cut off.
	t := time.NewTimer(5 * time.Second)
	select {
	case err := <-logsDone:
		if err != nil && !killed {
			e.log.Warn("docker: follow logs", "job_id", jobID, "container", shortID(id), "err", err)
		}
	case <-t.C:
		stopBg()
		<-logsDone
	}
	t.Stop()
	if killed {
		return stopped(nil)
	}
	if res.err != nil {
		return res.err
	}
	if res.code != 0 {
		ictx, cancel := e.engineCtx(ctx)
		if st, err := e.c.containerInspect(ictx, id); err == nil && st.State.OOMKilled {
			fmt.Fprintf(logw, "the container ran out of memory (limit %d MiB)\n", cfg.HostConfig.Memory>>20)
		}
		cancel()
		return &worker.ExitError{Code: res.code}
	}
	return nil
}

// engineCtx bounds one bookkeeping call to the engine; it outlives ctx's
// end.
func (e *Executor) engineCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), e.cfg.KillTimeout)
}

// containerConfig is the locked-down container of one task.
func (e *Executor) containerConfig(t worker.Task, root, image, network string, builtin bool) containerConfig {
	in := func(name string) string { return filepath.Join(root, name) }
	at := func(name string) string { return ContainerRoot + "/" + name }
	mounts := []mount{
		{Type: "bind", Source: in(worker.InputDir), Target: at(worker.InputDir), ReadOnly: true},
		{Type: "bind", Source: in(worker.OutputDir), Target: at(worker.OutputDir)},
	}
	if _, err := os.Stat(in(worker.JobFile)); err == nil {
		mounts = append(mounts, mount{Type: "bind", Source: in(worker.JobFile), Target: at(worker.JobFile), ReadOnly: true})
	}
	if builtin {
		// The built-in workload also writes side outputs (a generated
		// dataset, a built operator) and, on failure, error.json; a job's
		// own image gets neither, so that it cannot plant a cached
		// operator or a dataset beside its bundle.
		mounts = append(mounts,
			mount{Type: "bind", Source: in(worker.ExportDir), Target: at(worker.ExportDir)},
			mount{Type: "bind", Source: in(worker.ErrorFile), Target: at(worker.ErrorFile)})
	}
	env := []string{"HOME=" + containerTmp, "TMPDIR=" + containerTmp}
	var devices []deviceRequest
	if len(t.GPUs) > 0 {
		ids := append([]string(nil), t.GPUs...)
		if !e.cfg.FakeGPUs {
			devices = []deviceRequest{{Driver: "nvidia", DeviceIDs: ids, Capabilities: [][]string{{"gpu"}}}}
		}
		// The same names as the process executor gives its child: CUDA
		// and the NVIDIA runtime both take UUIDs.
		env = append(env, "NVIDIA_VISIBLE_DEVICES="+strings.Join(ids, ","), "CUDA_VISIBLE_DEVICES="+strings.Join(ids, ","))
	} else {
		// Where the engine's default runtime is NVIDIA's, an image's own
		// NVIDIA_VISIBLE_DEVICES=all (every CUDA base image sets it)
		// would hand a CPU job every GPU of the machine: void hides them.
		env = append(env, "NVIDIA_VISIBLE_DEVICES=void")
	}
	return containerConfig{
		Image:  image,
		User:   containerUser,
		Env:    env,
		Labels: map[string]string{LabelNode: e.cfg.NodeID, LabelJob: t.JobID},
		HostConfig: hostConfig{
			NetworkMode:    network,
			ReadonlyRootfs: true,
			SecurityOpt:    []string{"no-new-privileges"},
			CapDrop:        []string{"ALL"},
			IpcMode:        "private",
			PidsLimit:      e.cfg.Pids,
			Memory:         e.cfg.Memory,
			MemorySwap:     e.cfg.Memory,
			NanoCPUs:       int64(e.cfg.CPUs * 1e9),
			Tmpfs:          map[string]string{containerTmp: tmpfsOptions(e.cfg.TmpfsBytes)},
			Mounts:         mounts,
			DeviceRequests: devices,
			// json-file whatever the engine's default, so that the logs
			// can be followed; Task.Log keeps them for good.
			LogConfig: logConfig{Type: "json-file", Config: map[string]string{"max-size": "64m", "max-file": "2"}},
		},
	}
}

func tmpfsOptions(size int64) string {
	return fmt.Sprintf("rw,nosuid,nodev,size=%d,mode=1777", size)
}

// prepareDirs gives the container's user (65534, no owner of any host
// file) the places it may write. The job directory sits in the node's
// own 0700 directory, so nobody else on the host reaches them.
func prepareDirs(root string, builtin bool) error {
	if err := os.MkdirAll(filepath.Join(root, worker.InputDir), 0o755); err != nil {
		return err
	}
	writable := []string{worker.OutputDir}
	if builtin {
		writable = append(writable, worker.ExportDir)
	}
	for _, d := range writable {
		p := filepath.Join(root, d)
		if err := os.MkdirAll(p, 0o777); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o777); err != nil {
			return err
		}
	}
	if builtin {
		// A file mount needs its source: an empty error.json, which the
		// worker ignores unless the workload filled it in.
		p := filepath.Join(root, worker.ErrorFile)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o666); err != nil {
			return err
		}
	}
	return nil
}

// containerName is pwmesh-<job>-<random>: readable in `docker ps`, and
// unique, so that a rerun never collides with a container being removed.
func containerName(jobID string) string {
	var b strings.Builder
	for _, r := range jobID {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 64 {
			break
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "pwmesh-" + b.String() + "-" + hex.EncodeToString(rnd[:])
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
