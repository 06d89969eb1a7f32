package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// shippedAlerts is the alert rules file operators load (docs/operations.md).
const shippedAlerts = "../deploy/prometheus/alerts.yml"

// shortFor replaces every non-zero `for:` of the rules: the rules stay as
// shipped, but an alert fires seconds, not minutes, after its condition
// holds.
const shortFor = "2s"

var forLine = regexp.MustCompile(`^(\s*for:\s*)(\S+)(\s*)$`)

// shortenFor rewrites the `for:` lines of a rules file to shortFor (a zero
// duration stays zero) and says how many it rewrote.
func shortenFor(t *testing.T, rules []byte) ([]byte, int) {
	t.Helper()
	lines := strings.Split(string(rules), "\n")
	n := 0
	for i, l := range lines {
		m := forLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[2])
		if err != nil {
			t.Fatalf("%s line %d: `for: %s` is not a duration this test reads (%v); extend shortenFor", shippedAlerts, i+1, m[2], err)
		}
		if d > 0 {
			lines[i] = m[1] + shortFor + m[3]
			n++
		}
	}
	return []byte(strings.Join(lines, "\n")), n
}

// promServer is a Prometheus server in its own process group, killed at
// test cleanup.
type promServer struct {
	url  string
	log  string // its output
	done chan error
}

// freeAddr returns a 127.0.0.1 address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startPrometheus runs bin with config in dir and waits until it is ready.
// The port is chosen before the server takes it: one lost to another
// process in between is chosen again.
func startPrometheus(t *testing.T, bin, dir, config string) *promServer {
	t.Helper()
	for try := 1; ; try++ {
		p, err := tryPrometheus(t, bin, dir, config)
		if err == nil {
			return p
		}
		if try == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("prometheus: %v", err)
		}
	}
}

func tryPrometheus(t *testing.T, bin, dir, config string) (*promServer, error) {
	addr := freeAddr(t)
	p := &promServer{url: "http://" + addr, log: filepath.Join(dir, "prometheus.log"), done: make(chan error, 1)}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	go func() { p.done <- cmd.Wait(); out.Close() }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.output())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-p.done:
			stopped = true
			return nil, fmt.Errorf("exited before it was ready (%v): %s", err, p.output())
		case <-time.After(50 * time.Millisecond):
		}
		if r, err := http.Get(p.url + "/-/ready"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("not ready at %s within 30s: %s", p.url, p.output())
		}
	}
}

