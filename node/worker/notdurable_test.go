package worker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas/fsstore"
	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// remoteLeader is the worker's way to a leader on another node: every
// answer comes back in the form a forwarded write has (node/forward.go):
// the value decoded into the registry's result type, the error rebuilt
// from its kind. The first completion with a RunBundle finds the bundle's
// only copy gone from the index (its holder lost it since), as happens
// when a holder dies between the copies and the completion.
type remoteLeader struct {
	r          *scheduler.Raft
	lost       atomic.Bool
	notDurable atomic.Int32
}

func (h *remoteLeader) Apply(ctx context.Context, c scheduler.Command) (any, error) {
	if cj, ok := c.(*scheduler.CompleteJob); ok && cj.RunBundle != nil && h.lost.CompareAndSwap(false, true) {
		if _, err := h.r.Apply(ctx, &scheduler.BlobDropped{At: time.Now(), CID: cj.RunBundle.CID, Node: "n1", Reason: "test: holder lost"}); err != nil {
			return nil, err
		}
	}
	v, err := h.r.Apply(ctx, c)
	if err != nil {
		if errors.Is(err, scheduler.ErrNotDurable) {
			h.notDurable.Add(1)
		}
		return nil, scheduler.ErrorOfKind(scheduler.KindOf(err), err.Error())
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	p := scheduler.NewResult(c.Type())
	if err := json.Unmarshal(b, p); err != nil {
		return nil, err
	}
	return reflect.ValueOf(p).Elem().Interface(), nil
}

// A completion refused as not durable by a leader on another node makes
// the worker copy the result again and complete once more: the job
// succeeds on its first run instead of running again after its lease.
func TestNotDurableCompletionFromAnotherNodeCopiesAgain(t *testing.T) {
	t.Parallel()
	r := schedulertest.NewRaft(t)
	fsm := r.FSM()
	store, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leader := &remoteLeader{r: r}
	st := newStorage(t, fsm, leader, store)
	ttl := 2 * time.Second
	w, err := New(Config{NodeID: "n1", Incarnation: "inc1", Dir: t.TempDir(), LogDir: t.TempDir(), LeaseTTL: ttl, Tick: 50 * time.Millisecond,
		OperatorKey: workload.JobOperatorKey, Version: "test", NewID: func(p string) string { return p + "1" }, Storage: st},
		fsm, leader, st.Store(), &Process{Binary: os.Args[0], Args: []string{"-test.run=^$"}, Env: []string{"PWMESH_WORKER_CHILD=1"}, KillGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	schedulertest.MustApply(t, r, &scheduler.RegisterNode{At: time.Now(), Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: 1, Incarnation: "inc1", Executors: []string{"process"}}})
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{Hash: "h", Tenant: "acme", Tier: "paid"}})
	l, err := scheduler.NewLeader(scheduler.LeaderConfig{LeaseTTL: ttl, Tick: 50 * time.Millisecond}, fsm, r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(ctx) })
	wg.Go(func() { _ = w.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	schedulertest.MustApply(t, r, &scheduler.SubmitJob{At: time.Now(), Job: scheduler.Job{ID: "job_1", Tenant: "acme", Type: "generate_dataset",
		Priority: "paid", Params: json.RawMessage(`{"size":16,"seed":1}`), Timeout: scheduler.Duration(time.Minute)}})
	var j scheduler.Job
	schedulertest.WaitFor(t, 2*time.Minute, "job_1 to end", func() bool {
		j, _ = fsm.Job("job_1")
		return scheduler.Terminal(j.State)
	})
	if j.State != scheduler.StateSucceeded || j.Attempts != 1 {
		t.Fatalf("job: %s after %d attempt(s), error %+v; want succeeded after 1", j.State, j.Attempts, j.Error)
	}
	if n := leader.notDurable.Load(); n < 1 {
		t.Fatal("the completion was never refused as not durable: the test did not test the branch")
	}
	if err := fsm.Durable(j.RunBundle.CID); err != nil {
		t.Fatalf("RunBundle after completion: %v", err)
	}
}
