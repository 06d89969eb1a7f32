// Package schedulertest starts a real single-voter Raft member with the
// scheduler's FSM for tests of the packages built on it.
package schedulertest

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/pwmesh/pwmesh/scheduler"
)

// NewRaft starts a bootstrapped one-node Raft on an in-memory transport in
// t.TempDir(), waits until it leads, and shuts it down at cleanup.
func NewRaft(t testing.TB) *scheduler.Raft {
	t.Helper()
	_, trans := raft.NewInmemTransport(raft.NewInmemAddr())
	r, err := scheduler.OpenRaft(scheduler.RaftConfig{
		NodeID:           "n1",
		Dir:              t.TempDir(),
		Transport:        trans,
		Bootstrap:        true,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
	}, scheduler.NewFSM())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown() })
	WaitFor(t, 10*time.Second, "raft leadership", r.IsLeader)
	return r
}

// WaitFor polls cond every 10 ms until it holds, failing the test after
// timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// MustApply commits c and fails the test on error.
func MustApply(t testing.TB, r *scheduler.Raft, c scheduler.Command) any {
	t.Helper()
	v, err := r.Apply(context.Background(), c)
	if err != nil {
		t.Fatalf("apply %s: %v", c.Type(), err)
	}
	return v
}
