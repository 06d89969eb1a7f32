package web_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

type usage struct {
	Tenant        string  `json:"tenant"`
	Tier          string  `json:"tier"`
	Month         string  `json:"month"`
	GPUMinutes    float64 `json:"gpu_minutes"`
	StorageBytes  int64   `json:"storage_bytes"`
	StorageGB     float64 `json:"storage_gb"`
	APICalls      int64   `json:"api_calls"`
	APICallsToday *int64  `json:"api_calls_today"`
	Cost          struct {
		GPU, Storage, API, Total float64
	} `json:"cost_usd"`
	Quotas struct {
		GPUMinutesPerMonth *float64 `json:"gpu_minutes_per_month"`
		StorageBytes       *int64   `json:"storage_bytes"`
		StorageGB          *float64 `json:"storage_gb"`
		APICallsPerDay     *int64   `json:"api_calls_per_day"`
		QueuedJobs         *int64   `json:"queued_jobs"`
	} `json:"quotas"`
	Notes []string `json:"notes"`
}

func at(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// meter commits API calls of tenants as a node's metering does.
func (e *env) meter(seq uint64, when time.Time, calls map[string]int64) scheduler.MeterResult {
	e.t.Helper()
	return e.apply(&scheduler.MeterCalls{At: when, Node: "n1", Incarnation: "inc1", Seq: seq, Calls: calls}).(scheduler.MeterResult)
}

// storeBytes gives tenant a dataset of size bytes held by n1, without the
// bytes.
func (e *env) storeBytes(tenant, id string, size int64) {
	e.t.Helper()
	e.node()
	cid := "bafk-test-" + id
	e.apply(&scheduler.BlobStored{At: testNow, CID: cid, Size: size, Kind: scheduler.BlobDataset, Node: "n1"})
	e.apply(&scheduler.RegisterDataset{At: testNow, Dataset: scheduler.Dataset{ID: id, Tenant: tenant, Name: id, CID: cid, Size: size, CreatedAt: testNow}})
}

func (e *env) usage(key, query string) usage {
	e.t.Helper()
	r := e.do("GET", "/usage"+query, key, nil)
	wantStatus(e.t, r, http.StatusOK)
	var u usage
	r.decode(e.t, &u)
	return u
}

// /usage reads the ledger: every attempt's GPU time split between the
// months it spans, running attempts up to now, metered calls, storage now.
func TestUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Enough GPU-minutes for the jobs below (the free 10 stay free).
	e.patchTenant("acme", map[string]any{"quotas": map[string]any{"gpu_minutes_per_month": 1000}})
	ds := e.upload(e.acme, "scan", bytes.Repeat([]byte("d"), 1_000_000))
	gen := map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": 2}}
	// 30 minutes on 2 GPUs in March: 60 GPU-minutes.
	a := e.submit(e.acme, gen)
	e.finishJob(a.ID, at(t, "2026-03-10T10:00:00Z"), at(t, "2026-03-10T10:30:00Z"), []int{0, 1}, bytes.Repeat([]byte("b"), 2_000_000))
	// From February into March on 1 GPU: 30 minutes in each.
	c := e.submit(e.acme, map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": 1}})
	e.finishJob(c.ID, at(t, "2026-02-28T23:30:00Z"), at(t, "2026-03-01T00:30:00Z"), []int{0}, []byte("feb"))
	// CPU-only: no GPU-minutes.
	d := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	e.finishJob(d.ID, at(t, "2026-03-02T00:00:00Z"), at(t, "2026-03-02T00:50:00Z"), nil, []byte("cpu"))
	// Another tenant's usage is not ours.
	g := e.submit(e.globex, gen)
	e.finishJob(g.ID, at(t, "2026-03-03T00:00:00Z"), at(t, "2026-03-03T00:50:00Z"), []int{0, 1}, []byte("globex"))
	// Still running on 1 GPU since 40 minutes before now.
	b := e.submit(e.acme, map[string]any{"type": "calibrate", "dataset": ds.ID, "resources": map[string]any{"gpus": 1}})
	e.runJob(b.ID, testNow.Add(-40*time.Minute), []int{0})
	// Calls: 30 yesterday, 40 today for acme; 7 for globex.
	e.meter(1, testNow.Add(-24*time.Hour), map[string]int64{"acme": 30})
	e.meter(2, testNow, map[string]int64{"acme": 40, "globex": 7})

	u := e.usage(e.acme, "")
	wantBytes := int64(1_000_000 + 2_000_000 + 3 + 3)
	if u.Tenant != "acme" || u.Tier != "free" || u.Month != "2026-03" || u.GPUMinutes != 60+30+40 ||
		u.StorageBytes != wantBytes || u.StorageGB != 0.003000006 || u.APICalls != 70 ||
		u.APICallsToday == nil || *u.APICallsToday != 40 || len(u.Notes) == 0 {
		t.Fatalf("usage %+v", u)
	}
	for _, n := range u.Notes {
		if bytes.Contains([]byte(n), []byte("not metered")) {
			t.Errorf("stale note %q", n)
		}
	}
	// cost_usd is the invoice's: the free 10 GPU-minutes, 1 GB and the
	// calls within 100 a day are not billed.
	if u.Cost.GPU != 60 || u.Cost.Storage != 0 || u.Cost.API != 0 || u.Cost.Total != 60 {
		t.Fatalf("cost %+v", u.Cost)
	}
	q := u.Quotas
	if q.GPUMinutesPerMonth == nil || *q.GPUMinutesPerMonth != 1000 || *q.StorageBytes != 1e9 || *q.StorageGB != 1 ||
		q.APICallsPerDay == nil || *q.APICallsPerDay != 100 || q.QueuedJobs == nil || *q.QueuedJobs != 100 {
		t.Fatalf("free quotas %+v", q)
	}

	u = e.usage(e.acme, "?month=2026-02")
	if u.Month != "2026-02" || u.GPUMinutes != 30 || u.Cost.GPU != 10 || u.APICalls != 0 || u.APICallsToday != nil {
		t.Fatalf("february %+v", u)
	}
	u = e.usage(e.acme, "?month=2025-12")
	if u.GPUMinutes != 0 || u.Cost.GPU != 0 {
		t.Fatalf("december %+v", u)
	}

	u = e.usage(e.globex, "")
	if u.Tier != "paid" || u.GPUMinutes != 100 || u.APICalls != 7 || u.Cost.GPU != 50 || u.Cost.API != 0.01 ||
		u.Quotas.GPUMinutesPerMonth != nil || u.Quotas.APICallsPerDay != nil || *u.Quotas.StorageBytes != 100e9 {
		t.Fatalf("globex %+v", u)
	}

	for _, bad := range []string{"2026-13", "2026-3", "March", "2026-03-01", "202603"} {
		wantError(t, e.do("GET", "/usage?month="+bad, e.acme, nil), http.StatusBadRequest, "invalid_month")
	}
}

// A tenant reads only its own usage; an admin may name another.
func TestUsageIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.meter(1, testNow, map[string]int64{"acme": 3, "globex": 5})
	for _, path := range []string{"/usage", "/usage/invoice"} {
		wantError(t, e.do("GET", path+"?tenant=globex", e.acme, nil), http.StatusForbidden, "forbidden")
		wantError(t, e.do("GET", path+"?tenant=nobody", e.acme, nil), http.StatusForbidden, "forbidden")
		wantError(t, e.do("GET", path+"?tenant=nobody", e.admin, nil), http.StatusNotFound, "not_found")
		wantError(t, e.do("GET", path+"?tenant=No_Name", e.admin, nil), http.StatusBadRequest, "invalid_tenant")
		wantError(t, e.do("GET", path+"?month=2026-3", e.admin, nil), http.StatusBadRequest, "invalid_month")
		for _, c := range []struct{ key, query, tenant string }{
			{e.acme, "", "acme"}, {e.acme, "?tenant=acme", "acme"}, {e.globex, "", "globex"}, {e.admin, "?tenant=globex", "globex"},
		} {
			r := e.do("GET", path+c.query, c.key, nil)
			wantStatus(t, r, http.StatusOK)
			var v struct{ Tenant string }
			r.decode(t, &v)
			if v.Tenant != c.tenant {
				t.Errorf("GET %s%s: tenant %q, want %q", path, c.query, v.Tenant, c.tenant)
			}
		}
	}
	if u := e.usage(e.admin, "?tenant=globex"); u.APICalls != 5 || u.Tier != "paid" {
		t.Fatalf("admin's read of globex %+v", u)
	}
}

