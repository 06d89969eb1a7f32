package metering_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/metering"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

type clock struct{}

func (clock) Now() time.Time { return time.Now().UTC() }

// setup starts a real one-node Raft with a free tenant "f" (100 calls a
// day) and a paid tenant "p", and a running Meter applying through apply
// (the Raft itself unless wrapped).
func setup(t *testing.T, wrap func(metering.Applier) metering.Applier) (*scheduler.Raft, *metering.Meter, context.CancelFunc) {
	t.Helper()
	r := schedulertest.NewRaft(t)
	now := time.Now().UTC()
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: now, Key: scheduler.APIKey{Hash: "hf", Tenant: "f", Tier: scheduler.PriorityFree}})
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: now, Key: scheduler.APIKey{Hash: "hp", Tenant: "p", Tier: scheduler.PriorityPaid}})
	var apply metering.Applier = r
	if wrap != nil {
		apply = wrap(r)
	}
	m, err := metering.New(metering.Config{Node: "n1", Incarnation: "i1", Apply: apply, Clock: clock{}, Retry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, m, cancel
}

// callMany makes n concurrent calls of tenant and counts the answers.
func callMany(m *metering.Meter, tenant string, n int) (served, refused int64, other []error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range n {
		wg.Go(func() {
			err := m.Call(context.Background(), tenant)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				served++
			case errors.Is(err, scheduler.ErrQuota) && scheduler.QuotaOf(err) == scheduler.QuotaAPICalls:
				refused++
			default:
				other = append(other, err)
			}
		})
	}
	wg.Wait()
	return served, refused, other
}

func TestConcurrentCallsAreCountedExactly(t *testing.T) {
	t.Parallel()
	r, m, _ := setup(t, nil)
	before := r.FSM().LastIndex()
	served, refused, other := callMany(m, "f", 250)
	if served != 100 || refused != 150 || len(other) != 0 {
		t.Fatalf("served %d, refused %d, other %v; want 100 served and 150 refused", served, refused, other)
	}
	now := time.Now().UTC()
	if u := r.FSM().Usage("f", now, now); u.APICalls != 100 || u.APICallsDay != 100 {
		t.Fatalf("ledger %+v, want 100 calls", u)
	}
	// Calls that arrive together share a write: fewer Raft entries than calls.
	if n := r.FSM().LastIndex() - before; n >= 250 {
		t.Errorf("%d Raft entries for 250 calls: no batching", n)
	}
	// A paid tenant has no daily limit.
	if served, _, other := callMany(m, "p", 300); served != 300 || len(other) != 0 {
		t.Fatalf("paid: served %d, other %v", served, other)
	}
	if u := r.FSM().Usage("p", now, now); u.APICalls != 300 {
		t.Fatalf("paid ledger %d calls, want 300", u.APICalls)
	}
}

// lossy applies through the Raft but loses the answer of every other
// write, as a leader that dies after committing would.
type lossy struct {
	next  metering.Applier
	n     atomic.Int64
	lost  atomic.Int64
	fails atomic.Int64
}

func (l *lossy) Apply(ctx context.Context, c scheduler.Command) (any, error) {
	switch l.n.Add(1) % 3 {
	case 1: // committed, answer lost
		if _, err := l.next.Apply(ctx, c); err != nil {
			return nil, err
		}
		l.lost.Add(1)
		return nil, errors.New("stream reset")
	case 2: // no leader: not committed
		l.fails.Add(1)
		return nil, scheduler.ErrNoLeader
	}
	return l.next.Apply(ctx, c)
}

func TestRetriedBatchesAreCountedOnce(t *testing.T) {
	t.Parallel()
	var l *lossy
	r, m, _ := setup(t, func(a metering.Applier) metering.Applier { l = &lossy{next: a}; return l })
	total := int64(0)
	for range 5 {
		served, refused, other := callMany(m, "f", 30)
		if len(other) != 0 {
			t.Fatalf("errors %v", other)
		}
		total += served
		if served+refused != 30 {
			t.Fatalf("answers %d + %d, want 30", served, refused)
		}
	}
	now := time.Now().UTC()
	if u := r.FSM().Usage("f", now, now); u.APICalls != total || total != 100 {
		t.Fatalf("served %d, ledger %d; want both 100", total, u.APICalls)
	}
	if l.lost.Load() == 0 || l.fails.Load() == 0 {
		t.Fatalf("the test lost no answer (%d) or met no failure (%d)", l.lost.Load(), l.fails.Load())
	}
}

// blocked holds every write until released.
type blocked struct {
	next    metering.Applier
	release chan struct{}
	entered chan struct{}
}

func (b *blocked) Apply(ctx context.Context, c scheduler.Command) (any, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return b.next.Apply(ctx, c)
}

func TestGivingUpBeforeTheBatchIsSentCountsNothing(t *testing.T) {
	t.Parallel()
	b := &blocked{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	r, m, stop := setup(t, func(a metering.Applier) metering.Applier { b.next = a; return b })
	// The first call's batch is in flight (held); the second waits for the
	// next batch and its caller gives up.
	first := make(chan error, 1)
	go func() { first <- m.Call(context.Background(), "f") }()
	<-b.entered
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- m.Call(ctx, "f") }()
	// Let it join the pending batch, then give up.
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("second call: %v, want context.Canceled", err)
	}
	close(b.release)
	if err := <-first; err != nil {
		t.Fatalf("first call: %v", err)
	}
	now := time.Now().UTC()
	schedulertest.WaitFor(t, 5*time.Second, "the first call in the ledger", func() bool { return r.FSM().Usage("f", now, now).APICalls == 1 })
	// Stopping answers what is pending and refuses what comes after.
	stop()
	schedulertest.WaitFor(t, 5*time.Second, "the meter to stop", func() bool {
		return errors.Is(m.Call(context.Background(), "f"), metering.ErrStopped)
	})
	if got := r.FSM().Usage("f", now, now).APICalls; got != 1 {
		t.Fatalf("ledger %d calls, want 1", got)
	}
}
