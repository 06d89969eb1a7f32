package scheduler

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// MaxAttempts bounds how often one job is started: a job that has been
// started MaxAttempts times and is handed back once more fails instead of
// running again.
const MaxAttempts = 5

// state is the FSM's data. Every method that changes it is deterministic in
// its arguments. It is guarded by the FSM's lock.
type state struct {
	tenants   map[string]*Tenant
	keys      map[string]*APIKey // by hash
	keyIDs    map[string]string  // key ID -> hash
	datasets  map[string]*Dataset
	jobs      map[string]*Job
	nodes     map[string]*Node
	operators map[string]BundleRef
	idem      map[string]idemEntry // tenant + "\x00" + key -> the first submission
	// blobs indexes stored objects by CID; tombstones holds forgotten ones.
	blobs      map[string]*Blob
	tombstones map[string]time.Time
	config     ClusterConfig
	// prunedUsage: the GPU time of jobs pruned before the ledger existed,
	// by usageKey, read from old snapshots (backfillUsage).
	prunedUsage map[string]time.Duration
	// The usage ledger (usage.go): by usageKey, by dayKey, and the last
	// metering batch of each node.
	usage     map[string]*Usage
	daily     map[string]int64
	meters    map[string]meterMark
	hasLedger bool // restored from a snapshot that had one
	// operatorTenant: the tenant whose job compiled an operator (its
	// storage counts it).
	operatorTenant map[string]string
	// scaler is the autoscaler's decisions (scale.go).
	scaler ScalerState
	// live indexes the jobs that are not finished (queued or running), so
	// that the checks an apply makes read them, not every job kept for
	// months. A finished job leaves it when it finishes; every scan of it
	// still checks the state.
	live map[string]*Job
	// kept indexes, by tenant, the jobs whose RunBundle is kept (storage
	// counts it).
	kept map[string]map[string]*Job
}

func newState() *state {
	return &state{
		tenants:    map[string]*Tenant{},
		keys:       map[string]*APIKey{},
		keyIDs:     map[string]string{},
		datasets:   map[string]*Dataset{},
		jobs:       map[string]*Job{},
		live:       map[string]*Job{},
		kept:       map[string]map[string]*Job{},
		nodes:      map[string]*Node{},
		operators:  map[string]BundleRef{},
		idem:       map[string]idemEntry{},
		blobs:      map[string]*Blob{},
		tombstones: map[string]time.Time{},

		prunedUsage: map[string]time.Duration{},

		usage:          map[string]*Usage{},
		daily:          map[string]int64{},
		meters:         map[string]meterMark{},
		operatorTenant: map[string]string{},
	}
}

// assignBatch applies each assignment on its own, in order.
func (s *state) assignBatch(idx uint64, c *AssignBatch) (BatchResult, error) {
	res := BatchResult{Errors: make([]string, len(c.Assignments))}
	applied := 0
	for i := range c.Assignments {
		if _, err := s.assignJob(idx, &c.Assignments[i]); err != nil {
			res.Errors[i] = err.Error()
		} else {
			applied++
		}
	}
	if applied == 0 && len(c.Assignments) > 0 {
		// Nothing changed: say so, so that watchers are not woken.
		return BatchResult{}, fmt.Errorf("assign batch: %w: every assignment refused", ErrConflict)
	}
	return res, nil
}

func (s *state) registerDataset(d Dataset) (Dataset, error) {
	if d.ID == "" || d.Tenant == "" || d.CID == "" {
		return Dataset{}, fmt.Errorf("register dataset: %w: id, tenant and cid are required", ErrInvalid)
	}
	if _, ok := s.datasets[d.ID]; ok {
		return Dataset{}, fmt.Errorf("register dataset %s: %w: exists", d.ID, ErrConflict)
	}
	if err := s.durable(d.Stored()); err != nil {
		return Dataset{}, fmt.Errorf("register dataset %s: %w", d.ID, err)
	}
	if q, ok := s.quota(d.Tenant, QuotaStorage); ok {
		objs := s.storedObjects(d.Tenant)
		used, add := int64(0), d.StoredBytes()
		for _, n := range objs {
			used += n
		}
		if _, ok := objs[d.Stored()]; ok {
			add = 0 // the tenant stores this object already
		}
		if float64(used+add) > q {
			return Dataset{}, fmt.Errorf("register dataset %s: %w", d.ID,
				quotaErr(QuotaStorage, "tenant %s stores %d bytes; %d more would pass its limit of %.0f", d.Tenant, used, add, q))
		}
	}
	s.datasets[d.ID] = &d
	return d, nil
}

func (s *state) deleteDataset(c *DeleteDataset) (Dataset, error) {
	d, ok := s.datasets[c.ID]
	if !ok || d.Tenant != c.Tenant {
		return Dataset{}, fmt.Errorf("dataset %s: %w", c.ID, ErrNotFound)
	}
	for _, id := range s.sortedJobIDs() {
		j := s.jobs[id]
		if j.Dataset == c.ID && !Terminal(j.State) {
			return Dataset{}, fmt.Errorf("dataset %s is used by %s job %s: %w", c.ID, j.State, j.ID, ErrConflict)
		}
	}
	delete(s.datasets, c.ID)
	return *d, nil
}

// idemEntry remembers the first submission under an idempotency key.
type idemEntry struct {
	Job  string
	Hash string    // RequestHash of that submission ("" before hashes existed)
	At   time.Time // when it was submitted
}

func (s *state) submitJob(idx uint64, c *SubmitJob) (Job, error) {
	j := c.Job
	if c.IdempotencyKey != "" {
		if e, ok := s.idem[j.Tenant+"\x00"+c.IdempotencyKey]; ok {
			if e.Hash != "" && c.RequestHash != "" && e.Hash != c.RequestHash {
				return Job{}, fmt.Errorf("submit job: idempotency key %q: %w: it was used with another request", c.IdempotencyKey, ErrIdempotencyMismatch)
			}
			if prev, ok := s.jobs[e.Job]; ok {
				return cloneJob(prev), nil
			}
		}
	}
	if j.ID == "" || j.Tenant == "" || j.Type == "" {
		return Job{}, fmt.Errorf("submit job: %w: id, tenant and type are required", ErrInvalid)
	}
	if PriorityRank(j.Priority) < 0 {
		return Job{}, fmt.Errorf("submit job %s: %w: priority %q", j.ID, ErrInvalid, j.Priority)
	}
	if j.Resources.GPUs < 0 || j.Resources.GPUMemoryMB < 0 {
		return Job{}, fmt.Errorf("submit job %s: %w: negative resources", j.ID, ErrInvalid)
	}
	switch j.Network {
	case "", NetworkNone:
		j.Network = "" // none is the default, and not recorded
	case NetworkBridge:
		if j.Image == "" {
			return Job{}, fmt.Errorf("submit job %s: %w: network %q without an image", j.ID, ErrInvalid, j.Network)
		}
	default:
		return Job{}, fmt.Errorf("submit job %s: %w: network %q", j.ID, ErrInvalid, j.Network)
	}
	switch {
	case j.Timeout < 0 || time.Duration(j.Timeout) > MaxTimeout:
		return Job{}, fmt.Errorf("submit job %s: %w: timeout %s is not within 0 and %s", j.ID, ErrInvalid, time.Duration(j.Timeout), MaxTimeout)
	case j.Timeout == 0 && j.Priority == PrioritySprint:
		j.Timeout = Duration(SprintTimeout)
	case j.Timeout == 0:
		j.Timeout = Duration(DefaultTimeout)
	}
	if _, ok := s.jobs[j.ID]; ok {
		return Job{}, fmt.Errorf("submit job %s: %w: exists", j.ID, ErrConflict)
	}
	if j.Dataset != "" {
		d, ok := s.datasets[j.Dataset]
		if !ok || d.Tenant != j.Tenant {
			return Job{}, fmt.Errorf("dataset %s: %w", j.Dataset, ErrNotFound)
		}
	}
	if err := s.checkQuotasOnSubmit(&j, c.At); err != nil {
		return Job{}, fmt.Errorf("submit job %s: %w", j.ID, err)
	}
	j.State = StateQueued
	j.Seq = idx
	j.SubmittedAt = c.At
	j.Attempts = 0
	j.Node, j.Lease, j.StartedAt, j.FinishedAt = "", nil, nil, nil
	j.QueuePosition, j.Reason, j.CancelRequested = 0, "", false
	j.Metrics, j.RunBundle, j.Outputs, j.Error = nil, nil, nil, nil
	s.jobs[j.ID] = &j
	s.live[j.ID] = &j
	if c.IdempotencyKey != "" {
		s.idem[j.Tenant+"\x00"+c.IdempotencyKey] = idemEntry{Job: j.ID, Hash: c.RequestHash, At: c.At}
	}
	return cloneJob(&j), nil
}