// GET /admin/usage: every tenant's month, each as /usage shows it.
func TestAdminUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.meter(1, testNow, map[string]int64{"acme": 3, "globex": 5})
	// A tenant with usage in March and no record any more is listed too.
	e.meter(2, testNow, map[string]int64{"gone": 2})
	r := e.do("GET", "/admin/usage", e.admin, nil)
	wantStatus(t, r, http.StatusOK)
	var l struct{ Tenants []usage }
	r.decode(t, &l)
	got := map[string]int64{}
	var names []string
	for _, u := range l.Tenants {
		got[u.Tenant] = u.APICalls
		names = append(names, u.Tenant)
		if u.Month != "2026-03" {
			t.Errorf("%s: month %q", u.Tenant, u.Month)
		}
	}
	if want := []string{"acme", "admin", "globex", "gone"}; len(names) != len(want) || names[0] != "acme" || names[3] != "gone" {
		t.Fatalf("tenants %v, want %v", names, want)
	}
	if got["acme"] != 3 || got["globex"] != 5 || got["gone"] != 2 {
		t.Fatalf("calls %v", got)
	}
	r = e.do("GET", "/admin/usage?month=2026-02", e.admin, nil)
	wantStatus(t, r, http.StatusOK)
	l.Tenants = nil
	r.decode(t, &l)
	for _, u := range l.Tenants {
		if u.APICalls != 0 || u.Month != "2026-02" {
			t.Errorf("february %+v", u)
		}
	}
	wantError(t, e.do("GET", "/admin/usage?month=26-02", e.admin, nil), http.StatusBadRequest, "invalid_month")
}

