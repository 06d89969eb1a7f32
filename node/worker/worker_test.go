package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/bundle"
	"github.com/pwmesh/pwmesh/cas/fsstore"
	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/node/storage"
	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// The test binary doubles as the child process: the Process executor runs
// it with PWMESH_WORKER_CHILD=1 and "workload run --root DIR" after the
// test flags.
func TestMain(m *testing.M) {
	if os.Getenv("PWMESH_WORKER_CHILD") == "1" {
		args := os.Args
		for i, a := range args {
			if a == "--root" && i+1 < len(args) {
				os.Exit(RunChild(context.Background(), args[i+1], os.Stderr))
			}
		}
		os.Exit(99)
	}
	os.Exit(m.Run())
}

type fixture struct {
	t       testing.TB
	raft    *scheduler.Raft
	fsm     *scheduler.FSM
	store   cas.Store
	worker  *Worker
	cancel  context.CancelFunc
	done    chan struct{}
	ids     int
	mu      sync.Mutex
	writer  *cutWriter
	storage *storage.Storage
}

// newStorage is node n1's real storage, alone in its mesh.
func newStorage(t testing.TB, fsm *scheduler.FSM, w storage.Writer, store cas.Store) *storage.Storage {
	t.Helper()
	keys, err := seal.NewKeyring(seal.DeriveMasterKey("test", []byte("worker test secret")))
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.New(storage.Config{NodeID: "n1", Local: store, Keys: keys}, fsm, w, alone{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// alone is the peers of a node that has none.
type alone struct{}

func (alone) Live() []string { return nil }
func (alone) OpenStream(context.Context, string, string, []byte) (io.ReadCloser, error) {
	return nil, cas.ErrNotFound
}
func (alone) Call(context.Context, string, string, []byte) ([]byte, error) {
	return nil, cas.ErrNotFound
}

// cutWriter is the worker's path to the leader, which a test can cut.
type cutWriter struct {
	*scheduler.Raft
	cut atomic.Bool
}

func (c *cutWriter) Apply(ctx context.Context, cmd scheduler.Command) (any, error) {
	if c.cut.Load() {
		return nil, fmt.Errorf("test: %w", scheduler.ErrNoLeader)
	}
	return c.Raft.Apply(ctx, cmd)
}

// newFixture starts a real one-node Raft, the leader loop, a store and a
// worker whose process executor re-enters this test binary.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, &Process{Binary: os.Args[0], Args: []string{"-test.run=^$"}, Env: []string{"PWMESH_WORKER_CHILD=1"}, KillGrace: time.Second}, 2)
}

// newFixtureWith is newFixture with an executor of the test's; opts
// change the worker's Config.
func newFixtureWith(t testing.TB, exec Executor, slots int, opts ...func(*Config)) *fixture {
	t.Helper()
	r := schedulertest.NewRaft(t)
	store, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, raft: r, fsm: r.FSM(), store: store, done: make(chan struct{}), writer: &cutWriter{Raft: r}}
	st := newStorage(t, f.fsm, f.writer, store)
	f.storage = st
	ttl := 2 * time.Second
	cfg := Config{
		NodeID: "n1", Incarnation: "inc1", Dir: t.TempDir(), LogDir: t.TempDir(), LeaseTTL: ttl, Tick: 50 * time.Millisecond,
		OperatorKey: workload.JobOperatorKey, Version: "test", NewID: f.newID, Storage: st,
	}
	for _, o := range opts {
		o(&cfg)
	}
	w, err := New(cfg, f.fsm, f.writer, st.Store(), exec)
	if err != nil {
		t.Fatal(err)
	}
	f.worker = w
	schedulertest.MustApply(t, r, &scheduler.RegisterNode{At: time.Now(), Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: slots, Incarnation: "inc1", Executors: []string{"process"}}})
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{Hash: "h", Tenant: "acme", Tier: "paid"}})
	l, err := scheduler.NewLeader(scheduler.LeaderConfig{LeaseTTL: ttl, Tick: 50 * time.Millisecond}, f.fsm, r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(ctx) })
	workerCtx, stopWorker := context.WithCancel(context.Background())
	wg.Go(func() {
		_ = w.Run(workerCtx)
		close(f.done)
	})
	t.Cleanup(func() {
		stopWorker()
		<-f.done
		cancel()
		wg.Wait()
	})
	f.cancel = stopWorker
	return f
}

func (f *fixture) newID(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids++
	return fmt.Sprintf("%s%d", prefix, f.ids)
}

func (f *fixture) submit(typ, dataset, params string, timeout time.Duration) string {
	f.t.Helper()
	id := f.newID("job_")
	j := scheduler.Job{ID: id, Tenant: "acme", Type: typ, Dataset: dataset, Priority: "paid", Params: json.RawMessage(params), Timeout: scheduler.Duration(timeout)}
	schedulertest.MustApply(f.t, f.raft, &scheduler.SubmitJob{At: time.Now(), Job: j})
	return id
}

