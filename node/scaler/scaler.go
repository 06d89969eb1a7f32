// Package scaler is the leader's autoscaler loop (CONTRACT.md §6,
// docs/scaling.md): it reads the replicated state, asks the pure planner
// (scheduler.PlanScale) what to do, commits the decision through Raft
// (ScaleBegin) before acting, has a Provider start or stop workers, and
// commits the outcome (ScaleEnd). Providers: an exec hook (exec.go) and the
// local Docker engine (node/worker/docker's Workers).
package scaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/scheduler"
)

// Request is what a provider is asked to do: the JSON object the exec hook
// reads on its standard input (CONTRACT.md §6; gpu_class, gpus, region and
// action are extensions).
type Request struct {
	Add     int      `json:"add"`
	Remove  []string `json:"remove"`
	Desired int      `json:"desired"`
	Current int      `json:"current"`
	Join    []string `json:"join"`
	Pool    string   `json:"pool"`
	Reason  string   `json:"reason"`
	// GPUClass is the GPU model the added workers should have ("": any),
	// GPUs how many each should have.
	GPUClass string `json:"gpu_class"`
	GPUs     int    `json:"gpus"`
	// Region is the region the added workers should join ("": any; the
	// waiting jobs named none).
	Region string `json:"region"`
	// Action is the decision's ID (its Raft index). A failed action is not
	// sent again as it was: the next try is a new decision, with a new ID.
	Action uint64 `json:"action"`
}

// Provider starts and stops workers.
type Provider interface {
	// Scale starts r.Add workers and stops the nodes in r.Remove (drained
	// already). A nil error means done.
	Scale(ctx context.Context, r Request) error
}

// State is the replicated state the loop reads.
type State interface {
	ScaleInput(now time.Time, cfg scheduler.ScaleConfig) scheduler.ScaleInput
	Scaler() scheduler.ScalerState
	Watch() <-chan struct{}
}

// Config tunes the loop.
type Config struct {
	Scale scheduler.ScaleConfig
	// Interval is the longest time between two evaluations (default 10 s);
	// a change of the state is evaluated sooner, at most once per MinGap
	// (default 1 s).
	Interval, MinGap time.Duration
	// Timeout bounds one provider call (default 5 min).
	Timeout time.Duration
	// Grace is how long workers asked for count as starting before they
	// are asked for again (default Timeout + 1 min).
	Grace time.Duration
	// Join lists the gossip addresses new workers join through.
	Join    func() []string
	Clock   scheduler.Clock
	Logger  *slog.Logger
	Metrics *Metrics
}

// Loop is the autoscaler of one leadership term.
type Loop struct {
	cfg   Config
	state State
	apply scheduler.Applier
	prov  Provider
}

