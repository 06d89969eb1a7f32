package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/fsstore"
	"github.com/pwmesh/pwmesh/gpu"
	"github.com/pwmesh/pwmesh/gpu/gpufake"
	"github.com/pwmesh/pwmesh/node/worker"
	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

// AdminTenant owns the bootstrap admin key.
const AdminTenant = "admin"

// Node is one running pwmesh agent.
type Node struct {
	cfg         Config
	log         *slog.Logger
	id          string
	incarnation string
	tokenFile   string

	registry *prometheus.Registry
	store    cas.Store
	fsm      *scheduler.FSM
	raft     *scheduler.Raft
	worker   *worker.Worker
	gpus     gpu.Inventory
	api      *web.Server
	listener net.Listener

	registered chan struct{}
	regOnce    sync.Once
}

// New validates cfg, opens the node's state (data directory, Raft log,
// store) and builds every subsystem. Nothing runs until Run.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = io.Discard
	}
	if cfg.Clock == nil {
		cfg.Clock = scheduler.SystemClock{}
	}
	if cfg.Slots == 0 {
		cfg.Slots = runtime.NumCPU()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	n := &Node{cfg: cfg, registry: prometheus.NewRegistry(), registered: make(chan struct{})}
	var err error
	if n.id, err = loadOrCreate(filepath.Join(cfg.DataDir, "node-id"), func() string { return "node-" + randHex(6) }); err != nil {
		return nil, err
	}
	n.incarnation = randHex(8)
	n.log = cfg.Logger.With("node_id", n.id)

	if n.gpus, err = openGPUs(cfg.GPUs, n.id, n.log); err != nil {
		return nil, err
	}
	if n.store, err = fsstore.New(filepath.Join(cfg.DataDir, "cas")); err != nil {
		return nil, fmt.Errorf("node: store: %w", err)
	}
	if err := n.openRaft(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = n.raft.Shutdown()
		}
	}()
	exec, err := n.executor()
	if err != nil {
		return nil, err
	}
	n.worker, err = worker.New(worker.Config{
		NodeID:      n.id,
		Incarnation: n.incarnation,
		Dir:         filepath.Join(cfg.DataDir, "jobs"),
		LogDir:      filepath.Join(cfg.DataDir, "logs"),
		LeaseTTL:    time.Duration(cfg.LeaseTTL),
		OperatorKey: workload.JobOperatorKey,
		Version:     cfg.Version,
		Commit:      cfg.Commit,
		Clock:       cfg.Clock,
		Logger:      n.log,
		NewID:       newID,
	}, n.fsm, n, n.store, exec)
	if err != nil {
		return nil, err
	}
	n.api, err = web.New(web.Config{
		NodeID:         n.id,
		MaxUploadBytes: cfg.MaxUploadBytes,
		Clock:          cfg.Clock,
		Logger:         n.log,
		Registry:       n.registry,
	}, web.Deps{
		State:          n.fsm,
		Writer:         n,
		Store:          n.store,
		Cluster:        n,
		Logs:           n.worker,
		ValidateParams: validateParams,
		NewID:          newID,
	})
	if err != nil {
		return nil, err
	}
	n.registerMetrics()
	ok = true
	return n, nil
}

func (n *Node) openRaft() error {
	addr := net.JoinHostPort(n.cfg.Bind, fmt.Sprint(n.cfg.P2PPort))
	trans, err := raft.NewTCPTransportWithLogger(addr, nil, 3, 10*time.Second, scheduler.RaftLogger("raft-net", n.cfg.LogOutput, n.cfg.LogLevel))
	if err != nil {
		return fmt.Errorf("node: raft transport on %s: %w", addr, err)
	}
	n.fsm = scheduler.NewFSM()
	n.raft, err = scheduler.OpenRaft(scheduler.RaftConfig{
		NodeID:    n.id,
		Dir:       filepath.Join(n.cfg.DataDir, "raft"),
		Transport: trans,
		Bootstrap: n.cfg.BootstrapExpect == 1,
		LogOutput: n.cfg.LogOutput,
		LogLevel:  n.cfg.LogLevel,
	}, n.fsm)
	if err != nil {
		trans.Close()
		return err
	}
	return nil
}

