package faulttest

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/mesh"
)

// The agents' settings inside the containers.
const (
	httpPort   = 8080
	gossipPort = 7946
	p2pPort    = 4001
	leaseTTL   = 5 * time.Second
	adminToken = "faulttest-admin-token"
)

// skipWithoutDocker skips a Docker test under -short and where `docker
// version` fails; what says what the test would have run.
func skipWithoutDocker(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s; skipped with -short", what)
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Skipf("%s, which needs a Docker engine; `docker version` failed: %v: %s", what, err, bytes.TrimSpace(out))
	}
}

// dockerCmd runs the docker CLI and returns its trimmed combined output.
func dockerCmd(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, s)
	}
	return s, nil
}

// node is one agent container on the test network.
type node struct {
	name   string
	ip     string
	voter  bool
	nodeID string // from /health, set once it answered
}

func (n *node) url(path string) string { return fmt.Sprintf("http://%s:%d%s", n.ip, httpPort, path) }

// cluster is the Docker side of the test: image, network, containers, and
// the record of when each container was taken down.
type cluster struct {
	t      *testing.T
	run    string // unique per test run; prefixes every Docker object
	image  string
	net    string
	subnet string // "172.30.X"
	nodes  []*node
	client *http.Client

	mu    sync.Mutex
	live  map[string]bool        // containers the test believes up and connected
	downs map[string][]time.Time // container → times it was killed or stopped
}

// randomRun is a short random ID for names.
func randomRun() string {
	var b [4]byte
	if _, err := crand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// newCluster builds the static binary and the image, creates the network
// and registers their removal. It starts no container.
func newCluster(t *testing.T, ctx context.Context) *cluster {
	c := &cluster{
		t:      t,
		run:    randomRun(),
		client: &http.Client{Timeout: 4 * time.Second},
		live:   map[string]bool{},
		downs:  map[string][]time.Time{},
	}
	c.image = "pwmesh-faulttest:" + c.run
	c.net = "pwmesh-faulttest-" + c.run

	// The static binary and the build context.
	dir := t.TempDir()
	bin := filepath.Join(dir, "pwmesh")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/pwmesh/pwmesh/cmd/pwmesh")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build static pwmesh: %v\n%s", err, out)
	}
	df, err := os.ReadFile(filepath.Join("testdata", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tmp", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.key"), mesh.GenerateClusterKey(), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Best effort: an image still used by a container is removed with -f.
		_, _ = dockerCmd(context.Background(), "rmi", "-f", c.image)
	})
	if out, err := dockerCmd(ctx, "build", "-q", "--label", "pwmesh-faulttest="+c.run, "-t", c.image, dir); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}

	// A private internal network on a free 172.30.X.0/24.
	var lastErr error
	for range 8 {
		x := 1 + rand.IntN(254)
		subnet := fmt.Sprintf("172.30.%d", x)
		_, err := dockerCmd(ctx, "network", "create", "--internal", "--label", "pwmesh-faulttest="+c.run,
			"--subnet", subnet+".0/24", c.net)
		if err == nil {
			c.subnet = subnet
			break
		}
		lastErr = err
	}
	if c.subnet == "" {
		t.Fatalf("no free 172.30.X.0/24 for the test network: %v", lastErr)
	}
	t.Cleanup(func() {
		if _, err := dockerCmd(context.Background(), "network", "rm", c.net); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return c
}

// start creates and starts the five agents: n1–n3 voters, n4–n5 workers.
func (c *cluster) start(ctx context.Context) {
	t := c.t
	var join []string
	for i := 1; i <= 3; i++ {
		join = append(join, fmt.Sprintf("%s.%d:%d", c.subnet, 10+i, gossipPort))
	}
	for i := 1; i <= 5; i++ {
		n := &node{name: fmt.Sprintf("%s-n%d", c.net, i), ip: fmt.Sprintf("%s.%d", c.subnet, 10+i), voter: i <= 3}
		c.nodes = append(c.nodes, n)
	}
	// Containers go before the network in cleanup order (t.Cleanup is LIFO),
	// and their logs are printed first when the test failed.
	t.Cleanup(func() {
		args := []string{"rm", "-f", "-v"}
		for _, n := range c.nodes {
			args = append(args, n.name)
		}
		if _, err := dockerCmd(context.Background(), args...); err != nil && !strings.Contains(err.Error(), "No such container") {
			t.Logf("cleanup: %v", err)
		}
	})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range c.nodes {
			out, _ := exec.Command("docker", "logs", "--tail", "80", n.name).CombinedOutput()
			t.Logf("---- last log lines of %s (%s, node %s) ----\n%s", n.name, n.ip, n.nodeID, out)
		}
	})
	for _, n := range c.nodes {
		voter, gpus := "auto", "none"
		if !n.voter {
			voter, gpus = "never", "fake:1xA100-80GB"
		}
		args := []string{"run", "-d", "--name", n.name, "--label", "pwmesh-faulttest=" + c.run,
			"--network", c.net, "--ip", n.ip, "--memory", "1g", c.image,
			"agent", "--data-dir", "/data", "--http", fmt.Sprintf("0.0.0.0:%d", httpPort), "--bind", n.ip,
			"--gossip-port", fmt.Sprint(gossipPort), "--p2p-port", fmt.Sprint(p2pPort),
			"--bootstrap-expect", "3", "--join", strings.Join(join, ","),
			"--voter", voter, "--gpus", gpus, "--executor", "process",
			"--bootstrap-token", adminToken, "--lease-ttl", leaseTTL.String(), "--cluster-key", "/cluster.key"}
		if _, err := dockerCmd(ctx, args...); err != nil {
			t.Fatal(err)
		}
		c.setLive(n.name, true)
	}
}

