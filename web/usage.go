package web

import (
	"math"
	"net/http"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// Prices and quotas of MISSION.md. Storage is counted in decimal
// gigabytes (1 GB = 10^9 bytes).
const (
	priceGPUMinute = 0.50  // dollars per GPU-minute
	priceGBMonth   = 0.02  // dollars per GB-month
	priceAPICall   = 0.001 // dollars per call
	bytesPerGB     = 1e9

	freeGPUMinutes     = 10
	freeStorageBytes   = 1 * bytesPerGB
	freeAPICallsPerDay = 100
	paidStorageBytes   = 100 * bytesPerGB
)

type usageCost struct {
	GPU     float64 `json:"gpu"`
	Storage float64 `json:"storage"`
	API     float64 `json:"api"`
	Total   float64 `json:"total"`
}

// quotas: a null limit is unlimited.
type quotas struct {
	GPUMinutesPerMonth *float64 `json:"gpu_minutes_per_month"`
	StorageBytes       *int64   `json:"storage_bytes"`
	StorageGB          *float64 `json:"storage_gb"`
	APICallsPerDay     *int64   `json:"api_calls_per_day"`
}

type usageAnswer struct {
	Tenant       string    `json:"tenant"`
	Tier         string    `json:"tier"`
	Month        string    `json:"month"`
	GPUMinutes   float64   `json:"gpu_minutes"`
	StorageBytes int64     `json:"storage_bytes"`
	StorageGB    float64   `json:"storage_gb"`
	APICalls     int64     `json:"api_calls"`
	Cost         usageCost `json:"cost_usd"`
	Quotas       quotas    `json:"quotas"`
	Notes        []string  `json:"notes"`
}

const monthLayout = "2006-01"

// getUsage handles GET /usage[?month=YYYY-MM]: the caller's tenant's usage
// computed from the replicated state.
func (s *Server) getUsage(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	now := s.now()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	if v := r.URL.Query().Get("month"); v != "" {
		m, err := time.Parse(monthLayout, v)
		if err != nil || m.Format(monthLayout) != v {
			return nil, badRequest("invalid_month", "month must be YYYY-MM, e.g. %s", now.Format(monthLayout))
		}
		month = m
	}
	tier := c.tier()
	if t, ok := s.deps.State.Tenant(c.tenant()); ok && t.Tier != "" {
		tier = t.Tier
	}
	jobs, _ := s.deps.State.Jobs(scheduler.JobFilter{Tenant: c.tenant()})
	u := usageAnswer{Tenant: c.tenant(), Tier: tier, Month: month.Format(monthLayout)}
	// Pruned jobs are gone from the records but not from the month's bill.
	pruned := s.deps.State.PrunedGPUTime(c.tenant(), u.Month)
	u.GPUMinutes = round6(gpuMinutes(jobs, month, month.AddDate(0, 1, 0), now) + pruned.Minutes())
	u.StorageBytes = s.deps.State.StoredBytes(c.tenant())
	gb := float64(u.StorageBytes) / bytesPerGB
	u.StorageGB = math.Round(gb*1e9) / 1e9 // to the byte
	u.Cost.GPU = round6(u.GPUMinutes * priceGPUMinute)
	u.Cost.Storage = round6(gb * priceGBMonth)
	u.Cost.API = round6(float64(u.APICalls) * priceAPICall)
	u.Cost.Total = round6(u.Cost.GPU + u.Cost.Storage + u.Cost.API)
	u.Quotas = tierQuotas(tier)
	u.Notes = []string{
		"api_calls is not metered yet and reads 0; API calls cost nothing until metering ships",
		"storage is the tenant's datasets (sealed size) and kept RunBundles stored now, each object once however many copies exist, priced as a whole month",
		"gpu_minutes counts jobs that started in the month, up to their end or now, including jobs whose records were pruned",
	}
	return u, nil
}

// gpuMinutes sums (end - start) × GPUs over the jobs that started in
// [from, to); a job still running ends now.
func gpuMinutes(jobs []scheduler.Job, from, to, now time.Time) float64 {
	var total float64
	for _, j := range jobs {
		if j.StartedAt == nil || j.StartedAt.Before(from) || !j.StartedAt.Before(to) {
			continue
		}
		end := now
		if j.FinishedAt != nil {
			end = *j.FinishedAt
		}
		if d := end.Sub(*j.StartedAt); d > 0 {
			total += d.Minutes() * float64(max(j.Resources.GPUs, 0))
		}
	}
	return round6(total)
}

func tierQuotas(tier string) quotas {
	ptr := func(v float64) *float64 { return &v }
	iptr := func(v int64) *int64 { return &v }
	if tier == scheduler.PriorityFree {
		return quotas{
			GPUMinutesPerMonth: ptr(freeGPUMinutes),
			StorageBytes:       iptr(freeStorageBytes),
			StorageGB:          ptr(freeStorageBytes / bytesPerGB),
			APICallsPerDay:     iptr(freeAPICallsPerDay),
		}
	}
	return quotas{StorageBytes: iptr(paidStorageBytes), StorageGB: ptr(paidStorageBytes / bytesPerGB)}
}

// round6 rounds to a millionth (of a minute or a dollar).
func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }
