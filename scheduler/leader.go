package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Applier commits commands; the node gives the leader loop its local Raft.
type Applier interface {
	Apply(ctx context.Context, c Command) (any, error)
}

// Clock is the time source; tests pass a fake.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().UTC().
func (SystemClock) Now() time.Time { return time.Now().UTC() }

// LeaderConfig tunes the leader loop.
type LeaderConfig struct {
	// LeaseTTL is how long an assignment stays valid without renewal
	// (default 9 s). Runners renew at a third of it.
	LeaseTTL time.Duration
	// Tick is how often the loop reconciles without a state change
	// (default 1 s).
	Tick time.Duration
	// TimeoutGrace is how long past its timeout a job's runner has to report
	// before the leader marks it timed out itself (default LeaseTTL).
	TimeoutGrace time.Duration
	// ClaimWindow is how long a newly submitted job is left to the claims
	// of the nodes it was announced to before the leader assigns it itself
	// (default 0: the leader assigns at once).
	ClaimWindow time.Duration
	// PruneEvery is how often the leader prunes finished jobs and
	// idempotency records past their retention (default 1 min);
	// JobRetention and IdempotencyRetention default to the package's.
	PruneEvery           time.Duration
	JobRetention         time.Duration
	IdempotencyRetention time.Duration
	Clock                Clock
	Logger               *slog.Logger
}

// Leader runs the scheduler loop while this member leads: it expires
// leases, enforces timeouts, and commits placement's assignments and
// preemptions. Every step reads the FSM afresh, so it is safe to stop and
// redo at any point.
type Leader struct {
	cfg   LeaderConfig
	fsm   *FSM
	apply Applier
}

