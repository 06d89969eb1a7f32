package scheduler

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind. Raft stops all of
// its goroutines in Shutdown, so nothing needs to be ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fixed start of every test's time line.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// waitFor polls cond until it holds or the deadline passes. It is the only
// way tests wait for asynchronous work.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// fakeClock is a Clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// harness drives an FSM directly with raft log entries built from Encode,
// numbering them as Raft would, and keeps the log for replays.
type harness struct {
	tb  testing.TB
	f   *FSM
	idx uint64
	log []*raft.Log
}

func newHarness(tb testing.TB) *harness {
	return &harness{tb: tb, f: NewFSM()}
}

// apply commits one command at the next index.
func (h *harness) apply(c Command) (any, error) {
	h.tb.Helper()
	b, err := Encode(c)
	if err != nil {
		h.tb.Fatalf("encode %s: %v", c.Type(), err)
	}
	h.idx++
	l := &raft.Log{Index: h.idx, Term: 1, Type: raft.LogCommand, Data: b}
	h.log = append(h.log, l)
	res, ok := h.f.Apply(l).(ApplyResult)
	if !ok {
		h.tb.Fatalf("apply %s: response is not an ApplyResult", c.Type())
	}
	return res.Value, res.Err
}

// must applies c and fails the test if the FSM refuses it.
func (h *harness) must(c Command) any {
	h.tb.Helper()
	v, err := h.apply(c)
	if err != nil {
		h.tb.Fatalf("apply %s: %v", c.Type(), err)
	}
	return v
}

func (h *harness) job(id string) Job {
	h.tb.Helper()
	j, ok := h.f.Job(id)
	if !ok {
		h.tb.Fatalf("job %s not found", id)
	}
	return j
}

// Fixture commands.

func keyCmd(hash, tenant, tier string) *CreateKey {
	return &CreateKey{At: t0, Key: APIKey{Hash: hash, Prefix: hash[:2], Tenant: tenant, Tier: tier}}
}

func datasetCmd(id, tenant string) *RegisterDataset {
	return &RegisterDataset{At: t0, Dataset: Dataset{ID: id, Tenant: tenant, Name: id + ".npz", CID: "cid-" + id, SHA256: "sha-" + id, Size: 1024, CreatedAt: t0}}
}

// storeNode holds the fixture's content: a ready node with nothing to run.
const storeNode = "store"

// storedCmds make cid durable: a store node's copy and the mirror's.
func storedCmds(cid string) []Command {
	return []Command{
		&RegisterNode{At: t0, Node: Node{ID: storeNode, Region: "eu", Incarnation: "i0"}},
		&BlobStored{At: t0, CID: cid, Size: 1024, Kind: BlobDataset, Node: storeNode},
		&BlobMirrored{At: t0, CID: cid},
	}
}

// stored applies storedCmds(cid), tolerating a store node already there.
func (h *harness) stored(cid string) {
	h.tb.Helper()
	for _, c := range storedCmds(cid) {
		if _, err := h.apply(c); err != nil && !errors.Is(err, ErrConflict) {
			h.tb.Fatalf("store %s: %v", cid, err)
		}
	}
}

func nodeCmd(id, inc string, slots int, gpus ...GPU) *RegisterNode {
	return &RegisterNode{At: t0, Node: Node{ID: id, Region: "eu", Incarnation: inc, Slots: slots, GPUs: gpus, Executors: []string{"builtin", "docker"}}}
}

func a100s(n int) []GPU {
	out := make([]GPU, n)
	for i := range out {
		out[i] = GPU{Index: i, UUID: "GPU-a100-" + string(rune('a'+i)), Model: "NVIDIA A100-SXM4-40GB", MemoryMB: 40960}
	}
	return out
}

func submitCmd(id, tenant, prio, dataset string, gpus int) *SubmitJob {
	return &SubmitJob{At: t0, Job: Job{ID: id, Tenant: tenant, Type: "reconstruct", Priority: prio, Dataset: dataset,
		Params: []byte(`{"iters":10}`), Resources: Resources{GPUs: gpus}}}
}

// base sets up tenant acme (paid, dataset ds1), tenant other (free, dataset
// ds-other) and node n1 (2 A100s, 2 CPU slots, incarnation i1).
func (h *harness) base() {
	h.tb.Helper()
	h.must(keyCmd("hash-acme", "acme", PriorityPaid))
	h.must(keyCmd("hash-other", "other", PriorityFree))
	h.must(nodeCmd("n1", "i1", 2, a100s(2)...))
	// Content the fixtures' datasets and completions name.
	for _, c := range []string{"cid-ds1", "cid-ds-other", "b", "bcid", "cid-gen"} {
		h.stored(c)
	}
	h.must(datasetCmd("ds1", "acme"))
	h.must(datasetCmd("ds-other", "other"))
}

// running submits job id for acme and assigns it to n1, returning its token.
func (h *harness) running(id string, gpus ...int) uint64 {
	h.tb.Helper()
	h.must(submitCmd(id, "acme", PriorityPaid, "ds1", len(gpus)))
	h.must(&AssignJob{At: t0, JobID: id, Node: "n1", Incarnation: "i1", GPUs: gpus, ExpiresAt: t0.Add(15 * time.Second)})
	return h.job(id).Lease.Token
}

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

// snapshotBytes persists f's snapshot and returns the stream.
func snapshotBytes(tb testing.TB, f *FSM) []byte {
	tb.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		tb.Fatalf("snapshot: %v", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		tb.Fatalf("persist: %v", err)
	}
	return sink.Bytes()
}

func wantErr(tb testing.TB, got, want error) {
	tb.Helper()
	switch {
	case want == nil && got != nil:
		tb.Fatalf("unexpected error: %v", got)
	case want != nil && !errors.Is(got, want):
		tb.Fatalf("error = %v, want %v", got, want)
	}
}
