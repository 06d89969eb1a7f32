package scheduler

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Quota names (CONTRACT.md §3 "Quotas"), as PATCH /tenants/{t} and
// GET /tenants spell them.
const (
	QuotaAPICalls   = "api_calls_per_day"
	QuotaGPUMinutes = "gpu_minutes_per_month"
	QuotaStorage    = "storage_bytes"
	QuotaQueued     = "queued_jobs"
)

// QuotaNames lists every quota, in the order answers show them.
var QuotaNames = []string{QuotaAPICalls, QuotaGPUMinutes, QuotaStorage, QuotaQueued}

// ValidQuota reports whether name is a quota.
func ValidQuota(name string) bool { return slices.Contains(QuotaNames, name) }

// Pools: a node's pool other than PoolShared runs only jobs of the tenants
// assigned to it.
const PoolShared = "shared"

// tierQuotas are the defaults of each tier; a quota absent is unlimited.
var tierQuotas = map[string]map[string]float64{
	PriorityFree: {QuotaAPICalls: 100, QuotaGPUMinutes: 10, QuotaStorage: 1e9, QuotaQueued: 100},
	PriorityPaid: {QuotaStorage: 100e9, QuotaQueued: 10000},
}

// TierQuotas returns a copy of the default quotas of tier (absent:
// unlimited).
func TierQuotas(tier string) map[string]float64 { return maps.Clone(tierQuotas[tier]) }

// Quotas is a tenant's effective quotas: its tier's defaults with the
// operator's overrides on top. A reserved tenant (the bootstrap admin's)
// has none. Absent means unlimited.
func (t *Tenant) Quotas() map[string]float64 {
	if ReservedTenant(t.Name) {
		return map[string]float64{}
	}
	q := TierQuotas(t.Tier)
	if q == nil {
		q = map[string]float64{}
	}
	for k, v := range t.QuotaOverrides {
		q[k] = v
	}
	return q
}

// quota returns the tenant's limit of name and whether it has one.
func (s *state) quota(tenant, name string) (float64, bool) {
	t, ok := s.tenants[tenant]
	if !ok {
		// A tenant is made with its first key; without one, the tier
		// defaults of free apply (nothing should get here).
		t = &Tenant{Name: tenant, Tier: PriorityFree}
	}
	v, ok := t.Quotas()[name]
	return v, ok
}

// OperatorBound names the bound on the compiled operator one job may make
// (the workload's M×N sign bits, which land in the shared operator cache
// and count to the tenant's storage). It is a tier's, not a quota an
// operator overrides: refusals name it as they name a quota.
const OperatorBound = "operator_bytes"

// tierOperatorBytes bounds, by tier, the compiled operator one job may
// make, in bytes of sign bits; a tier absent has no bound beyond the
// workload's own maximum (a 256×256 image at sampling 1: 512 MiB).
var tierOperatorBytes = map[string]int64{
	PriorityFree: 16 << 20, // e.g. a 128×128 image at sampling 0.5
}

// MaxOperatorBytes is the bound of tier on the compiled operator one job
// may make, and whether it has one. An empty tier counts as free.
func MaxOperatorBytes(tier string) (int64, bool) {
	if tier == "" {
		tier = PriorityFree
	}
	n, ok := tierOperatorBytes[tier]
	return n, ok
}

// MaxOperatorBytes is the bound of the tenant's tier on one job's compiled
// operator; a reserved tenant (the bootstrap admin's) has none.
func (t *Tenant) MaxOperatorBytes() (int64, bool) {
	if ReservedTenant(t.Name) {
		return 0, false
	}
	return MaxOperatorBytes(t.Tier)
}

// OperatorTooLarge is the refusal of a job of tier whose compiled operator
// of need bytes passes the tier's bound: an ErrQuota error that names
// OperatorBound, the bound and the tier.
func OperatorTooLarge(tier string, need, bound int64) error {
	return quotaErr(OperatorBound, "the job would compile a %s operator; the %s tier's bound is %s per job (use a smaller size or sampling)",
		FormatMiB(need), tier, FormatMiB(bound))
}

// FormatMiB writes a byte count in MiB for messages: "16 MiB", "0.5 MiB".
func FormatMiB(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', -1, 64) + " MiB"
}

// QuotaExceeded is a refusal for quota name, as the FSM words its own: an
// ErrQuota error that QuotaOf names. The API uses it to refuse early what
// the FSM would refuse.
func QuotaExceeded(name string, format string, a ...any) error {
	return quotaErr(name, format, a...)
}