func (n *Node) executor() (worker.Executor, error) {
	switch n.cfg.Executor {
	case "docker":
		return nil, errors.New("--executor docker is not available in this build yet; use --executor process")
	case "", "process":
		if n.cfg.Executor == "" {
			n.log.Info("executor: process (the docker executor is not available in this build yet)")
		}
		return &worker.Process{Binary: n.cfg.Binary, Args: n.cfg.ChildArgs}, nil
	}
	return nil, fmt.Errorf("unknown executor %q", n.cfg.Executor)
}

func openGPUs(spec, seed string, log *slog.Logger) (gpu.Inventory, error) {
	switch {
	case spec == "none":
		return gpu.None{}, nil
	case strings.HasPrefix(spec, "fake:"):
		inv, err := gpufake.Parse(strings.TrimPrefix(spec, "fake:"), seed)
		if err != nil {
			return nil, fmt.Errorf("--gpus: %w", err)
		}
		return inv, nil
	}
	log.Info("gpus: no NVML support in this build; advertising none (use --gpus fake:SPEC to simulate)")
	return gpu.None{}, nil
}

// ID is this node's ID.
func (n *Node) ID() string { return n.id }

// Registry is the node's Prometheus registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Apply commits a command through the leader. On a one-node mesh the leader
// is this node; with no leader the caller gets scheduler.ErrNoLeader.
func (n *Node) Apply(ctx context.Context, c scheduler.Command) (any, error) {
	if !n.raft.IsLeader() {
		return nil, fmt.Errorf("node: %s: %w", c.Type(), scheduler.ErrNoLeader)
	}
	return n.raft.Apply(ctx, c)
}

// Health implements web.Cluster.
func (n *Node) Health() web.Health {
	h := web.Health{Node: n.id, Leader: n.raft.Leader(), Role: scheduler.RoleFollower}
	if n.cfg.Voter == "never" {
		h.Role = scheduler.RoleWorker
	}
	if h.Leader == n.id {
		h.Role = scheduler.RoleLeader
	}
	for _, m := range n.fsm.Nodes() {
		if m.State == scheduler.NodeReady {
			h.Members++
		}
	}
	select {
	case <-n.registered:
		h.Ready = h.Leader != ""
	default:
	}
	return h
}

func (n *Node) registerMetrics() {
	n.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pwmesh_raft_leader", Help: "1 when this node is the Raft leader."}, func() float64 {
			if n.raft.IsLeader() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pwmesh_raft_applied_index", Help: "Last Raft index applied to the FSM."}, func() float64 {
			return float64(n.fsm.LastIndex())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pwmesh_worker_running_jobs", Help: "Jobs running on this node."}, func() float64 {
			return float64(n.worker.Running())
		}),
	)
}

// Run serves until ctx ends, then shuts down in order: HTTP, worker (its
// running jobs handed back), leader loop, Raft.
func (n *Node) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		_ = n.raft.Shutdown()
		return fmt.Errorf("node: listen on %s: %w", n.cfg.HTTPAddr, err)
	}
	srv := &http.Server{Handler: n.api.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	fail := make(chan error, 4)
	var httpDone sync.WaitGroup
	httpDone.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fail <- fmt.Errorf("node: http: %w", err)
		}
	})

	leaderCtx, stopLeader := context.WithCancel(context.Background())
	var leaderDone sync.WaitGroup
	leaderDone.Go(func() { n.leadership(leaderCtx) })

	workerCtx, stopWorker := context.WithCancel(context.Background())
	var workerDone sync.WaitGroup
	workerDone.Go(func() {
		if err := n.worker.Run(workerCtx); err != nil {
			fail <- err
		}
	})

	regCtx, stopReg := context.WithCancel(ctx)
	var regDone sync.WaitGroup
	regDone.Go(func() { n.register(regCtx, ln.Addr().String()) })

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-fail:
	}
	n.log.Info("node shutting down")
	stopReg()
	regDone.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	httpDone.Wait()
	stopWorker()
	workerDone.Wait()
	stopLeader()
	leaderDone.Wait()
	if err := n.raft.Shutdown(); err != nil && runErr == nil {
		runErr = err
	}
	n.log.Info("node stopped")
	return runErr
}