func (f *fixture) wait(id string, cond func(scheduler.Job) bool) scheduler.Job {
	f.t.Helper()
	var j scheduler.Job
	schedulertest.WaitFor(f.t, 2*time.Minute, "job "+id, func() bool {
		j, _ = f.fsm.Job(id)
		return cond(j)
	})
	return j
}

func done(j scheduler.Job) bool { return scheduler.Terminal(j.State) }

// bundle verifies j's RunBundle, opened as a download opens it.
func (f *fixture) bundle(j scheduler.Job) bundle.Report {
	f.t.Helper()
	rep, err := bundle.Verify(bytesOf(f.t, f, j))
	if err != nil {
		f.t.Fatal(err)
	}
	return rep
}

const small = `{"size":16,"seed":1}`

func TestRunsGenerateThenCalibrateWithOperatorCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	gen := f.wait(f.submit("generate_dataset", "", small, time.Minute), done)
	if gen.State != scheduler.StateSucceeded || gen.Attempts != 1 || gen.Outputs["dataset"] == "" {
		t.Fatalf("generate_dataset: %+v error %+v", gen, gen.Error)
	}
	rep := f.bundle(gen)
	if rep.Manifest.Execution.JobID != gen.ID || rep.Manifest.Execution.FencingToken == 0 || rep.Manifest.Execution.Executor != "process" {
		t.Errorf("execution record: %+v", rep.Manifest.Execution)
	}
	if gen.Metrics["operator_cache"] != "miss" {
		t.Errorf("first job operator_cache = %v, want miss", gen.Metrics["operator_cache"])
	}
	ds, ok := f.fsm.Dataset(gen.Outputs["dataset"])
	if !ok || ds.Tenant != "acme" || ds.Job != gen.ID {
		t.Fatalf("generated dataset: %+v", ds)
	}
	cal := f.wait(f.submit("calibrate_and_reconstruct", ds.ID, `{"iterations":20}`, time.Minute), done)
	if cal.State != scheduler.StateSucceeded {
		t.Fatalf("calibrate_and_reconstruct: %+v", cal)
	}
	if cal.Metrics["operator_cache"] != "hit" {
		t.Errorf("second job operator_cache = %v, want hit (the first built it)", cal.Metrics["operator_cache"])
	}
	if _, err := bundle.ReadFile(bytesOf(t, f, cal), "x_hat.npy"); err != nil {
		t.Errorf("bundle lacks x_hat.npy: %v", err)
	}
	log, err := f.worker.OpenLog(cal.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(log)
	log.Close()
	if !bytes.Contains(b, []byte("attempt 1")) {
		t.Errorf("job log lacks the attempt header:\n%s", b)
	}
}

// bytesOf is j's RunBundle as its tenant downloads it: the plain tar,
// whose SHA-256 and size the job names.
func bytesOf(t testing.TB, f *fixture, j scheduler.Job) io.Reader {
	t.Helper()
	rc, err := f.storage.OpenBundle(context.Background(), j.Tenant, *j.RunBundle)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if ref := cas.SumBytes(b); ref.SHA256 != j.RunBundle.SHA256 || ref.Size != j.RunBundle.Size {
		t.Fatalf("bundle of %s opens to sha256 %s size %d; the job says %s size %d", j.ID, ref.SHA256, ref.Size, j.RunBundle.SHA256, j.RunBundle.Size)
	}
	// The worker's disk holds it sealed: no tar header, no manifest.
	c, err := cas.ParseCID(j.RunBundle.CID)
	if err != nil {
		t.Fatal(err)
	}
	file, err := f.store.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if raw, _ := io.ReadAll(file); bytes.Contains(raw, []byte(bundle.ManifestName)) || bytes.Contains(raw, []byte("ustar")) {
		t.Fatalf("the store keeps the bundle of %s in clear", j.ID)
	}
	return bytes.NewReader(b)
}

func TestInvalidParamsFailWithReason(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	j := f.wait(f.submit("generate_dataset", "", `{"size":3}`, time.Minute), done)
	if j.State != scheduler.StateFailed || j.Error == nil || j.Error.Code != "invalid_input" {
		t.Fatalf("got %+v error %+v", j, j.Error)
	}
}

// slowJob submits a calibrate_and_reconstruct that runs for minutes on a
// freshly generated 64×64 dataset.
func (f *fixture) slowJob(timeout time.Duration) string {
	f.t.Helper()
	gen := f.wait(f.submit("generate_dataset", "", `{"size":64,"seed":2}`, time.Minute), done)
	if gen.State != scheduler.StateSucceeded {
		f.t.Fatalf("generate_dataset: %+v %+v", gen, gen.Error)
	}
	return f.submit("calibrate_and_reconstruct", gen.Outputs["dataset"], `{"iterations":2000}`, timeout)
}

func TestCancelStopsRunningJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.slowJob(time.Hour)
	f.wait(id, func(j scheduler.Job) bool { return j.State == scheduler.StateRunning })
	schedulertest.WaitFor(t, time.Minute, "the child to start", func() bool { return f.worker.Running() == 1 })
	schedulertest.MustApply(t, f.raft, &scheduler.CancelJob{At: time.Now(), Tenant: "acme", JobID: id})
	j := f.wait(id, done)
	if j.State != scheduler.StateCancelled {
		t.Fatalf("state %s, want cancelled", j.State)
	}
	schedulertest.WaitFor(t, time.Minute, "the worker to forget the job", func() bool { return f.worker.Running() == 0 })
}

func TestTimeoutStopsJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	j := f.wait(f.slowJob(300*time.Millisecond), done)
	if j.State != scheduler.StateTimedOut || j.Error == nil || j.Error.Code != "timed_out" {
		t.Fatalf("got %+v error %+v", j, j.Error)
	}
}

func TestLostLeaseStopsRunnerAndRefusesItsResult(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.slowJob(time.Hour)
	j := f.wait(id, func(j scheduler.Job) bool { return j.State == scheduler.StateRunning })
	schedulertest.WaitFor(t, time.Minute, "the child to start", func() bool { return f.worker.Running() == 1 })
	// The leader hands the job back (as if the node had been cut off); the
	// worker must stop its stale run, and a result with the old token is refused.
	schedulertest.MustApply(t, f.raft, &scheduler.RequeueJob{At: time.Now(), JobID: id, Token: j.Lease.Token, Reason: "test"})
	old := j.Lease.Token
	j2 := f.wait(id, func(j scheduler.Job) bool {
		return j.State == scheduler.StateRunning && j.Lease.Token != old && j.Attempts == 2
	})
	if _, err := f.raft.Apply(context.Background(), &scheduler.CompleteJob{At: time.Now(), JobID: id, Token: j.Lease.Token, State: scheduler.StateSucceeded}); !errors.Is(err, scheduler.ErrStaleToken) {
		t.Fatalf("stale completion: %v, want ErrStaleToken", err)
	}
	if j2.Lease.Token == j.Lease.Token {
		t.Fatal("new attempt kept the old token")
	}
	schedulertest.MustApply(t, f.raft, &scheduler.CancelJob{At: time.Now(), Tenant: "acme", JobID: id})
	if j := f.wait(id, done); j.State != scheduler.StateCancelled {
		t.Fatalf("state %s", j.State)
	}
}

func TestShutdownHandsJobsBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.slowJob(time.Hour)
	f.wait(id, func(j scheduler.Job) bool { return j.State == scheduler.StateRunning })
	schedulertest.WaitFor(t, time.Minute, "the child to start", func() bool { return f.worker.Running() == 1 })
	f.cancel() // stop the worker only; Raft and the leader loop go on
	<-f.done
	// The hand-back is committed before Run returns: the job is queued
	// again, or already leased anew (the leader loop still runs).
	j, _ := f.fsm.Job(id)
	requeued := j.State == scheduler.StateQueued && j.Attempts == 1 && j.Reason != ""
	reassigned := j.State == scheduler.StateRunning && j.Attempts == 2
	if !requeued && !reassigned {
		t.Fatalf("job after hand-back: %+v", j)
	}
}

// A runner cut off from the leader stops its job before its lease could be
// given to another node, and reports nothing.
func TestRunnerThatCannotRenewStopsItsJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.slowJob(time.Hour)
	j := f.wait(id, func(j scheduler.Job) bool { return j.State == scheduler.StateRunning })
	schedulertest.WaitFor(t, time.Minute, "the child to start", func() bool { return f.worker.Running() == 1 })
	f.writer.cut.Store(true)
	schedulertest.WaitFor(t, time.Minute, "the cut-off run to stop", func() bool { return f.worker.Running() == 0 })
	// Nothing was reported for the stopped run: the job is still the
	// leader's to requeue (or already requeued), never finished by it.
	if now, _ := f.fsm.Job(id); scheduler.Terminal(now.State) {
		t.Fatalf("cut-off run finished the job: %+v", now)
	}
	_ = j
	f.writer.cut.Store(false)
	schedulertest.MustApply(t, f.raft, &scheduler.CancelJob{At: time.Now(), Tenant: "acme", JobID: id})
}

// A lease that has already run out (a replica catching up after a cut) is
// never started: the leader has taken the job back or will.
func TestExpiredLeaseIsNotStarted(t *testing.T) {
	t.Parallel()
	r := schedulertest.NewRaft(t)
	store, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{NodeID: "n1", Incarnation: "inc1", Dir: t.TempDir(), LogDir: t.TempDir(), NewID: func(p string) string { return p + "x" },
		Storage: newStorage(t, r.FSM(), r, store)}, r.FSM(), r, store, noop{})
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	schedulertest.MustApply(t, r, &scheduler.RegisterNode{At: past, Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: 1, Incarnation: "inc1"}})
	schedulertest.MustApply(t, r, &scheduler.SubmitJob{At: past, Job: scheduler.Job{ID: "j1", Tenant: "acme", Type: "calibrate", Priority: "paid", Timeout: scheduler.Duration(time.Hour)}})
	schedulertest.MustApply(t, r, &scheduler.AssignJob{At: past, JobID: "j1", Node: "n1", Incarnation: "inc1", ExpiresAt: past.Add(time.Second)})
	w.reconcile(context.Background())
	if n := w.Running(); n != 0 {
		t.Fatalf("started %d run(s) of an expired lease", n)
	}
}
