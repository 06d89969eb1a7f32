package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMetricNames(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`pwmesh_jobs`, []string{"pwmesh_jobs"}},
		{`max by (state) (pwmesh_jobs{job=~"$job"})`, []string{"pwmesh_jobs"}},
		{`sum(rate(pwmesh_http_requests_total{code="429", route=~"POST /jobs|GET {id}"}[$__rate_interval])) by (route)`,
			[]string{"pwmesh_http_requests_total"}},
		{`histogram_quantile(0.95, sum by (route, le) (rate(pwmesh_http_request_duration_seconds_bucket[5m])))`,
			[]string{"pwmesh_http_request_duration_seconds_bucket"}},
		{`sum(rate(x_sum[1h:5m])) / sum(rate(x_count[1h])) offset 1d`, []string{"x_count", "x_sum"}},
		{`count(pwmesh_gpu_healthy == 0) or vector(0)`, []string{"pwmesh_gpu_healthy"}},
		{`a / on (instance) group_left (model) b unless c and bool d > 1e3`, []string{"a", "b", "c", "d"}},
		{`label_replace(up, "node", "$1", "instance", "(.*):.*")`, []string{"up"}},
		{`avg_over_time(pwmesh_gpu_utilization_percent[$__range]) * $factor`, []string{"pwmesh_gpu_utilization_percent"}},
		{`max(increase(pwmesh_raft_leader_changes_total[1h])) >= 4`, []string{"pwmesh_raft_leader_changes_total"}},
		{`sum without (gpu, uuid) (pwmesh_gpu_temperature_celsius)`, []string{"pwmesh_gpu_temperature_celsius"}},
	} {
		if got := MetricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("MetricNames(%s) = %v, want %v", c.expr, got, c.want)
		}
	}
}

func TestHistogramBase(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{"a_bucket": "a", "a_sum": "a", "a_count": "a", "a_total": ""} {
		base, ok := HistogramBase(name)
		if ok != (want != "") || (ok && base != want) {
			t.Errorf("HistogramBase(%s) = %s, %v", name, base, ok)
		}
	}
}

// gridPanel is what the layout and data source checks read of a panel.
type gridPanel struct {
	ID         int    `json:"id"`
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []gridPanel `json:"panels"`
}

// TestDashboardModel: pwmesh.json is a dashboard Grafana imports as it
// is: a Prometheus data source variable every query uses, unique panel
// IDs, panels inside the 24-column grid and not on top of each other,
// and queries in every panel, each naming a metric.
func TestDashboardModel(t *testing.T) {
	t.Parallel()
	var d struct {
		UID           string      `json:"uid"`
		Title         string      `json:"title"`
		SchemaVersion int         `json:"schemaVersion"`
		Panels        []gridPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(Dashboard, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	ds := false
	for _, v := range d.Templating.List {
		if v.Name == "DS_PROMETHEUS" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			ds = true
		}
	}
	if !ds {
		t.Error("no DS_PROMETHEUS variable of type datasource (query prometheus)")
	}
	const uid = "${DS_PROMETHEUS}"
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	var all []gridPanel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	for _, p := range all {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Fatalf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != uid {
			t.Errorf("panel %q: data source %+v, want uid %s", p.Title, p.Datasource, uid)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if refs[q.RefID] {
				t.Errorf("panel %q: refId %s twice", p.Title, q.RefID)
			}
			refs[q.RefID] = true
			if q.Datasource == nil || q.Datasource.UID != uid {
				t.Errorf("panel %q: a query's data source is not %s", p.Title, uid)
			}
			if len(MetricNames(q.Expr)) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, q.Expr)
			}
		}
	}
}

// TestDashboardCovers: the dashboard shows what an operator looks at
// (docs/operations.md lists the panels).
func TestDashboardCovers(t *testing.T) {
	t.Parallel()
	qs, err := Queries(Dashboard)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, q := range qs {
		for _, name := range MetricNames(q.Expr) {
			used[name] = true
		}
	}
	for _, want := range []string{
		"pwmesh_jobs", "pwmesh_queue_depth", "pwmesh_queue_wait_seconds", // jobs and queues
		"pwmesh_jobs_finished_total", "pwmesh_job_duration_seconds_bucket", // outcomes and durations
		"pwmesh_gpu_utilization_percent", "pwmesh_gpu_healthy", // GPUs
		"up", // nodes up
		"pwmesh_raft_leader", "pwmesh_raft_leader_changes_total", "pwmesh_raft_commit_seconds_bucket", "pwmesh_raft_apply_lag",
		"pwmesh_memberlist_members", "pwmesh_memberlist_health_score",
		"pwmesh_objects_short_of_copies", "pwmesh_mirror_backlog",
		"pwmesh_scaler_desired_workers", "pwmesh_scaler_current_workers", "pwmesh_scaler_actions_total",
		"pwmesh_http_requests_total", "pwmesh_http_request_duration_seconds_bucket",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// TestDashboardQueriesParse: promtool accepts every query (as a recording
// rule, Grafana's interval variables set to 5m). It runs when promtool is
// on PATH (Debian's prometheus package; .ci/run installs it).
func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH (apt-get install prometheus); the dashboard's PromQL is not parsed")
	}
	qs, err := Queries(Dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range qs {
		expr := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "5m", "$__range", "1h").Replace(q.Expr)
		js, _ := json.Marshal(expr) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard:q%d\n        expr: %s\n", i, js)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\nqueries:\n%s", err, out, b.String())
	}
}
