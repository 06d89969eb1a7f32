// Package nodetest starts a cluster of pwmesh nodes inside one test process
// (127.0.0.1, ports chosen by the kernel, temporary data directories, short
// timings) with the helpers a cluster test needs: WaitForLeader, Kill,
// Stop, Restart, Partition, Heal, and an API client per node.
//
// Jobs run in child processes of the test binary: a test package that runs
// jobs calls MaybeRunChild first thing in its TestMain.
package nodetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/mesh"
	"github.com/pwmesh/pwmesh/node"
	"github.com/pwmesh/pwmesh/node/worker"
	"github.com/pwmesh/pwmesh/web/client"
)

// AdminToken is every test cluster's admin API key.
const AdminToken = "pwm_nodetest_admin_token"

const childEnv = "PWMESH_NODETEST_CHILD"

// MaybeRunChild turns this process into a job's child process when the
// process executor started it; it returns otherwise. Call it at the start
// of TestMain.
func MaybeRunChild() {
	if os.Getenv(childEnv) != "1" {
		return
	}
	for i, a := range os.Args {
		if a == "--root" && i+1 < len(os.Args) {
			os.Exit(worker.RunChild(context.Background(), os.Args[i+1], os.Stderr))
		}
	}
	os.Exit(99)
}

// Spec describes one node of a test cluster.
type Spec struct {
	Voter  bool   // eligible for the Raft voter set
	GPUs   string // e.g. "fake:1xA100-80GB"; "" = none
	Region string
	Slots  int // CPU job slots (default 2)
	// ObjectStore is the node's --object-store ("" = the node-local
	// default).
	ObjectStore string
	// Executor is the node's --executor: "" or "process" runs the
	// built-in workload in a child of the test binary; "docker" needs a
	// Docker engine and WorkloadImage already built (the test binary has
	// no static pwmesh beside it to build one from).
	Executor string
	// WorkloadImage is the docker executor's image for jobs that name
	// none ("" = pwmesh-workload:latest).
	WorkloadImage string
	// NoJobNetwork is the node's --no-job-network.
	NoJobNetwork bool
	// AllowedImages is the node's --allowed-images.
	AllowedImages []string
	// Pool is the node's --pool ("" = shared).
	Pool string
	// NoMetering is the node's --no-metering.
	NoMetering bool
	// Configure, when not nil, adjusts the node's settings last: those
	// no other field names (e.g. --oidc-issuer).
	Configure func(*node.Config)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Options are settings of a whole test cluster (StartWith).
type Options struct {
	// Raft timings of every node; zero keeps nodetest's own: 200/200/100
	// ms, 600/600/300 ms under the race detector.
	RaftHeartbeat, RaftElection, RaftLeaderLease time.Duration
	// LeaseTTL of every node's job leases; zero keeps nodetest's 5 s.
	LeaseTTL time.Duration
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	t       testing.TB
	opts    Options
	keyFile string // the master keys every node shares
	// ClusterKeyFile is the --cluster-key every node of the cluster is
	// started with (a node refuses to start without one outside --dev).
	ClusterKeyFile string
	mu             sync.Mutex
	Nodes          []*Node
	expect         int
	logs           io.Writer
}

// Node is one member of a test cluster.
type Node struct {
	*node.Node
	Spec    Spec
	DataDir string
	URL     string // the HTTP API
	Client  *client.Client

	cfg    node.Config
	cancel context.CancelFunc
	done   chan error
}

// Voters returns n voter-eligible specs.
func Voters(n int) []Spec {
	out := make([]Spec, n)
	for i := range out {
		out[i] = Spec{Voter: true}
	}
	return out
}

// Start starts one node per spec. The voter-eligible nodes bootstrap Raft
// together (BootstrapExpect = their count, at most 3); every node joins the
// first one's gossip address. The cluster stops at test cleanup.
func Start(t testing.TB, specs ...Spec) *Cluster {
	t.Helper()
	return StartWith(t, Options{}, specs...)
}

// StartWith is Start with cluster-wide options.
func StartWith(t testing.TB, o Options, specs ...Spec) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: o, logs: io.Discard, keyFile: filepath.Join(t.TempDir(), "master.keys")}
	if err := os.WriteFile(c.keyFile, []byte("nodetest "+randomHex(32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.ClusterKeyFile = filepath.Join(filepath.Dir(c.keyFile), "cluster.key")
	if err := os.WriteFile(c.ClusterKeyFile, mesh.GenerateClusterKey(), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("PWMESH_TEST_LOGS") != "" {
		c.logs = os.Stderr
	}
	for _, s := range specs {
		if s.Voter {
			c.expect++
		}
	}
	c.expect = min(c.expect, 3)
	if c.expect == 0 {
		t.Fatal("nodetest: a cluster needs a voter-eligible node")
	}
	var seed string
	for i, s := range specs {
		n := c.newNode(s, t.TempDir(), seed)
		if i == 0 {
			seed = n.GossipAddr()
		}
		c.Nodes = append(c.Nodes, n)
	}
	t.Cleanup(c.Close)
	return c
}

func (c *Cluster) config(s Spec, dir, join string) node.Config {
	cfg := node.Defaults()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Bind = "127.0.0.1"
	cfg.GossipPort, cfg.P2PPort = 0, 0
	cfg.BootstrapExpect = c.expect
	cfg.Voter = "auto"
	if !s.Voter {
		cfg.Voter = "never"
	}
	cfg.Region = "local"
	if s.Region != "" {
		cfg.Region = s.Region
	}
	cfg.GPUs = "none"
	if s.GPUs != "" {
		cfg.GPUs = s.GPUs
	}
	cfg.Slots = 2
	if s.Slots > 0 {
		cfg.Slots = s.Slots
	}
	cfg.Executor = "process"
	if s.Executor != "" {
		cfg.Executor = s.Executor
	}
	cfg.WorkloadImage = s.WorkloadImage
	cfg.NoJobNetwork = s.NoJobNetwork
	cfg.AllowedImages = s.AllowedImages
	if s.Pool != "" {
		cfg.Pool = s.Pool
	}
	cfg.NoMetering = s.NoMetering
	cfg.LeaseTTL = node.Duration(5 * time.Second)
	if c.opts.LeaseTTL > 0 {
		cfg.LeaseTTL = node.Duration(c.opts.LeaseTTL)
	}
	cfg.FastTimings = true
	// Raft: fast elections for tests on one machine, not the production
	// defaults (1 s/1 s/500 ms), which would make every failover in a test
	// several times slower.
	cfg.RaftHeartbeat, cfg.RaftElection, cfg.RaftLeaderLease = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	if raceEnabled {
		// The race detector slows everything several times over: a leader
		// stalled past a 125 ms lease would step down for nothing.
		cfg.RaftHeartbeat, cfg.RaftElection, cfg.RaftLeaderLease = 600*time.Millisecond, 600*time.Millisecond, 300*time.Millisecond
	}
	for _, o := range []struct{ set, to *time.Duration }{
		{&c.opts.RaftHeartbeat, &cfg.RaftHeartbeat}, {&c.opts.RaftElection, &cfg.RaftElection}, {&c.opts.RaftLeaderLease, &cfg.RaftLeaderLease},
	} {
		if *o.set > 0 {
			*o.to = *o.set
		}
	}
	cfg.BootstrapToken = AdminToken
	cfg.MasterKeyFile = c.keyFile
	cfg.ClusterKeyFile = c.ClusterKeyFile
	cfg.ObjectStore = s.ObjectStore
	if join != "" {
		cfg.Join = []string{join}
	}
	cfg.Binary = os.Args[0]
	cfg.ChildArgs = []string{"-test.run=^$"}
	cfg.ChildEnv = []string{childEnv + "=1"}
	cfg.Logger = slog.New(slog.NewJSONHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Version = "nodetest"
	if s.Configure != nil {
		s.Configure(&cfg)
	}
	return cfg
}

func (c *Cluster) newNode(s Spec, dir, join string) *Node {
	c.t.Helper()
	cfg := c.config(s, dir, join)
	return c.run(&Node{Spec: s, DataDir: dir, cfg: cfg})
}

func (c *Cluster) run(n *Node) *Node {
	c.t.Helper()
	ready := make(chan node.Info, 1)
	cfg := n.cfg
	cfg.Ready = func(i node.Info) { ready <- i }
	nd, err := node.New(cfg)
	if err != nil {
		c.t.Fatalf("nodetest: start node: %v", err)
	}
	n.Node = nd
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- nd.Run(ctx) }()
	// The node is "ready" once it serves HTTP and is registered, which needs
	// a leader; nodes bootstrapping together wait for each other, so only
	// the HTTP address is awaited here.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if a := nd.HTTPAddr(); a != "" {
			n.URL = "http://" + a
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nodetest: node %s did not start serving", nd.ID())
		}
		select {
		case err := <-n.done:
			c.t.Fatalf("nodetest: node %s stopped: %v", nd.ID(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	go func() {
		// Drain the ready signal so a restarted node's callback never blocks.
		<-ready
	}()
	n.Client = client.New(n.URL, AdminToken)
	// A restart comes back on the same gossip port.
	if _, port, err := net.SplitHostPort(nd.GossipAddr()); err == nil {
		n.cfg.GossipPort, _ = strconv.Atoi(port)
	}
	return n
}

// WaitForLeader waits until every running node agrees on one leader and
// returns it.
func (c *Cluster) WaitForLeader(timeout time.Duration) *Node {
	c.t.Helper()
	var leader *Node
	WaitFor(c.t, timeout, "a leader all nodes agree on", func() bool {
		leader = nil
		id := ""
		for _, n := range c.Running() {
			l := n.Leader()
			if l == "" || (id != "" && l != id) {
				return false
			}
			id = l
			if n.ID() == l {
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// Running lists the nodes that are running.
func (c *Cluster) Running() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.Nodes {
		if n.cancel != nil {
			out = append(out, n)
		}
	}
	return out
}

// Kill stops n as a crash would: no hand-back of jobs, no clean leave.
func (c *Cluster) Kill(n *Node) {
	c.t.Helper()
	n.Crash()
	c.stop(n)
}

// Stop stops n cleanly (SIGTERM).
func (c *Cluster) Stop(n *Node) {
	c.t.Helper()
	c.stop(n)
}

func (c *Cluster) stop(n *Node) {
	c.mu.Lock()
	cancel := n.cancel
	n.cancel = nil
	c.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-n.done:
		if err != nil {
			c.t.Logf("nodetest: node %s stopped: %v", n.ID(), err)
		}
	case <-time.After(30 * time.Second):
		// What every goroutine is doing says which step of the node's
		// shutdown hangs.
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		c.t.Errorf("nodetest: node %s did not stop within 30s; goroutines:\n%s", n.ID(), buf)
	}
}

// Restart starts a stopped node again on its data directory, with the same
// gossip and p2p ports, joining the other running nodes.
func (c *Cluster) Restart(n *Node) {
	c.t.Helper()
	if n.cancel != nil {
		c.t.Fatalf("nodetest: restart of running node %s", n.ID())
	}
	cfg := n.cfg
	cfg.Join = nil
	for _, o := range c.Running() {
		cfg.Join = append(cfg.Join, o.GossipAddr())
	}
	n.cfg = cfg
	c.run(n)
	c.WaitReady(n, 30*time.Second)
}

// WaitReady waits until n knows a leader, is registered (its /health
// answers 200) and its replica holds the admin key (its API takes
// AdminToken).
func (c *Cluster) WaitReady(n *Node, timeout time.Duration) {
	c.t.Helper()
	WaitFor(c.t, timeout, "node "+n.ID()+" ready", func() bool {
		if !n.Health().Ready {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _, err := n.Client.ListJobs(ctx, client.ListJobsOptions{Limit: 1})
		return err == nil
	})
}

// Close stops every node at once, as a crash would: a clean leave of each
// in turn would only wait for quorums that the previous leaves dissolved.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, n := range c.Running() {
		n.Crash()
		wg.Go(func() { c.stop(n) })
	}
	wg.Wait()
}

// WaitFor polls cond every 20 ms until it holds, failing the test after
// timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("nodetest: timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// Poll polls cond every 20 ms until it holds (true) or timeout passes
// (false), for a condition the test reports itself, with t.Errorf, to go on.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// String names the node for messages.
func (n *Node) String() string { return fmt.Sprintf("%s(%s)", n.ID(), n.URL) }

// MasterKeys returns the master key file every node of the cluster reads
// ("ID HEX" lines, the first active).
func (c *Cluster) MasterKeys() string {
	c.t.Helper()
	b, err := os.ReadFile(c.keyFile)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b)
}

// SetMasterKeys replaces the master key file; nodes read it when they
// (re)start.
func (c *Cluster) SetMasterKeys(content string) {
	c.t.Helper()
	if err := os.WriteFile(c.keyFile, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// NewMasterKey returns a key file line "id HEX" with a fresh key.
func NewMasterKey(id string) string { return id + " " + randomHex(32) + "\n" }
