package scheduler

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// finished submits id for tenant with gpus GPUs, runs it on n1 for run and
// completes it as state, at the given time, with a bundle when bundle.
func (h *harness) finished(id string, at time.Time, run time.Duration, gpus int, bundle bool, idem string) {
	h.tb.Helper()
	c := submitCmd(id, "acme", PriorityPaid, "", gpus)
	c.At, c.IdempotencyKey = at, idem
	h.must(c)
	var g []int
	for i := range gpus {
		g = append(g, i)
	}
	h.must(&AssignJob{At: at, JobID: id, Node: "n1", Incarnation: "i1", GPUs: g, ExpiresAt: at.Add(time.Hour)})
	done := &CompleteJob{At: at.Add(run), JobID: id, Token: h.job(id).Lease.Token, State: StateSucceeded}
	if bundle {
		done.RunBundle = &BundleRef{CID: "b", SHA256: "s", Size: 1}
	}
	h.must(done)
}

func TestApplyPruneJobs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	old, recent := t0.Add(-100*24*time.Hour), t0.Add(-48*time.Hour)
	h.finished("j-old", old, 90*time.Second, 2, false, "idem-old")
	h.finished("j-old-bundle", old, time.Minute, 1, true, "")
	h.finished("j-old-expired", old.Add(24*time.Hour), 30*time.Second, 1, true, "")
	h.must(&ExpireBundles{At: t0, Jobs: []string{"j-old-expired"}})
	h.finished("j-recent", recent, time.Minute, 1, false, "idem-recent")
	h.must(submitCmd("j-queued", "acme", PriorityPaid, "", 0))
	c := submitCmd("j-new", "acme", PriorityPaid, "", 0)
	c.At, c.IdempotencyKey = t0, "idem-new"
	h.must(c)

	cut := &PruneJobs{At: t0, JobsBefore: t0.Add(-JobRetention), IdempotencyBefore: t0.Add(-IdempotencyRetention)}
	// Two old jobs without a kept bundle; the old job's key and the
	// two-day-old one.
	if jobs, idem := h.f.PruneCandidates(cut.JobsBefore, cut.IdempotencyBefore); jobs != 2 || idem != 2 {
		t.Fatalf("candidates: %d jobs, %d idempotency records; want 2 and 2", jobs, idem)
	}
	v := h.must(cut).(PruneResult)
	if v.Jobs != 2 || v.Idempotency != 2 {
		t.Fatalf("pruned %+v, want 2 jobs and 2 idempotency records", v)
	}
	for id, want := range map[string]bool{"j-old": false, "j-old-expired": false, "j-old-bundle": true, "j-recent": true, "j-queued": true, "j-new": true} {
		if _, ok := h.f.Job(id); ok != want {
			t.Errorf("job %s present = %v, want %v", id, ok, want)
		}
	}
	// The recent key still answers with its job; the old one is free again.
	again := submitCmd("j-again", "acme", PriorityPaid, "", 0)
	again.IdempotencyKey = "idem-new"
	if got := h.must(again).(Job).ID; got != "j-new" {
		t.Fatalf("recent idempotency key answered %s", got)
	}
	// Pruning changes no bill: the ledger charged every attempt when it
	// ended. 2 GPUs × 90 s + 1 × 60 s + 1 × 30 s, all started in the
	// month of old (or the next, for the expired one a day later).
	month := old
	want := 2*90*time.Second + time.Minute + 30*time.Second
	if old.Add(24*time.Hour).Format("2006-01") != old.Format("2006-01") {
		want = 2*90*time.Second + time.Minute
	}
	if got := h.f.Usage("acme", month, t0).GPUTime; got != want {
		t.Fatalf("GPU time of %s after pruning %s, want %s", month.Format("2006-01"), got, want)
	}
	// Nothing left to prune: a conflict, and nothing changes.
	_, err := h.apply(cut)
	wantErr(t, err, ErrConflict)
	// The totals survive a snapshot.
	f := NewFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	if got := f.Usage("acme", month, t0).GPUTime; got != want {
		t.Fatalf("restored GPU time %s, want %s", got, want)
	}
	if !bytes.Equal(snapshotBytes(t, f), snapshotBytes(t, h.f)) {
		t.Fatal("snapshot after restore differs")
	}
}

// The leader prunes on its own, with its clock, once the retention passed.
func TestLeaderPrunes(t *testing.T) {
	t.Parallel()
	x := newLeaderFixture(t)
	x.apply(nodeCmd("n1", "i1", 2))
	j := x.startJob("j1", 0)
	x.apply(&CompleteJob{At: x.clk.Now(), JobID: "j1", Token: j.Lease.Token, State: StateSucceeded})
	if err := x.l.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	x.job("j1") // kept: within retention
	x.clk.Advance(JobRetention + time.Second)
	if err := x.l.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := x.f.Job("j1"); ok {
		t.Fatal("job past its retention was not pruned")
	}
}
