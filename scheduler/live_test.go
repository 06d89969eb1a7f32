package scheduler

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"testing"
	"time"
)

// liveConsistent checks the index of unfinished jobs against the jobs.
func (s *state) liveConsistent() error {
	var want []string
	for id, j := range s.jobs {
		if !Terminal(j.State) {
			want = append(want, id)
			if s.live[id] != j {
				return fmt.Errorf("job %s (%s) is not indexed as live", id, j.State)
			}
		}
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(s.live)); !slices.Equal(got, want) {
		return fmt.Errorf("live jobs %v, want %v", got, want)
	}
	n := 0
	for id, j := range s.jobs {
		if j.RunBundle != nil && !j.BundleExpired {
			n++
			if s.kept[j.Tenant][id] != j {
				return fmt.Errorf("job %s's kept bundle is not indexed", id)
			}
		}
	}
	for _, m := range s.kept {
		n -= len(m)
	}
	if n != 0 {
		return fmt.Errorf("the kept-bundle index has %d entries too many", -n)
	}
	return nil
}

// TestLiveIndex: every command of the forwarded-results kind of scenario
// (submit, assign, renew, complete, requeue, cancel, prune, restore) keeps
// the index of unfinished jobs equal to the jobs that are not finished.
func TestLiveIndex(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	check := func(step string) {
		t.Helper()
		if err := h.f.s.liveConsistent(); err != nil {
			t.Fatalf("after %s: %v", step, err)
		}
	}
	tok := h.running("j-done", 0)
	h.must(&CompleteJob{At: t0, JobID: "j-done", Token: tok, State: StateSucceeded})
	check("complete")
	tok = h.running("j-bundle", 0)
	h.must(&CompleteJob{At: t0, JobID: "j-bundle", Token: tok, State: StateSucceeded, RunBundle: &BundleRef{CID: "bcid", SHA256: "s", Size: 9}})
	check("complete with a bundle")
	if got := h.f.s.storedBytes("acme"); got != 9+1024 {
		t.Fatalf("acme stores %d bytes, want its bundle and dataset", got)
	}
	h.must(&ExpireBundles{At: t0, Jobs: []string{"j-bundle"}})
	check("expire the bundle")
	h.must(submitCmd("j-cancel", "acme", PriorityPaid, "ds1", 0))
	h.must(&CancelJob{At: t0, JobID: "j-cancel", Tenant: "acme"})
	check("cancel a queued job")
	tok = h.running("j-cancel-run", 1)
	h.must(&CancelJob{At: t0, JobID: "j-cancel-run", Tenant: "acme"})
	h.must(&RequeueJob{At: t0, JobID: "j-cancel-run", Token: tok, Voluntary: true, Reason: "stopped"})
	check("requeue of a job asked to stop")
	for i := range MaxAttempts {
		id := "j-lost"
		if i == 0 {
			h.must(submitCmd(id, "acme", PriorityPaid, "ds1", 0))
		}
		h.must(&AssignJob{At: t0, JobID: id, Node: "n1", Incarnation: "i1", ExpiresAt: t0.Add(15 * time.Second)})
		h.must(&RequeueJob{At: t0, JobID: id, Token: h.job(id).Lease.Token, Reason: "lost"})
		check("requeue of a lost run")
	}
	if j := h.job("j-lost"); j.State != StateFailed {
		t.Fatalf("j-lost is %s", j.State)
	}
	h.must(submitCmd("j-queued", "acme", PriorityPaid, "ds1", 0))
	check("submit")
	h.must(&PruneJobs{At: t0.Add(JobRetention * 2), JobsBefore: t0.Add(JobRetention), IdempotencyBefore: t0})
	check("prune")
	f := NewFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	if err := f.s.liveConsistent(); err != nil || len(f.s.live) != 1 {
		t.Fatalf("after a restore: %v (%d live)", err, len(f.s.live))
	}
}

// BenchmarkSubmitWithHistory: a free tenant's GPU submission (its quotas
// checked: queued jobs, GPU-minutes left) with no finished job kept, and
// with 50,000 kept (93 days of history): the checks read the unfinished
// jobs only, so history should not matter (docs/benchmarks.md).
func BenchmarkSubmitWithHistory(b *testing.B) {
	for _, kept := range []int{0, 50000} {
		b.Run(fmt.Sprintf("finished=%d", kept), func(b *testing.B) {
			h := newHarness(b)
			h.base()
			for i := range kept {
				id := fmt.Sprintf("old-%06d", i)
				h.must(submitCmd(id, "other", PriorityFree, "ds-other", 0))
				h.must(&CancelJob{At: t0, JobID: id, Tenant: "other"})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprintf("new-%09d", i)
				h.must(submitCmd(id, "other", PriorityFree, "ds-other", 1))
				b.StopTimer()
				h.must(&CancelJob{At: t0, JobID: id, Tenant: "other"}) // stay under the queued cap
				b.StartTimer()
			}
		})
	}
}
