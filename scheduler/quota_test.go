package scheduler

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// unchanged applies c, wants ErrQuota naming quota, and checks that the
// refusal left the snapshot byte for byte as it was.
func (h *harness) refusedForQuota(c Command, quota string) {
	h.tb.Helper()
	before := snapshotBytes(h.tb, h.f)
	_, err := h.apply(c)
	if !errors.Is(err, ErrQuota) {
		h.tb.Fatalf("%s: got %v, want ErrQuota", c.Type(), err)
	}
	if got := QuotaOf(err); got != quota {
		h.tb.Fatalf("%s: refusal %q names quota %q, want %q", c.Type(), err, got, quota)
	}
	if KindOf(err) != "quota_exceeded" {
		h.tb.Fatalf("kind of %v = %s", err, KindOf(err))
	}
	if !bytes.Equal(before, snapshotBytes(h.tb, h.f)) {
		h.tb.Fatalf("%s: a refusal changed the state", c.Type())
	}
}

func meter(node, inc string, seq uint64, at time.Time, calls map[string]int64) *MeterCalls {
	return &MeterCalls{At: at, Node: node, Incarnation: inc, Seq: seq, Calls: calls}
}

func TestMeterCallsDailyQuota(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base() // other is free: 100 calls a day; acme is paid: no limit
	got := h.must(meter("n1", "i1", 1, t0, map[string]int64{"other": 60, "acme": 500})).(MeterResult)
	if got.Allowed["other"] != 60 || got.Allowed["acme"] != 500 || got.Day != t0.Format(dayLayout) {
		t.Fatalf("first batch: %+v", got)
	}
	// Another node's batch takes the day to its limit: 40 of 50.
	got = h.must(meter("n2", "x", 1, t0.Add(time.Minute), map[string]int64{"other": 50})).(MeterResult)
	if got.Allowed["other"] != 40 {
		t.Fatalf("second batch allowed %d, want 40", got.Allowed["other"])
	}
	// The same batch again (a retry after a leader change) gets the same
	// answer and is counted once.
	again := h.must(meter("n2", "x", 1, t0.Add(2*time.Minute), map[string]int64{"other": 50})).(MeterResult)
	if again.Allowed["other"] != 40 {
		t.Fatalf("repeated batch allowed %d, want the first answer 40", again.Allowed["other"])
	}
	if _, err := h.apply(meter("n2", "x", 0, t0, map[string]int64{"other": 1})); !errors.Is(err, ErrInvalid) {
		t.Fatalf("seq 0: %v", err)
	}
	h.must(meter("n2", "x", 5, t0.Add(3*time.Minute), map[string]int64{"other": 1}))
	if _, err := h.apply(meter("n2", "x", 4, t0.Add(3*time.Minute), map[string]int64{"other": 1})); !errors.Is(err, ErrConflict) {
		t.Fatalf("an older batch: %v, want ErrConflict", err)
	}
	u := h.f.Usage("other", t0, t0.Add(time.Hour))
	if u.APICalls != 100 || u.APICallsDay != 100 {
		t.Fatalf("other's usage %+v, want 100 calls", u)
	}
	if u := h.f.Usage("acme", t0, t0); u.APICalls != 500 {
		t.Fatalf("acme's calls %d, want 500", u.APICalls)
	}
	// The next UTC day starts from zero; the month keeps counting.
	next := time.Date(t0.Year(), t0.Month(), t0.Day()+1, 0, 0, 1, 0, time.UTC)
	got = h.must(meter("n1", "i1", 2, next, map[string]int64{"other": 7})).(MeterResult)
	if got.Allowed["other"] != 7 || h.f.CallsToday("other", next) != 7 {
		t.Fatalf("next day: %+v, today %d", got, h.f.CallsToday("other", next))
	}
	if u := h.f.Usage("other", next, next); u.APICalls != 107 {
		t.Fatalf("month's calls %d, want 107", u.APICalls)
	}
	// An operator's override applies at once, and a reserved tenant has no
	// quota.
	h.must(&SetTenant{At: next, Tenant: "other", Quotas: map[string]*float64{QuotaAPICalls: ptrTo(10.0)}})
	if got := h.must(meter("n1", "i1", 3, next, map[string]int64{"other": 5, "admin": 10000})).(MeterResult); got.Allowed["other"] != 3 || got.Allowed["admin"] != 10000 {
		t.Fatalf("after override: %+v", got)
	}
	// The ledger and the marks survive a snapshot.
	f := NewFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, f), snapshotBytes(t, h.f)) {
		t.Fatal("snapshot after restore differs")
	}
	if u := f.Usage("other", next, next); u.APICalls != 110 || u.APICallsDay != 10 {
		t.Fatalf("restored usage %+v", u)
	}
}