// New checks cfg and returns a loop ready to Run.
func New(cfg Config, state State, apply scheduler.Applier, prov Provider) (*Loop, error) {
	if state == nil || apply == nil || prov == nil {
		return nil, errors.New("scaler: needs the state, an applier and a provider")
	}
	if cfg.Scale.Max < cfg.Scale.Min || cfg.Scale.Min < 0 {
		return nil, fmt.Errorf("scaler: bounds %d..%d", cfg.Scale.Min, cfg.Scale.Max)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.MinGap <= 0 {
		cfg.MinGap = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Grace <= 0 {
		cfg.Grace = cfg.Timeout + time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = scheduler.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Join == nil {
		cfg.Join = func() []string { return nil }
	}
	return &Loop{cfg: cfg, state: state, apply: apply, prov: prov}, nil
}

// Run evaluates until ctx ends (leadership lost).
func (l *Loop) Run(ctx context.Context) error {
	tick := time.NewTicker(l.cfg.Interval)
	defer tick.Stop()
	gap := time.NewTimer(0)
	defer gap.Stop()
	changed := l.state.Watch()
	ready := false // MinGap passed since the last evaluation
	for {
		if err := l.Evaluate(ctx); err != nil && ctx.Err() == nil {
			l.cfg.Logger.Warn("scaler: evaluate", "err", err)
		}
		gap.Reset(l.cfg.MinGap)
		ready = false
		dirty := false
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				break wait
			case <-changed:
				changed = l.state.Watch()
				dirty = true
				if ready {
					break wait
				}
			case <-gap.C:
				ready = true
				if dirty {
					break wait
				}
			}
		}
	}
}

// Evaluate makes one decision and, when there is something to do, carries
// it out. An action pending when it starts is not this loop's (its own end
// within Evaluate): an earlier leader's, or one whose outcome could not be
// recorded; it is marked interrupted, not carried out again.
func (l *Loop) Evaluate(ctx context.Context) error {
	if err := Interrupt(ctx, l.state, l.apply, l.cfg.Clock, l.cfg.Logger); err != nil {
		return err
	}
	now := l.cfg.Clock.Now()
	in := l.state.ScaleInput(now, l.cfg.Scale)
	d := scheduler.PlanScale(in)
	l.cfg.Metrics.observe(d)
	status := scheduler.ScalerStatus{Mode: l.cfg.Scale.Mode, Min: l.cfg.Scale.Min, Max: l.cfg.Scale.Max,
		Idle: scheduler.Duration(l.cfg.Scale.Idle), Cooldown: scheduler.Duration(l.cfg.Scale.Cooldown),
		Current: d.Current, Desired: d.Desired, Reason: d.Reason}
	if d.Action == nil {
		old := in.State.Status
		at := old.At
		old.At = time.Time{}
		if old == status {
			return nil
		}
		// The counts at once; a new reason alone at most once an
		// interval (on a busy mesh its numbers change all the time).
		old.Reason = status.Reason
		if old == status && now.Sub(at) < l.cfg.Interval {
			return nil
		}
		_, err := l.apply.Apply(ctx, &scheduler.ScaleStatus{At: now, Status: status})
		return err
	}
	v, err := l.apply.Apply(ctx, &scheduler.ScaleBegin{At: now, Status: status, Action: *d.Action, Grace: scheduler.Duration(l.cfg.Grace)})
	if err != nil {
		return fmt.Errorf("scaler: record the decision: %w", err)
	}
	var a scheduler.ScaleAction
	switch x := v.(type) {
	case scheduler.ScaleAction:
		a = x
	case *scheduler.ScaleAction:
		a = *x
	default:
		return fmt.Errorf("scaler: the decision's answer is a %T", v)
	}
	kind := "add"
	if a.Add == 0 {
		kind = "remove"
	}
	req := Request{Add: a.Add, Remove: a.Remove, Desired: a.Desired, Current: a.Current, Join: l.cfg.Join(),
		Pool: a.Pool, Reason: a.Reason, GPUClass: a.GPUClass, GPUs: a.GPUs, Region: a.Region, Action: a.ID}
	if req.Remove == nil {
		req.Remove = []string{}
	}
	if req.Pool == "" {
		req.Pool = scheduler.PoolShared
	}
	l.cfg.Logger.Info("scaler: acting", "action", a.ID, "add", a.Add, "remove", a.Remove, "pool", req.Pool, "gpu_class", a.GPUClass, "reason", a.Reason)
	// The provider's work is not cut short by a lost leadership: half a
	// start is worse than a finished one nobody records (the next leader
	// counts its workers as starting).
	done := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.Timeout)
		defer cancel()
		done <- l.prov.Scale(pctx, req)
	}()
	var perr error
	select {
	case perr = <-done:
	case <-ctx.Done():
		l.cfg.Logger.Warn("scaler: leadership lost while an action runs; the next leader marks it interrupted", "action", a.ID)
		return nil
	}
	end := &scheduler.ScaleEnd{At: l.cfg.Clock.Now(), ID: a.ID, OK: perr == nil}
	if perr != nil {
		end.Error = perr.Error()
		l.cfg.Logger.Warn("scaler: action failed; retried after a backoff", "action", a.ID, "err", perr)
	} else {
		l.cfg.Logger.Info("scaler: action done", "action", a.ID)
	}
	l.cfg.Metrics.action(kind, perr == nil)
	if _, err := l.apply.Apply(ctx, end); err != nil {
		return fmt.Errorf("scaler: record the outcome of action %d: %w", a.ID, err)
	}
	return nil
}

// Interrupt marks an action left pending as interrupted: its workers keep
// counting as starting until their grace ends, and the drains it made stay
// (the workers it was to remove are chosen again). A leader that runs no
// scaler calls it too, so that no action stays pending forever.
func Interrupt(ctx context.Context, state State, apply scheduler.Applier, clock scheduler.Clock, log *slog.Logger) error {
	p := state.Scaler().Pending
	if p == nil {
		return nil
	}
	log.Warn("scaler: an action never finished (an earlier leader's, or its outcome was not recorded); its workers count as starting until their grace ends", "action", p.ID, "add", p.Add, "remove", p.Remove)
	if _, err := apply.Apply(ctx, &scheduler.ScaleEnd{At: clock.Now(), ID: p.ID, Interrupted: true}); err != nil {
		return fmt.Errorf("scaler: mark action %d interrupted: %w", p.ID, err)
	}
	return nil
}

// Metrics are the scaler's Prometheus series, exported by the leader only
// (a follower's copy reads zero desired and current, and its counters stand
// still).
type Metrics struct {
	desired, current prometheus.Gauge
	actions          *prometheus.CounterVec
}

// NewMetrics registers the scaler's series on reg; every label set of the
// actions counter is there from the start.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		desired: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pwmesh_scaler_desired_workers", Help: "Managed workers the leader's scaler wants (leader only)."}),
		current: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pwmesh_scaler_current_workers", Help: "Live managed workers the leader's scaler counts (leader only)."}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pwmesh_scaler_actions_total", Help: "Scaling actions this node carried out as leader, by kind (add, remove) and outcome (ok, error)."}, []string{"kind", "outcome"}),
	}
	for _, k := range []string{"add", "remove"} {
		for _, o := range []string{"ok", "error"} {
			m.actions.WithLabelValues(k, o)
		}
	}
	reg.MustRegister(m.desired, m.current, m.actions)
	return m
}

func (m *Metrics) observe(d scheduler.ScaleDecision) {
	if m == nil {
		return
	}
	m.desired.Set(float64(d.Desired))
	m.current.Set(float64(d.Current))
}

// Reset zeroes the gauges when this node stops leading.
func (m *Metrics) Reset() {
	if m == nil {
		return
	}
	m.desired.Set(0)
	m.current.Set(0)
}

func (m *Metrics) action(kind string, ok bool) {
	if m == nil {
		return
	}
	o := "ok"
	if !ok {
		o = "error"
	}
	m.actions.WithLabelValues(kind, o).Inc()
}