// NewLeader validates cfg and returns a loop ready to Run.
func NewLeader(cfg LeaderConfig, fsm *FSM, apply Applier) (*Leader, error) {
	if fsm == nil || apply == nil {
		return nil, errors.New("scheduler: leader needs an FSM and an Applier")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 9 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.TimeoutGrace <= 0 {
		cfg.TimeoutGrace = cfg.LeaseTTL
	}
	if cfg.PruneEvery <= 0 {
		cfg.PruneEvery = time.Minute
	}
	if cfg.JobRetention <= 0 {
		cfg.JobRetention = JobRetention
	}
	if cfg.IdempotencyRetention <= 0 {
		cfg.IdempotencyRetention = IdempotencyRetention
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Leader{cfg: cfg, fsm: fsm, apply: apply}, nil
}

// Run reconciles on every state change and every tick until ctx ends.
func (l *Leader) Run(ctx context.Context) error {
	t := time.NewTicker(l.cfg.Tick)
	defer t.Stop()
	var pruned time.Time
	for {
		changed := l.fsm.Watch()
		if err := l.Reconcile(ctx); err != nil && ctx.Err() == nil {
			l.cfg.Logger.Warn("scheduler: reconcile", "err", err)
		}
		if now := l.cfg.Clock.Now(); pruned.IsZero() || now.Sub(pruned) >= l.cfg.PruneEvery {
			pruned = now
			if err := l.Prune(ctx); err != nil && ctx.Err() == nil {
				l.cfg.Logger.Warn("scheduler: prune", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
	}
}

// Reconcile does one pass. Errors of single commands (a job cancelled
// meanwhile, say) are logged and the pass goes on; the next pass retries.
func (l *Leader) Reconcile(ctx context.Context) error {
	now := l.cfg.Clock.Now()
	in := l.fsm.PlaceInput()
	nodes := map[string]Node{}
	for _, n := range in.Nodes {
		nodes[n.ID] = n
	}
	var errs []error
	try := func(c Command, jobID string) bool {
		if _, err := l.apply.Apply(ctx, c); err != nil {
			if errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
				errs = append(errs, err)
				return false
			}
			l.cfg.Logger.Debug("scheduler: command refused", "cmd", c.Type().String(), "job_id", jobID, "err", err)
			return false
		}
		return true
	}
	kept := in.Running[:0]
	for _, j := range in.Running {
		if j.Lease == nil {
			continue
		}
		n, known := nodes[j.Lease.Node]
		var c Command
		var msg string
		switch {
		// The timeout comes first: a job that has used up its time is
		// timed out, not started again because its node also failed.
		case j.StartedAt != nil && now.After(j.StartedAt.Add(time.Duration(j.Timeout)+l.cfg.TimeoutGrace)):
			c = &CompleteJob{At: now, JobID: j.ID, Token: j.Lease.Token, State: StateTimedOut,
				Error: &JobError{Code: "timed_out", Message: fmt.Sprintf("ran past its timeout of %s", time.Duration(j.Timeout))}}
			msg = "job timed out"
		case known && n.State == NodeLeft && now.After(j.Lease.ExpiresAt):
			// A node leaving cleanly hands its jobs back itself once their
			// processes are gone; a lease it could not hand back is taken
			// when it runs out, never while the runner may still be at work.
			c = &RequeueJob{At: now, JobID: j.ID, Token: j.Lease.Token, Voluntary: true, Reason: fmt.Sprintf("node %s left the mesh; requeued", j.Lease.Node)}
			msg = "job requeued: node left"
		case (!known || n.State != NodeReady) && now.After(j.Lease.ExpiresAt):
			// A node that failed may only be cut off, its runner still at
			// work until it notices it cannot renew: the job goes back to
			// the queue once the lease is over, never before.
			c = &RequeueJob{At: now, JobID: j.ID, Token: j.Lease.Token, Reason: fmt.Sprintf("node %s failed while running it; requeued", j.Lease.Node)}
			msg = "job requeued: node failed"
		case !known || n.State != NodeReady:
			kept = append(kept, j)
			continue
		case n.Incarnation != j.Lease.Incarnation:
			c = &RequeueJob{At: now, JobID: j.ID, Token: j.Lease.Token, Reason: fmt.Sprintf("node %s restarted while running it; requeued", j.Lease.Node)}
			msg = "job requeued: node restarted"
		case now.After(j.Lease.ExpiresAt):
			c = &RequeueJob{At: now, JobID: j.ID, Token: j.Lease.Token, Reason: fmt.Sprintf("lease on node %s expired (node unreachable or stuck); requeued", j.Lease.Node)}
			msg = "job requeued: lease expired"
		default:
			kept = append(kept, j)
			continue
		}
		if try(c, j.ID) {
			l.cfg.Logger.Info(msg, "job_id", j.ID, "job_node", j.Lease.Node)
			continue
		}
		// Refused or not committed: the job may still hold its GPUs, so
		// placement must not hand them out in this pass.
		kept = append(kept, j)
	}
	in.Running = kept
	if l.cfg.ClaimWindow > 0 {
		for _, j := range in.Queued {
			if j.Attempts == 0 && now.Sub(j.SubmittedAt) < l.cfg.ClaimWindow {
				if in.Held == nil {
					in.Held = map[string]bool{}
				}
				in.Held[j.ID] = true
			}
		}
	}
	plan := Place(in)
	for _, p := range plan.Preempt {
		if try(&RequeueJob{At: now, JobID: p.JobID, Token: p.Token, Voluntary: true, Reason: fmt.Sprintf("preempted by sprint job %s", p.For)}, p.JobID) {
			l.cfg.Logger.Info("job preempted", "job_id", p.JobID, "for", p.For)
		}
	}
	if len(plan.Assign) == 1 {
		a := plan.Assign[0]
		if try(&AssignJob{At: now, JobID: a.JobID, Node: a.Node, Incarnation: a.Incarnation, GPUs: a.GPUs, ExpiresAt: now.Add(l.cfg.LeaseTTL)}, a.JobID) {
			l.cfg.Logger.Info("job assigned", "job_id", a.JobID, "job_node", a.Node, "gpus", a.GPUs)
		}
	} else if len(plan.Assign) > 1 {
		// Many assignments go in one entry: one commit instead of one each.
		batch := &AssignBatch{}
		for _, a := range plan.Assign {
			batch.Assignments = append(batch.Assignments, AssignJob{At: now, JobID: a.JobID, Node: a.Node, Incarnation: a.Incarnation,
				GPUs: a.GPUs, ExpiresAt: now.Add(l.cfg.LeaseTTL)})
		}
		v, err := l.apply.Apply(ctx, batch)
		if err != nil {
			errs = append(errs, err)
		} else if res, ok := v.(BatchResult); ok {
			for i, a := range plan.Assign {
				if i < len(res.Errors) && res.Errors[i] != "" {
					l.cfg.Logger.Debug("scheduler: assignment refused", "job_id", a.JobID, "err", res.Errors[i])
					continue
				}
				l.cfg.Logger.Info("job assigned", "job_id", a.JobID, "job_node", a.Node, "gpus", a.GPUs)
			}
		}
	}
	return errors.Join(errs...)
}

// Prune removes finished jobs and idempotency records past their retention
// (PruneJobs), when there is any.
func (l *Leader) Prune(ctx context.Context) error {
	now := l.cfg.Clock.Now()
	c := &PruneJobs{At: now, JobsBefore: now.Add(-l.cfg.JobRetention), IdempotencyBefore: now.Add(-l.cfg.IdempotencyRetention),
		KeysBefore: now.Add(-ExpiredKeyRetention)}
	if jobs, idem, keys := l.fsm.PruneCandidates(c.JobsBefore, c.IdempotencyBefore, c.KeysBefore); jobs+idem+keys == 0 {
		return nil
	}
	v, err := l.apply.Apply(ctx, c)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return nil // pruned meanwhile
		}
		return err
	}
	if r, ok := v.(PruneResult); ok {
		l.cfg.Logger.Info("scheduler: pruned finished jobs, idempotency records and expired keys", "jobs", r.Jobs, "idempotency_records", r.Idempotency, "keys", r.Keys)
	}
	return nil
}
