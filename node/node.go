package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/mirror"
	"github.com/pwmesh/pwmesh/gpu"
	"github.com/pwmesh/pwmesh/gpu/gpufake"
	"github.com/pwmesh/pwmesh/gpu/nvml"
	"github.com/pwmesh/pwmesh/mesh"
	"github.com/pwmesh/pwmesh/node/metering"
	"github.com/pwmesh/pwmesh/node/scaler"
	"github.com/pwmesh/pwmesh/node/storage"
	"github.com/pwmesh/pwmesh/node/worker"
	"github.com/pwmesh/pwmesh/node/worker/docker"
	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
	"github.com/pwmesh/pwmesh/web/oidc"
	"github.com/pwmesh/pwmesh/web/ui"
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
	meter       *metering.Meter
	clusterKey  []byte

	registry *prometheus.Registry
	store    cas.Store
	storage  *storage.Storage
	mirror   *mirror.Store
	mesh     *mesh.Mesh
	fsm      *scheduler.FSM
	raft     *scheduler.Raft
	gate     *raftGate // who may speak Raft to this node
	fwd      *forwarder
	worker   *worker.Worker
	gpus     gpu.Inventory
	api      *web.Server
	ui       *ui.UI // the web UI, served beside the API under /ui/
	listener net.Listener
	tls      *tls.Config // the API's, nil for plain HTTP

	claims        *claimMetrics
	jobMetrics    *jobMetrics // the runs that end on this node's worker
	gpuMetrics    *gpuMetrics
	registered    chan struct{}
	regOnce       sync.Once
	memberChanged chan struct{}
	httpAddr      atomic.Value // string, once listening
	crash         atomic.Bool
	// jobNet is the docker executor's job network and firewall, removed
	// when Run ends (nil: none).
	jobNet io.Closer
	// signIn is the OpenID Connect sign-in (web/oidc), set once the API
	// listens; nil without --oidc-issuer.
	signIn atomic.Pointer[oidc.Handler]
	// The autoscaler's provider (nil with --scaler none) and its metrics.
	scaleProvider scaler.Provider
	scaleMetrics  *scaler.Metrics
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
	if cfg.Clock == nil {
		cfg.Clock = scheduler.SystemClock{}
	}
	if cfg.Slots == 0 {
		cfg.Slots = runtime.NumCPU()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	n := &Node{cfg: cfg, registry: prometheus.NewRegistry(), registered: make(chan struct{}), memberChanged: make(chan struct{}, 1)}
	n.jobMetrics = newJobMetrics(n.registry)
	var err error
	if n.id, err = loadOrCreate(filepath.Join(cfg.DataDir, "node-id"), func() string { return "node-" + randHex(6) }); err != nil {
		return nil, err
	}
	n.incarnation = randHex(8)
	// Lines logged while serving a request name its ID (web.Requests).
	n.log = slog.New(web.ContextHandler(cfg.Logger.Handler())).With("node_id", n.id)
	if err := n.openTLS(); err != nil {
		return nil, err
	}

	if n.gpus, err = openGPUs(cfg.GPUs, n.id, n.log); err != nil {
		return nil, err
	}
	if err := n.openMesh(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = n.mesh.Close()
		}
	}()
	if err := n.openRaft(); err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			_ = n.raft.Shutdown()
		}
	}()
	if err := n.openStorage(n.clusterKey); err != nil {
		return nil, err
	}
	n.fwd = &forwarder{raft: n.raft, net: n.mesh, clock: cfg.Clock, state: n.fsm, log: n.log}
	n.mesh.Handle(ApplyProtocol, serveApply(n.raft, n.fsm, cfg.Clock, n.log, withProof(n.checkSignInProof)))
	exec, err := n.executor()
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok && n.jobNet != nil {
			_ = n.jobNet.Close() // Run, which would remove it, never runs
		}
	}()
	// Which images jobs may name, by tier: the API refuses the rest at
	// submission, and the worker again before it runs one.
	builtin := cfg.WorkloadImage
	if builtin == "" {
		builtin = docker.DefaultWorkloadImage
	}
	images, err := worker.NewImagePolicy(builtin, cfg.AllowedImages)
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
		Storage:     n.storage,
		// Images and outputs: docs/executors.md.
		Images:         images,
		MaxOutputBytes: cfg.MaxOutputBytes,
		Finished: func(j scheduler.Job, state string, ran time.Duration) {
			n.jobMetrics.observe(j.Type, state, ran)
		},
	}, n.fsm, n, n.store, exec)
	if err != nil {
		return nil, err
	}
	// Every API call is counted in the replicated ledger before it is
	// served (docs/billing.md).
	n.meter, err = metering.New(metering.Config{Node: n.id, Incarnation: n.incarnation, Apply: n, Clock: cfg.Clock, Logger: n.log})
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
		Datasets:       n.storage,
		Bundles:        n.storage,
		Keys:           n.storage,
		Cluster:        n,
		Logs:           n,
		ValidateParams: validateParams,
		JobTypes:       jobTypes(),
		ValidateImage:  images.Check,
		Meter:          n.apiMeter(),
		NewID:          newID,
	})
	if err != nil {
		return nil, err
	}
	if n.ui, err = n.newUI(); err != nil {
		return nil, err
	}
	n.mesh.HandleStream(LogProtocol, serveLog(n.worker))
	n.registerMetrics()
	n.registerHealthMetrics()
	n.claims = newClaimMetrics(n.registry)
	n.gpuMetrics = newGPUMetrics(n.registry)
	n.scaleMetrics = scaler.NewMetrics(n.registry)
	if n.scaleProvider, err = n.newScaleProvider(); err != nil {
		return nil, err
	}
	ok = true
	return n, nil
}