func TestGPUMinuteQuota(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base() // other is free: 10 GPU-minutes a month
	// A one-GPU job with a one-hour timeout is cut to the 10 minutes left.
	h.must(submitCmd("g1", "other", PriorityFree, "", 1))
	h.must(&AssignJob{At: t0, JobID: "g1", Node: "n1", Incarnation: "i1", GPUs: []int{0}, ExpiresAt: t0.Add(time.Minute)})
	l := h.job("g1").Lease
	if time.Duration(l.Limit) != 10*time.Minute || l.LimitQuota != QuotaGPUMinutes {
		t.Fatalf("lease limit %s (%q), want 10m cut by the quota", time.Duration(l.Limit), l.LimitQuota)
	}
	// While it runs, its reservation leaves nothing: a second GPU job is
	// refused at submission, and placement says why a queued one waits.
	h.refusedForQuota(submitCmd("g2", "other", PriorityFree, "", 1), QuotaGPUMinutes)
	if left, ok := h.f.GPUTimeLeft("other", t0); !ok || left != 0 {
		t.Fatalf("left %s %v, want 0", left, ok)
	}
	// A CPU job is not a GPU job: it is taken.
	h.must(submitCmd("c1", "other", PriorityFree, "", 0))
	// The runner stops it at its limit; the mesh's delay is not charged.
	h.must(&CompleteJob{At: t0.Add(10*time.Minute + 1500*time.Millisecond), JobID: "g1", Token: l.Token, State: StateTimedOut})
	if u := h.f.Usage("other", t0, t0.Add(time.Hour)); u.GPUTime != 10*time.Minute {
		t.Fatalf("charged %s, want 10m", u.GPUTime)
	}
	if j := h.job("g1"); j.State != StateTimedOut || !strings.Contains(j.Reason, QuotaGPUMinutes) {
		t.Fatalf("cut job: state %s, reason %q; want timed_out naming the quota", j.State, j.Reason)
	}
	h.refusedForQuota(submitCmd("g3", "other", PriorityFree, "", 1), QuotaGPUMinutes)
	// Next month the minutes are back.
	next := time.Date(t0.Year(), t0.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	c := submitCmd("g4", "other", PriorityFree, "", 2)
	c.At = next
	h.must(c)
	h.must(&AssignJob{At: next, JobID: "g4", Node: "n1", Incarnation: "i1", GPUs: []int{0, 1}, ExpiresAt: next.Add(time.Minute)})
	if got := time.Duration(h.job("g4").Lease.Limit); got != 5*time.Minute {
		t.Fatalf("two GPUs get %s each, want 5m", got)
	}
}

func TestGPUQuotaBlocksPlacement(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	clock := newFakeClock()
	h.f = NewFSM(WithClock(clock.Now))
	h.base()
	// Use the month: 5 minutes on 2 GPUs.
	h.must(submitCmd("g1", "other", PriorityFree, "", 2))
	h.must(&AssignJob{At: t0, JobID: "g1", Node: "n1", Incarnation: "i1", GPUs: []int{0, 1}, ExpiresAt: t0.Add(time.Minute)})
	h.must(&CompleteJob{At: t0.Add(5 * time.Minute), JobID: "g1", Token: h.job("g1").Lease.Token, State: StateSucceeded})
	// An operator gives 10 more minutes, one job queues, then the operator
	// takes them back: the queued job waits and says why.
	h.must(&SetTenant{At: t0, Tenant: "other", Quotas: map[string]*float64{QuotaGPUMinutes: ptrTo(20.0)}})
	h.must(submitCmd("g2", "other", PriorityFree, "", 1))
	h.must(&SetTenant{At: t0, Tenant: "other", Quotas: map[string]*float64{QuotaGPUMinutes: nil}})
	plan := h.f.currentPlan()
	if len(plan.Assign) != 0 || !strings.Contains(plan.Reasons["g2"], "GPU-minute quota") {
		t.Fatalf("plan %+v, want g2 held for the quota", plan)
	}
	if j := h.job("g2"); !strings.Contains(j.Reason, "GPU-minute") {
		t.Fatalf("reason %q", j.Reason)
	}
	h.refusedForQuota(&AssignJob{At: t0, JobID: "g2", Node: "n1", Incarnation: "i1", GPUs: []int{0}, ExpiresAt: t0.Add(time.Minute)}, QuotaGPUMinutes)
	// Next month the plan starts it.
	clock.Advance(31 * 24 * time.Hour)
	if plan := h.f.currentPlan(); len(plan.Assign) != 1 || plan.Assign[0].JobID != "g2" {
		t.Fatalf("next month: %+v", plan)
	}
}

func TestEveryAttemptIsCharged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base() // acme is paid: no GPU quota
	h.must(submitCmd("j", "acme", PriorityPaid, "", 2))
	h.must(&AssignJob{At: t0, JobID: "j", Node: "n1", Incarnation: "i1", GPUs: []int{0, 1}, ExpiresAt: t0.Add(time.Minute)})
	if l := h.job("j").Lease; l.Limit != 0 {
		t.Fatalf("a paid job got a limit %s", time.Duration(l.Limit))
	}
	// The node dies after 30.4 s; the job runs again for 61.6 s.
	h.must(&RequeueJob{At: t0.Add(30400 * time.Millisecond), JobID: "j", Token: h.job("j").Lease.Token, Reason: "node lost"})
	at := t0.Add(time.Minute)
	h.must(&AssignJob{At: at, JobID: "j", Node: "n1", Incarnation: "i1", GPUs: []int{0, 1}, ExpiresAt: at.Add(time.Minute)})
	h.must(&CompleteJob{At: at.Add(61600 * time.Millisecond), JobID: "j", Token: h.job("j").Lease.Token, State: StateSucceeded})
	// Each attempt rounded to the second: (30 + 62) s × 2 GPUs.
	if got := h.f.Usage("acme", t0, t0).GPUTime; got != 184*time.Second {
		t.Fatalf("charged %s, want 3m4s", got)
	}
	if j := h.job("j"); j.Attempts != 2 {
		t.Fatalf("attempts %d", j.Attempts)
	}
}

func TestAttemptAcrossMonthsIsSplit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	start := time.Date(2025, 3, 31, 23, 59, 0, 0, time.UTC)
	c := submitCmd("j", "acme", PriorityPaid, "", 1)
	c.At = start
	h.must(c)
	h.must(&AssignJob{At: start, JobID: "j", Node: "n1", Incarnation: "i1", GPUs: []int{0}, ExpiresAt: start.Add(time.Hour)})
	// While it runs, usage counts it up to now.
	if got := h.f.Usage("acme", start, start.Add(30*time.Second)).GPUTime; got != 30*time.Second {
		t.Fatalf("running: %s", got)
	}
	h.must(&CompleteJob{At: start.Add(3 * time.Minute), JobID: "j", Token: h.job("j").Lease.Token, State: StateSucceeded})
	if a, b := h.f.Usage("acme", start, start).GPUTime, h.f.Usage("acme", start.Add(time.Hour), start).GPUTime; a != time.Minute || b != 2*time.Minute {
		t.Fatalf("March %s, April %s; want 1m and 2m", a, b)
	}
}

func TestStorageQuota(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base() // other stores ds-other: 1024 bytes
	h.must(&SetTenant{At: t0, Tenant: "other", Quotas: map[string]*float64{QuotaStorage: ptrTo(3000.0)}})
	ds := func(id string, size int64) *RegisterDataset {
		c := datasetCmd(id, "other")
		c.Dataset.Size = size
		h.stored(c.Dataset.CID)
		return c
	}
	h.must(ds("a", 1000))
	h.refusedForQuota(ds("b", 1000), QuotaStorage) // 2024 + 1000 > 3000
	// The same object again costs nothing more.
	same := ds("a2", 1000)
	same.Dataset.CID = "cid-a"
	h.must(same)
	h.must(ds("c", 976)) // exactly at the limit
	h.refusedForQuota(submitCmd("j", "other", PriorityFree, "ds-other", 0), QuotaStorage)
	// Raising the limit lets it in again.
	h.must(&SetTenant{At: t0, Tenant: "other", Quotas: map[string]*float64{QuotaStorage: ptrTo(1e6)}})
	h.must(submitCmd("j", "other", PriorityFree, "ds-other", 0))
	// A running job's RunBundle is kept past the limit.
	h.must(&SetTenant{At: t0, Tenant: "other", Quotas: map[string]*float64{QuotaStorage: ptrTo(3000.0)}})
	h.must(&AssignJob{At: t0, JobID: "j", Node: "n1", Incarnation: "i1", ExpiresAt: t0.Add(time.Minute)})
	h.must(&CompleteJob{At: t0.Add(time.Second), JobID: "j", Token: h.job("j").Lease.Token, State: StateSucceeded,
		RunBundle: &BundleRef{CID: "b", SHA256: "s", Size: 5000},
		Operator:  &OperatorEntry{Key: "op1", Ref: BundleRef{CID: "bcid", Size: 700}}})
	if got := h.f.StoredBytes("other"); got != 3000+5000+700 {
		t.Fatalf("stored %d, want datasets + bundle + operator", got)
	}
}

func TestQueuedJobsQuota(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	h.must(&SetTenant{At: t0, Tenant: "acme", Quotas: map[string]*float64{QuotaQueued: ptrTo(2.0)}})
	h.must(submitCmd("q1", "acme", PriorityPaid, "", 0))
	h.must(submitCmd("q2", "acme", PriorityPaid, "", 0))
	h.refusedForQuota(submitCmd("q3", "acme", PriorityPaid, "", 0), QuotaQueued)
	// A resubmission under its idempotency key answers the first job.
	c := submitCmd("q1b", "acme", PriorityPaid, "", 0)
	c.IdempotencyKey = "k"
	h.must(&CancelJob{At: t0, Tenant: "acme", JobID: "q2"})
	h.must(c)
	again := submitCmd("q1c", "acme", PriorityPaid, "", 0)
	again.IdempotencyKey = "k"
	if got := h.must(again).(Job).ID; got != "q1b" {
		t.Fatalf("idempotent resubmission at the cap answered %s", got)
	}
}

func TestSetTenant(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	for _, bad := range []*SetTenant{
		{Tenant: "nobody", Tier: ptrTo("paid")},
		{Tenant: "other", Tier: ptrTo("sprint")},
		{Tenant: "other", Pool: ptrTo("Bad Pool")},
		{Tenant: "other", Quotas: map[string]*float64{"cpu": ptrTo(1.0)}},
		{Tenant: "other", Quotas: map[string]*float64{QuotaStorage: ptrTo(-1.0)}},
	} {
		before := snapshotBytes(t, h.f)
		if _, err := h.apply(bad); err == nil {
			t.Fatalf("%+v accepted", bad)
		}
		if !bytes.Equal(before, snapshotBytes(t, h.f)) {
			t.Fatalf("%+v changed the state", bad)
		}
	}
	got := h.must(&SetTenant{At: t0, Tenant: "other", Tier: ptrTo("paid"), Pool: ptrTo("gpu-a"),
		Quotas: map[string]*float64{QuotaGPUMinutes: ptrTo(0.5)}}).(Tenant)
	q := got.Quotas()
	if got.Tier != "paid" || got.Pool != "gpu-a" || q[QuotaGPUMinutes] != 0.5 || q[QuotaStorage] != 100e9 {
		t.Fatalf("tenant %+v quotas %v", got, q)
	}
	if _, ok := q[QuotaAPICalls]; ok {
		t.Fatalf("paid tenant has a call quota: %v", q)
	}
	// The tenant's keys follow its tier (a key's tier gates priorities).
	if k, _ := h.f.Key("hash-other"); k.Tier != "paid" {
		t.Fatalf("key tier %s", k.Tier)
	}
	got = h.must(&SetTenant{At: t0, Tenant: "other", Pool: ptrTo(PoolShared), Quotas: map[string]*float64{QuotaGPUMinutes: nil}}).(Tenant)
	if got.Pool != "" || got.QuotaOverrides != nil {
		t.Fatalf("after reset: %+v", got)
	}
}

