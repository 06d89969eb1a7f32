package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The autoscaler's replicated state (CONTRACT.md §6, docs/scaling.md).
// The leader alone decides; every decision is a Raft entry before anything
// is started or stopped, so a new leader neither repeats an action nor
// loses one: ScaleBegin records what is about to be asked for (and drains
// the workers to remove, atomically), ScaleEnd its outcome. A worker asked
// for counts as starting (a Launch) until one of its kind registers or its
// grace ends.

// Scaler modes.
const (
	ScalerNone   = "none"
	ScalerExec   = "exec"
	ScalerDocker = "docker"
)

// recentActions bounds the finished actions the state keeps.
const recentActions = 16

// removeGrace is how long a worker that an action removed has to leave
// before it may be chosen for removal again.
const removeGrace = 5 * time.Minute

// ScaleAction is one scaling decision: workers to add (of one pool and
// GPU class) and managed workers to remove (drained by the decision).
type ScaleAction struct {
	ID       uint64    `json:"id"` // the Raft index of its ScaleBegin
	At       time.Time `json:"at"`
	Add      int       `json:"add"`
	Remove   []string  `json:"remove"`
	Pool     string    `json:"pool,omitempty"`
	GPUClass string    `json:"gpu_class,omitempty"`
	// GPUs is how many GPUs each added worker should have (the most any
	// waiting job of its kind asks for).
	GPUs   int    `json:"gpus,omitempty"`
	Region string `json:"region,omitempty"`
	// Drained are the workers to remove that this action drained (not
	// drained before): a failed removal gives them jobs again.
	Drained []string `json:"drained,omitempty"`
	Desired int      `json:"desired"`
	Current int      `json:"current"`
	Reason  string   `json:"reason,omitempty"`
	// The outcome, once ScaleEnd recorded it.
	Done    bool      `json:"done"`
	OK      bool      `json:"ok"`
	Error   string    `json:"error,omitempty"`
	EndedAt time.Time `json:"ended_at,omitzero"`
}

// Launch is capacity asked for and not yet arrived.
type Launch struct {
	Action   uint64    `json:"action"`
	Pool     string    `json:"pool,omitempty"`
	GPUClass string    `json:"gpu_class,omitempty"`
	Count    int       `json:"count"`
	Until    time.Time `json:"until"`
}

// ScalerStatus is what the leader last reported of its scaler.
type ScalerStatus struct {
	Mode     string    `json:"mode"`
	Min      int       `json:"min"`
	Max      int       `json:"max"`
	Idle     Duration  `json:"idle"`
	Cooldown Duration  `json:"cooldown"`
	Current  int       `json:"current"`
	Desired  int       `json:"desired"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at,omitzero"`
}

// ScalerState is the autoscaler's replicated state.
type ScalerState struct {
	Status    ScalerStatus  `json:"status"`
	Pending   *ScaleAction  `json:"pending,omitempty"`
	Recent    []ScaleAction `json:"recent,omitempty"` // oldest first
	Launching []Launch      `json:"launching,omitempty"`
	// Failures counts the failed actions in a row; NextTry is when the
	// next action may be tried after the last failure.
	Failures int       `json:"failures,omitempty"`
	NextTry  time.Time `json:"next_try,omitzero"`
}

// Last is the newest finished action, or nil.
func (s ScalerState) Last() *ScaleAction {
	if len(s.Recent) == 0 {
		return nil
	}
	a := s.Recent[len(s.Recent)-1]
	return &a
}

// ScaleStatus records the leader's view of its scaler when it changes.
type ScaleStatus struct {
	At     time.Time    `json:"at"`
	Status ScalerStatus `json:"status"`
}

func (ScaleStatus) Type() CommandType { return CmdScaleStatus }

// ScaleBegin records an action before the leader carries it out. The
// workers it removes are drained by the same entry; it is refused when one
// of them runs a job, is not managed, or an action is already pending.
type ScaleBegin struct {
	At     time.Time    `json:"at"`
	Status ScalerStatus `json:"status"`
	Action ScaleAction  `json:"action"`
	// Grace is how long the workers it adds count as starting.
	Grace Duration `json:"grace"`
}

func (ScaleBegin) Type() CommandType { return CmdScaleBegin }

// ScaleEnd records an action's outcome. Interrupted marks an action a
// previous leader began and never finished: its workers keep counting as
// starting until their grace ends, so that it is not repeated.
type ScaleEnd struct {
	At          time.Time `json:"at"`
	ID          uint64    `json:"id"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	Interrupted bool      `json:"interrupted,omitempty"`
}

func (ScaleEnd) Type() CommandType { return CmdScaleEnd }

// Backoff after the n-th failed action in a row: 5 s doubling, at most 5 min.
func scaleBackoff(n int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

func (s *state) dropExpiredLaunches(now time.Time) {
	s.scaler.Launching = slices.DeleteFunc(s.scaler.Launching, func(l Launch) bool { return !now.Before(l.Until) || l.Count <= 0 })
}

func (s *state) scaleStatus(c *ScaleStatus) (ScalerState, error) {
	s.scaler.Status = c.Status
	s.scaler.Status.At = c.At
	s.dropExpiredLaunches(c.At)
	return cloneScaler(s.scaler), nil
}

func (s *state) scaleBegin(idx uint64, c *ScaleBegin) (ScaleAction, error) {
	if p := s.scaler.Pending; p != nil {
		return ScaleAction{}, fmt.Errorf("scale: %w: action %d is still in progress", ErrConflict, p.ID)
	}
	a := c.Action
	if a.Add < 0 || (a.Add == 0 && len(a.Remove) == 0) {
		return ScaleAction{}, fmt.Errorf("scale: %w: an action adds or removes workers", ErrInvalid)
	}
	for _, id := range a.Remove {
		n, ok := s.nodes[id]
		switch {
		case !ok || n.State == NodeLeft:
			return ScaleAction{}, fmt.Errorf("scale: remove %s: %w", id, ErrNotFound)
		case !n.Managed:
			return ScaleAction{}, fmt.Errorf("scale: %w: %s was not started by a scaler (--scaler-managed)", ErrConflict, id)
		case s.runsJobs(id):
			return ScaleAction{}, fmt.Errorf("scale: %w: %s runs a job", ErrConflict, id)
		}
	}
	a.Drained = nil
	for _, id := range a.Remove {
		n := s.nodes[id]
		if !n.Draining {
			a.Drained = append(a.Drained, id)
		}
		n.Draining = true
		n.UpdatedAt = c.At
	}
	a.ID, a.At = idx, c.At
	a.Remove = slices.Clone(a.Remove)
	a.Done, a.OK, a.Error, a.EndedAt = false, false, "", time.Time{}
	s.scaler.Pending = &a
	s.scaler.Status = c.Status
	s.scaler.Status.At = c.At
	s.dropExpiredLaunches(c.At)
	if a.Add > 0 {
		s.scaler.Launching = append(s.scaler.Launching, Launch{Action: idx, Pool: a.Pool, GPUClass: a.GPUClass, Count: a.Add, Until: c.At.Add(time.Duration(c.Grace))})
	}
	return a, nil
}

func (s *state) scaleEnd(c *ScaleEnd) (ScaleAction, error) {
	p := s.scaler.Pending
	if p == nil || p.ID != c.ID {
		return ScaleAction{}, fmt.Errorf("scale: action %d: %w (not in progress)", c.ID, ErrNotFound)
	}
	a := *p
	a.Done, a.OK, a.Error, a.EndedAt = true, c.OK, c.Error, c.At
	switch {
	case c.OK:
		s.scaler.Failures, s.scaler.NextTry = 0, time.Time{}
	case c.Interrupted:
		if a.Error == "" {
			a.Error = "interrupted: the leader changed before the action finished"
		}
	default:
		// Nothing it asked for is coming, and the workers it was to
		// remove stay: they take jobs again.
		s.scaler.Launching = slices.DeleteFunc(s.scaler.Launching, func(l Launch) bool { return l.Action == a.ID })
		for _, id := range a.Drained {
			if n, ok := s.nodes[id]; ok && n.State != NodeLeft {
				n.Draining = false
				n.UpdatedAt = c.At
			}
		}
		s.scaler.Failures++
		s.scaler.NextTry = c.At.Add(scaleBackoff(s.scaler.Failures))
	}
	s.scaler.Pending = nil
	s.scaler.Recent = append(s.scaler.Recent, a)
	if k := len(s.scaler.Recent) - recentActions; k > 0 {
		s.scaler.Recent = slices.Delete(s.scaler.Recent, 0, k)
	}
	s.dropExpiredLaunches(c.At)
	return a, nil
}

// runsJobs reports whether a job runs (holds a lease) on node id.
func (s *state) runsJobs(id string) bool {
	for _, j := range s.live {
		if j.State == StateRunning && j.Lease != nil && j.Lease.Node == id {
			return true
		}
	}
	return false
}

// managedArrived counts a managed worker's first registration against the
// oldest launch it answers (same pool, and a GPU of its class).
func (s *state) managedArrived(n *Node) {
	for i := range s.scaler.Launching {
		l := &s.scaler.Launching[i]
		if l.Count <= 0 || poolOf(l.Pool) != poolOf(n.Pool) || !hasClass(n, l.GPUClass) {
			continue
		}
		l.Count--
		if l.Count == 0 {
			s.scaler.Launching = slices.Delete(s.scaler.Launching, i, i+1)
		}
		return
	}
}

// poolOf names the shared pool one way.
func poolOf(p string) string {
	if p == "" {
		return PoolShared
	}
	return p
}

// hasClass reports whether n has a GPU whose model contains class
// (ignoring case); every node has the class "".
func hasClass(n *Node, class string) bool {
	if class == "" {
		return true
	}
	class = strings.ToLower(class)
	return slices.ContainsFunc(n.GPUs, func(g GPU) bool { return strings.Contains(strings.ToLower(g.Model), class) })
}

func cloneScaler(s ScalerState) ScalerState {
	c := s
	if s.Pending != nil {
		p := *s.Pending
		p.Remove, p.Drained = slices.Clone(p.Remove), slices.Clone(p.Drained)
		c.Pending = &p
	}
	c.Recent = slices.Clone(s.Recent)
	for i := range c.Recent {
		c.Recent[i].Remove, c.Recent[i].Drained = slices.Clone(c.Recent[i].Remove), slices.Clone(c.Recent[i].Drained)
	}
	c.Launching = slices.Clone(s.Launching)
	return c
}

// Scaler returns the autoscaler's replicated state.
func (f *FSM) Scaler() ScalerState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return cloneScaler(f.s.scaler)
}

// ScaleConfig is the leader's scaler settings (--scaler*) and what the
// workers its provider starts can do.
type ScaleConfig struct {
	Mode     string
	Min, Max int
	Idle     time.Duration
	Cooldown time.Duration
	// Executors are the new workers' executors (a job with an image needs
	// "docker"); JobNetwork, whether they give jobs network; Region, their
	// region ("": the region the waiting jobs ask for, which the provider
	// is told).
	Executors  []string
	JobNetwork bool
	Region     string
}

// ScaleInput is everything PlanScale reads.
type ScaleInput struct {
	Now    time.Time
	Config ScaleConfig
	Place  PlaceInput
	Plan   Plan // Place(Place)
	// LastActive is, by managed node, the latest of its start and the end
	// of the last job it ran.
	LastActive map[string]time.Time
	State      ScalerState
}

// ScaleDecision is PlanScale's answer: the status to show and, when
// something is to be done now, the action.
type ScaleDecision struct {
	Current, Desired int
	Reason           string
	Action           *ScaleAction
}

// ScaleInput gathers the planner's input from one view of the state.
func (f *FSM) ScaleInput(now time.Time, cfg ScaleConfig) ScaleInput {
	f.mu.RLock()
	defer f.mu.RUnlock()
	in := ScaleInput{Now: now, Config: cfg, Place: f.placeInputLocked(), State: cloneScaler(f.s.scaler), LastActive: map[string]time.Time{}}
	for id, n := range f.s.nodes {
		if n.Managed {
			in.LastActive[id] = n.Since
		}
	}
	for _, j := range f.s.jobs {
		if j.FinishedAt == nil || j.Node == "" {
			continue
		}
		if t, ok := in.LastActive[j.Node]; ok && j.FinishedAt.After(t) {
			in.LastActive[j.Node] = *j.FinishedAt
		}
	}
	in.Plan = Place(in.Place)
	return in
}

// scaleGroup is the waiting jobs of one kind of worker.
type scaleGroup struct {
	pool, class, region string
	jobs, gpus          int
}

func (g scaleGroup) key() string { return g.pool + "\x00" + g.class + "\x00" + g.region }

// serves reports whether node n, idle, could run g's jobs.
func (g scaleGroup) serves(n *Node) bool {
	if n.Draining || poolOf(n.Pool) != g.pool || (g.region != "" && n.Region != g.region) {
		return false
	}
	k := 0
	for _, x := range n.GPUs {
		if x.Unhealthy == "" && (g.class == "" || strings.Contains(strings.ToLower(x.Model), strings.ToLower(g.class))) {
			k++
		}
	}
	return k >= g.gpus
}

// PlanScale is the autoscaler's pure decision: it reads only its input and
// gives the same answer for the same input (docs/scaling.md).
//
// Managed workers are wanted for the queued GPU jobs that no node can start
// now and that a new worker could run, one each, by pool, GPU class and
// region, within Min..Max, less those already starting. A managed worker
// idle for Config.Idle is removed when no waiting job could run on it
// (also at Max, to make room for a worker of the kind that is missing). Two
// actions on one kind of worker are Cooldown apart, and a removal waits
// Cooldown after any action, so a steady queue never adds and removes in
// turn. A worker placement is about to give a job is busy, not idle.
func PlanScale(in ScaleInput) ScaleDecision {
	cfg, st, now := in.Config, in.State, in.Now
	var managed []Node
	for _, n := range in.Place.Nodes {
		if n.Managed && !n.Voter && n.State == NodeReady {
			managed = append(managed, n)
		}
	}
	slices.SortFunc(managed, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	current := len(managed)
	starting := 0
	for _, l := range st.Launching {
		if now.Before(l.Until) {
			starting += l.Count
		}
	}
	d := ScaleDecision{Current: current, Desired: min(max(current+starting, cfg.Min), max(cfg.Max, cfg.Min))}

	// The GPU jobs no node can start now that a new worker could run, by
	// the kind of worker they need.
	groups := map[string]*scaleGroup{}
	waiting, unservable := 0, 0
	busy := map[string]bool{}
	for _, j := range in.Place.Running {
		if j.Lease != nil {
			busy[j.Lease.Node] = true
		}
	}
	assigned := map[string]bool{}
	for _, a := range in.Plan.Assign {
		assigned[a.JobID] = true
		busy[a.Node] = true // about to run a job
	}
	for _, j := range in.Place.Queued {
		if j.Resources.GPUs == 0 || assigned[j.ID] || in.Place.Blocked[j.ID] != "" {
			continue
		}
		if why := in.Plan.Reasons[j.ID]; strings.HasPrefix(why, "announced to matching nodes") || strings.HasPrefix(why, "preempting") {
			continue // it starts on a node that has room
		}
		region := j.Region
		if cfg.Region != "" {
			if region != "" && region != cfg.Region {
				unservable++
				continue
			}
			region = cfg.Region
		}
		if (j.Image != "" && !slices.Contains(cfg.Executors, "docker")) || (j.Network == NetworkBridge && !cfg.JobNetwork) {
			unservable++
			continue
		}
		pool := PoolShared
		if tp := in.Place.Pools[j.Tenant]; tp.Pool != "" {
			pool = tp.Pool
		}
		g := &scaleGroup{pool: pool, class: j.Resources.GPUModel, region: region}
		if have, ok := groups[g.key()]; ok {
			g = have
		} else {
			groups[g.key()] = g
		}
		g.jobs++
		g.gpus = max(g.gpus, j.Resources.GPUs)
		waiting++
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var notes []string
	if unservable > 0 {
		notes = append(notes, fmt.Sprintf("%d GPU job(s) wait for what no worker this scaler starts has (a region, an image or network)", unservable))
	}
	say := func(s string) string {
		return strings.Join(append([]string{s}, notes...), "; ")
	}

	if st.Pending != nil {
		d.Reason = say(fmt.Sprintf("action %d (add %d, remove %d) is in progress", st.Pending.ID, st.Pending.Add, len(st.Pending.Remove)))
		return d
	}
	if now.Before(st.NextTry) {
		d.Reason = say(fmt.Sprintf("waiting until %s to retry after %d failed action(s)", st.NextTry.Format(time.RFC3339), st.Failures))
		return d
	}
	lastOf := func(match func(ScaleAction) bool) time.Time {
		for i := len(st.Recent) - 1; i >= 0; i-- {
			if match(st.Recent[i]) {
				return st.Recent[i].At
			}
		}
		return time.Time{}
	}
	cooling := func(t time.Time) bool { return !t.IsZero() && now.Before(t.Add(cfg.Cooldown)) }

	// Up: one action per evaluation, for the first kind that needs workers.
	room := cfg.Max - current - starting
	full := false
	for _, k := range keys {
		g := groups[k]
		need := g.jobs
		for _, l := range st.Launching {
			if now.Before(l.Until) && poolOf(l.Pool) == g.pool && strings.EqualFold(l.GPUClass, g.class) {
				need -= l.Count
			}
		}
		if need <= 0 {
			continue
		}
		if room <= 0 {
			full = true
			continue
		}
		if t := lastOf(func(a ScaleAction) bool {
			return a.Add > 0 && poolOf(a.Pool) == g.pool && strings.EqualFold(a.GPUClass, g.class)
		}); cooling(t) {
			notes = append(notes, fmt.Sprintf("cooling down: pool %s class %q until %s", g.pool, g.class, t.Add(cfg.Cooldown).Format(time.RFC3339)))
			continue
		}
		add := min(need, room)
		d.Desired = current + starting + add
		d.Reason = say(fmt.Sprintf("%d GPU job(s) wait for capacity no node has (%d for pool %s%s): adding %d worker(s)", waiting, g.jobs, g.pool, classWords(g.class), add))
		d.Action = &ScaleAction{Add: add, Pool: g.pool, GPUClass: g.class, GPUs: g.gpus, Region: g.region, Desired: d.Desired, Current: current, Reason: d.Reason}
		return d
	}
	if full {
		d.Desired = cfg.Max
		notes = append([]string{fmt.Sprintf("%d GPU job(s) wait for capacity, but %d managed worker(s) run or start: at --scaler-max %d", waiting, current+starting, cfg.Max)}, notes...)
	}
	if !full && current+starting < cfg.Min {
		add := cfg.Min - current - starting
		d.Desired = cfg.Min
		d.Reason = say(fmt.Sprintf("%d managed worker(s) run or start, below --scaler-min %d: adding %d", current+starting, cfg.Min, add))
		d.Action = &ScaleAction{Add: add, Pool: PoolShared, GPUs: 1, Region: cfg.Region, Desired: d.Desired, Current: current, Reason: d.Reason}
		return d
	}

	// Down: managed workers idle long enough that no waiting job could
	// run on; at Max they make room for the kind that is missing.
	leaving := map[string]bool{}
	for _, a := range st.Recent {
		if a.OK && now.Before(a.EndedAt.Add(removeGrace)) {
			for _, id := range a.Remove {
				leaving[id] = true // a hook may return before it is gone
			}
		}
	}
	var idle []Node
	for i := range managed {
		n := &managed[i]
		t, ok := in.LastActive[n.ID]
		if busy[n.ID] || leaving[n.ID] || !ok || now.Before(t.Add(cfg.Idle)) {
			continue
		}
		if slices.ContainsFunc(keys, func(k string) bool { return groups[k].serves(n) }) {
			continue
		}
		idle = append(idle, *n)
	}
	quiet := func(s string) {
		if len(notes) > 0 {
			d.Reason = strings.Join(notes, "; ")
			if s != "" {
				d.Reason += "; " + s
			}
			return
		}
		d.Reason = s
	}
	if len(idle) == 0 {
		if waiting == 0 && !full {
			quiet(fmt.Sprintf("steady: %d managed worker(s), %d starting, no GPU job waits for capacity", current, starting))
		} else if !full {
			quiet(fmt.Sprintf("%d GPU job(s) wait; %d worker(s) asked for are starting", waiting, starting))
		} else {
			quiet("")
		}
		return d
	}
	lastAdd := lastOf(func(a ScaleAction) bool { return a.Add > 0 })
	lastRemove := lastOf(func(a ScaleAction) bool { return len(a.Remove) > 0 })
	if cooling(lastAdd) || cooling(lastRemove) {
		t := lastAdd
		if lastRemove.After(t) {
			t = lastRemove
		}
		quiet(fmt.Sprintf("%d managed worker(s) idle; cooling down until %s", len(idle), t.Add(cfg.Cooldown).Format(time.RFC3339)))
		return d
	}
	slices.SortStableFunc(idle, func(a, b Node) int { return in.LastActive[a.ID].Compare(in.LastActive[b.ID]) })
	k := min(len(idle), current+starting-cfg.Min)
	if full {
		k = len(idle) // the kind that is missing needs the room
	}
	if k <= 0 {
		quiet(fmt.Sprintf("%d managed worker(s) idle, kept for --scaler-min %d", len(idle), cfg.Min))
		return d
	}
	remove := make([]string, 0, k)
	for _, n := range idle[:k] {
		remove = append(remove, n.ID)
	}
	d.Desired = current + starting - k
	if full {
		d.Desired = cfg.Max
	}
	quiet(fmt.Sprintf("%d managed worker(s) idle for %s or more that no waiting GPU job could run on: removing %s", k, cfg.Idle, strings.Join(remove, ", ")))
	d.Action = &ScaleAction{Remove: remove, Desired: d.Desired, Current: current, Reason: d.Reason}
	return d
}

func classWords(class string) string {
	if class == "" {
		return ""
	}
	return ", GPU class " + class
}
