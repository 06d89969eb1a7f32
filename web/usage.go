package web

import (
	"math"
	"net/http"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
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
	QueuedJobs         *int64   `json:"queued_jobs"`
}

type usageAnswer struct {
	Tenant       string  `json:"tenant"`
	Tier         string  `json:"tier"`
	Month        string  `json:"month"`
	GPUMinutes   float64 `json:"gpu_minutes"`
	StorageBytes int64   `json:"storage_bytes"`
	StorageGB    float64 `json:"storage_gb"`
	APICalls     int64   `json:"api_calls"`
	// APICallsToday is today's (UTC) count, which the daily quota limits;
	// null for another month than the current one.
	APICallsToday *int64    `json:"api_calls_today"`
	Cost          usageCost `json:"cost_usd"`
	Quotas        quotas    `json:"quotas"`
	Notes         []string  `json:"notes"`
}

type usageList struct {
	Tenants []usageAnswer `json:"tenants"`
}

const monthLayout = "2006-01"

var usageNotes = []string{
	"gpu_minutes is GPUs × run time of every attempt in the month, to the second (a run that spans two months is split between them; a running one counts up to now), including jobs whose records were pruned",
	"api_calls counts every authenticated request of the tenant once, on whichever node it landed; api_calls_today is today's (UTC) count, which the daily quota limits",
	"storage is the tenant's datasets (sealed size), kept RunBundles and the compiled operators its jobs made, stored now, each object once however many copies exist, priced as a whole month",
	"cost_usd is what the month's invoice bills (GET /usage/invoice): the free tier's allowances are not billed; amounts are rounded to the cent",
}

// getUsage handles GET /usage[?month=YYYY-MM][&tenant=T]: the caller's
// tenant's month (another tenant's for an admin) from the usage ledger.
func (s *Server) getUsage(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	month, err := s.usageMonth(r)
	if err != nil {
		return nil, err
	}
	tenant, tier, err := s.usageTenant(r, c)
	if err != nil {
		return nil, err
	}
	return s.usageOf(tenant, tier, month), nil
}

// adminUsage handles GET /admin/usage[?month=YYYY-MM] (admin): the month
// of every tenant that has a record or used something in it.
func (s *Server) adminUsage(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	if err := requireAdmin(c, "read every tenant's usage"); err != nil {
		return nil, err
	}
	month, err := s.usageMonth(r)
	if err != nil {
		return nil, err
	}
	names := s.deps.State.UsageTenants(month)
	out := usageList{Tenants: make([]usageAnswer, 0, len(names))}
	for _, t := range names {
		out.Tenants = append(out.Tenants, s.usageOf(t, s.tierOf(t, ""), month))
	}
	return out, nil
}

// usageOf is a tenant's month as /usage answers it.
func (s *Server) usageOf(tenant, tier string, month time.Time) usageAnswer {
	now := s.now()
	u := s.deps.State.Usage(tenant, month, now)
	inv := bill(u, tier)
	a := usageAnswer{Tenant: tenant, Tier: tier, Month: u.Month, StorageBytes: u.StorageBytes, APICalls: u.APICalls,
		Quotas: s.quotasOf(tenant, tier), Notes: usageNotes}
	for _, l := range inv.Lines {
		switch l.Item {
		case itemGPUMinutes:
			a.GPUMinutes, a.Cost.GPU = l.Quantity, l.Amount
		case itemStorage:
			a.StorageGB, a.Cost.Storage = l.Quantity, l.Amount
		case itemAPICalls:
			a.Cost.API = l.Amount
		}
	}
	a.Cost.Total = inv.Total
	if u.Month == now.Format(monthLayout) {
		a.APICallsToday = &u.APICallsDay
	}
	return a
}

// usageMonth reads ?month=YYYY-MM (default: the current UTC month).
func (s *Server) usageMonth(r *http.Request) (time.Time, error) {
	now := s.now()
	v := r.URL.Query().Get("month")
	if v == "" {
		return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), nil
	}
	m, err := time.Parse(monthLayout, v)
	if err != nil || m.Format(monthLayout) != v {
		return time.Time{}, badRequest("invalid_month", "month must be YYYY-MM, e.g. %s", now.Format(monthLayout))
	}
	return m, nil
}

// usageTenant is the tenant a usage read is about, and its tier: the
// caller's, or ?tenant= for an admin key (another key may name only its
// own tenant).
func (s *Server) usageTenant(r *http.Request, c *caller) (tenant, tier string, err error) {
	tenant = c.tenant()
	v := r.URL.Query().Get("tenant")
	if v == "" || v == tenant {
		return tenant, s.tierOf(tenant, c.tier()), nil
	}
	if !c.key.Admin {
		return "", "", apiError(http.StatusForbidden, "forbidden", "only an admin key may read another tenant's usage")
	}
	if !tenantPattern.MatchString(v) {
		return "", "", badRequest("invalid_tenant", "tenant must be 1 to 63 characters of a-z, 0-9 and '-'")
	}
	if _, ok := s.deps.State.Tenant(v); !ok {
		return "", "", notFound("tenant " + v)
	}
	return v, s.tierOf(v, ""), nil
}

// tierOf is a tenant's tier: its record's, else fallback, else free.
func (s *Server) tierOf(tenant, fallback string) string {
	if t, ok := s.deps.State.Tenant(tenant); ok && t.Tier != "" {
		return t.Tier
	}
	if fallback != "" {
		return fallback
	}
	return scheduler.PriorityFree
}

// quotasOf is a tenant's effective quotas (its tier's with the operator's
// overrides; a tenant without a record has its tier's).
func (s *Server) quotasOf(tenant, tier string) quotas {
	t, ok := s.deps.State.Tenant(tenant)
	if !ok {
		t = scheduler.Tenant{Name: tenant, Tier: tier}
	}
	q := t.Quotas()
	var out quotas
	num := func(name string) (float64, bool) { v, ok := q[name]; return v, ok }
	if v, ok := num(scheduler.QuotaGPUMinutes); ok {
		out.GPUMinutesPerMonth = &v
	}
	if v, ok := num(scheduler.QuotaStorage); ok {
		b, gb := int64(math.Floor(v)), v/bytesPerGB
		out.StorageBytes, out.StorageGB = &b, &gb
	}
	if v, ok := num(scheduler.QuotaAPICalls); ok {
		n := int64(math.Floor(v))
		out.APICallsPerDay = &n
	}
	if v, ok := num(scheduler.QuotaQueued); ok {
		n := int64(math.Floor(v))
		out.QueuedJobs = &n
	}
	return out
}

// requireAdmin refuses a key that is not an admin's with 403.
func requireAdmin(c *caller, what string) error {
	if !c.key.Admin {
		return apiError(http.StatusForbidden, "forbidden", "only an admin key may %s", what)
	}
	return nil
}