// Pruning finished jobs changes no month's usage: the ledger, not the job
// records, holds their GPU time.
func TestUsageSurvivesPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.patchTenant("acme", map[string]any{"quotas": map[string]any{"gpu_minutes_per_month": 1000}})
	gpus := func(n int) map[string]any {
		return map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": n}}
	}
	// Pruned below: 1 hour on 1 GPU from February into March (30 minutes
	// each), 45 minutes on 2 GPUs in March, and globex's 10 minutes on 2 GPUs.
	feb := e.submit(e.acme, gpus(1))
	e.finishJob(feb.ID, at(t, "2026-02-28T23:30:00Z"), at(t, "2026-03-01T00:30:00Z"), []int{0}, []byte("feb"))
	early := e.submit(e.acme, gpus(2))
	e.finishJob(early.ID, at(t, "2026-03-03T00:00:00Z"), at(t, "2026-03-03T00:45:00Z"), []int{0, 1}, []byte("early"))
	other := e.submit(e.globex, gpus(2))
	e.finishJob(other.ID, at(t, "2026-03-03T01:00:00Z"), at(t, "2026-03-03T01:10:00Z"), []int{0, 1}, []byte("globex"))
	// Kept: 30 minutes on 2 GPUs after the cutoff, and one still running
	// on 1 GPU since 40 minutes before now.
	late := e.submit(e.acme, gpus(2))
	e.finishJob(late.ID, at(t, "2026-03-10T10:00:00Z"), at(t, "2026-03-10T10:30:00Z"), []int{0, 1}, []byte("late"))
	running := e.submit(e.acme, gpus(1))
	e.runJob(running.ID, testNow.Add(-40*time.Minute), []int{0})

	type month struct{ key, name, month string }
	months := []month{{e.acme, "acme", "2026-02"}, {e.acme, "acme", "2026-03"}, {e.globex, "globex", "2026-03"}}
	want := map[month]float64{months[0]: 30, months[1]: 30 + 90 + 60 + 40, months[2]: 20}
	for _, m := range months {
		if got := e.usage(m.key, "?month="+m.month).GPUMinutes; got != want[m] {
			t.Fatalf("before the prune: %s %s: %v GPU-minutes, want %v", m.name, m.month, got, want[m])
		}
	}

	e.apply(&scheduler.ExpireBundles{At: testNow, Jobs: []string{feb.ID, early.ID, other.ID, late.ID}})
	cut := at(t, "2026-03-05T00:00:00Z")
	res := e.apply(&scheduler.PruneJobs{At: testNow, JobsBefore: cut, IdempotencyBefore: cut}).(scheduler.PruneResult)
	if res.Jobs != 3 {
		t.Fatalf("pruned %+v, want 3 jobs", res)
	}
	for _, j := range []struct{ key, id string }{{e.acme, feb.ID}, {e.acme, early.ID}, {e.globex, other.ID}} {
		wantError(t, e.do("GET", "/jobs/"+j.id, j.key, nil), http.StatusNotFound, "not_found")
	}
	for _, m := range months {
		if got := e.usage(m.key, "?month="+m.month).GPUMinutes; got != want[m] {
			t.Errorf("after the prune: %s %s: %v GPU-minutes, want %v as before", m.name, m.month, got, want[m])
		}
	}
}