func TestPoolPlacement(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	n := nodeCmd("n-acme", "ia", 2, a100s(2)...)
	n.Node.Pool = "acme"
	h.must(n)
	// other's jobs never go to acme's pool; acme's may use both until
	// pinned.
	h.must(submitCmd("o1", "other", PriorityFree, "", 2))
	h.must(submitCmd("o2", "other", PriorityFree, "", 2))
	plan := h.f.currentPlan()
	if len(plan.Assign) != 1 || plan.Assign[0].Node != "n1" {
		t.Fatalf("other's jobs: %+v", plan.Assign)
	}
	if _, err := h.apply(&AssignJob{At: t0, JobID: "o2", Node: "n-acme", Incarnation: "ia", GPUs: []int{0, 1}, ExpiresAt: t0.Add(time.Minute)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("other's job on acme's pool: %v", err)
	}
	h.must(&SetTenant{At: t0, Tenant: "acme", Pool: ptrTo("acme"), PoolOnly: ptrTo(true)})
	h.must(&RegisterNode{At: t0, Node: Node{ID: "n1", Region: "eu", Incarnation: "i1", Slots: 2, Executors: []string{"builtin"}}}) // no GPUs in the shared pool now
	h.must(submitCmd("a1", "acme", PriorityPaid, "", 2))
	plan = h.f.currentPlan()
	if len(plan.Assign) != 1 || plan.Assign[0].JobID != "a1" || plan.Assign[0].Node != "n-acme" {
		t.Fatalf("acme's job: %+v", plan.Assign)
	}
	// With its pool's node gone, a pinned tenant's job waits and says so.
	h.must(&SetNodeState{At: t0, ID: "n-acme", State: NodeDown})
	h.must(submitCmd("a2", "acme", PriorityPaid, "", 0))
	if why := h.f.currentPlan().Reasons["a2"]; !strings.Contains(why, `pool "acme"`) {
		t.Fatalf("a2 waits because %q", why)
	}
	if _, err := h.apply(&AssignJob{At: t0, JobID: "a2", Node: "n1", Incarnation: "i1", ExpiresAt: t0.Add(time.Minute)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a pinned tenant's job in the shared pool: %v", err)
	}
}

func TestMaxOperatorBytes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		tier string
		want int64
		ok   bool
	}{
		{PriorityFree, 16 << 20, true},
		{"", 16 << 20, true}, // an unset tier is free
		{PriorityPaid, 0, false},
		{PrioritySprint, 0, false},
	} {
		if n, ok := MaxOperatorBytes(c.tier); n != c.want || ok != c.ok {
			t.Errorf("MaxOperatorBytes(%q) = %d, %v; want %d, %v", c.tier, n, ok, c.want, c.ok)
		}
	}
	if _, ok := (&Tenant{Name: "admin", Tier: PriorityFree}).MaxOperatorBytes(); ok {
		t.Error("the reserved tenant has an operator bound")
	}
	if n, ok := (&Tenant{Name: "acme", Tier: PriorityFree}).MaxOperatorBytes(); !ok || n != 16<<20 {
		t.Errorf("a free tenant's bound: %d %v", n, ok)
	}
	err := OperatorTooLarge(PriorityFree, 512<<20, 16<<20)
	if !errors.Is(err, ErrQuota) || QuotaOf(err) != OperatorBound || KindOf(err) != "quota_exceeded" {
		t.Fatalf("OperatorTooLarge: %v (quota %q)", err, QuotaOf(err))
	}
	for _, want := range []string{"512 MiB", "16 MiB", "free tier"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if err := QuotaExceeded(QuotaStorage, "x"); QuotaOf(err) != QuotaStorage {
		t.Errorf("QuotaExceeded names %q", QuotaOf(err))
	}
}