func (s *state) assignJob(idx uint64, c *AssignJob) (Job, error) {
	j, ok := s.jobs[c.JobID]
	if !ok {
		return Job{}, fmt.Errorf("assign %s: %w", c.JobID, ErrNotFound)
	}
	if j.State != StateQueued {
		return Job{}, fmt.Errorf("assign %s: %w: job is %s", c.JobID, ErrConflict, j.State)
	}
	n, ok := s.nodes[c.Node]
	if !ok || n.State != NodeReady {
		return Job{}, fmt.Errorf("assign %s to %s: %w: node not ready", c.JobID, c.Node, ErrConflict)
	}
	if n.Draining {
		return Job{}, fmt.Errorf("assign %s to %s: %w: node is drained", c.JobID, c.Node, ErrConflict)
	}
	if c.Incarnation != n.Incarnation {
		return Job{}, fmt.Errorf("assign %s to %s: %w: node restarted", c.JobID, c.Node, ErrConflict)
	}
	if err := s.checkGPUs(j, n, c.GPUs); err != nil {
		return Job{}, fmt.Errorf("assign %s to %s: %w: %v", c.JobID, c.Node, ErrConflict, err)
	}
	if pool, only := s.poolOf(j.Tenant); !poolAllows(n.Pool, pool, only) {
		return Job{}, fmt.Errorf("assign %s to %s: %w: node is in pool %q, not the tenant's", c.JobID, c.Node, ErrConflict, n.Pool)
	}
	limit, cut, err := s.quotaLimit(j, c.At)
	if err != nil {
		return Job{}, fmt.Errorf("assign %s: %w", c.JobID, err)
	}
	at := c.At
	j.State = StateRunning
	j.Node = c.Node
	j.Attempts++
	j.StartedAt = &at
	j.Reason = ""
	j.Lease = &Lease{Node: c.Node, Token: idx, ExpiresAt: c.ExpiresAt, GPUs: slices.Clone(c.GPUs), Incarnation: c.Incarnation}
	if cut {
		// The runner stops the attempt at Limit; its charge never passes it.
		j.Lease.Limit, j.Lease.LimitQuota = Duration(limit), QuotaGPUMinutes
	} else if j.Resources.GPUs > 0 && limit > 0 {
		if _, ok := s.quota(j.Tenant, QuotaGPUMinutes); ok {
			j.Lease.Limit = Duration(limit)
		}
	}
	return cloneJob(j), nil
}

// checkGPUs enforces, whatever the proposer computed, that a job gets exactly
// the GPUs it asked for, that they exist on the node, and that no other
// running job holds any of them.
func (s *state) checkGPUs(j *Job, n *Node, gpus []int) error {
	if len(gpus) != j.Resources.GPUs {
		return fmt.Errorf("job asks for %d GPU(s), assignment gives %d", j.Resources.GPUs, len(gpus))
	}
	for i, g := range gpus {
		if slices.Contains(gpus[:i], g) {
			return fmt.Errorf("GPU %d given twice", g)
		}
		k := slices.IndexFunc(n.GPUs, func(x GPU) bool { return x.Index == g })
		if k < 0 {
			return fmt.Errorf("node has no GPU %d", g)
		}
		if why := n.GPUs[k].Unhealthy; why != "" {
			return fmt.Errorf("GPU %d is out of service: %s", g, why)
		}
	}
	if len(gpus) == 0 {
		// A CPU job needs a free slot: count the node's running CPU jobs.
		busy := 0
		for _, o := range s.live {
			if o.State == StateRunning && o.Lease != nil && o.Lease.Node == n.ID && len(o.Lease.GPUs) == 0 {
				busy++
			}
		}
		if busy >= n.Slots {
			return fmt.Errorf("all %d CPU slots are busy", n.Slots)
		}
		return nil
	}
	// Map order is random: report the lowest conflicting job so that every
	// replica returns the same answer.
	var holder string
	for _, o := range s.live {
		if o.State != StateRunning || o.Lease == nil || o.Lease.Node != n.ID || (holder != "" && o.ID >= holder) {
			continue
		}
		if slices.ContainsFunc(gpus, func(g int) bool { return slices.Contains(o.Lease.GPUs, g) }) {
			holder = o.ID
		}
	}
	if holder != "" {
		return fmt.Errorf("a GPU is held by job %s", holder)
	}
	return nil
}

