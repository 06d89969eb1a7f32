package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/bundle"
	"github.com/pwmesh/pwmesh/scheduler"
)

// State is what the worker reads of the replicated state.
type State interface {
	Jobs(q scheduler.JobFilter) ([]scheduler.Job, uint64)
	Job(id string) (scheduler.Job, bool)
	Dataset(id string) (scheduler.Dataset, bool)
	Tenant(name string) (scheduler.Tenant, bool)
	Operator(key string) (scheduler.BundleRef, bool)
	Node(id string) (scheduler.Node, bool)
	Watch() <-chan struct{}
}

// Writer commits commands (forwarded to the leader).
type Writer interface {
	Apply(ctx context.Context, c scheduler.Command) (any, error)
}

// Storage keeps content durable and seals datasets (node/storage).
type Storage interface {
	// Keep records this node's copy of ref and has it copied until the
	// replicated state counts it durable.
	Keep(ctx context.Context, ref cas.Ref, kind string) error
	// PutDataset seals, stores and keeps a tenant's dataset.
	PutDataset(ctx context.Context, tenant string, r io.Reader) (scheduler.Dataset, error)
	// OpenDataset returns a dataset's plaintext.
	OpenDataset(ctx context.Context, d scheduler.Dataset) (io.ReadSeekCloser, error)
	// PutBundle seals a tenant's RunBundle (r yields the plain tar) and
	// stores it on this node's disk; Keep(stored) makes it durable. The
	// reference names the stored object and the plain tar's SHA-256 and
	// size.
	PutBundle(ctx context.Context, tenant string, r io.Reader) (b scheduler.BundleRef, stored cas.Ref, err error)
}

// keepTimeout bounds the wait for a result's copies: past it the job fails
// rather than succeed with a result one disk failure could lose.
const keepTimeout = 10 * time.Minute

// OperatorKeyFunc names the compiled operator a job will use, or "" when it
// uses none; dataset is the job's input dataset (nil for none).
type OperatorKeyFunc func(jobType string, params json.RawMessage, dataset []byte) (string, error)

// Config configures a Worker.
type Config struct {
	NodeID      string // required
	Incarnation string // required: this process's identity in leases
	Dir         string // required: job directories live here
	LogDir      string // required: one <job id>.log per job, kept
	// LeaseTTL is the scheduler's lease length; the lease is renewed every
	// third of it (default 9 s).
	LeaseTTL time.Duration
	// MaxOutputBytes bounds what one job may leave in output/ and export/
	// together, in bytes (default 4 GiB): more fails the job with
	// "output_too_large" and nothing of it is stored.
	MaxOutputBytes int64
	// Images says which images jobs may name, by tier (zero value: only
	// the built-in workload).
	Images ImagePolicy
	// FetchPatience is how long a job's input that no reachable node holds
	// is waited for before the job fails (default 1 min).
	FetchPatience time.Duration
	// KeepJobDirs leaves job directories in place for debugging.
	KeepJobDirs bool
	// Tick is how often the worker looks at the state without a change
	// notification (default 1 s).
	Tick time.Duration
	// OperatorKey enables the compiled-operator cache (nil: no cache).
	OperatorKey OperatorKeyFunc
	// Version and Commit go into each bundle's provenance.
	Version, Commit string
	Clock           scheduler.Clock
	Logger          *slog.Logger
	NewID           func(prefix string) string // required
	Storage         Storage                    // required
	// Finished, when set, is told of each run whose completion the leader
	// accepted: the job as leased, its outcome and how long it ran.
	Finished func(j scheduler.Job, state string, ran time.Duration)
}

// Reasons a run is stopped; they decide what is reported.
var (
	errGPUFailed = errors.New("GPU out of service")
	errLeaseLost = errors.New("lease lost")
	errCancelled = errors.New("cancelled by request")
	errShutdown  = errors.New("node shutting down")
)