func (c *cluster) setLive(name string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live[name] = up
}

func (c *cluster) markDown(name string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live[name] = false
	c.downs[name] = append(c.downs[name], at)
}

// liveNodes are the containers the test believes up and connected.
func (c *cluster) liveNodes() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*node
	for _, n := range c.nodes {
		if c.live[n.name] {
			out = append(out, n)
		}
	}
	return out
}

// randomLive picks a live node (any node when none is live).
func (c *cluster) randomLive(r *rand.Rand) *node {
	l := c.liveNodes()
	if len(l) == 0 {
		return c.nodes[r.IntN(len(c.nodes))]
	}
	return l[r.IntN(len(l))]
}

func (c *cluster) byNodeID(id string) *node {
	for _, n := range c.nodes {
		if n.nodeID == id {
			return n
		}
	}
	return nil
}

// health is GET /health's body.
type health struct {
	Status  string `json:"status"`
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Role    string `json:"role"`
	Members int    `json:"members"`
}

func (c *cluster) health(ctx context.Context, n *node) (health, int, error) {
	var h health
	st, b, err := c.do(ctx, n, "GET", "/health", "", nil, nil)
	if err != nil {
		return h, st, err
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, st, fmt.Errorf("/health of %s: %w: %s", n.name, err, b)
	}
	return h, st, nil
}

// do sends one request to n with the short-timeout client and returns the
// answer's status and body. A body is JSON unless hdr names a Content-Type.
func (c *cluster) do(ctx context.Context, n *node, method, path, key string, body []byte, hdr http.Header) (int, []byte, error) {
	return c.doWith(ctx, c.client, n, method, path, key, body, hdr)
}