func (p *promServer) output() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// api GETs a Prometheus HTTP API path and decodes its data into v.
func (p *promServer) api(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path, nil)
	if err != nil {
		return err
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %d %s", path, r.StatusCode, bytes.TrimSpace(b))
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

type promTarget struct {
	Labels     map[string]string `json:"labels"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
	LastScrape time.Time         `json:"lastScrape"`
}

type promRuleGroup struct {
	Name           string    `json:"name"`
	LastEvaluation time.Time `json:"lastEvaluation"`
	Rules          []struct {
		Name      string `json:"name"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
	} `json:"rules"`
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (a promAlert) String() string {
	return fmt.Sprintf("%s{instance=%q} %s", a.Labels["alertname"], a.Labels["instance"], a.State)
}

func (p *promServer) targets(t *testing.T) []promTarget {
	t.Helper()
	var d struct {
		ActiveTargets []promTarget `json:"activeTargets"`
	}
	if err := p.api("/api/v1/targets?state=active", &d); err != nil {
		t.Logf("prometheus targets: %v", err)
		return nil
	}
	return d.ActiveTargets
}

func (p *promServer) ruleGroups(t *testing.T) []promRuleGroup {
	t.Helper()
	var d struct {
		Groups []promRuleGroup `json:"groups"`
	}
	if err := p.api("/api/v1/rules?type=alert", &d); err != nil {
		t.Logf("prometheus rules: %v", err)
		return nil
	}
	return d.Groups
}

func (p *promServer) alerts(t *testing.T) []promAlert {
	t.Helper()
	var d struct {
		Alerts []promAlert `json:"alerts"`
	}
	if err := p.api("/api/v1/alerts", &d); err != nil {
		t.Logf("prometheus alerts: %v", err)
		return nil
	}
	return d.Alerts
}

// TestPrometheusAlertsOnRealMesh runs a real Prometheus server with the
// shipped alert rules (their `for:` shortened) against a mesh of three
// voters and a GPU worker: every node's /metrics is scraped and every rule
// evaluates without error; while the mesh is healthy no alert fires, and
// PwmeshNodeDown and PwmeshNoLeader are not even pending; once the worker
// is killed, PwmeshNodeDown fires for its instance alone, and a GPU job
// waiting for a model no node has, while a T4 idles, fires
// PwmeshGPUIdleWhileJobsWait.
func TestPrometheusAlertsOnRealMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a mesh and a Prometheus server")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not on PATH (apt-get install prometheus; .ci/run installs it): the alert rules are not run against a real server")
	}
	t.Parallel()
	rules, err := os.ReadFile(shippedAlerts)
	if err != nil {
		t.Fatal(err)
	}
	short, n := shortenFor(t, rules)
	if n == 0 {
		t.Fatalf("no `for:` to shorten in %s", shippedAlerts)
	}
	wantRules := strings.Count(string(rules), "- alert:")

	specs := nodetest.Voters(3)
	specs[0].GPUs = "fake:1xT4-16GB" // idle while a job waits for another model
	specs = append(specs, nodetest.Spec{GPUs: "fake:1xA100-80GB"})
	c := nodetest.Start(t, specs...)
	leader := c.WaitForLeader(30 * time.Second)
	for _, n := range c.Nodes {
		c.WaitReady(n, 30*time.Second)
	}
	worker := c.Nodes[3]
	instance := func(n *nodetest.Node) string { u, _ := url.Parse(n.URL); return u.Host }
	var targets []string
	for _, n := range c.Nodes {
		targets = append(targets, fmt.Sprintf("%q", instance(n)))
	}

	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "alerts.yml")
	if err := os.WriteFile(rulesFile, short, 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "prometheus.yml")
	// The job name matches the rules' job=~"pwmesh.*".
	if err := os.WriteFile(config, fmt.Appendf(nil, `global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: pwmesh
    metrics_path: /metrics
    static_configs:
      - targets: [%s]
`, rulesFile, strings.Join(targets, ", ")), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := startPrometheus(t, bin, dir, config)

	// Every node scraped.
	var up time.Time
	nodetest.WaitFor(t, 30*time.Second, "every node's /metrics scraped and up", func() bool {
		ts := prom.targets(t)
		if len(ts) != len(c.Nodes) {
			return false
		}
		up = time.Time{}
		for _, tg := range ts {
			if tg.Health != "up" || tg.Labels["job"] != "pwmesh" {
				return false
			}
			if tg.LastScrape.After(up) {
				up = tg.LastScrape
			}
		}
		return true
	})
	// Every rule evaluated, without error, for longer than a `for:` over
	// samples of every node: an alert due on a healthy mesh would fire.
	var groups []promRuleGroup
	evaluated := up.Add(3 * time.Second)
	nodetest.WaitFor(t, 30*time.Second, "the rules evaluated over the scraped mesh", func() bool {
		groups = prom.ruleGroups(t)
		if len(groups) == 0 {
			return false
		}
		for _, g := range groups {
			if g.LastEvaluation.Before(evaluated) {
				return false
			}
		}
		return true
	})
	got := 0
	for _, g := range groups {
		for _, r := range g.Rules {
			got++
			if r.Health != "ok" {
				t.Errorf("rule %s (group %s): health %s: %s", r.Name, g.Name, r.Health, r.LastError)
			}
		}
	}
	if got != wantRules {
		t.Errorf("prometheus loaded %d alert rules, %s has %d", got, shippedAlerts, wantRules)
	}
	// A scrape that a loaded machine answers too late makes a node look
	// down for a moment; a healthy mesh comes to a quiet moment, a broken
	// one never does.
	var loud []string
	if !nodetest.Poll(60*time.Second, func() bool {
		loud = loud[:0]
		for _, a := range prom.alerts(t) {
			name := a.Labels["alertname"]
			if a.State == "firing" || name == "PwmeshNodeDown" || name == "PwmeshNoLeader" {
				loud = append(loud, a.String())
			}
		}
		return len(loud) == 0
	}) {
		t.Errorf("alerts on a healthy mesh: %v", loud)
	}
	if t.Failed() {
		t.FailNow()
	}

	c.Kill(worker)
	// No node has an H100: the job waits while the T4 idles.
	submit(t, leader, "generate_dataset", "", `{"size":16}`, scheduler.Resources{GPUs: 1, GPUModel: "H100"})
	want := map[string]string{"PwmeshNodeDown": instance(worker), "PwmeshGPUIdleWhileJobsWait": ""}
	var alerts []promAlert
	if !nodetest.Poll(45*time.Second, func() bool {
		alerts = prom.alerts(t)
		n := 0
		for _, a := range alerts {
			if inst, ok := want[a.Labels["alertname"]]; ok && a.State == "firing" && a.Labels["instance"] == inst {
				n++
			}
		}
		return n == len(want)
	}) {
		t.Fatalf("alerts %v; want firing: PwmeshNodeDown for the killed worker %s and PwmeshGPUIdleWhileJobsWait", alerts, instance(worker))
	}
	for _, a := range alerts {
		switch a.Labels["alertname"] {
		case "PwmeshNodeDown":
			if a.Labels["instance"] != instance(worker) || a.Labels["job"] != "pwmesh" || a.Labels["severity"] != "critical" {
				t.Errorf("node down alert %v, want only %s (job pwmesh, severity critical)", a.Labels, instance(worker))
			}
		case "PwmeshNoLeader":
			t.Errorf("alert after a worker was killed: %s", a)
		}
	}
}