type run struct {
	token  uint64
	gpus   []int // the lease's GPU indices
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// Worker runs the jobs leased to this node.
type Worker struct {
	cfg   Config
	state State
	w     Writer
	store cas.Store
	exec  Executor

	mu      sync.Mutex
	running map[string]*run
	// ended holds the token of each run that ended here while this node's
	// replica may still show it leased: the run is not started again.
	ended map[string]uint64
	wg    sync.WaitGroup
	poke  chan struct{}
}

// New validates cfg and returns a worker ready to Run.
func New(cfg Config, state State, w Writer, store cas.Store, exec Executor) (*Worker, error) {
	if cfg.NodeID == "" || cfg.Incarnation == "" || cfg.Dir == "" || cfg.LogDir == "" || cfg.NewID == nil || cfg.Storage == nil {
		return nil, errors.New("worker: NodeID, Incarnation, Dir, LogDir, NewID and Storage are required")
	}
	if state == nil || w == nil || store == nil || exec == nil {
		return nil, errors.New("worker: state, writer, store and executor are required")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 9 * time.Second
	}
	if cfg.MaxOutputBytes <= 0 {
		cfg.MaxOutputBytes = 4 << 30
	}
	if cfg.FetchPatience <= 0 {
		cfg.FetchPatience = time.Minute
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = scheduler.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{cfg: cfg, state: state, w: w, store: store, exec: exec,
		running: map[string]*run{}, ended: map[string]uint64{}, poke: make(chan struct{}, 1)}, nil
}

// Executor returns the executor's name.
func (w *Worker) Executor() string { return w.exec.Name() }

// networker is an executor that can put a task on a network.
type networker interface {
	// GrantsNetwork reports whether a task that asks for network gets it.
	GrantsNetwork() bool
}

// GrantsNetwork reports whether this worker's executor gives a job that
// asks for network (Task.Network) a network: the node advertises it, and
// placement sends such jobs only to nodes that do.
func (w *Worker) GrantsNetwork() bool {
	n, ok := w.exec.(networker)
	return ok && n.GrantsNetwork()
}

// Running is the number of jobs running here now.
func (w *Worker) Running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// Run starts and stops jobs as the state says until ctx ends; then it stops
// every running job, hands each back to the queue (unless ctx's cause is
// ErrAbandon) and waits for them.
func (w *Worker) Run(ctx context.Context) error {
	// Job directories left by an earlier life of this node (a crash) go:
	// no job runs here yet.
	if err := os.RemoveAll(w.cfg.Dir); err != nil {
		return fmt.Errorf("worker: clean %s: %w", w.cfg.Dir, err)
	}
	if err := os.MkdirAll(w.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if err := os.MkdirAll(w.cfg.LogDir, 0o700); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	t := time.NewTicker(w.cfg.Tick)
	defer t.Stop()
	for {
		changed := w.state.Watch()
		w.reconcile(ctx)
		select {
		case <-ctx.Done():
			w.stopAll(context.Cause(ctx))
			return nil
		case <-changed:
		case <-w.poke:
		case <-t.C:
		}
	}
}

// gpuIDs names the lease's GPUs for the executor by UUID (GPU-… or, for a
// MIG slice, MIG-…), which CUDA and the NVIDIA container runtime accept and
// which, unlike an index, cannot point at another device; an index stands in
// for a GPU without a UUID.
func (w *Worker) gpuIDs(j scheduler.Job) []string {
	if j.Lease == nil || len(j.Lease.GPUs) == 0 {
		return nil
	}
	n, _ := w.state.Node(w.cfg.NodeID)
	out := make([]string, 0, len(j.Lease.GPUs))
	for _, g := range j.Lease.GPUs {
		id := fmt.Sprint(g)
		for _, d := range n.GPUs {
			if d.Index == g && d.UUID != "" {
				id = d.UUID
			}
		}
		out = append(out, id)
	}
	return out
}

// StopForGPU stops the running jobs that hold GPU index and hands them back
// to the queue once their processes are gone (the GPU failed). It returns
// how many it stopped.
func (w *Worker) StopForGPU(index int, problem string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for id, r := range w.running {
		if slices.Contains(r.gpus, index) {
			w.cfg.Logger.Warn("worker: stopping a job: its GPU failed", "job_id", id, "gpu", index, "problem", problem)
			r.cancel(fmt.Errorf("GPU %d failed (%s): %w", index, problem, errGPUFailed))
			n++
		}
	}
	return n
}

// ErrAbandon, as the cause of Run's context, makes the worker stop its jobs
// without handing them back, as a crash would (tests use it); the leader
// requeues them when their lease runs out.
var ErrAbandon = errors.New("worker: abandon jobs")

func (w *Worker) stopAll(cause error) {
	why := errShutdown
	if errors.Is(cause, ErrAbandon) {
		why = errLeaseLost
	}
	w.mu.Lock()
	for _, r := range w.running {
		r.cancel(why)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *Worker) reconcile(ctx context.Context) {
	jobs, _ := w.state.Jobs(scheduler.JobFilter{State: scheduler.StateRunning, Node: w.cfg.NodeID})
	mine := map[string]scheduler.Job{}
	for _, j := range jobs {
		if j.Lease != nil && j.Lease.Node == w.cfg.NodeID && j.Lease.Incarnation == w.cfg.Incarnation {
			mine[j.ID] = j
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, r := range w.running {
		j, ok := mine[id]
		switch {
		case !ok || j.Lease.Token != r.token:
			r.cancel(errLeaseLost)
		case j.CancelRequested:
			r.cancel(errCancelled)
		}
	}
	for id, token := range w.ended {
		if j, ok := mine[id]; !ok || j.Lease.Token != token {
			delete(w.ended, id)
		}
	}
	if ctx.Err() != nil {
		return
	}
	for _, id := range slices.Sorted(maps.Keys(mine)) {
		if _, ok := w.running[id]; ok {
			continue
		}
		j := mine[id]
		if w.ended[id] == j.Lease.Token {
			continue
		}
		// A replica catching up (after a partition, say) shows old leases
		// that the leader has long taken back: one already expired is
		// not started.
		if j.Lease.ExpiresAt.Before(w.cfg.Clock.Now()) {
			continue
		}
		rctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		r := &run{token: j.Lease.Token, gpus: slices.Clone(j.Lease.GPUs), cancel: cancel, done: make(chan struct{})}
		w.running[id] = r
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer close(r.done)
			w.execute(rctx, j)
			cancel(nil)
			w.mu.Lock()
			if w.running[j.ID] == r {
				delete(w.running, j.ID)
			}
			w.ended[j.ID] = r.token
			w.mu.Unlock()
			select {
			case w.poke <- struct{}{}:
			default:
			}
		}()
	}
}

// LogPath is where a job's log lives on this node.
func (w *Worker) LogPath(jobID string) string {
	return filepath.Join(w.cfg.LogDir, jobID+".log")
}

// OpenLog opens a job's log; an error wrapping fs.ErrNotExist when there is
// none on this node.
func (w *Worker) OpenLog(jobID string) (io.ReadCloser, error) {
	if strings.ContainsAny(jobID, `/\`) || strings.Contains(jobID, "..") {
		return nil, fmt.Errorf("worker: log %q: %w", jobID, os.ErrNotExist)
	}
	return os.Open(w.LogPath(jobID))
}

// execute runs one leased job to its end and reports the outcome.
func (w *Worker) execute(ctx context.Context, j scheduler.Job) {
	log := w.cfg.Logger.With("job_id", j.ID, "token", j.Lease.Token)
	// The lease is renewed until execute returns: while the job runs and
	// while its result is being recorded. A result never recorded lets the
	// lease run out, and the leader requeues the job.
	renewCtx, stopRenew := context.WithCancel(ctx)
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		w.renew(renewCtx, j)
	}()
	defer func() {
		stopRenew()
		<-renewDone
	}()
	lf, err := os.OpenFile(w.LogPath(j.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		log.Error("worker: open job log", "err", err)
		w.finish(ctx, j, scheduler.StateFailed, nil, &scheduler.JobError{Code: "internal", Message: "cannot open job log"})
		return
	}
	defer lf.Close()
	logw := &lockedWriter{w: lf}
	started := w.cfg.Clock.Now()
	fmt.Fprintf(logw, "== %s attempt %d on node %s (lease %d) at %s ==\n", j.ID, j.Attempts, w.cfg.NodeID, j.Lease.Token, started.Format(time.RFC3339))
	log.Info("job started", "type", j.Type, "attempt", j.Attempts)

	root := filepath.Join(w.cfg.Dir, fmt.Sprintf("%s-%d", j.ID, j.Lease.Token))
	if !w.cfg.KeepJobDirs {
		defer os.RemoveAll(root)
	}
	// stoppedFromOutside routes a run stopped by a cancel request, a lost
	// lease or a shutdown to stopped, whatever step it was in.
	stoppedFromOutside := func() bool {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			w.stopped(j, log, c)
			return true
		}
		return false
	}
	// The API refuses an image the job's tier may not run; this node
	// checks again against its own list before anything is fetched.
	if err := w.cfg.Images.Check(j.Priority, j.Image); err != nil {
		fmt.Fprintf(logw, "error: %v\n", err)
		w.finish(ctx, j, scheduler.StateFailed, nil, &scheduler.JobError{Code: "image_not_allowed", Message: err.Error()})
		return
	}
	opBound, opTier := w.operatorBound(j)
	opKey, jerr := w.prepare(ctx, root, j, opBound)
	if jerr != nil {
		if stoppedFromOutside() {
			return
		}
		fmt.Fprintf(logw, "error: %s\n", jerr.Message)
		w.finish(ctx, j, scheduler.StateFailed, nil, jerr)
		return
	}
	// The attempt's limit: the job's timeout, or less when the leader cut
	// it to the GPU-minutes the tenant has left (Lease.Limit).
	limit, limitQuota := time.Duration(j.Timeout), ""
	if j.Lease != nil && j.Lease.Limit > 0 && time.Duration(j.Lease.Limit) < limit {
		limit, limitQuota = time.Duration(j.Lease.Limit), j.Lease.LimitQuota
	}
	timeout := limit
	if j.StartedAt != nil {
		timeout = j.StartedAt.Add(limit).Sub(started)
	}
	if timeout <= 0 {
		timeout = time.Millisecond
	}
	gpus := w.gpuIDs(j)
	err = w.exec.Run(ctx, Task{JobID: j.ID, Root: root, Timeout: timeout, Log: logw, GPUs: gpus, Image: j.Image, Network: j.Network})
	finished := w.cfg.Clock.Now()
	fmt.Fprintf(logw, "== ended after %.3fs: %v ==\n", finished.Sub(started).Seconds(), outcomeText(err, ctx))
	if stoppedFromOutside() {
		return
	}
	switch {
	case errors.Is(err, ErrTimeout):
		jerr := &scheduler.JobError{Code: "timed_out", Message: fmt.Sprintf("stopped after its timeout of %s", limit)}
		if limitQuota != "" {
			jerr = &scheduler.JobError{Code: "quota_exceeded", Message: fmt.Sprintf(
				"stopped after %s: the tenant's %s quota was used up (the job's timeout of %s was cut to what was left)", limit, limitQuota, time.Duration(j.Timeout))}
		}
		w.finish(ctx, j, scheduler.StateTimedOut, nil, jerr)
		return
	case err != nil:
		jerr := &scheduler.JobError{Code: "workload_failed", Message: err.Error()}
		if ce := readChildError(root); ce != nil {
			jerr = &scheduler.JobError{Code: ce.Code, Message: ce.Message}
			if ce.Code == CodeOperatorTooLarge && opBound > 0 {
				jerr.Message = fmt.Sprintf("%s (the %s tier's bound on one job's compiled operator, %s)", ce.Message, opTier, scheduler.OperatorBound)
			}
		}
		w.finish(ctx, j, scheduler.StateFailed, nil, jerr)
		return
	}
	res, jerr := w.collect(ctx, root, j, opKey, started, finished)
	if jerr != nil {
		if stoppedFromOutside() {
			return
		}
		w.finish(ctx, j, scheduler.StateFailed, nil, jerr)
		return
	}
	w.finish(ctx, j, scheduler.StateSucceeded, res, nil)
}

func outcomeText(err error, ctx context.Context) string {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c.Error()
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// stopped handles a run stopped from outside: a cancel request is reported,
// a lost lease is dropped (the FSM would refuse it anyway), a shutdown hands
// the job back.
func (w *Worker) stopped(j scheduler.Job, log *slog.Logger, cause error) {
	switch {
	case errors.Is(cause, errCancelled):
		w.finish(context.Background(), j, scheduler.StateCancelled, nil, &scheduler.JobError{Code: "cancelled", Message: "cancelled by request"})
	case errors.Is(cause, errShutdown), errors.Is(cause, errGPUFailed):
		reason := fmt.Sprintf("node %s shut down while running it; requeued", w.cfg.NodeID)
		if errors.Is(cause, errGPUFailed) {
			reason = fmt.Sprintf("%v on node %s while it ran; requeued", cause, w.cfg.NodeID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The process is gone: handing the job back cannot make it run twice.
		_, err := w.w.Apply(ctx, &scheduler.RequeueJob{At: w.cfg.Clock.Now(), JobID: j.ID, Token: j.Lease.Token, Voluntary: true, Reason: reason})
		if err != nil {
			log.Warn("worker: hand back", "err", err, "why", cause)
			return
		}
		log.Info("job handed back", "why", cause)
	default:
		log.Info("job stopped: lease lost")
	}
}

// renew extends the lease every third of its TTL until ctx ends. A refused
// renewal means the lease is gone: the run is stopped.
func (w *Worker) renew(ctx context.Context, j scheduler.Job) {
	t := time.NewTicker(w.cfg.LeaseTTL / 3)
	defer t.Stop()
	// The lease runs until lastOK + TTL at the leader (lastOK is when it was
	// granted or last extended). A runner that has not renewed it for two
	// thirds of the TTL stops its job, killing it outright, on a timer of its
	// own: the run is over a third of a TTL before the leader could hand the
	// job to another node, so one job never runs twice at once (given clocks
	// within a third of a TTL of each other).
	lastOK := w.cfg.Clock.Now()
	if j.StartedAt != nil && j.StartedAt.Before(lastOK) {
		lastOK = *j.StartedAt
	}
	fenceAfter := func() time.Duration { return max(lastOK.Add(2*w.cfg.LeaseTTL/3).Sub(w.cfg.Clock.Now()), 0) }
	fence := time.NewTimer(fenceAfter())
	defer fence.Stop()
	stop := func() {
		w.mu.Lock()
		if r, ok := w.running[j.ID]; ok && r.token == j.Lease.Token {
			r.cancel(errLeaseLost)
		}
		w.mu.Unlock()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-fence.C:
			w.cfg.Logger.Warn("worker: cannot renew the lease; stopping the job so that it never runs twice", "job_id", j.ID)
			stop()
			return
		case <-t.C:
		}
		now := w.cfg.Clock.Now()
		// A renewal never outlasts the fence.
		actx, cancel := context.WithTimeout(ctx, min(w.cfg.LeaseTTL/3, fenceAfter()))
		_, err := w.w.Apply(actx, &scheduler.RenewLease{At: now, JobID: j.ID, Token: j.Lease.Token, ExpiresAt: now.Add(w.cfg.LeaseTTL)})
		cancel()
		switch {
		case err == nil:
			lastOK = now
			fence.Reset(fenceAfter())
		case errors.Is(err, scheduler.ErrStaleToken) || errors.Is(err, scheduler.ErrNotFound):
			stop()
			return
		case ctx.Err() != nil:
			return
		default:
			w.cfg.Logger.Warn("worker: renew lease", "job_id", j.ID, "err", err)
		}
	}
}

// operatorBound is the bound on the compiled operator j may make, by its
// tenant's tier (the job's priority's when the tenant has no record), and
// that tier; 0 when it has none.
func (w *Worker) operatorBound(j scheduler.Job) (int64, string) {
	t, ok := w.state.Tenant(j.Tenant)
	if !ok {
		tier := j.Priority
		if tier != scheduler.PriorityFree && tier != "" {
			tier = scheduler.PriorityPaid // sprint is a paid tier's priority
		}
		t = scheduler.Tenant{Name: j.Tenant, Tier: tier}
	}
	if t.Tier == "" {
		t.Tier = scheduler.PriorityFree
	}
	n, ok := t.MaxOperatorBytes()
	if !ok {
		return 0, t.Tier
	}
	return n, t.Tier
}

// prepare lays out the job directory: job.json (with maxOp, the bound on
// the job's compiled operator), the dataset and, when the shared cache has
// it, the compiled operator.
func (w *Worker) prepare(ctx context.Context, root string, j scheduler.Job, maxOp int64) (string, *scheduler.JobError) {
	internal := func(err error) (string, *scheduler.JobError) {
		w.cfg.Logger.Error("worker: prepare", "job_id", j.ID, "err", err)
		return "", &scheduler.JobError{Code: "internal", Message: "could not prepare the job directory: " + err.Error()}
	}
	_ = os.RemoveAll(root)
	for _, d := range []string{InputDir, OutputDir, ExportDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return internal(err)
		}
	}
	spec := JobSpec{ID: j.ID, Type: j.Type, Params: j.Params, Dataset: j.Dataset, Attempt: j.Attempts, MaxOperatorBytes: maxOp}
	if err := writeJSON(filepath.Join(root, JobFile), spec); err != nil {
		return internal(err)
	}
	dsPath := filepath.Join(root, InputDir, DatasetFile)
	if j.Dataset != "" {
		d, ok := w.state.Dataset(j.Dataset)
		if !ok {
			return "", &scheduler.JobError{Code: "dataset_missing", Message: fmt.Sprintf("dataset %s no longer exists", j.Dataset)}
		}
		open := func(ctx context.Context) (io.ReadCloser, error) { return w.cfg.Storage.OpenDataset(ctx, d) }
		if err := w.fetchPatiently(ctx, d.Stored(), open, dsPath); err != nil {
			return "", &scheduler.JobError{Code: "dataset_unavailable", Message: fmt.Sprintf("dataset %s: %v", j.Dataset, err)}
		}
	}
	if w.cfg.OperatorKey == nil || j.Image != "" {
		return "", nil
	}
	var data []byte
	if j.Dataset != "" {
		var err error
		if data, err = os.ReadFile(dsPath); err != nil {
			return internal(err)
		}
	}
	key, err := w.cfg.OperatorKey(j.Type, j.Params, data)
	if err != nil || key == "" {
		// The workload itself reports bad params or data; no cache then.
		return "", nil
	}
	if ref, ok := w.state.Operator(key); ok {
		// A missing or unreadable cached operator is only a cache miss.
		_ = copyTo(ctx, w.openBlob(ref.CID), filepath.Join(root, InputDir, OperatorBin))
	}
	return key, nil
}

// fetchPatiently copies a blob, retrying with backoff for up to
// FetchPatience: the only node holding it may be restarting or cut off for
// a moment. The lease is renewed meanwhile.
func (w *Worker) fetchPatiently(ctx context.Context, cid string, open func(context.Context) (io.ReadCloser, error), dst string) error {
	deadline := time.NewTimer(w.cfg.FetchPatience)
	defer deadline.Stop()
	wait := 250 * time.Millisecond
	for {
		err := copyTo(ctx, open, dst)
		if err == nil || ctx.Err() != nil {
			return err
		}
		w.cfg.Logger.Warn("worker: input not reachable yet; retrying", "cid", cid, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-deadline.C:
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// openBlob opens stored content by CID.
func (w *Worker) openBlob(s string) func(context.Context) (io.ReadCloser, error) {
	return func(ctx context.Context) (io.ReadCloser, error) {
		c, err := cas.ParseCID(s)
		if err != nil {
			return nil, err
		}
		return w.store.Open(ctx, c)
	}
}

// copyTo streams what open yields into a new read-only file.
func copyTo(ctx context.Context, open func(context.Context) (io.ReadCloser, error), dst string) error {
	src, err := open(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		os.Remove(dst)
		return err
	}
	return f.Close()
}

// result is what a successful run reports.
type result struct {
	metrics  map[string]any
	bundle   scheduler.BundleRef // the job's reference: stored CID, plain tar's SHA-256 and size
	stored   cas.Ref             // the sealed object the bundle is kept as
	dataset  *scheduler.Dataset
	operator *scheduler.OperatorEntry
}

// collect packs output/ into a RunBundle and stores it with the side
// outputs of export/.
func (w *Worker) collect(ctx context.Context, root string, j scheduler.Job, opKey string, started, finished time.Time) (*result, *scheduler.JobError) {
	// Outputs stream from disk into the store, never whole into memory;
	// over the limit (side outputs included) nothing is stored.
	files, mb, total, err := outputFiles(filepath.Join(root, OutputDir), w.cfg.MaxOutputBytes)
	if err == nil && total+sideOutputBytes(filepath.Join(root, ExportDir)) > w.cfg.MaxOutputBytes {
		err = fmt.Errorf("%w: the job wrote more than this node's limit of %d bytes (max_output_bytes)", errOutputTooLarge, w.cfg.MaxOutputBytes)
	}
	switch {
	case errors.Is(err, errOutputTooLarge):
		return nil, &scheduler.JobError{Code: "output_too_large", Message: err.Error()}
	case err != nil:
		return nil, &scheduler.JobError{Code: "invalid_output", Message: err.Error()}
	}
	var m bundle.Manifest
	if mb != nil {
		if err := json.Unmarshal(mb, &m); err != nil {
			return nil, &scheduler.JobError{Code: "invalid_output", Message: "runbundle_manifest.json: " + err.Error()}
		}
	}
	if m.SpecID == "" {
		m.SpecID = j.Type
	}
	if m.Metrics == nil {
		m.Metrics = map[string]any{}
	}
	if _, ok := m.Metrics["runtime_s"]; !ok {
		m.Metrics["runtime_s"] = finished.Sub(started).Seconds()
	}
	// PWM's manifest always names these; null where the job has no image
	// to compare (calibrate, generate_dataset, measured data).
	for _, k := range []string{"psnr_db", "ssim"} {
		if _, ok := m.Metrics[k]; !ok {
			m.Metrics[k] = nil
		}
	}
	m.Version = bundle.Version
	m.Timestamp = finished.UTC().Format(time.RFC3339)
	m.Provenance.GitHash = w.cfg.Commit
	m.Provenance.Platform = runtime.GOOS + "/" + runtime.GOARCH
	m.Provenance.PWMVersion = "pwmesh-" + w.cfg.Version
	var gpus []string
	for _, g := range j.Lease.GPUs {
		gpus = append(gpus, fmt.Sprint(g))
	}
	m.Execution = bundle.Execution{
		JobID: j.ID, JobType: j.Type, Tenant: j.Tenant, Node: w.cfg.NodeID, GPUs: gpus, Image: j.Image,
		Executor: w.exec.Name(), Attempts: j.Attempts, FencingToken: j.Lease.Token,
		StartedAt: started.UTC(), FinishedAt: finished.UTC(),
	}
	// The tar streams into the store, sealed with the tenant's key, as it
	// is written.
	type writeResult struct {
		m   bundle.Manifest
		err error
	}
	pr, pw := io.Pipe()
	written := make(chan writeResult, 1)
	go func() {
		wm, err := bundle.WriteFiles(pw, m, files)
		pw.CloseWithError(err)
		written <- writeResult{wm, err}
	}()
	bref, ref, err := w.cfg.Storage.PutBundle(ctx, j.Tenant, pr)
	pr.CloseWithError(err) // unblocks the writer if PutBundle gave up early
	wr := <-written
	switch {
	case wr.err != nil:
		return nil, &scheduler.JobError{Code: "invalid_output", Message: wr.err.Error()}
	case err != nil:
		return nil, &scheduler.JobError{Code: "store_failed", Message: "could not store the RunBundle: " + err.Error()}
	}
	kctx, cancel := context.WithTimeout(ctx, keepTimeout)
	defer cancel()
	if err := w.cfg.Storage.Keep(kctx, ref, scheduler.BlobBundle); err != nil {
		return nil, &scheduler.JobError{Code: "store_failed", Message: "could not store the RunBundle on enough nodes: " + err.Error()}
	}
	res := &result{metrics: wr.m.Metrics, bundle: bref, stored: ref}
	exp := filepath.Join(root, ExportDir)
	if f, err := openRegular(filepath.Join(exp, DatasetFile)); err == nil {
		d, err := w.cfg.Storage.PutDataset(kctx, j.Tenant, f)
		f.Close()
		if err != nil {
			return nil, &scheduler.JobError{Code: "store_failed", Message: "could not store the dataset: " + err.Error()}
		}
		d.ID, d.Name, d.CreatedAt, d.Job = w.cfg.NewID("ds_"), datasetName(readSmall(filepath.Join(exp, DatasetNameFile)), j.ID), finished.UTC(), j.ID
		res.dataset = &d
	}
	// Only the built-in workload feeds the shared operator cache, and only
	// under the key the worker computed itself: a job cannot plant an
	// operator under another key.
	if opKey != "" && j.Image == "" && readSmall(filepath.Join(exp, OperatorKeyFile)) == opKey {
		if f, err := openRegular(filepath.Join(exp, OperatorBin)); err == nil {
			oref, err := w.store.Put(ctx, f)
			f.Close()
			// A cache entry nobody else can fetch is no use: it goes in
			// only once it is kept like any other content.
			if err == nil && w.cfg.Storage.Keep(kctx, oref, scheduler.BlobOperator) == nil {
				res.operator = &scheduler.OperatorEntry{Key: opKey, Ref: toBundleRef(oref)}
			}
		}
	}
	return res, nil
}

// openRegular opens a file a job wrote, refusing links and special files so
// that a job cannot read host files into the store.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}

// readSmall reads at most 1 KiB of a regular file a job wrote, trimmed.
func readSmall(path string) string {
	f, err := openRegular(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 1024))
	return strings.TrimSpace(string(b))
}

// datasetName keeps a job's suggested dataset name if it is a plain file
// name (the API's rules for names), else names the dataset after the job.
func datasetName(name, jobID string) string {
	ok := name != "" && len(name) <= 128 && !strings.HasPrefix(name, ".") && !strings.Contains(name, "..") &&
		!strings.ContainsAny(name, `/\`) && !strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f })
	if ok {
		return name
	}
	return jobID + ".npz"
}

func toBundleRef(r cas.Ref) scheduler.BundleRef {
	return scheduler.BundleRef{CID: r.CID.String(), SHA256: r.SHA256, Size: r.Size}
}

// finish reports the outcome through Raft with the lease's token. It retries
// every error but a refusal of the token until a lease period has passed;
// meanwhile execute keeps renewing the lease.
func (w *Worker) finish(ctx context.Context, j scheduler.Job, st string, res *result, jerr *scheduler.JobError) {
	c := &scheduler.CompleteJob{At: w.cfg.Clock.Now(), JobID: j.ID, Token: j.Lease.Token, State: st, Error: jerr}
	if res != nil {
		c.Metrics = res.metrics
		b := res.bundle
		c.RunBundle = &b
		c.Operator = res.operator
		if res.dataset != nil {
			c.Dataset = res.dataset
			c.Outputs = map[string]string{"dataset": res.dataset.ID}
		}
	}
	deadline := time.NewTimer(w.cfg.LeaseTTL)
	defer deadline.Stop()
	retry := time.NewTicker(w.cfg.LeaseTTL / 20)
	defer retry.Stop()
	for {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.LeaseTTL/3)
		_, err := w.w.Apply(actx, c)
		cancel()
		switch {
		case err == nil:
			w.cfg.Logger.Info("job finished", "job_id", j.ID, "state", st)
			if w.cfg.Finished != nil {
				var ran time.Duration
				if j.StartedAt != nil && c.At.After(*j.StartedAt) {
					ran = c.At.Sub(*j.StartedAt)
				}
				w.cfg.Finished(j, st, ran)
			}
			return
		case errors.Is(err, scheduler.ErrStaleToken), errors.Is(err, scheduler.ErrNotFound):
			w.cfg.Logger.Warn("job result refused: lease no longer held", "job_id", j.ID, "err", err)
			return
		case errors.Is(err, scheduler.ErrNotDurable) && res != nil:
			// A holder was lost between the copies and the completion.
			w.cfg.Logger.Warn("job result not yet durable; copying again", "job_id", j.ID, "err", err)
			kctx, cancel := context.WithTimeout(ctx, w.cfg.LeaseTTL)
			_ = w.cfg.Storage.Keep(kctx, res.stored, scheduler.BlobBundle)
			if res.dataset != nil { // the output dataset is held to the same rule
				if c, err := cas.ParseCID(res.dataset.Stored()); err == nil {
					_ = w.cfg.Storage.Keep(kctx, cas.Ref{CID: c, Size: res.dataset.StoredBytes()}, scheduler.BlobDataset)
				}
			}
			cancel()
		}
		select {
		case <-deadline.C:
			w.cfg.Logger.Error("job result not recorded; the lease will run out and the job be requeued", "job_id", j.ID, "err", err)
			return
		case <-retry.C:
		}
	}
}

// lockedWriter serialises writes of the child's stdout and stderr and ours.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
