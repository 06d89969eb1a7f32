package web_test

import (
	"bytes"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

type usage struct {
	Tenant       string  `json:"tenant"`
	Tier         string  `json:"tier"`
	Month        string  `json:"month"`
	GPUMinutes   float64 `json:"gpu_minutes"`
	StorageBytes int64   `json:"storage_bytes"`
	StorageGB    float64 `json:"storage_gb"`
	APICalls     int64   `json:"api_calls"`
	Cost         struct {
		GPU, Storage, API, Total float64
	} `json:"cost_usd"`
	Quotas struct {
		GPUMinutesPerMonth *float64 `json:"gpu_minutes_per_month"`
		StorageBytes       *int64   `json:"storage_bytes"`
		StorageGB          *float64 `json:"storage_gb"`
		APICallsPerDay     *int64   `json:"api_calls_per_day"`
	} `json:"quotas"`
	Notes []string `json:"notes"`
}

func TestUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ds := e.upload(e.acme, "scan", bytes.Repeat([]byte("d"), 1_000_000))
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	gen := map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": 2}}
	// 30 minutes on 2 GPUs in March: 60 GPU-minutes.
	a := e.submit(e.acme, gen)
	e.finishJob(a.ID, at("2026-03-10T10:00:00Z"), at("2026-03-10T10:30:00Z"), []int{0, 1}, bytes.Repeat([]byte("b"), 2_000_000))
	// Started in February (2 hours on 1 GPU): counted there, not in March.
	c := e.submit(e.acme, map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": 1}})
	e.finishJob(c.ID, at("2026-02-28T23:00:00Z"), at("2026-03-01T01:00:00Z"), []int{0}, []byte("feb"))
	// CPU-only: no GPU-minutes.
	d := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	e.finishJob(d.ID, at("2026-03-02T00:00:00Z"), at("2026-03-02T05:00:00Z"), nil, []byte("cpu"))
	// Another tenant's usage is not ours.
	g := e.submit(e.globex, gen)
	e.finishJob(g.ID, at("2026-03-03T00:00:00Z"), at("2026-03-03T05:00:00Z"), []int{0, 1}, []byte("globex"))

	// Still running on 1 GPU since an hour before now: 60 GPU-minutes.
	b := e.submit(e.acme, map[string]any{"type": "calibrate", "dataset": ds.ID, "resources": map[string]any{"gpus": 1}})
	e.runJob(b.ID, testNow.Add(-time.Hour), []int{0})

	var u usage
	r := e.do("GET", "/usage", e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &u)
	wantBytes := int64(1_000_000 + 2_000_000 + 3 + 3)
	if u.Tenant != "acme" || u.Tier != "free" || u.Month != "2026-03" || u.GPUMinutes != 120 ||
		u.StorageBytes != wantBytes || u.StorageGB != 0.003000006 || u.APICalls != 0 || len(u.Notes) == 0 {
		t.Fatalf("usage %+v", u)
	}
	if !near(u.Cost.GPU, 60) || !near(u.Cost.Storage, 0.003000006*0.02) || u.Cost.API != 0 || !near(u.Cost.Total, 60+0.003000006*0.02) {
		t.Fatalf("cost %+v", u.Cost)
	}
	q := u.Quotas
	if q.GPUMinutesPerMonth == nil || *q.GPUMinutesPerMonth != 10 || *q.StorageBytes != 1e9 || *q.StorageGB != 1 ||
		q.APICallsPerDay == nil || *q.APICallsPerDay != 100 {
		t.Fatalf("free quotas %+v", q)
	}

	e.do("GET", "/usage?month=2026-02", e.acme, nil).decode(t, &u)
	if u.Month != "2026-02" || u.GPUMinutes != 120 || !near(u.Cost.GPU, 60) {
		t.Fatalf("february %+v", u)
	}
	e.do("GET", "/usage?month=2025-12", e.acme, nil).decode(t, &u)
	if u.GPUMinutes != 0 || u.Cost.GPU != 0 {
		t.Fatalf("december %+v", u)
	}

	u = usage{}
	e.do("GET", "/usage", e.globex, nil).decode(t, &u)
	if u.Tier != "paid" || u.GPUMinutes != 600 || u.Quotas.GPUMinutesPerMonth != nil || u.Quotas.APICallsPerDay != nil ||
		*u.Quotas.StorageBytes != 100e9 {
		t.Fatalf("globex %+v", u)
	}

	for _, bad := range []string{"2026-13", "2026-3", "March", "2026-03-01", "202603"} {
		wantError(t, e.do("GET", "/usage?month="+bad, e.acme, nil), http.StatusBadRequest, "invalid_month")
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// Pruning finished jobs from the state changes no month's usage: their
// GPU time is kept per tenant and month (scheduler.PruneJobs) and /usage
// adds it to the records still there.
func TestUsageSurvivesPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	gpus := func(n int) map[string]any {
		return map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": n}}
	}
	// Pruned below: 2 hours on 1 GPU from February into March (February's),
	// 45 minutes on 2 GPUs in March, and globex's 10 minutes on 2 GPUs.
	feb := e.submit(e.acme, gpus(1))
	e.finishJob(feb.ID, at("2026-02-28T23:00:00Z"), at("2026-03-01T01:00:00Z"), []int{0}, []byte("feb"))
	early := e.submit(e.acme, gpus(2))
	e.finishJob(early.ID, at("2026-03-03T00:00:00Z"), at("2026-03-03T00:45:00Z"), []int{0, 1}, []byte("early"))
	other := e.submit(e.globex, gpus(2))
	e.finishJob(other.ID, at("2026-03-03T01:00:00Z"), at("2026-03-03T01:10:00Z"), []int{0, 1}, []byte("globex"))
	// Kept: 30 minutes on 2 GPUs after the cutoff, and one still running
	// on 1 GPU since an hour before now.
	late := e.submit(e.acme, gpus(2))
	e.finishJob(late.ID, at("2026-03-10T10:00:00Z"), at("2026-03-10T10:30:00Z"), []int{0, 1}, []byte("late"))
	running := e.submit(e.acme, gpus(1))
	e.runJob(running.ID, testNow.Add(-time.Hour), []int{0})

	read := func(key, month string) float64 {
		t.Helper()
		var u usage
		r := e.do("GET", "/usage?month="+month, key, nil)
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &u)
		return u.GPUMinutes
	}
	type month struct{ key, name, month string }
	months := []month{{e.acme, "acme", "2026-02"}, {e.acme, "acme", "2026-03"}, {e.globex, "globex", "2026-03"}}
	want := map[month]float64{months[0]: 120, months[1]: 90 + 60 + 60, months[2]: 20}
	for _, m := range months {
		if got := read(m.key, m.month); got != want[m] {
			t.Fatalf("before the prune: %s %s: %v GPU-minutes, want %v", m.name, m.month, got, want[m])
		}
	}

	e.apply(&scheduler.ExpireBundles{At: testNow, Jobs: []string{feb.ID, early.ID, other.ID, late.ID}})
	cut := at("2026-03-05T00:00:00Z")
	res := e.apply(&scheduler.PruneJobs{At: testNow, JobsBefore: cut, IdempotencyBefore: cut}).(scheduler.PruneResult)
	if res.Jobs != 3 {
		t.Fatalf("pruned %+v, want 3 jobs", res)
	}
	for _, j := range []struct{ key, id string }{{e.acme, feb.ID}, {e.acme, early.ID}, {e.globex, other.ID}} {
		wantError(t, e.do("GET", "/jobs/"+j.id, j.key, nil), http.StatusNotFound, "not_found")
	}
	for _, m := range months {
		if got := read(m.key, m.month); got != want[m] {
			t.Errorf("after the prune: %s %s: %v GPU-minutes, want %v as before", m.name, m.month, got, want[m])
		}
	}
}