func (n *Node) openMesh() error {
	var key []byte
	if n.cfg.ClusterKeyFile != "" {
		b, err := os.ReadFile(n.cfg.ClusterKeyFile)
		if err != nil {
			return fmt.Errorf("--cluster-key: %w", err)
		}
		if key, err = mesh.ParseClusterKey(b); err != nil {
			return fmt.Errorf("--cluster-key %s: %w", n.cfg.ClusterKeyFile, err)
		}
	}
	n.clusterKey = key
	timings := mesh.Timings{}
	if n.cfg.FastTimings {
		timings = mesh.Fast()
	}
	m, err := mesh.New(mesh.Config{
		DataDir:    n.cfg.DataDir,
		NodeID:     n.id,
		Bind:       n.cfg.Bind,
		GossipPort: n.cfg.GossipPort,
		P2PPort:    n.cfg.P2PPort,
		ClusterKey: key,
		Meta:       n.meta,
		Timings:    timings,
		Logger:     n.log,
		Metrics:    n.registry, // libp2p's own
	})
	if err != nil {
		return fmt.Errorf("node: mesh: %w", err)
	}
	n.mesh = m
	if err := m.UpdateMeta(); err != nil {
		n.log.Warn("mesh metadata", "err", err)
	}
	return nil
}

// meta is what this node gossips about itself (at most mesh.MaxMetaBytes).
func (n *Node) meta() []byte {
	m := mesh.NodeMeta{V: 1, Region: n.cfg.Region, Voter: n.cfg.Voter != "never", Slots: n.cfg.Slots, Inc: n.incarnation}
	if n.mesh != nil { // nil while mesh.New reads the first metadata
		m.PeerID, m.P2P = n.mesh.PeerID(), n.mesh.P2PAddrs()
	}
	if n.raft != nil {
		has, _ := n.raft.HasState()
		m.Raft = has || n.raft.Leader() != ""
	}
	if a, ok := n.httpAddr.Load().(string); ok {
		m.HTTP = a
	}
	if devs, err := n.gpus.Devices(context.Background()); err == nil {
		m.GPUs = gpuSummary(devs)
	}
	b, err := mesh.EncodeMeta(m)
	if err != nil {
		n.log.Error("mesh metadata", "err", err)
		m.P2P, m.GPUs = nil, ""
		b, _ = mesh.EncodeMeta(m)
	}
	return b
}

// gpuSummary writes devices as "2xA100-80GB,1xT4-16GB".
func gpuSummary(devs []gpu.Device) string {
	var parts []string
	for i := 0; i < len(devs); {
		j := i
		for j < len(devs) && devs[j].Model == devs[i].Model {
			j++
		}
		parts = append(parts, fmt.Sprintf("%dx%s", j-i, devs[i].Model))
		i = j
	}
	return strings.Join(parts, ",")
}

func (n *Node) openRaft() error {
	n.fsm = scheduler.NewFSM(scheduler.WithLogger(n.log))
	// Only the peers the gate admits may speak Raft to this node.
	n.gate = newRaftGate(n.mesh.PeerID(), n.mesh, n.log)
	trans := n.mesh.RaftTransport(10*time.Second, scheduler.RaftLogger(n.log, "raft-net", n.cfg.LogLevel),
		mesh.RaftAllow(n.gate.allow))
	r, err := scheduler.OpenRaft(scheduler.RaftConfig{
		NodeID:    n.id,
		Dir:       filepath.Join(n.cfg.DataDir, "raft"),
		Transport: trans,
		Bootstrap: n.cfg.BootstrapExpect == 1 && n.cfg.Voter != "never",
		Logger:    n.log,
		LogLevel:  n.cfg.LogLevel,

		HeartbeatTimeout:   n.cfg.RaftHeartbeat,
		ElectionTimeout:    n.cfg.RaftElection,
		LeaderLeaseTimeout: n.cfg.RaftLeaderLease,
		ObserveCommit:      newCommitHistogram(n.registry),
	}, n.fsm)
	if err != nil {
		return err
	}
	n.raft = r
	n.gate.open(r)
	n.mesh.Handle(RaftPeersProtocol, n.gate.serve)
	return nil
}

