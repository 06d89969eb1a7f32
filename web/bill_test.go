package web

import (
	"math/big"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// The free allowances of the price list are the free tier's default
// quotas: a change of one without the other fails here.
func TestAllowancesAreFreeQuotas(t *testing.T) {
	t.Parallel()
	q := scheduler.TierQuotas(scheduler.PriorityFree)
	if q[scheduler.QuotaGPUMinutes] != freeGPUMinutes || q[scheduler.QuotaStorage] != freeStorageBytes ||
		q[scheduler.QuotaAPICalls] != freeAPICallsPerDay {
		t.Fatalf("free quotas %v, allowances %d GPU-minutes, %d bytes, %d calls a day", q, freeGPUMinutes, freeStorageBytes, freeAPICallsPerDay)
	}
}

func TestBill(t *testing.T) {
	t.Parallel()
	type want struct {
		gpu, storage, calls, total int64 // cents
	}
	for _, c := range []struct {
		name string
		u    scheduler.TenantUsage
		tier string
		want want
	}{
		{"nothing", scheduler.TenantUsage{Month: "2026-03"}, "free", want{}},
		{"free within allowances", scheduler.TenantUsage{Month: "2026-03", GPUTime: 10 * time.Minute, StorageBytes: 1e9, APICalls: 3100},
			"free", want{}},
		{"free past allowances", scheduler.TenantUsage{Month: "2026-03", GPUTime: 25*time.Minute + 30*time.Second, StorageBytes: 3e9, APICalls: 5000},
			// 15.5 min × 0.5; 2 GB × 0.02; a raised daily quota: 5000 − 31 × 100 calls × 0.001.
			"free", want{775, 4, 190, 969}},
		{"February's allowance of calls", scheduler.TenantUsage{Month: "2026-02", APICalls: 3000}, "free", want{0, 0, 20, 20}},
		{"paid has none", scheduler.TenantUsage{Month: "2026-03", GPUTime: 10 * time.Minute, StorageBytes: 1e9, APICalls: 100},
			"paid", want{500, 2, 10, 512}},
		{"half a cent rounds up", scheduler.TenantUsage{Month: "2026-03", GPUTime: 69 * time.Second, StorageBytes: 750_000_000, APICalls: 145},
			"paid", want{58, 2, 15, 75}},
		{"below half a cent rounds down", scheduler.TenantUsage{Month: "2026-03", GPUTime: 59 * time.Second, APICalls: 4},
			"paid", want{49, 0, 0, 49}},
		{"GPU time to the second", scheduler.TenantUsage{Month: "2026-03", GPUTime: 12*time.Second + 400*time.Millisecond}, "paid", want{10, 0, 0, 10}},
		// 1,000 GPUs for a 31-day month: 44,640,000 GPU-minutes; 1 PB.
		{"large", scheduler.TenantUsage{Month: "2026-03", GPUTime: 1000 * 31 * 24 * time.Hour, StorageBytes: 1e15, APICalls: 1e12},
			"paid", want{2_232_000_000, 2_000_000, 100_000_000_000, 2_232_000_000 + 2_000_000 + 100_000_000_000}},
	} {
		inv := bill(c.u, c.tier)
		got := want{inv.Lines[0].AmountCents, inv.Lines[1].AmountCents, inv.Lines[2].AmountCents, inv.TotalCents}
		if got != c.want {
			t.Errorf("%s: cents %+v, want %+v", c.name, got, c.want)
		}
		if inv.Lines[0].Item != itemGPUMinutes || inv.Lines[1].Item != itemStorage || inv.Lines[2].Item != itemAPICalls {
			t.Errorf("%s: items %+v", c.name, inv.Lines)
		}
		var sum int64
		for _, l := range inv.Lines {
			sum += l.AmountCents
			if l.Amount != centsFloat(l.AmountCents) || l.Billable < 0 || l.Free > l.Quantity {
				t.Errorf("%s: line %+v", c.name, l)
			}
		}
		if sum != inv.TotalCents || inv.Total != centsFloat(sum) {
			t.Errorf("%s: total %v (%d cents), lines sum to %d", c.name, inv.Total, inv.TotalCents, sum)
		}
	}
}

func TestCentsHalfUp(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"0": 0, "0.004999": 0, "0.005": 1, "1.005": 101, "0.145": 15, "7.75": 775, "2/3": 67, "1/600": 0, "1/200": 1} {
		r, _ := new(big.Rat).SetString(in)
		if got := centsHalfUp(r); got != want {
			t.Errorf("centsHalfUp(%s) = %d, want %d", in, got, want)
		}
	}
	for c, want := range map[int64]string{0: "0.00", 5: "0.05", 775: "7.75", 100: "1.00", 123456: "1234.56"} {
		if got := centsString(c); got != want {
			t.Errorf("centsString(%d) = %q, want %q", c, got, want)
		}
	}
}