// doWith is do with another client (uploads and downloads need a longer
// timeout).
func (c *cluster) doWith(ctx context.Context, client *http.Client, n *node, method, path, key string, body []byte, hdr http.Header) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url(path), rd)
	if err != nil {
		return 0, nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// getJSON is a GET that wants 200 and decodes the answer.
func (c *cluster) getJSON(ctx context.Context, n *node, path, key string, out any) error {
	st, b, err := c.do(ctx, n, "GET", path, key, nil, nil)
	if err != nil {
		return err
	}
	if st != http.StatusOK {
		return fmt.Errorf("GET %s on %s: %d %s", path, n.name, st, b)
	}
	return json.Unmarshal(b, out)
}

// waitFor polls cond every 250 ms until it returns nil or timeout passes;
// it returns cond's last error.
func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// waitHealthy waits until every given node answers /health 200 with the same
// leader and, when members > 0, that many members; it records node IDs.
func (c *cluster) waitHealthy(ctx context.Context, timeout time.Duration, members int, nodes ...*node) error {
	return waitFor(ctx, timeout, func() error {
		leader := ""
		for _, n := range nodes {
			h, st, err := c.health(ctx, n)
			if err != nil {
				return err
			}
			if st != http.StatusOK || h.Leader == "" {
				return fmt.Errorf("%s: /health %d %+v", n.name, st, h)
			}
			if leader != "" && h.Leader != leader {
				return fmt.Errorf("%s sees leader %s, another node %s", n.name, h.Leader, leader)
			}
			if members > 0 && h.Members != members {
				return fmt.Errorf("%s sees %d members, want %d", n.name, h.Members, members)
			}
			leader = h.Leader
			if n.nodeID == "" {
				n.nodeID = h.Node
			} else if n.nodeID != h.Node {
				c.t.Logf("%s came back as node %s (was %s)", n.name, h.Node, n.nodeID)
				n.nodeID = h.Node
			}
		}
		return nil
	})
}

// leader asks live nodes who leads and returns its container.
func (c *cluster) leader(ctx context.Context) (*node, error) {
	var last error = errors.New("no live node")
	for _, n := range c.liveNodes() {
		h, st, err := c.health(ctx, n)
		if err != nil || st != http.StatusOK {
			last = fmt.Errorf("%s: %d %v", n.name, st, err)
			continue
		}
		if l := c.byNodeID(h.Leader); l != nil {
			return l, nil
		}
		last = fmt.Errorf("%s names unknown leader %q", n.name, h.Leader)
	}
	return nil, last
}

// busy waits up to within for one of nodes to be running a job (as a live
// node sees it) and returns it; else it returns the first of nodes.
func (c *cluster) busy(ctx context.Context, key string, within time.Duration, nodes ...*node) *node {
	var found *node
	_ = waitFor(ctx, within, func() error {
		for _, r := range c.liveNodes() {
			var list struct{ Jobs []apiJob }
			if err := c.getJSON(ctx, r, "/jobs?state=running&limit=1000", key, &list); err != nil {
				continue
			}
			for _, j := range list.Jobs {
				for _, n := range nodes {
					if n.nodeID == j.Node {
						found = n
						return nil
					}
				}
			}
			return errors.New("none of them runs a job")
		}
		return errors.New("no live node answers")
	})
	if found == nil {
		c.t.Logf("%s: none of %d node(s) ran a job within %s; faulting %s anyway", stamp(), len(nodes), within, nodes[0].name)
		return nodes[0]
	}
	return found
}

// kill SIGKILLs a container, as a crash would.
func (c *cluster) kill(ctx context.Context, n *node) {
	c.setLive(n.name, false)
	if _, err := dockerCmd(ctx, "kill", n.name); err != nil {
		c.t.Errorf("fault: %v", err)
	}
	c.markDown(n.name, time.Now())
	c.t.Logf("%s: killed %s (%s)", stamp(), n.name, n.nodeID)
}

// restart stops a container with SIGTERM (a clean leave; SIGKILL after
// 20 s) and starts it again.
func (c *cluster) restart(ctx context.Context, n *node) {
	c.setLive(n.name, false)
	if _, err := dockerCmd(ctx, "stop", "-t", "20", n.name); err != nil {
		c.t.Errorf("fault: %v", err)
	}
	c.markDown(n.name, time.Now())
	c.t.Logf("%s: stopped %s (%s) with SIGTERM", stamp(), n.name, n.nodeID)
	c.startAgain(ctx, n)
}

// startAgain starts a stopped or killed container; its data dir is kept.
func (c *cluster) startAgain(ctx context.Context, n *node) {
	if _, err := dockerCmd(ctx, "start", n.name); err != nil {
		c.t.Errorf("fault: %v", err)
		return
	}
	c.t.Logf("%s: started %s again", stamp(), n.name)
	c.setLive(n.name, true)
}

// disconnect cuts a container off the test network.
func (c *cluster) disconnect(ctx context.Context, n *node) {
	c.setLive(n.name, false)
	if _, err := dockerCmd(ctx, "network", "disconnect", c.net, n.name); err != nil {
		c.t.Errorf("fault: %v", err)
	}
	c.t.Logf("%s: disconnected %s (%s)", stamp(), n.name, n.nodeID)
}

// reconnect puts it back with the same address.
func (c *cluster) reconnect(ctx context.Context, n *node) {
	if _, err := dockerCmd(ctx, "network", "connect", "--ip", n.ip, c.net, n.name); err != nil {
		c.t.Errorf("fault: %v", err)
		return
	}
	c.t.Logf("%s: reconnected %s", stamp(), n.name)
	c.setLive(n.name, true)
}

// logs returns a container's stderr (the agent's JSON log, every life).
func (c *cluster) logs(ctx context.Context, n *node) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", "logs", n.name)
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker logs %s: %w", n.name, err)
	}
	return stderr.Bytes(), nil
}

func (c *cluster) downTimes(name string) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.downs[name]...)
}

func stamp() string { return time.Now().UTC().Format("15:04:05.000") }