// executor picks how jobs run: --executor process or docker, or by
// default docker when an engine answers and the workload image exists or
// can be built from the static binary beside this one, else process.
func (n *Node) executor() (worker.Executor, error) {
	proc := &worker.Process{Binary: n.cfg.Binary, Args: n.cfg.ChildArgs, Env: n.cfg.ChildEnv}
	explicit := n.cfg.Executor == "docker"
	switch n.cfg.Executor {
	case "process":
		return proc, nil
	case "", "docker":
	default:
		return nil, fmt.Errorf("unknown executor %q", n.cfg.Executor)
	}
	bin := n.cfg.Binary
	if bin == "" {
		bin, _ = os.Executable()
	}
	static := filepath.Join(filepath.Dir(bin), docker.StaticBinaryName)
	d, err := docker.New(docker.Config{NodeID: n.id, WorkloadImage: n.cfg.WorkloadImage, WorkloadBinary: static,
		NoNetwork: n.cfg.NoJobNetwork, FakeGPUs: isFakeGPUs(n.gpus), MeshPorts: n.meshPorts(), Logger: n.log})
	if err != nil {
		if explicit {
			return nil, fmt.Errorf("--executor docker: %w", err)
		}
		n.log.Info("executor: process (the Docker engine's address is not usable)", "err", err)
		return proc, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	err = d.Ping(pctx)
	pcancel()
	if err != nil {
		if explicit {
			return nil, fmt.Errorf("--executor docker: no Docker engine answers (%v): start Docker, set DOCKER_HOST=unix:///path/to/docker.sock, or use --executor process", err)
		}
		n.log.Info("executor: process (no Docker engine answers)", "err", err)
		return proc, nil
	}
	if err := d.EnsureImage(ctx, static); err != nil {
		if explicit {
			return nil, fmt.Errorf("--executor docker: %w", err)
		}
		n.log.Info("executor: process (a Docker engine answers, but the workload image is missing and cannot be built)", "image", d.WorkloadImage(), "err", err)
		return proc, nil
	}
	// Containers an earlier life of this node left behind go before any
	// job starts here.
	if k, err := d.CleanOrphans(ctx); err != nil {
		n.log.Warn("executor: remove containers left by an earlier run", "err", err)
	} else if k > 0 {
		n.log.Info("executor: removed containers left by an earlier run", "count", k)
	}
	// The job network and its firewall come before the node advertises
	// network; where they cannot be made, no job gets network here.
	if !n.cfg.NoJobNetwork {
		if err := d.SetupJobNetwork(ctx); err != nil {
			n.log.Warn("executor: jobs get no network on this node (as with --no-job-network): the job network's firewall cannot be set up", "err", err)
		} else {
			n.jobNet = d
		}
	}
	why := "--executor docker"
	if !explicit {
		why = "a Docker engine answers and the workload image is ready"
	}
	n.log.Info("executor: docker", "image", d.WorkloadImage(), "why", why, "job_network", d.GrantsNetwork())
	return d, nil
}

// isFakeGPUs reports whether inv simulates its GPUs (--gpus fake:SPEC):
// the docker executor then names them to a job without asking the engine
// for devices.
func isFakeGPUs(inv gpu.Inventory) bool {
	_, ok := inv.(*gpufake.Inventory)
	return ok
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
	inv, err := nvml.Open()
	if err != nil {
		log.Info("gpus: none found; advertising none (use --gpus fake:SPEC to simulate)", "err", err)
		return gpu.None{}, nil
	}
	return inv, nil
}

// ID is this node's ID.
func (n *Node) ID() string { return n.id }

// HTTPAddr is the API's address once the node serves, else "".
func (n *Node) HTTPAddr() string {
	a, _ := n.httpAddr.Load().(string)
	return a
}

// Mesh is this node's networking layer (tests cut links through it).
func (n *Node) Mesh() *mesh.Mesh { return n.mesh }

// GossipAddr is the address other nodes --join.
func (n *Node) GossipAddr() string { return n.mesh.GossipAddr() }

// IsLeader reports whether this node leads the Raft group now.
func (n *Node) IsLeader() bool { return n.raft.IsLeader() }

// Leader is the leader's node ID, "" when none is known.
func (n *Node) Leader() string { return n.raft.Leader() }

// RaftServers is the Raft configuration as this node knows it.
func (n *Node) RaftServers() ([]scheduler.Server, error) { return n.raft.Servers() }

// Job reads a job from this node's replica.
func (n *Node) Job(id string) (scheduler.Job, bool) { return n.fsm.Job(id) }

// State is this node's replica of the scheduler state, for reading.
func (n *Node) State() *scheduler.FSM { return n.fsm }

// Registration returns this node's entry in the local replica's node table.
func (n *Node) Registration() (scheduler.Node, bool) { return n.fsm.Node(n.id) }

// Registry is the node's Prometheus registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Apply commits a command through the leader, forwarding it when another
// node leads; with no leader after a short wait the caller gets
// scheduler.ErrNoLeader.
func (n *Node) Apply(ctx context.Context, c scheduler.Command) (any, error) {
	return n.fwd.Apply(ctx, c)
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
	h.Members = len(n.liveMembers())
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
		buildInfo(n.cfg.Version, n.cfg.Commit),
		clusterCollector{leads: n.raft.IsLeader, now: n.cfg.Clock.Now, jobs: func() []scheduler.Job {
			jobs, _ := n.fsm.Jobs(scheduler.JobFilter{})
			return jobs
		}},
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

// Run serves until ctx ends, then leaves in order: HTTP, worker (its running
// jobs handed back), leadership (handed to another voter), leader loops, the
// mesh (a clean leave), Raft. After Crash, the same order skips the hand-back
// and the leave, as a crash would.
func (n *Node) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		_ = n.raft.Shutdown()
		_ = n.mesh.Close()
		return fmt.Errorf("node: listen on %s: %w", n.cfg.HTTPAddr, err)
	}
	n.httpAddr.Store(ln.Addr().String())
	_ = n.mesh.UpdateMeta()
	// Sign-in through an OpenID Connect provider (--oidc-issuer): its
	// redirect URI names the address the API listens on.
	sso, err := n.newOIDC(ln.Addr().String())
	if err != nil {
		_ = ln.Close()
		_ = n.raft.Shutdown()
		_ = n.mesh.Close()
		return err
	}
	n.signIn.Store(sso)
	// Requests (a followed log among them) end when the node stops.
	reqCtx, stopRequests := context.WithCancel(context.Background())
	defer stopRequests()
	srv := n.api.NewHTTPServer() // timeouts and bounds: web.Timeouts
	// The API, and the web UI under /ui/.
	srv.Handler = n.httpHandler()
	if sso != nil { // /ui/login/oidc, /ui/callback, /ui/cli-login
		srv.Handler = sso.Wrap(srv.Handler)
	}
	// Every request gets an ID, and one access line (web.Requests).
	srv.Handler = web.Requests(n.log, srv.Handler)
	srv.ErrorLog = slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)
	srv.BaseContext = func(net.Listener) context.Context { return reqCtx }
	fail := make(chan error, 4)
	var bg sync.WaitGroup // goroutines that end with ctx
	bg.Go(func() {
		if err := n.serveHTTP(srv, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fail <- fmt.Errorf("node: http: %w", err)
		}
	})

	meshCtx, stopMesh := context.WithCancel(context.Background())
	var meshDone sync.WaitGroup
	meshDone.Go(func() {
		if err := n.mesh.Run(meshCtx); err != nil {
			fail <- err
		}
	})
	meshDone.Go(func() { n.watchMembers(meshCtx) })

	leaderCtx, stopLeader := context.WithCancel(context.Background())
	var leaderDone sync.WaitGroup
	leaderDone.Go(func() { n.leadership(leaderCtx) })

	workerCtx, stopWorker := context.WithCancelCause(context.Background())
	var workerDone sync.WaitGroup
	workerDone.Go(func() {
		if err := n.worker.Run(workerCtx); err != nil {
			fail <- err
		}
	})

	runCtx, stopRun := context.WithCancel(ctx)
	bg.Go(func() { n.storage.Run(runCtx) })
	bg.Go(func() { n.watchGPUs(runCtx) })
	bg.Go(func() { n.join(runCtx) })
	bg.Go(func() { n.bootstrapWhenExpected(runCtx) })
	bg.Go(func() { n.gate.run(runCtx) })
	bg.Go(func() { n.register(runCtx) })
	bg.Go(func() { n.claimJobs(runCtx) })
	bg.Go(func() { _ = n.api.Run(runCtx) }) // records key uses (TouchKeys)
	bg.Go(func() { _ = n.meter.Run(runCtx) })
	if sso != nil {
		bg.Go(func() { _ = sso.Run(runCtx) }) // discovers the provider
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-fail:
	}
	crash := n.crash.Load()
	n.log.Info("node shutting down", "crash", crash)
	stopRun()
	stopRequests()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	cancel()
	bg.Wait()
	if crash {
		stopWorker(worker.ErrAbandon)
	} else {
		// No new job lands here while the running ones are handed back.
		lctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if _, err := n.Apply(lctx, &scheduler.SetNodeState{At: n.cfg.Clock.Now(), ID: n.id, State: scheduler.NodeLeft}); err != nil {
			n.log.Warn("mark node left", "err", err)
		}
		cancel()
		stopWorker(nil)
	}
	workerDone.Wait()
	if !crash && n.raft.IsLeader() {
		if err := n.raft.TransferLeadership(); err != nil {
			n.log.Info("leadership not handed over", "err", err)
		} else {
			n.log.Info("leadership handed over")
		}
	}
	stopLeader()
	leaderDone.Wait()
	if !crash {
		if err := n.mesh.Leave(2 * time.Second); err != nil {
			n.log.Warn("mesh leave", "err", err)
		}
	}
	stopMesh()
	meshDone.Wait()
	if err := n.raft.Shutdown(); err != nil && runErr == nil {
		runErr = err
	}
	if err := n.mesh.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if err := n.mirror.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if n.jobNet != nil {
		if err := n.jobNet.Close(); err != nil {
			n.log.Warn("executor: remove the job network", "err", err)
		}
	}
	n.log.Info("node stopped")
	return runErr
}