func (s *state) leased(id string, token uint64, op string) (*Job, error) {
	j, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("%s %s: %w", op, id, ErrNotFound)
	}
	if j.State != StateRunning || j.Lease == nil || j.Lease.Token != token {
		return nil, fmt.Errorf("%s %s: %w: token %d is not the job's lease", op, id, ErrStaleToken, token)
	}
	return j, nil
}

func (s *state) renewLease(c *RenewLease) (Job, error) {
	j, err := s.leased(c.JobID, c.Token, "renew")
	if err != nil {
		return Job{}, err
	}
	if c.ExpiresAt.After(j.Lease.ExpiresAt) {
		j.Lease.ExpiresAt = c.ExpiresAt
	}
	return cloneJob(j), nil
}

func (s *state) completeJob(c *CompleteJob) (Job, error) {
	j, err := s.leased(c.JobID, c.Token, "complete")
	if err != nil {
		return Job{}, err
	}
	switch c.State {
	case StateSucceeded, StateFailed, StateTimedOut, StateCancelled:
	default:
		return Job{}, fmt.Errorf("complete %s: %w: state %q", c.JobID, ErrInvalid, c.State)
	}
	st := c.State
	if j.CancelRequested && st != StateSucceeded {
		st = StateCancelled
	}
	// Validate everything before changing anything: a refused command must
	// leave the state as it was.
	var out *Dataset
	if c.Dataset != nil && st == StateSucceeded {
		d := *c.Dataset
		if d.ID == "" || d.CID == "" {
			return Job{}, fmt.Errorf("complete %s: %w: output dataset needs an id and a cid", c.JobID, ErrInvalid)
		}
		if d.Tenant != j.Tenant {
			return Job{}, fmt.Errorf("complete %s: %w: output dataset of another tenant", c.JobID, ErrInvalid)
		}
		if _, exists := s.datasets[d.ID]; exists {
			return Job{}, fmt.Errorf("complete %s: %w: output dataset %s exists", c.JobID, ErrConflict, d.ID)
		}
		if d.CreatedAt.IsZero() {
			d.CreatedAt = c.At
		}
		d.Job = j.ID
		if err := s.durable(d.Stored()); err != nil {
			return Job{}, fmt.Errorf("complete %s: output dataset: %w", c.JobID, err)
		}
		out = &d
	}
	if st == StateSucceeded && c.RunBundle != nil {
		if err := s.durable(c.RunBundle.CID); err != nil {
			return Job{}, fmt.Errorf("complete %s: runbundle: %w", c.JobID, err)
		}
	}
	at := c.At
	s.endAttempt(j, at)
	reason := ""
	if st == StateTimedOut && j.Lease.LimitQuota != "" {
		reason = fmt.Sprintf("its time limit was cut to %s, what the %s quota left", time.Duration(j.Lease.Limit), j.Lease.LimitQuota)
	}
	j.State = st
	delete(s.live, j.ID)
	j.FinishedAt = &at
	j.Metrics = c.Metrics
	j.RunBundle = c.RunBundle
	s.keep(j)
	j.Error = c.Error
	j.Reason = reason
	if st == StateCancelled && j.Error == nil {
		j.Error = &JobError{Code: "cancelled", Message: "cancelled by request"}
	}
	j.Lease = nil
	j.Outputs = c.Outputs
	if out != nil {
		s.datasets[out.ID] = out
		if j.Outputs == nil {
			j.Outputs = map[string]string{}
		}
		j.Outputs["dataset"] = out.ID
	}
	if c.Operator != nil {
		s.operators[c.Operator.Key] = c.Operator.Ref
		if _, ok := s.operatorTenant[c.Operator.Key]; !ok {
			// The first tenant to compile an operator stores it.
			s.operatorTenant[c.Operator.Key] = j.Tenant
		}
	}
	return cloneJob(j), nil
}

