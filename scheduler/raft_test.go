package scheduler

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestOpenRaftValidates(t *testing.T) {
	t.Parallel()
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	if _, err := OpenRaft(RaftConfig{Dir: t.TempDir(), Transport: trans}, NewFSM()); err == nil {
		t.Fatal("OpenRaft accepted a config without NodeID")
	}
}

// TestRaftTimingDefaults: hashicorp/raft's own (1 s/1 s/500 ms), and a lease
// that fits a heartbeat timeout set alone.
func TestRaftTimingDefaults(t *testing.T) {
	t.Parallel()
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	c := RaftConfig{NodeID: "n1", Dir: t.TempDir(), Transport: trans}
	if err := c.withDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.HeartbeatTimeout != time.Second || c.ElectionTimeout != time.Second || c.LeaderLeaseTimeout != 500*time.Millisecond {
		t.Fatalf("defaults %v/%v/%v, want 1s/1s/500ms", c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout)
	}
	fast := RaftConfig{NodeID: "n1", Dir: t.TempDir(), Transport: trans, HeartbeatTimeout: 100 * time.Millisecond}
	if err := fast.withDefaults(); err != nil {
		t.Fatal(err)
	}
	if fast.LeaderLeaseTimeout != 50*time.Millisecond {
		t.Fatalf("lease %v with a 100 ms heartbeat timeout, want 50ms", fast.LeaderLeaseTimeout)
	}
}

func TestRaftApply(t *testing.T) {
	t.Parallel()
	r, _ := openTestRaft(t, t.TempDir())
	if r.Leader() != "n1" || r.Stats()["state"] != "Leader" {
		t.Fatalf("Leader = %q, stats %v", r.Leader(), r.Stats())
	}
	v, err := r.Apply(t.Context(), keyCmd("hash-acme", "acme", PriorityPaid))
	if err != nil || v.(APIKey).Tenant != "acme" {
		t.Fatalf("Apply = %v, %v", v, err)
	}
	// FSM refusals come back as errors, typed.
	if _, err := r.Apply(t.Context(), &DeleteDataset{At: t0, Tenant: "acme", ID: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Apply(delete missing) = %v, want ErrNotFound", err)
	}
	if err := r.Barrier(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r.FSM().LastIndex() == 0 {
		t.Fatal("nothing applied")
	}
}

func TestRaftRestartKeepsState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r1, shutdown := openTestRaft(t, dir)
	for _, c := range []Command{
		keyCmd("hash-acme", "acme", PriorityPaid),
		storedCmds("cid-ds1")[0],
		storedCmds("cid-ds1")[1],
		storedCmds("cid-ds1")[2],
		datasetCmd("ds1", "acme"),
		nodeCmd("n1", "i1", 1),
		submitCmd("j1", "acme", PriorityPaid, "ds1", 0),
		submitCmd("j2", "acme", PriorityFree, "ds1", 0),
		&CancelJob{At: t0, Tenant: "acme", JobID: "j2"},
	} {
		if _, err := r1.Apply(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	want := snapshotBytes(t, r1.FSM())
	shutdown()

	r2, _ := openTestRaft(t, dir)
	f := r2.FSM()
	waitFor(t, 10*time.Second, "the log to be replayed", func() bool {
		j, ok := f.Job("j2")
		return ok && j.State == StateCancelled
	})
	if got := snapshotBytes(t, f); !bytes.Equal(got, want) {
		t.Fatalf("state after restart differs:\n got %s\nwant %s", got, want)
	}
	if k, ok := f.Key("hash-acme"); !ok || k.Tenant != "acme" {
		t.Fatalf("key after restart = %+v, %v", k, ok)
	}
	// And it goes on working.
	if _, err := r2.Apply(t.Context(), submitCmd("j3", "acme", PriorityFree, "ds1", 0)); err != nil {
		t.Fatal(err)
	}
}

// TestRaftProgress: a lone voter counts its own election as one leader
// change, reports itself a voter, observes the commit time of each write
// it leads and, once applied, has no apply lag.
func TestRaftProgress(t *testing.T) {
	t.Parallel()
	_, trans := raft.NewInmemTransport("")
	var commits atomic.Int64
	r, err := OpenRaft(RaftConfig{
		NodeID: "n1", Dir: t.TempDir(), Transport: trans, Bootstrap: true,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond,
		LeaderLeaseTimeout: 25 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		ObserveCommit: func(d time.Duration) {
			if d < 0 {
				t.Errorf("commit time %v", d)
			}
			commits.Add(1)
		},
	}, NewFSM())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, 10*time.Second, "leadership", r.IsLeader)
	if _, err := r.Apply(t.Context(), keyCmd("hash-acme", "acme", PriorityPaid)); err != nil {
		t.Fatal(err)
	}
	// A refused write was still committed: it is observed too.
	if _, err := r.Apply(t.Context(), &DeleteDataset{At: t0, Tenant: "acme", ID: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if got := commits.Load(); got != 2 {
		t.Errorf("ObserveCommit called %d times, want 2", got)
	}
	waitFor(t, 10*time.Second, "no apply lag", func() bool { return r.Progress().ApplyLag() == 0 })
	p := r.Progress()
	if p.LeaderChanges != 1 || !p.Voter || p.Term == 0 || p.CommitIndex == 0 || p.LastIndex < p.CommitIndex {
		t.Fatalf("Progress = %+v, want one leader change, a voter, a term and a commit index", p)
	}
}

func TestProgressApplyLag(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		p    Progress
		want uint64
	}{
		{Progress{CommitIndex: 10, AppliedIndex: 7}, 3},
		{Progress{CommitIndex: 10, AppliedIndex: 10}, 0},
		{Progress{CommitIndex: 3, AppliedIndex: 5}, 0}, // a snapshot restored ahead of the commit index it knows
	} {
		if got := c.p.ApplyLag(); got != c.want {
			t.Errorf("%+v.ApplyLag() = %d, want %d", c.p, got, c.want)
		}
	}
}
