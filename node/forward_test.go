package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// loopback delivers Calls straight to a handler, standing in for the wire.
type loopback struct {
	h func(ctx context.Context, from string, req []byte) ([]byte, error)
}

func (l loopback) Call(ctx context.Context, _, _ string, req []byte) ([]byte, error) {
	return l.h(ctx, "peer", req)
}

// follower is a leaderView that never leads and points at the leader.
type follower struct{ addr string }

func (f follower) IsLeader() bool     { return false }
func (f follower) LeaderAddr() string { return f.addr }
func (f follower) Apply(context.Context, scheduler.Command) (any, error) {
	return nil, scheduler.ErrNotLeader
}

func TestForwardCarriesValuesAndErrors(t *testing.T) {
	t.Parallel()
	r := schedulertest.NewRaft(t)
	fw := &forwarder{raft: follower{addr: "leader"}, net: loopback{h: serveApply(r, scheduler.SystemClock{})}}
	ctx := context.Background()
	key := scheduler.APIKey{Hash: "h1", Tenant: "acme", Tier: "paid"}
	v, err := fw.Apply(ctx, &scheduler.CreateKey{At: time.Now(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.FSM().Key("h1"); !ok || v == nil {
		t.Fatalf("forwarded write not applied (value %v)", v)
	}
	// The leader's error comes back with its sentinel.
	_, err = fw.Apply(ctx, &scheduler.CreateKey{At: time.Now(), Key: key})
	if !errors.Is(err, scheduler.ErrConflict) {
		t.Fatalf("duplicate key: %v, want ErrConflict", err)
	}
	_, err = fw.Apply(ctx, &scheduler.CancelJob{At: time.Now(), Tenant: "acme", JobID: "nope"})
	if !errors.Is(err, scheduler.ErrNotFound) {
		t.Fatalf("missing job: %v, want ErrNotFound", err)
	}
}

func TestForwardWithoutLeader(t *testing.T) {
	t.Parallel()
	fw := &forwarder{raft: follower{}, wait: 50 * time.Millisecond}
	_, err := fw.Apply(context.Background(), &scheduler.CreateKey{})
	if !errors.Is(err, scheduler.ErrNoLeader) {
		t.Fatalf("got %v, want ErrNoLeader", err)
	}
	// A peer that answers "not the leader" twice gives up with that error.
	fw = &forwarder{raft: follower{addr: "stale"}, net: loopback{h: serveApply(follower{}, nil)}, wait: 200 * time.Millisecond}
	if _, err := fw.Apply(context.Background(), &scheduler.CreateKey{}); !errors.Is(err, scheduler.ErrNotLeader) {
		t.Fatalf("got %v, want ErrNotLeader", err)
	}
}

// The leader's clock decides lease times: a runner whose clock is an hour
// behind still gets a lease of the length it asked for, from now.
func TestRestampUsesTheLeadersClock(t *testing.T) {
	t.Parallel()
	now := time.Now()
	skewed := now.Add(-time.Hour)
	c := restamp(&scheduler.RenewLease{At: skewed, ExpiresAt: skewed.Add(9 * time.Second)}, fixedClock{now}).(*scheduler.RenewLease)
	if !c.At.Equal(now) || !c.ExpiresAt.Equal(now.Add(9*time.Second)) {
		t.Fatalf("restamped renewal: at %v expires %v", c.At, c.ExpiresAt)
	}
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// failing is a network on which every call fails, as to a dead leader.
type failing struct{ calls int }

func (f *failing) Call(context.Context, string, string, []byte) ([]byte, error) {
	f.calls++
	return nil, errors.New("connection refused")
}

// A renewal waits through a failover (the leader silent) until the wait
// runs out; a submit without an idempotency key is not sent twice.
func TestForwardRetriesOnlyRepeatableCommands(t *testing.T) {
	t.Parallel()
	net := &failing{}
	fw := &forwarder{raft: follower{addr: "dead"}, net: net, wait: 200 * time.Millisecond}
	_, err := fw.Apply(context.Background(), &scheduler.RenewLease{JobID: "j", Token: 1})
	if !errors.Is(err, scheduler.ErrNoLeader) || net.calls < 2 {
		t.Fatalf("renewal: %v after %d calls, want ErrNoLeader after retries", err, net.calls)
	}
	net.calls = 0
	_, err = fw.Apply(context.Background(), &scheduler.SubmitJob{Job: scheduler.Job{ID: "j"}})
	if !errors.Is(err, scheduler.ErrNoLeader) || net.calls != 1 {
		t.Fatalf("submit: %v after %d calls, want ErrNoLeader after one call", err, net.calls)
	}
}

// counting wraps a network and counts its calls.
type counting struct {
	caller
	calls int
}

func (c *counting) Call(ctx context.Context, peer, proto string, req []byte) ([]byte, error) {
	c.calls++
	return c.caller.Call(ctx, peer, proto, req)
}

// A write that may be applied twice keeps asking while a stale leader says
// "not the leader"; any other gives up after one retry.
func TestForwardRepeatableWaitsForANewLeader(t *testing.T) {
	t.Parallel()
	net := &counting{caller: loopback{h: serveApply(follower{}, nil)}}
	fw := &forwarder{raft: follower{addr: "stale"}, net: net, wait: 300 * time.Millisecond}
	if _, err := fw.Apply(context.Background(), &scheduler.RenewLease{JobID: "j", Token: 1}); !errors.Is(err, scheduler.ErrNotLeader) || net.calls < 3 {
		t.Fatalf("renewal: %v after %d calls, want ErrNotLeader after several", err, net.calls)
	}
	net.calls = 0
	if _, err := fw.Apply(context.Background(), &scheduler.CreateKey{}); !errors.Is(err, scheduler.ErrNotLeader) || net.calls != 2 {
		t.Fatalf("create key: %v after %d calls, want ErrNotLeader after 2", err, net.calls)
	}
}