// ErrQuota: the tenant is at a quota (the web layer answers 429
// quota_exceeded). Messages name the quota (QuotaOf).
func quotaErr(name string, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrQuota, name, fmt.Sprintf(format, a...))
}

// QuotaOf names the quota (or OperatorBound) an ErrQuota error is about
// ("" when none).
func QuotaOf(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	for _, q := range append(slices.Clone(QuotaNames), OperatorBound) {
		if strings.Contains(msg, ErrQuota.Error()+": "+q+":") {
			return q
		}
	}
	return ""
}

// SetTenant changes a tenant's tier, pool and quota overrides (PATCH
// /tenants/{t}). A nil field is left as it is; a quota mapped to nil goes
// back to the tier's default.
type SetTenant struct {
	At       time.Time           `json:"at"`
	Tenant   string              `json:"tenant"`
	Tier     *string             `json:"tier,omitempty"`
	Pool     *string             `json:"pool,omitempty"`
	PoolOnly *bool               `json:"pool_only,omitempty"`
	Quotas   map[string]*float64 `json:"quotas,omitempty"`
}

func (SetTenant) Type() CommandType { return CmdSetTenant }

// ValidPool reports whether name may name a pool: 1 to 63 characters of
// lower-case letters, digits and '-', starting with a letter or digit.
func ValidPool(name string) bool {
	if name == "" || len(name) > 63 || name[0] == '-' {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func (s *state) setTenant(c *SetTenant) (Tenant, error) {
	t, ok := s.tenants[c.Tenant]
	if !ok {
		return Tenant{}, fmt.Errorf("tenant %s: %w", c.Tenant, ErrNotFound)
	}
	// Check everything before changing anything.
	if c.Tier != nil && *c.Tier != PriorityFree && *c.Tier != PriorityPaid {
		return Tenant{}, fmt.Errorf("tenant %s: %w: tier %q is not free or paid", c.Tenant, ErrInvalid, *c.Tier)
	}
	if c.Pool != nil && *c.Pool != "" && !ValidPool(*c.Pool) {
		return Tenant{}, fmt.Errorf("tenant %s: %w: pool %q: use lower-case letters, digits and '-'", c.Tenant, ErrInvalid, *c.Pool)
	}
	for k, v := range c.Quotas {
		if !ValidQuota(k) {
			return Tenant{}, fmt.Errorf("tenant %s: %w: unknown quota %q (known: %s)", c.Tenant, ErrInvalid, k, strings.Join(QuotaNames, ", "))
		}
		if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0) || *v < 0 || *v > 1e18) {
			return Tenant{}, fmt.Errorf("tenant %s: %w: quota %s must be a number from 0 to 1e18", c.Tenant, ErrInvalid, k)
		}
	}
	if c.Tier != nil && *c.Tier != t.Tier {
		t.Tier = *c.Tier
		// A key's tier gates the priorities it may ask for: the tenant's
		// keys follow its tier.
		for _, k := range s.keys {
			if k.Tenant == t.Name && !k.Admin {
				k.Tier = *c.Tier
			}
		}
	}
	if c.Pool != nil {
		t.Pool = *c.Pool
		if t.Pool == PoolShared {
			t.Pool = ""
		}
	}
	if c.PoolOnly != nil {
		t.PoolOnly = *c.PoolOnly
	}
	for k, v := range c.Quotas {
		if v == nil {
			delete(t.QuotaOverrides, k)
			continue
		}
		if t.QuotaOverrides == nil {
			t.QuotaOverrides = map[string]float64{}
		}
		t.QuotaOverrides[k] = *v
	}
	if len(t.QuotaOverrides) == 0 {
		t.QuotaOverrides = nil
	}
	return cloneTenant(t), nil
}

// poolAllows reports whether a node of pool nodePool may run jobs of a
// tenant assigned to tenantPool ("" = none), pinned there when only.
func poolAllows(nodePool, tenantPool string, only bool) bool {
	if nodePool == "" || nodePool == PoolShared {
		return !(only && tenantPool != "")
	}
	return nodePool == tenantPool
}

// poolOf returns the pool a tenant is assigned to and whether it is pinned.
func (s *state) poolOf(tenant string) (string, bool) {
	if t, ok := s.tenants[tenant]; ok {
		return t.Pool, t.PoolOnly
	}
	return "", false
}