func (s *state) cancelJob(c *CancelJob) (Job, error) {
	j, ok := s.jobs[c.JobID]
	if !ok || j.Tenant != c.Tenant {
		return Job{}, fmt.Errorf("job %s: %w", c.JobID, ErrNotFound)
	}
	switch j.State {
	case StateQueued:
		at := c.At
		j.State = StateCancelled
		delete(s.live, j.ID)
		j.FinishedAt = &at
		j.Reason = ""
		j.Error = &JobError{Code: "cancelled", Message: "cancelled by request"}
	case StateRunning:
		j.CancelRequested = true
	default:
		return Job{}, fmt.Errorf("job %s is already %s: %w", c.JobID, j.State, ErrConflict)
	}
	return cloneJob(j), nil
}

func (s *state) requeueJob(c *RequeueJob) (Job, error) {
	j, err := s.leased(c.JobID, c.Token, "requeue")
	if err != nil {
		return Job{}, err
	}
	at := c.At
	s.endAttempt(j, at)
	j.Lease = nil
	if c.Voluntary {
		j.Voluntary++
	}
	switch {
	case j.CancelRequested:
		j.State = StateCancelled
		delete(s.live, j.ID)
		j.FinishedAt = &at
		j.Error = &JobError{Code: "cancelled", Message: "cancelled by request"}
	case j.Attempts-j.Voluntary >= MaxAttempts:
		j.State = StateFailed
		delete(s.live, j.ID)
		j.FinishedAt = &at
		j.Error = &JobError{Code: "too_many_attempts", Message: fmt.Sprintf("lost %d runs without finishing; last: %s", j.Attempts-j.Voluntary, c.Reason)}
	default:
		j.State = StateQueued
		j.Reason = c.Reason
		j.StartedAt = nil
	}
	return cloneJob(j), nil
}

func (s *state) registerNode(c *RegisterNode) (Node, error) {
	n := c.Node
	if n.ID == "" {
		return Node{}, fmt.Errorf("register node: %w: id required", ErrInvalid)
	}
	// Placement and assignment name GPUs by index: a repeated index would
	// make every assignment to this node fail and the leader retry forever.
	for i, g := range n.GPUs {
		if slices.ContainsFunc(n.GPUs[:i], func(x GPU) bool { return x.Index == g.Index }) {
			return Node{}, fmt.Errorf("register node %s: %w: GPU index %d repeated", n.ID, ErrInvalid, g.Index)
		}
	}
	if n.State == "" {
		n.State = NodeReady
	}
	old, seen := s.nodes[n.ID]
	if seen && old.Draining {
		n.Draining = true // a restart does not undo an operator's drain
	}
	// Since: when this life of the node began (an idle worker's clock).
	if seen && old.Incarnation == n.Incarnation && !old.Since.IsZero() {
		n.Since = old.Since
	} else {
		n.Since = c.At
	}
	if n.Managed && (!seen || old.State == NodeLeft) {
		s.managedArrived(&n) // a worker a scaler asked for
	}
	n.UpdatedAt = c.At
	s.nodes[n.ID] = &n
	return cloneNode(&n), nil
}

func (s *state) updateGPUs(c *UpdateGPUs) (Node, error) {
	n, ok := s.nodes[c.Node]
	if !ok {
		return Node{}, fmt.Errorf("node %s: %w", c.Node, ErrNotFound)
	}
	if len(c.GPUs) != len(n.GPUs) {
		return Node{}, fmt.Errorf("update gpus of %s: %w: %d GPUs, registered %d", c.Node, ErrInvalid, len(c.GPUs), len(n.GPUs))
	}
	byIndex := map[int]GPU{}
	for _, g := range c.GPUs {
		byIndex[g.Index] = g
	}
	for _, g := range n.GPUs {
		if _, ok := byIndex[g.Index]; !ok {
			return Node{}, fmt.Errorf("update gpus of %s: %w: GPU %d missing", c.Node, ErrInvalid, g.Index)
		}
	}
	for i := range n.GPUs {
		u := byIndex[n.GPUs[i].Index]
		n.GPUs[i].Utilization, n.GPUs[i].MemoryUsedMB, n.GPUs[i].TemperatureC, n.GPUs[i].Unhealthy =
			u.Utilization, u.MemoryUsedMB, u.TemperatureC, u.Unhealthy
	}
	n.UpdatedAt = c.At
	return cloneNode(n), nil
}

func (s *state) setNodeState(c *SetNodeState) (Node, error) {
	n, ok := s.nodes[c.ID]
	if !ok {
		return Node{}, fmt.Errorf("node %s: %w", c.ID, ErrNotFound)
	}
	switch c.State {
	case NodeReady, NodeDown, NodeLeft:
	default:
		return Node{}, fmt.Errorf("node %s: %w: state %q", c.ID, ErrInvalid, c.State)
	}
	n.State = c.State
	n.UpdatedAt = c.At
	return cloneNode(n), nil
}

// keep indexes j in kept when its RunBundle counts toward its tenant's
// storage, and drops it otherwise.
func (s *state) keep(j *Job) {
	if j.RunBundle != nil && !j.BundleExpired {
		if s.kept[j.Tenant] == nil {
			s.kept[j.Tenant] = map[string]*Job{}
		}
		s.kept[j.Tenant][j.ID] = j
		return
	}
	if m := s.kept[j.Tenant]; m != nil {
		delete(m, j.ID)
		if len(m) == 0 {
			delete(s.kept, j.Tenant)
		}
	}
}

func (s *state) sortedJobIDs() []string {
	return slices.Sorted(maps.Keys(s.jobs))
}

// cloneJob deep-copies a job so readers never share memory with the FSM.
func cloneJob(j *Job) Job {
	c := *j
	c.Params = slices.Clone(j.Params)
	if j.Metrics != nil {
		// Metrics hold JSON-decoded values; a round trip is the simplest deep copy.
		b, _ := json.Marshal(j.Metrics)
		c.Metrics = nil
		_ = json.Unmarshal(b, &c.Metrics)
	}
	c.Outputs = maps.Clone(j.Outputs)
	if j.Lease != nil {
		l := *j.Lease
		l.GPUs = slices.Clone(l.GPUs)
		c.Lease = &l
	}
	if j.RunBundle != nil {
		b := *j.RunBundle
		c.RunBundle = &b
	}
	if j.Error != nil {
		e := *j.Error
		c.Error = &e
	}
	return c
}

func cloneNode(n *Node) Node {
	c := *n
	c.GPUs = slices.Clone(n.GPUs)
	c.Executors = slices.Clone(n.Executors)
	return c
}

// jobLess orders the queue: higher priority first, then submission order.
func jobLess(a, b *Job) int {
	if ra, rb := PriorityRank(a.Priority), PriorityRank(b.Priority); ra != rb {
		return rb - ra
	}
	if a.Seq != b.Seq {
		if a.Seq < b.Seq {
			return -1
		}
		return 1
	}
	return strings.Compare(a.ID, b.ID)
}

// DrainNode stops new work on a node: placement and assignment pass it
// over, and what it runs finishes (POST /nodes/{id}/drain).
type DrainNode struct {
	At time.Time `json:"at"`
	ID string    `json:"id"`
	// Undo gives the node jobs again (DELETE /nodes/{id}/drain).
	Undo bool `json:"undo,omitempty"`
}

func (DrainNode) Type() CommandType { return CmdDrainNode }

func (s *state) drainNode(c *DrainNode) (Node, error) {
	n, ok := s.nodes[c.ID]
	if !ok || n.State == NodeLeft {
		return Node{}, fmt.Errorf("node %s: %w", c.ID, ErrNotFound)
	}
	if p := s.scaler.Pending; c.Undo && p != nil && slices.Contains(p.Remove, c.ID) {
		// The scaler is stopping it: a job placed there now would be
		// killed with it.
		return Node{}, fmt.Errorf("node %s: %w: the scaler is removing it (action %d); undrain it once that action has ended", c.ID, ErrConflict, p.ID)
	}
	n.Draining = !c.Undo
	n.UpdatedAt = c.At
	return cloneNode(n), nil
}
