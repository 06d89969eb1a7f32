package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The node image and the scaler's worker containers (--scaler docker,
// docs/scaling.md).
const (
	// DefaultNodeImage is the node image `make build` builds FROM scratch
	// from bin/pwmesh-static.
	DefaultNodeImage = "pwmesh-node:latest"
	// LabelMesh on a worker container: which mesh's scaler started it (a
	// digest of the cluster key, so any leader of the mesh finds it).
	LabelMesh = "pwmesh.scaler.mesh"
	// LabelWorker on a worker container: the node ID it runs as.
	LabelWorker = "pwmesh.scaler.worker"
)

// nodeDockerfile builds the node image; the same text as
// build/node/Dockerfile, which `make build` uses (a test checks they match).
const nodeDockerfile = `# The node image: the static pwmesh binary and nothing else, for worker
# nodes the docker scaler starts (--scaler docker, docs/scaling.md).
# ` + "`make build`" + ` builds it from bin/pwmesh-static; nothing is pulled from a registry.
# node/worker/docker keeps a copy of this file (a test checks they match).
FROM scratch
COPY pwmesh-static /pwmesh
USER 65534:65534
ENTRYPOINT ["/pwmesh"]
CMD ["agent", "--help"]
`

// WorkersConfig says how worker containers are made.
type WorkersConfig struct {
	Host  string // the engine ("" = $DOCKER_HOST or the default socket)
	Image string // default DefaultNodeImage
	// StaticBinary builds the image when it is missing or stale.
	StaticBinary string
	// ClusterKey is the mesh's key, given to every worker.
	ClusterKey []byte
	// Bind is the address the workers bind (they share the host's
	// network): the leader's --bind. Region is their --region.
	Bind   string
	Region string
	// Args are added to every worker's `pwmesh agent` command line.
	Args   []string
	Logger *slog.Logger
}

// WorkerSpec is one worker to start.
type WorkerSpec struct {
	NodeID   string
	Join     []string
	Pool     string
	GPUClass string
	GPUs     int
}

// Workers starts and stops worker nodes as containers of the node image
// on the host's network.
type Workers struct {
	cfg  WorkersConfig
	c    *client
	mesh string
}

// NewWorkers checks cfg; nothing is asked of the engine yet.
func NewWorkers(cfg WorkersConfig) (*Workers, error) {
	if len(cfg.ClusterKey) == 0 {
		return nil, errors.New("docker scaler: workers need the mesh's cluster key (--cluster-key)")
	}
	if cfg.Image == "" {
		cfg.Image = DefaultNodeImage
	}
	if cfg.Bind == "" || cfg.Bind == "0.0.0.0" || cfg.Bind == "::" {
		cfg.Bind = "0.0.0.0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := newClient(cfg.Host)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("pwmesh scaler mesh\x00"), cfg.ClusterKey...))
	return &Workers{cfg: cfg, c: c, mesh: hex.EncodeToString(sum[:8])}, nil
}

// Image is the node image's name.
func (w *Workers) Image() string { return w.cfg.Image }

// EnsureImage builds the node image from the static binary when it is
// missing or was built from another binary.
func (w *Workers) EnsureImage(ctx context.Context) error {
	img, err := w.c.imageInspect(ctx, w.cfg.Image)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	have := err == nil
	sum, serr := checkStatic(w.cfg.StaticBinary)
	switch {
	case serr != nil && have:
		return nil // use it as it is
	case serr != nil:
		return fmt.Errorf("docker scaler: the node image %s is missing and cannot be built: %w (run make build, which builds bin/%s and the image)", w.cfg.Image, serr, StaticBinaryName)
	case have && img.Config.Labels[LabelBinary] == sum:
		return nil
	}
	w.cfg.Logger.Info("docker scaler: building the node image", "image", w.cfg.Image, "binary", w.cfg.StaticBinary)
	var out strings.Builder
	files := []contextFile{{Name: StaticBinaryName, Path: w.cfg.StaticBinary, Mode: 0o755}}
	if err := w.c.build(ctx, w.cfg.Image, map[string]string{LabelImage: "node", LabelBinary: sum}, nodeDockerfile, files, &out); err != nil {
		w.cfg.Logger.Warn("docker scaler: node image build output", "output", out.String())
		return err
	}
	return nil
}

// Start creates and starts one worker container.
func (w *Workers) Start(ctx context.Context, s WorkerSpec) error {
	if s.NodeID == "" || strings.ContainsAny(s.NodeID, "/ \t\n") {
		return fmt.Errorf("docker scaler: bad node ID %q", s.NodeID)
	}
	if len(s.Join) == 0 {
		return errors.New("docker scaler: no address to join the mesh through")
	}
	args := []string{"agent", "--voter", "never", "--scaler-managed",
		"--data-dir", "/data", "--cluster-key", "/data/cluster.key",
		"--bind", w.cfg.Bind, "--gossip-port", "0", "--p2p-port", "0", "--http", "127.0.0.1:0",
		"--executor", "process", "--join", strings.Join(s.Join, ",")}
	if s.Pool != "" {
		args = append(args, "--pool", s.Pool)
	}
	if w.cfg.Region != "" {
		args = append(args, "--region", w.cfg.Region)
	}
	hc := hostConfig{NetworkMode: "host", SecurityOpt: []string{"no-new-privileges"}, CapDrop: []string{"ALL"},
		PidsLimit: 4096,
		LogConfig: logConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "2"}}}
	// The node image's static binary cannot ask NVML for GPUs: its workers
	// simulate the GPUs of the class asked for (docs/scaling.md).
	args = append(args, "--gpus", "fake:"+fakeSpec(max(s.GPUs, 1), s.GPUClass))
	args = append(args, w.cfg.Args...)
	cfg := containerConfig{
		Image:      w.cfg.Image,
		User:       "65534:65534",
		Env:        []string{"HOME=/data", "TMPDIR=/data/tmp"},
		Labels:     map[string]string{LabelMesh: w.mesh, LabelWorker: s.NodeID},
		HostConfig: hc,
	}
	body := struct {
		containerConfig
		Cmd []string
	}{cfg, args}
	var created struct {
		ID string `json:"Id"`
	}
	if err := w.c.call(ctx, http.MethodPost, "/containers/create", url.Values{"name": {"pwmesh-" + s.NodeID}}, body, &created); err != nil {
		return fmt.Errorf("docker scaler: create worker %s: %w", s.NodeID, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = w.c.containerRemove(context.WithoutCancel(ctx), created.ID)
		}
	}()
	// Its identity and the key go in before it starts, owned by the
	// worker's user: nothing of the host is shared with it.
	data, err := workerFiles(s.NodeID, w.cfg.ClusterKey)
	if err != nil {
		return err
	}
	if err := w.c.putArchive(ctx, created.ID, "/", data); err != nil {
		return fmt.Errorf("docker scaler: worker %s: %w", s.NodeID, err)
	}
	if err := w.c.containerStart(ctx, created.ID); err != nil {
		return fmt.Errorf("docker scaler: worker %s: %w", s.NodeID, err)
	}
	ok = true
	return nil
}

