package scheduler

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ApplyResult is what FSM.Apply returns through raft's ApplyFuture.Response.
type ApplyResult struct {
	Value any
	Err   error
}

// FSM is the replicated state machine. Apply is deterministic: it reads only
// the log entry. Reads take a consistent copy under a read lock.
type FSM struct {
	log       *slog.Logger
	mu        sync.RWMutex
	s         *state
	lastIndex uint64
	changed   chan struct{} // closed and replaced on every apply

	// placeGen counts applied changes that can change placement; the plan
	// cached at planGen is reused until it moves (lease renewals, keys,
	// datasets and the operator index leave it alone).
	placeGen uint64
	planMu   sync.Mutex // guards plan and planGen
	planGen  uint64
	planAt   string // the month (UTC) the cached plan's quotas were read in
	plan     *Plan

	// now is the reader's clock: placement's view of quotas (which
	// month's GPU-minutes a queued job waits for) reads it; Apply never
	// does.
	now func() time.Time
}

// FSMOption configures an FSM.
type FSMOption func(*FSM)

// WithLogger sets where the FSM logs what it skips (default: nowhere).
func WithLogger(l *slog.Logger) FSMOption {
	return func(f *FSM) {
		if l != nil {
			f.log = l
		}
	}
}

// WithClock sets the clock reads use (default: the system's, UTC).
func WithClock(now func() time.Time) FSMOption {
	return func(f *FSM) {
		if now != nil {
			f.now = now
		}
	}
}

// NewFSM returns an empty state machine.
func NewFSM(opts ...FSMOption) *FSM {
	f := &FSM{s: newState(), changed: make(chan struct{}), log: slog.New(slog.DiscardHandler),
		now: func() time.Time { return time.Now().UTC() }}
	for _, o := range opts {
		o(f)
	}
	return f
}

var _ raft.FSM = (*FSM)(nil)

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := Decode(l.Data)
	if err != nil {
		if len(l.Data) > 0 && CommandType(l.Data[0]).Ignorable() && errors.Is(err, ErrUnknownCmd) {
			// A newer version's command marked safe to skip (a rolling
			// upgrade): it changes nothing here.
			f.log.Warn("scheduler: skipping an unknown ignorable command", "index", l.Index, "type", l.Data[0])
			f.mu.Lock()
			f.lastIndex = l.Index
			f.mu.Unlock()
			return ApplyResult{Err: err}
		}
		// A log entry no version of this FSM understands must not be
		// skipped silently: replicas would diverge.
		panic(fmt.Sprintf("scheduler: fsm: entry %d: %v", l.Index, err))
	}
	f.mu.Lock()
	v, err := f.s.apply(l.Index, c)
	f.lastIndex = l.Index
	if err != nil {
		// A refused command changed nothing: waking watchers would only
		// make a leader loop retry it at once, in a tight loop.
		f.mu.Unlock()
		return ApplyResult{Value: v, Err: err}
	}
	if affectsPlacement(c.Type()) {
		f.placeGen++
	}
	ch := f.changed
	f.changed = make(chan struct{})
	f.mu.Unlock()
	close(ch)
	return ApplyResult{Value: v, Err: err}
}

// Watch returns a channel closed at the next entry that changes the state.
func (f *FSM) Watch() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// LastIndex is the index of the last applied entry.
func (f *FSM) LastIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastIndex
}

// Job returns a copy of one job, with queue position and reason filled in
// while it is queued.
func (f *FSM) Job(id string) (Job, bool) {
	f.mu.RLock()
	j, ok := f.s.jobs[id]
	var c Job
	if ok {
		c = cloneJob(j)
	}
	f.mu.RUnlock()
	if !ok {
		return Job{}, false
	}
	f.annotate(&c)
	return c, true
}

// JobFilter selects jobs for listing.
type JobFilter struct {
	Tenant string
	State  string
	Type   string
	Node   string
	After  uint64 // cursor: only jobs with Seq > After
	Limit  int
}

// Jobs lists jobs in submission order. The cursor for the next page is the
// Seq of the last job returned, or 0 when there is no more.
func (f *FSM) Jobs(q JobFilter) ([]Job, uint64) {
	out, next := f.jobs(q)
	for i := range out {
		f.annotate(&out[i])
	}
	return out, next
}

