package scaler_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/node/scaler"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// recorder is a provider that records its requests and answers with err;
// with hold set it waits for release first.
type recorder struct {
	state      *scheduler.FSM
	notPending bool // asked for an action not pending in state
	mu         sync.Mutex
	reqs       []scaler.Request
	err        error
	hold       chan struct{}
	started    chan struct{}
}

func (r *recorder) Scale(ctx context.Context, req scaler.Request) error {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	// The decision is in the replicated state before anything is done.
	if p := r.state.Scaler().Pending; p == nil || p.ID != req.Action {
		r.notPending = true
	}
	if r.hold != nil {
		close(r.started)
		<-r.hold
	}
	return r.err
}

func (r *recorder) requests() []scaler.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]scaler.Request(nil), r.reqs...)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)

// mesh commits a voter without GPUs and n queued one-GPU jobs.
func mesh(t *testing.T, n int) *scheduler.Raft {
	r := schedulertest.NewRaft(t)
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: t0, Key: scheduler.APIKey{Hash: "h", Prefix: "h", Tenant: "acme", Tier: scheduler.PriorityPaid}})
	schedulertest.MustApply(t, r, &scheduler.RegisterNode{At: t0, Node: scheduler.Node{ID: "v1", Region: "local", Incarnation: "i", Voter: true, Slots: 2}})
	for i := range n {
		schedulertest.MustApply(t, r, &scheduler.SubmitJob{At: t0, Job: scheduler.Job{ID: "j" + string(rune('a'+i)), Tenant: "acme", Type: "generate_dataset",
			Priority: scheduler.PriorityPaid, Resources: scheduler.Resources{GPUs: 1, GPUModel: "H100"}}})
	}
	return r
}

func newLoop(t *testing.T, r *scheduler.Raft, p scaler.Provider, c *clock, reg prometheus.Registerer) *scaler.Loop {
	t.Helper()
	l, err := scaler.New(scaler.Config{
		Scale:   scheduler.ScaleConfig{Mode: scheduler.ScalerExec, Min: 0, Max: 2, Idle: time.Minute, Cooldown: time.Minute},
		Join:    func() []string { return []string{"10.0.0.1:7946"} },
		Clock:   c,
		Metrics: scaler.NewMetrics(reg),
	}, r.FSM(), r, p)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLoopRecordsAndActs: a decision is committed before the provider is
// asked, with what a hook needs; its outcome is committed after; the
// status and the metrics follow.
func TestLoopRecordsAndActs(t *testing.T) {
	t.Parallel()
	r := mesh(t, 3)
	p := &recorder{state: r.FSM()}
	reg := prometheus.NewRegistry()
	c := &clock{now: t0}
	l := newLoop(t, r, p, c, reg)
	if err := l.Evaluate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.notPending {
		t.Fatal("the provider was asked before the decision was committed")
	}
	reqs := p.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	q := reqs[0]
	if q.Add != 2 || q.Remove == nil || len(q.Remove) != 0 || q.Pool != "shared" || q.GPUClass != "H100" || q.GPUs != 1 || q.Desired != 2 || q.Current != 0 || q.Action == 0 || len(q.Join) != 1 || q.Reason == "" {
		t.Fatalf("request %+v", q)
	}
	st := r.FSM().Scaler()
	if st.Pending != nil || st.Last() == nil || !st.Last().OK || st.Last().ID != q.Action || st.Status.Mode != "exec" || st.Status.Desired != 2 {
		t.Fatalf("state after the action: %+v", st)
	}
	if v := series(t, reg)["pwmesh_scaler_desired_workers"]; v != 2 {
		t.Fatalf("desired metric %v", v)
	}
	// Nothing more to do: the status is written only when it changes.
	idx := r.FSM().LastIndex()
	for range 3 {
		if err := l.Evaluate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.requests()) != 1 {
		t.Fatalf("asked again: %+v", p.requests())
	}
	if got := r.FSM().LastIndex(); got > idx+1 {
		t.Fatalf("%d entries for evaluations that changed nothing", got-idx)
	}
	// The request as the exec hook reads it: the contract's keys.
	b, _ := json.Marshal(q)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"add", "remove", "desired", "current", "join", "pool", "reason"} {
		if _, ok := m[k]; !ok {
			t.Errorf("the hook's JSON has no %q: %s", k, b)
		}
	}
}