// meshPorts are the ports a job on the job network may not reach on any
// machine: this node's gossip, p2p and HTTP ports and the contract's
// defaults, which the mesh's other nodes most likely use.
func (n *Node) meshPorts() []int {
	ports := []int{7946, 4001, 8080}
	add := func(p int) {
		if p > 0 && !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	portOf := func(hostport string) int {
		_, p, _ := net.SplitHostPort(hostport)
		v, _ := strconv.Atoi(p)
		return v
	}
	add(portOf(n.mesh.GossipAddr()))
	add(n.cfg.P2PPort)
	for _, a := range n.mesh.P2PAddrs() {
		parts := strings.Split(a, "/")
		for i := 0; i+1 < len(parts); i++ {
			if parts[i] == "tcp" || parts[i] == "udp" {
				v, _ := strconv.Atoi(parts[i+1])
				add(v)
			}
		}
	}
	add(portOf(n.cfg.HTTPAddr))
	return ports
}

// claimWindow is zero on a one-node mesh, where nobody else could claim.
func (n *Node) claimWindow() time.Duration {
	if n.cfg.BootstrapExpect == 1 && len(n.cfg.Join) == 0 {
		return 0
	}
	return claimWindow
}

// Crash makes the next stop behave like a crash: no hand-back of running
// jobs, no leadership transfer, no clean leave. Tests use it to kill a node
// in-process.
func (n *Node) Crash() { n.crash.Store(true) }

// join joins the mesh through the --join addresses, retrying until one
// answers or ctx ends.
func (n *Node) join(ctx context.Context) {
	if len(n.cfg.Join) == 0 {
		return
	}
	if k, err := n.mesh.Join(ctx, n.cfg.Join); err != nil {
		n.log.Warn("mesh join", "err", err)
	} else {
		n.log.Info("mesh joined", "contacted", k)
	}
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
			// The leader's loops start on the state as of its election.
			retry := time.NewTicker(time.Second)
			defer retry.Stop()
			for {
				err := n.raft.Barrier(lctx)
				if err == nil {
					break
				}
				n.log.Warn("leader barrier", "err", err)
				select {
				case <-lctx.Done():
					return
				case <-retry.C:
				}
			}
			n.bootstrapAdmin(lctx)
			n.configureCluster(lctx)
			// This node's own record (its new incarnation) goes in before the
			// scheduler runs, so that nothing is placed on its previous life.
			if _, err := n.raft.Apply(lctx, n.registration()); err != nil {
				n.log.Warn("register on leadership", "err", err)
			}
			// With a claim window, ticks as often as it lasts, so that a job
			// nobody claimed is assigned as soon as its hold ends.
			tick := time.Second
			if w := n.claimWindow(); w > 0 {
				tick = w
			}
			l, err := scheduler.NewLeader(scheduler.LeaderConfig{LeaseTTL: time.Duration(n.cfg.LeaseTTL), ClaimWindow: n.claimWindow(),
				Tick: tick, Clock: n.cfg.Clock, Logger: n.log}, n.fsm, n.raft)
			if err != nil {
				n.log.Error("leader loop", "err", err)
				return
			}
			var loops sync.WaitGroup
			loops.Go(func() { n.reconcileMembers(lctx) })
			loops.Go(func() { n.announceJobs(lctx) })
			loops.Go(func() { n.storage.Lead(lctx) })
			loops.Go(func() { n.runScaler(lctx) })
			_ = l.Run(lctx)
			loops.Wait()
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

// configureCluster writes --replicas into the cluster settings when the log
// holds none yet.
func (n *Node) configureCluster(ctx context.Context) {
	if n.cfg.Replicas == 0 || n.fsm.Config().Replicas != 0 {
		return // set once, by the first leader that has the flag
	}
	c := n.fsm.Config()
	c.Replicas = n.cfg.Replicas
	if _, err := n.raft.Apply(ctx, &scheduler.SetClusterConfig{At: n.cfg.Clock.Now(), Config: c}); err != nil {
		n.log.Warn("cluster config", "err", err)
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
	create := &scheduler.CreateKey{At: n.cfg.Clock.Now(), Key: k}
	v, err := n.raft.Apply(ctx, create)
	if err != nil {
		n.log.Error("bootstrap admin key", "err", err)
		return
	}
	audit(ctx, n.log, create, v, "bootstrap token")
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
func (n *Node) register(ctx context.Context) {
	httpAddr, _ := n.httpAddr.Load().(string)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := n.Apply(ctx, n.registration()); err == nil {
			_ = n.mesh.UpdateMeta() // now part of a group: say so
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
	base := n.scheme() + "://" + httpAddr
	info := Info{NodeID: n.id, APIURL: base, UIURL: base + "/ui/"}
	if n.cfg.BootstrapToken == "" {
		info.TokenFile = filepath.Join(n.cfg.DataDir, "bootstrap-token")
	}
	n.log.Info("node ready", "api", info.APIURL, "token_file", info.TokenFile)
	if n.cfg.Ready != nil {
		n.cfg.Ready(info)
	}
}

// registration is this node's entry in the node table, as of now.
func (n *Node) registration() *scheduler.RegisterNode {
	devs, err := n.gpus.Devices(context.Background())
	if err != nil {
		n.log.Warn("gpu inventory", "err", err)
	}
	node := scheduler.Node{ID: n.id, Region: n.cfg.Region, Pool: poolOf(n.cfg.Pool), State: scheduler.NodeReady, Voter: n.cfg.Voter != "never",
		Slots: n.cfg.Slots, Executors: []string{n.worker.Executor()}, JobNetwork: n.worker.GrantsNetwork(), Incarnation: n.incarnation,
		PeerID: n.mesh.PeerID(), Managed: n.cfg.ScalerManaged}
	node.GPUs = toSchedulerGPUs(devs)
	return &scheduler.RegisterNode{At: n.cfg.Clock.Now(), Node: node}
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
	if err := writeFileSync(path, []byte(v+"\n"), 0o600); err != nil {
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

// writeFileSync writes a file so that it survives a power loss whole or not
// at all: a synced temporary file renamed over it, then the folder synced.
func writeFileSync(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// poolOf is the pool a node registers in: "" for the shared pool.
func poolOf(p string) string {
	if p == scheduler.PoolShared {
		return ""
	}
	return p
}

// apiMeter is what counts the API's calls: nil with --no-metering.
func (n *Node) apiMeter() web.Meter {
	if n.cfg.NoMetering {
		return nil
	}
	return n.meter
}