// checkQuotasOnSubmit refuses a submission that a quota forbids: too many
// queued jobs, storage at or over its limit, a GPU job with no GPU-minutes
// left. It changes nothing.
func (s *state) checkQuotasOnSubmit(j *Job, at time.Time) error {
	if q, ok := s.quota(j.Tenant, QuotaQueued); ok {
		n := 0
		for _, o := range s.live {
			if o.Tenant == j.Tenant && o.State == StateQueued {
				n++
			}
		}
		if float64(n+1) > q {
			return quotaErr(QuotaQueued, "tenant %s has %d queued jobs, its limit is %g; wait for some to start or cancel them", j.Tenant, n, q)
		}
	}
	if q, ok := s.quota(j.Tenant, QuotaStorage); ok {
		if used := s.storedBytes(j.Tenant); float64(used) >= q {
			return quotaErr(QuotaStorage, "tenant %s stores %d bytes, its limit is %.0f; delete datasets to submit again", j.Tenant, used, q)
		}
	}
	if j.Resources.GPUs > 0 {
		if left, ok := s.gpuTimeLeft(j.Tenant, at); ok && left < time.Duration(j.Resources.GPUs)*time.Second {
			return quotaErr(QuotaGPUMinutes, "tenant %s has used its GPU-minutes of %s (%s left)", j.Tenant, at.UTC().Format(monthLayout), fmtMinutes(left))
		}
	}
	return nil
}

// gpuTimeLeft is what a tenant with a GPU-minute quota may still use in the
// month of at: the quota less what ended attempts were charged and what
// running attempts may still use (their limits). ok is false without a
// quota.
func (s *state) gpuTimeLeft(tenant string, at time.Time) (time.Duration, bool) {
	q, ok := s.quota(tenant, QuotaGPUMinutes)
	if !ok {
		return 0, false
	}
	left := time.Duration(q * float64(time.Minute))
	if u := s.usage[usageKey(tenant, at)]; u != nil {
		left -= u.GPUTime
	}
	for _, j := range s.live {
		if j.Tenant != tenant || j.State != StateRunning || j.Lease == nil || len(j.Lease.GPUs) == 0 {
			continue
		}
		limit := time.Duration(j.Lease.Limit)
		if limit <= 0 {
			limit = time.Duration(j.Timeout)
		}
		left -= limit * time.Duration(len(j.Lease.GPUs))
	}
	return max(left, 0), true
}

func fmtMinutes(d time.Duration) string {
	return fmt.Sprintf("%.2f GPU-minutes", d.Minutes())
}

// gpuLeftCache holds gpuTimeLeft by tenant for one read of the state
// (gpuTimeLeft scans every job: once per tenant, not once per queued job).
type gpuLeftCache map[string]struct {
	left time.Duration
	ok   bool
}

// quotaBlocked says why a queued job may not start now for a quota, or "".
func (s *state) quotaBlocked(j *Job, at time.Time, cache gpuLeftCache) string {
	if j.Resources.GPUs == 0 {
		return ""
	}
	c, hit := cache[j.Tenant]
	if !hit {
		c.left, c.ok = s.gpuTimeLeft(j.Tenant, at)
		cache[j.Tenant] = c
	}
	if c.ok && c.left < time.Duration(j.Resources.GPUs)*time.Second {
		return fmt.Sprintf("waits for GPU-minutes: the tenant's GPU-minute quota for %s is used (%s left)", at.UTC().Format(monthLayout), fmtMinutes(c.left))
	}
	return ""
}

// quotaLimit is the time limit of an attempt of j starting at at: the job's
// timeout, cut to the GPU-minutes its tenant has left. cut says the quota
// cut it; ErrQuota when nothing is left.
func (s *state) quotaLimit(j *Job, at time.Time) (limit time.Duration, cut bool, err error) {
	limit = time.Duration(j.Timeout)
	if j.Resources.GPUs == 0 {
		return limit, false, nil
	}
	left, ok := s.gpuTimeLeft(j.Tenant, at)
	if !ok {
		return limit, false, nil
	}
	per := (left / time.Duration(j.Resources.GPUs)).Truncate(time.Second)
	if per < time.Second {
		return 0, false, quotaErr(QuotaGPUMinutes, "tenant %s has used its GPU-minutes of %s", j.Tenant, at.UTC().Format(monthLayout))
	}
	if per < limit {
		return per, true, nil
	}
	return limit, false, nil
}
