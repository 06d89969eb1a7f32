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
	if jobs, idem, _ := h.f.PruneCandidates(cut.JobsBefore, cut.IdempotencyBefore, time.Time{}); jobs != 2 || idem != 2 {
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

// TestPruneExpiredKeys: keys that expired more than the retention ago go
// (a sign-in's key, a CLI login's), others stay, and the last admin key
// stays even when expired; a zero cutoff removes none.
func TestPruneExpiredKeys(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	for _, k := range []APIKey{
		{ID: "k-admin-old", Hash: "h1", Prefix: "h1", Tenant: "admin", Tier: "paid", Admin: true, ExpiresAt: at(-30 * 24 * time.Hour)},
		{ID: "k-admin-older", Hash: "h2", Prefix: "h2", Tenant: "admin", Tier: "paid", Admin: true, ExpiresAt: at(-60 * 24 * time.Hour)},
		{ID: "k-oidc-old", Hash: "h3", Prefix: "h3", Tenant: "acme", Tier: "paid", Name: "oidc:ann@acme.example", ExpiresAt: at(-8 * 24 * time.Hour)},
		{ID: "k-oidc-new", Hash: "h4", Prefix: "h4", Tenant: "acme", Tier: "paid", ExpiresAt: at(-time.Hour)},
		{ID: "k-forever", Hash: "h5", Prefix: "h5", Tenant: "acme", Tier: "paid"},
	} {
		h.must(&CreateKey{At: t0.Add(-90 * 24 * time.Hour), Key: k})
	}
	before := t0.Add(-ExpiredKeyRetention)
	if _, _, keys := h.f.PruneCandidates(t0, t0, before); keys != 2 {
		t.Fatalf("%d key candidates, want 2", keys)
	}
	_, err := h.apply(&PruneJobs{At: t0, JobsBefore: t0.Add(-JobRetention), IdempotencyBefore: t0.Add(-IdempotencyRetention)})
	wantErr(t, err, ErrConflict) // no key cutoff: nothing to prune
	v := h.must(&PruneJobs{At: t0, JobsBefore: t0.Add(-JobRetention), IdempotencyBefore: t0.Add(-IdempotencyRetention), KeysBefore: before}).(PruneResult)
	if v.Keys != 2 {
		t.Fatalf("pruned %+v, want 2 keys", v)
	}
	for id, want := range map[string]bool{"k-admin-old": true, "k-admin-older": false, "k-oidc-old": false, "k-oidc-new": true, "k-forever": true} {
		if _, ok := h.f.KeyByID(id); ok != want {
			t.Errorf("key %s present = %v, want %v", id, ok, want)
		}
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