// leadership runs the scheduler's leader loop while this node leads.
func (n *Node) leadership(ctx context.Context) {
	var (
		stop func()
		wg   sync.WaitGroup
	)
	halt := func() {
		if stop != nil {
			stop()
			wg.Wait()
			stop = nil
		}
	}
	defer halt()
	start := func() {
		lctx, cancel := context.WithCancel(ctx)
		stop = cancel
		wg.Go(func() {
			if err := n.raft.Barrier(lctx); err != nil {
				n.log.Warn("leader barrier", "err", err)
				return
			}
			n.bootstrapAdmin(lctx)
			l, err := scheduler.NewLeader(scheduler.LeaderConfig{LeaseTTL: time.Duration(n.cfg.LeaseTTL), Clock: n.cfg.Clock, Logger: n.log}, n.fsm, n.raft)
			if err != nil {
				n.log.Error("leader loop", "err", err)
				return
			}
			_ = l.Run(lctx)
		})
	}
	if n.raft.IsLeader() {
		n.log.Info("leadership gained")
		start()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-n.raft.LeadershipChanges():
			halt()
			if leader {
				n.log.Info("leadership gained")
				start()
			} else {
				n.log.Info("leadership lost")
			}
		}
	}
}

// bootstrapAdmin creates the admin key from the bootstrap token the first
// time the cluster has a leader and no keys.
func (n *Node) bootstrapAdmin(ctx context.Context) {
	if n.fsm.KeyCount() > 0 {
		return
	}
	token := n.cfg.BootstrapToken
	if token == "" {
		path := filepath.Join(n.cfg.DataDir, "bootstrap-token")
		t, err := loadOrCreate(path, web.NewKeySecret)
		if err != nil {
			n.log.Error("bootstrap token", "err", err)
			return
		}
		token, n.tokenFile = t, path
	}
	k := scheduler.APIKey{Hash: web.HashKey(token), Prefix: prefix(token), Tenant: AdminTenant, Tier: scheduler.PriorityPaid, Admin: true}
	if _, err := n.raft.Apply(ctx, &scheduler.CreateKey{At: n.cfg.Clock.Now(), Key: k}); err != nil {
		n.log.Error("bootstrap admin key", "err", err)
		return
	}
	if n.tokenFile != "" {
		n.log.Info("admin API key created from the bootstrap token", "token_file", n.tokenFile)
	} else {
		n.log.Info("admin API key created from --bootstrap-token")
	}
}

func prefix(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// register adds this node to the replicated node table once a leader
// answers, then reports readiness.
func (n *Node) register(ctx context.Context, httpAddr string) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		devs, err := n.gpus.Devices(ctx)
		if err != nil {
			n.log.Warn("gpu inventory", "err", err)
		}
		node := scheduler.Node{ID: n.id, Region: n.cfg.Region, State: scheduler.NodeReady, Voter: n.cfg.Voter != "never",
			Slots: n.cfg.Slots, Executors: []string{n.worker.Executor()}, Incarnation: n.incarnation}
		for _, d := range devs {
			node.GPUs = append(node.GPUs, scheduler.GPU{Index: d.Index, UUID: d.UUID, Model: d.Model, MemoryMB: d.MemoryMB, Utilization: d.Utilization})
		}
		if _, err := n.Apply(ctx, &scheduler.RegisterNode{At: n.cfg.Clock.Now(), Node: node}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	n.regOnce.Do(func() { close(n.registered) })
	// The token file exists once the leader bootstrapped; wait for the key.
	for n.fsm.KeyCount() == 0 {
		select {
		case <-ctx.Done():
			return
		case <-n.fsm.Watch():
		case <-t.C:
		}
	}
	info := Info{NodeID: n.id, APIURL: "http://" + httpAddr, UIURL: "http://" + httpAddr + "/ui/"}
	if n.cfg.BootstrapToken == "" {
		info.TokenFile = filepath.Join(n.cfg.DataDir, "bootstrap-token")
	}
	n.log.Info("node ready", "api", info.APIURL, "token_file", info.TokenFile)
	if n.cfg.Ready != nil {
		n.cfg.Ready(info)
	}
}

// loadOrCreate reads a one-line secret or ID file, creating it (mode 0600)
// with gen() when absent.
func loadOrCreate(path string, gen func() string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node: read %s: %w", path, err)
	}
	v := gen()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("node: write %s: %w", path, err)
	}
	return v, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newID returns prefix + 20 random hex characters.
func newID(prefix string) string { return prefix + randHex(10) }

// validateParams checks a job request's type and params for the built-in
// workload.
func validateParams(jobType string, params json.RawMessage) error {
	if !workload.ValidType(jobType) {
		return fmt.Errorf("%w %q: want calibrate, reconstruct, calibrate_and_reconstruct or generate_dataset", web.ErrUnknownJobType, jobType)
	}
	_, err := workload.ParseParams(jobType, params)
	return err
}
