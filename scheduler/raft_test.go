package scheduler

import (
	"bytes"
	"errors"
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