func (f *FSM) jobs(q JobFilter) ([]Job, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	all := make([]*Job, 0, len(f.s.jobs))
	for _, j := range f.s.jobs {
		if (q.Tenant == "" || j.Tenant == q.Tenant) && (q.State == "" || j.State == q.State) &&
			(q.Type == "" || j.Type == q.Type) && (q.Node == "" || j.Node == q.Node) && j.Seq > q.After {
			all = append(all, j)
		}
	}
	slices.SortFunc(all, func(a, b *Job) int {
		if a.Seq != b.Seq {
			if a.Seq < b.Seq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	var next uint64
	if q.Limit > 0 && len(all) > q.Limit {
		all = all[:q.Limit]
		next = all[len(all)-1].Seq
	}
	out := make([]Job, len(all))
	for i, j := range all {
		out[i] = cloneJob(j)
	}
	return out, next
}

// annotate fills the derived fields of a queued job from the current plan.
func (f *FSM) annotate(j *Job) {
	if j.State != StateQueued {
		j.QueuePosition = 0
		return
	}
	p := f.currentPlan()
	j.QueuePosition = p.Positions[j.ID]
	if r, ok := p.Reasons[j.ID]; ok {
		j.Reason = r
	} else if j.Reason == "" {
		j.Reason = "about to start"
	}
}

// currentPlan returns placement over the current state, computed at most
// once per change that placement reads. It is computed outside the state's
// lock, so that readers never hold up Raft's applies.
func (f *FSM) currentPlan() *Plan {
	f.mu.RLock()
	gen := f.placeGen
	f.mu.RUnlock()
	f.planMu.Lock()
	defer f.planMu.Unlock()
	month := f.now().UTC().Format(monthLayout)
	if f.plan != nil && f.planGen == gen && f.planAt == month {
		return f.plan
	}
	f.mu.RLock()
	in, gen := f.placeInputLocked(), f.placeGen
	f.mu.RUnlock()
	p := Place(in)
	f.plan, f.planGen, f.planAt = &p, gen, month
	return f.plan
}

func (f *FSM) placeInputLocked() PlaceInput {
	var in PlaceInput
	now, left := f.now(), gpuLeftCache{}
	for _, n := range f.s.nodes {
		in.Nodes = append(in.Nodes, cloneNode(n))
	}
	for _, id := range slices.Sorted(maps.Keys(f.s.live)) {
		j := f.s.live[id]
		switch j.State {
		case StateRunning:
			in.Running = append(in.Running, cloneJob(j))
		case StateQueued:
			in.Queued = append(in.Queued, cloneJob(j))
			if why := f.s.quotaBlocked(j, now, left); why != "" {
				if in.Blocked == nil {
					in.Blocked = map[string]string{}
				}
				in.Blocked[j.ID] = why
			}
		}
	}
	for name, t := range f.s.tenants {
		if t.Pool != "" {
			if in.Pools == nil {
				in.Pools = map[string]TenantPool{}
			}
			in.Pools[name] = TenantPool{Pool: t.Pool, Only: t.PoolOnly}
		}
	}
	QueueOrder(in.Queued)
	return in
}

// PlaceInput returns a snapshot for placement.
func (f *FSM) PlaceInput() PlaceInput {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.placeInputLocked()
}

// Tenant returns a tenant.
func (f *FSM) Tenant(name string) (Tenant, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.s.tenants[name]
	if !ok {
		return Tenant{}, false
	}
	return cloneTenant(t), true
}

// Dataset returns a dataset.
func (f *FSM) Dataset(id string) (Dataset, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	d, ok := f.s.datasets[id]
	if !ok {
		return Dataset{}, false
	}
	return *d, true
}

// Datasets lists a tenant's datasets by creation time, then ID.
func (f *FSM) Datasets(tenant string) []Dataset {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []Dataset
	for _, d := range f.s.datasets {
		if tenant == "" || d.Tenant == tenant {
			out = append(out, *d)
		}
	}
	slices.SortFunc(out, func(a, b Dataset) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Nodes lists registered nodes by ID.
func (f *FSM) Nodes() []Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Node, 0, len(f.s.nodes))
	for _, id := range slices.Sorted(maps.Keys(f.s.nodes)) {
		out = append(out, cloneNode(f.s.nodes[id]))
	}
	return out
}

// Node returns one node.
func (f *FSM) Node(id string) (Node, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n, ok := f.s.nodes[id]
	if !ok {
		return Node{}, false
	}
	return cloneNode(n), true
}

// Operator looks up the compiled-operator index.
func (f *FSM) Operator(key string) (BundleRef, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.s.operators[key]
	return r, ok
}

// References lists every CID the state refers to (datasets, bundles,
// operators): what the store must keep.
func (f *FSM) References() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Sorted(maps.Keys(f.s.references()))
}

// Snapshot record types: numbered, never reused.
const (
	recTenant    byte = 1
	recKey       byte = 2
	recDataset   byte = 3
	recJob       byte = 4
	recNode      byte = 5
	recOperator  byte = 6
	recIdem      byte = 7
	recBlob      byte = 8
	recTombstone byte = 9
	recConfig    byte = 10
	recPruned    byte = 11 // prunedUsageRecord: read from old snapshots only
	recUsage     byte = 12 // Usage
	recDaily     byte = 13 // dailyRecord
	recMeter     byte = 14 // meterMark
	recLedger    byte = 15 // marks a snapshot made with the usage ledger
	recScaler    byte = 16 // ScalerState
)

type tombstoneRecord struct {
	CID string    `json:"cid"`
	At  time.Time `json:"at"`
}

type idemRecord struct {
	Key  string    `json:"key"`
	Job  string    `json:"job"`
	Hash string    `json:"hash,omitempty"`
	At   time.Time `json:"at,omitzero"`
}

// Snapshot implements raft.FSM: it copies the state under the lock and
// writes it later, off the apply path.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var recs []record
	add := func(t byte, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			panic(fmt.Sprintf("scheduler: snapshot: %v", err)) // plain structs always marshal
		}
		recs = append(recs, record{t, b})
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.tenants)) {
		add(recTenant, f.s.tenants[k])
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.keys)) {
		add(recKey, f.s.keys[k])
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.datasets)) {
		add(recDataset, f.s.datasets[k])
	}
	for _, k := range f.s.sortedJobIDs() {
		add(recJob, f.s.jobs[k])
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.nodes)) {
		add(recNode, f.s.nodes[k])
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.operators)) {
		add(recOperator, OperatorEntry{Key: k, Ref: f.s.operators[k], Tenant: f.s.operatorTenant[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.idem)) {
		e := f.s.idem[k]
		add(recIdem, idemRecord{Key: k, Job: e.Job, Hash: e.Hash, At: e.At})
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.blobs)) {
		add(recBlob, f.s.blobs[k])
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.tombstones)) {
		add(recTombstone, tombstoneRecord{CID: k, At: f.s.tombstones[k]})
	}
	add(recConfig, f.s.config)
	add(recLedger, struct{}{})
	for _, r := range f.s.usageRecords() {
		add(recUsage, r)
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.daily)) {
		add(recDaily, dailyRecord{Key: k, Calls: f.s.daily[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(f.s.meters)) {
		add(recMeter, f.s.meters[k])
	}
	add(recScaler, f.s.scaler)
	return &snapshot{recs: recs}, nil
}

type record struct {
	typ  byte
	body []byte
}

type snapshot struct{ recs []record }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriter(sink)
	var hdr [5]byte
	for _, r := range s.recs {
		hdr[0] = r.typ
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(r.body)))
		if _, err := w.Write(hdr[:]); err != nil {
			sink.Cancel()
			return fmt.Errorf("scheduler: snapshot: %w", err)
		}
		if _, err := w.Write(r.body); err != nil {
			sink.Cancel()
			return fmt.Errorf("scheduler: snapshot: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		sink.Cancel()
		return fmt.Errorf("scheduler: snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

// maxRecord bounds one snapshot record so a corrupt length cannot allocate
// without limit.
const maxRecord = 64 << 20

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s := newState()
	r := bufio.NewReader(rc)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("scheduler: restore: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > maxRecord {
			return fmt.Errorf("scheduler: restore: record of %d bytes", n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("scheduler: restore: %w", err)
		}
		if err := s.restoreRecord(hdr[0], body); err != nil {
			return fmt.Errorf("scheduler: restore: %w", err)
		}
	}
	if !s.hasLedger {
		s.backfillUsage()
	}
	f.mu.Lock()
	f.s = s
	f.placeGen++
	ch := f.changed
	f.changed = make(chan struct{})
	f.mu.Unlock()
	close(ch)
	return nil
}

func (s *state) restoreRecord(t byte, b []byte) error {
	switch t {
	case recTenant:
		var v Tenant
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.tenants[v.Name] = &v
	case recKey:
		var v APIKey
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.putKey(&v)
	case recDataset:
		var v Dataset
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.datasets[v.ID] = &v
	case recJob:
		var v Job
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.jobs[v.ID] = &v
		if !Terminal(v.State) {
			s.live[v.ID] = &v
		}
		s.keep(&v)
	case recNode:
		var v Node
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.nodes[v.ID] = &v
	case recOperator:
		var v OperatorEntry
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.operators[v.Key] = v.Ref
		if v.Tenant != "" {
			s.operatorTenant[v.Key] = v.Tenant
		}
	case recIdem:
		var v idemRecord
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.idem[v.Key] = idemEntry{Job: v.Job, Hash: v.Hash, At: v.At}
	case recBlob:
		var v Blob
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.blobs[v.CID] = &v
	case recTombstone:
		var v tombstoneRecord
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.tombstones[v.CID] = v.At
	case recConfig:
		if err := json.Unmarshal(b, &s.config); err != nil {
			return err
		}
	case recPruned:
		var v prunedUsageRecord
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.prunedUsage[v.Tenant+"\x00"+v.Month] = v.GPUTime
	case recUsage:
		var v Usage
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.usage[v.Tenant+"\x00"+v.Month] = &v
	case recLedger:
		s.hasLedger = true
	case recDaily:
		var v dailyRecord
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.daily[v.Key] = v.Calls
	case recMeter:
		var v meterMark
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		s.meters[v.Node] = v
	case recScaler:
		if err := json.Unmarshal(b, &s.scaler); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown record type %d", t)
	}
	return nil
}