// fakeSpec is --gpus fake:SPEC for n simulated GPUs of class.
func fakeSpec(n int, class string) string {
	model := "A100"
	var clean strings.Builder
	for _, r := range class {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			clean.WriteRune(r)
		}
	}
	if clean.Len() > 0 {
		model = clean.String()
	}
	return strconv.Itoa(n) + "x" + model + "-80GB"
}

// workerFiles is a tar of /data with the worker's node ID, the cluster
// key, and a temporary folder.
func workerFiles(nodeID string, key []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o700, Uid: 65534, Gid: 65534, ModTime: now})
	}
	file := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(b)), Uid: 65534, Gid: 65534, ModTime: now}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := errors.Join(dir("data/"), dir("data/tmp/"),
		file("data/node-id", []byte(nodeID+"\n")),
		file("data/cluster.key", []byte(base64.StdEncoding.EncodeToString(key)+"\n"))); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ErrNoWorker is a worker to stop that no container of this mesh on this
// engine runs (another machine's engine started it, or it was removed by
// hand).
var ErrNoWorker = errors.New("docker scaler: no container of this mesh on this machine's engine runs the node")

// Stop stops the worker running as nodeID (SIGTERM: it leaves the mesh
// cleanly, within grace) and removes its container. A node no container
// here runs is ErrNoWorker.
func (w *Workers) Stop(ctx context.Context, nodeID string, grace time.Duration) error {
	cs, err := w.c.containerList(ctx, LabelMesh+"="+w.mesh, LabelWorker+"="+nodeID)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		return fmt.Errorf("%w: %s", ErrNoWorker, nodeID)
	}
	for _, c := range cs {
		q := url.Values{"t": {strconv.Itoa(int(grace.Seconds()))}}
		err := w.c.call(ctx, http.MethodPost, "/containers/"+c.ID+"/stop", q, nil, nil)
		var ae *apiError
		if err != nil && !errors.Is(err, ErrNotFound) && !(errors.As(err, &ae) && ae.Status == http.StatusNotModified) {
			return fmt.Errorf("docker scaler: stop worker %s: %w", nodeID, err)
		}
		if err := w.c.containerRemove(ctx, c.ID); err != nil {
			return fmt.Errorf("docker scaler: remove worker %s: %w", nodeID, err)
		}
	}
	return nil
}

// Running lists the node IDs of this mesh's worker containers that run.
func (w *Workers) Running(ctx context.Context) ([]string, error) {
	cs, err := w.c.containerList(ctx, LabelMesh+"="+w.mesh)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range cs {
		if c.State == "running" {
			out = append(out, c.Labels[LabelWorker])
		}
	}
	return out, nil
}

// Ping checks that the engine answers.
func (w *Workers) Ping(ctx context.Context) error { return w.c.ping(ctx) }

// putArchive extracts a tar into a container's filesystem at path.
func (c *client) putArchive(ctx context.Context, id, path string, tarball []byte) error {
	resp, err := c.do(ctx, http.MethodPut, "/containers/"+id+"/archive", url.Values{"path": {path}}, bytes.NewReader(tarball))
	if err != nil {
		return fmt.Errorf("copy files in: %w", err)
	}
	defer resp.Body.Close()
	return checkStatus(resp)
}
