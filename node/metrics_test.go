package node_test

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/deploy/grafana"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// scrape reads a node's GET /metrics as Prometheus would.
func scrape(t *testing.T, n *nodetest.Node) string {
	t.Helper()
	resp, err := http.Get(n.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics on %s: %d %v", n, resp.StatusCode, err)
	}
	return string(b)
}

// seriesNames are the metric names in a scrape (histogram series keep
// their _bucket, _sum and _count suffixes).
func seriesNames(body string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		names[name] = true
	}
	return names
}

// prometheusOwn are series Prometheus makes itself for every target.
var prometheusOwn = map[string]bool{"up": true}

// TestClusterMetrics: the leader exports the cluster-wide gauges (jobs
// by state, queue depth by priority and GPU class, the oldest queued
// job's wait, the objects short of copies), a follower does not, so a
// sum() over nodes counts each once; the worker that ran a job counts its
// outcome once; every node names its build and exports its Raft, gossip,
// mirror and libp2p health. Then every metric deploy/prometheus/alerts.yml
// and the Grafana dashboard (deploy/grafana) name is one these nodes
// export.
func TestClusterMetrics(t *testing.T) {
	t.Parallel()
	specs := append(nodetest.Voters(3), nodetest.Spec{GPUs: "fake:1xT4-16GB"})
	c := nodetest.Start(t, specs...)
	leader := c.WaitForLeader(30 * time.Second)
	gpuNode := c.Nodes[3]
	c.WaitReady(gpuNode, 30*time.Second)

	done := submit(t, leader, "generate_dataset", "", `{"size":16}`, scheduler.Resources{})
	done = waitState(t, leader, done.ID, time.Minute, terminal)
	if done.State != scheduler.StateSucceeded {
		t.Fatalf("job %s: %s", done.ID, done.State)
	}
	// No node has an A100: this job waits.
	waiting := submit(t, leader, "generate_dataset", "", `{"size":16}`, scheduler.Resources{GPUs: 1, GPUModel: "A100"})

	var follower *nodetest.Node
	for _, n := range c.Running() {
		if n != leader && n != gpuNode {
			follower = n
			break
		}
	}
	// The leader may change under a loaded machine; read it again when
	// a check fails.
	var lbody string
	nodetest.WaitFor(t, 30*time.Second, "leader's queue gauges", func() bool {
		leader = c.WaitForLeader(30 * time.Second)
		lbody = scrape(t, leader)
		return strings.Contains(lbody, `pwmesh_queue_depth{gpu_class="A100",priority="`+waiting.Priority+`"} 1`)
	})
	for _, want := range []string{
		`pwmesh_jobs{state="queued"} 1`,
		`pwmesh_jobs{state="succeeded"} 1`,
		`pwmesh_queue_wait_seconds{gpu_class="A100",priority="` + waiting.Priority + `"}`,
		`pwmesh_queue_wait_seconds{gpu_class="none",priority="sprint"} 0`,
		`pwmesh_queue_depth{gpu_class="none",priority="free"} 0`,
		`pwmesh_build_info{commit=`,
		`pwmesh_raft_leader 1`,
		"\npwmesh_raft_voter 1\n",
		"\npwmesh_raft_leader_changes_total ",
		"\npwmesh_raft_term ",
		"\npwmesh_raft_apply_lag ",
		"\npwmesh_raft_commit_seconds_count ",
		`pwmesh_memberlist_members{state="alive"} `,
		`pwmesh_memberlist_members{state="dead"} `,
		"\npwmesh_memberlist_health_score ",
		"\npwmesh_objects ",
		"\npwmesh_objects_short_of_copies ",
		"\npwmesh_mirror_backlog ",
		"\npwmesh_mirror_upload_errors_total ",
		`libp2p_rcmgr_connections{dir="inbound",scope="system"} `,
	} {
		if !strings.Contains(lbody, want) {
			t.Errorf("leader %s: metrics lack %s", leader, want)
		}
	}
	if follower == leader {
		t.Fatal("no follower")
	}
	for _, n := range []*nodetest.Node{follower, gpuNode} {
		if n == leader {
			continue
		}
		body := scrape(t, n)
		if strings.Contains(body, "\npwmesh_raft_leader 1\n") {
			continue // it took over meanwhile
		}
		names := seriesNames(body)
		for _, absent := range []string{"pwmesh_jobs", "pwmesh_queue_depth", "pwmesh_queue_wait_seconds",
			"pwmesh_objects", "pwmesh_objects_short_of_copies"} {
			if names[absent] {
				t.Errorf("%s exports %s, which only the leader should", n, absent)
			}
		}
		for _, want := range []string{"pwmesh_build_info", "pwmesh_raft_leader_changes_total", "pwmesh_raft_apply_lag",
			"pwmesh_memberlist_members", "pwmesh_mirror_backlog"} {
			if !names[want] {
				t.Errorf("%s lacks %s", n, want)
			}
		}
		// A voter learned of the leader through Raft.
		if n == follower {
			if v := counter(t, n, "pwmesh_raft_leader_changes_total", ""); v < 1 {
				t.Errorf("follower %s: pwmesh_raft_leader_changes_total = %v, want at least 1", n, v)
			}
		}
		// The GPU worker never votes.
		if n == gpuNode && !strings.Contains(body, "\npwmesh_raft_voter 0\n") {
			t.Errorf("worker %s: metrics lack pwmesh_raft_voter 0", n)
		}
	}
	// The run is counted once, by the worker it ran on.
	var finished float64
	for _, n := range c.Running() {
		finished += counter(t, n, "pwmesh_jobs_finished_total", scheduler.StateSucceeded)
	}
	if finished != 1 {
		t.Errorf("pwmesh_jobs_finished_total{outcome=succeeded} summed over nodes = %v, want 1", finished)
	}

	// Every metric the alert rules and the dashboard name is exported:
	// the union over the leader, a follower and the GPU worker.
	exported := map[string]bool{}
	for _, n := range c.Running() {
		for name := range seriesNames(scrape(t, n)) {
			exported[name] = true
		}
	}
	isExported := func(name string) bool {
		base, histogram := grafana.HistogramBase(name)
		return exported[name] || (histogram && exported[base]) || prometheusOwn[name]
	}
	check := func(what, name string) {
		if !isExported(name) {
			t.Errorf("%s uses %s, which no node exports", what, name)
		}
	}
	rules, err := os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\bpwmesh_[a-z0-9_]+`).FindAllString(string(rules), -1)
	if len(used) == 0 {
		t.Fatal("alerts.yml names no pwmesh metric")
	}
	slices.Sort(used)
	for _, name := range slices.Compact(used) {
		check("alerts.yml", name)
	}
	queries, err := grafana.Queries(grafana.Dashboard)
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) == 0 {
		t.Fatal("the dashboard has no query")
	}
	for _, q := range queries {
		for _, name := range grafana.MetricNames(q.Expr) {
			check("the dashboard's "+q.Where, name)
		}
	}
}