// series reads reg's gauges and counters as name{label=value,...} -> value
// (no labels: the name alone).
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestLoopFailureBacksOff: a failed action is recorded with its error,
// counted, and not tried again before its backoff.
func TestLoopFailureBacksOff(t *testing.T) {
	t.Parallel()
	r := mesh(t, 1)
	p := &recorder{state: r.FSM(), err: errors.New("no capacity in zone a")}
	reg := prometheus.NewRegistry()
	c := &clock{now: t0}
	l := newLoop(t, r, p, c, reg)
	if err := l.Evaluate(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := r.FSM().Scaler()
	if last := st.Last(); last == nil || last.OK || last.Error != "no capacity in zone a" || st.Failures != 1 || len(st.Launching) != 0 {
		t.Fatalf("after a failure: %+v", st)
	}
	got := series(t, reg)
	for k, want := range map[string]float64{
		"pwmesh_scaler_actions_total{kind=add,outcome=error}":    1,
		"pwmesh_scaler_actions_total{kind=add,outcome=ok}":       0,
		"pwmesh_scaler_actions_total{kind=remove,outcome=error}": 0,
		"pwmesh_scaler_actions_total{kind=remove,outcome=ok}":    0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (exported %v), want %v", k, v, ok, want)
		}
	}
	c.add(2 * time.Second)
	_ = l.Evaluate(context.Background())
	if n := len(p.requests()); n != 1 {
		t.Fatalf("retried within the backoff: %d requests", n)
	}
	c.add(2 * time.Minute) // past the backoff and the cooldown
	p.err = nil
	_ = l.Evaluate(context.Background())
	if n := len(p.requests()); n != 2 || !r.FSM().Scaler().Last().OK {
		t.Fatalf("after the backoff: %d requests, state %+v", n, r.FSM().Scaler())
	}
}

// TestLoopLeadershipLost: a loop whose leadership ends while the provider
// works returns at once and records nothing; the next leader's loop marks
// the action interrupted without asking the provider again.
func TestLoopLeadershipLost(t *testing.T) {
	t.Parallel()
	r := mesh(t, 1)
	p := &recorder{state: r.FSM(), hold: make(chan struct{}), started: make(chan struct{})}
	c := &clock{now: t0}
	l := newLoop(t, r, p, c, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Evaluate(ctx) }()
	<-p.started
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("evaluate after leadership lost: %v", err)
	}
	close(p.hold)
	if st := r.FSM().Scaler(); st.Pending == nil {
		t.Fatalf("the begun action is not pending: %+v", st)
	}
	// The next leader (here: a new loop) marks it interrupted first.
	q := &recorder{state: r.FSM()}
	next := newLoop(t, r, q, c, prometheus.NewRegistry())
	rctx, rcancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { _ = next.Run(rctx); close(ran) }()
	schedulertest.WaitFor(t, 10*time.Second, "the action marked interrupted", func() bool {
		last := r.FSM().Scaler().Last()
		return last != nil && strings.Contains(last.Error, "interrupted")
	})
	schedulertest.WaitFor(t, 10*time.Second, "an evaluation after it", func() bool { return r.FSM().Scaler().Status.Reason != "" && r.FSM().Scaler().Pending == nil })
	rcancel()
	<-ran
	if n := len(q.requests()); n != 0 {
		t.Fatalf("the interrupted action was asked for again: %+v", q.requests())
	}
	if st := r.FSM().Scaler(); len(st.Launching) != 1 || st.Launching[0].Count != 1 {
		t.Fatalf("its worker no longer counts as starting: %+v", st.Launching)
	}
}

// TestExecHook runs a real command: the request arrives on its standard
// input; a failure's output becomes the error; a command that outlives its
// bound is stopped.
func TestExecHook(t *testing.T) {
	for _, bad := range []string{"exec:", "exec:   ", "docker"} {
		if _, err := scaler.ParseExec(bad); err == nil {
			t.Errorf("ParseExec(%q) accepted", bad)
		}
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "hook")
	body := "#!/bin/sh\ncat > \"$1\"\nenv > \"$1.env\"\nif grep -q '\"add\":3' \"$1\"; then echo 'no capacity for 3' >&2; exit 3; fi\nif grep -q '\"add\":4' \"$1\"; then exec sleep 30; fi\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(dir, "request.json")
	e, err := scaler.ParseExec("exec:" + script + " " + got)
	if err != nil {
		t.Fatal(err)
	}
	req := scaler.Request{Add: 1, Remove: []string{"w1"}, Pool: "acme", GPUClass: "A100", GPUs: 2, Join: []string{"h:1"}, Action: 7}
	t.Setenv("PWMESH_DATA_DIR", "/leaders/own")
	t.Setenv("PWMESH_SCALER", "exec:"+script)
	if err := e.Scale(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if env, _ := os.ReadFile(got + ".env"); strings.Contains(string(env), "PWMESH_") || !strings.Contains(string(env), "PATH=") {
		t.Fatalf("the hook's environment:\n%s", env)
	}
	var back scaler.Request
	b, _ := os.ReadFile(got)
	if err := json.Unmarshal(b, &back); err != nil || back.Pool != "acme" || back.GPUClass != "A100" || back.Remove[0] != "w1" || back.Action != 7 {
		t.Fatalf("the hook read %s (%v)", b, err)
	}
	req.Add = 3
	if err := e.Scale(context.Background(), req); err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "no capacity for 3") {
		t.Fatalf("a failing hook: %v", err)
	}
	req.Add = 4
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.Scale(ctx, req); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a hook past its bound: %v", err)
	}
}
