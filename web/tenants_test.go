package web_test

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

type tenantJSON struct {
	Tenant    string              `json:"tenant"`
	Tier      string              `json:"tier"`
	Pool      string              `json:"pool"`
	PoolOnly  bool                `json:"pool_only"`
	Quotas    map[string]*float64 `json:"quotas"`
	Overrides map[string]float64  `json:"overrides"`
	CreatedAt time.Time           `json:"created_at"`
}

func num(v float64) *float64 { return &v }

// quotaMap builds the quotas of a tenant answer (nil: unlimited).
func quotaMap(calls, gpu, storage, queued *float64) map[string]*float64 {
	return map[string]*float64{scheduler.QuotaAPICalls: calls, scheduler.QuotaGPUMinutes: gpu,
		scheduler.QuotaStorage: storage, scheduler.QuotaQueued: queued}
}

func (e *env) tenant(name string) tenantJSON {
	e.t.Helper()
	r := e.do("GET", "/tenants/"+name, e.admin, nil)
	wantStatus(e.t, r, http.StatusOK)
	var v tenantJSON
	r.decode(e.t, &v)
	return v
}

// patchTenant sends an admin's PATCH /tenants/{name} and wants 200.
func (e *env) patchTenant(name string, body any) tenantJSON {
	e.t.Helper()
	r := e.doJSON("PATCH", "/tenants/"+name, e.admin, body)
	wantStatus(e.t, r, http.StatusOK)
	var v tenantJSON
	r.decode(e.t, &v)
	return v
}

func TestTenantsList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("GET", "/tenants", e.admin, nil)
	wantStatus(t, r, http.StatusOK)
	var l struct{ Tenants []tenantJSON }
	r.decode(t, &l)
	want := []tenantJSON{
		{Tenant: "acme", Tier: "free", Pool: "shared", Quotas: quotaMap(num(100), num(10), num(1e9), num(100)), Overrides: map[string]float64{}, CreatedAt: testNow},
		{Tenant: "admin", Tier: "paid", Pool: "shared", Quotas: quotaMap(nil, nil, nil, nil), Overrides: map[string]float64{}, CreatedAt: testNow},
		{Tenant: "globex", Tier: "paid", Pool: "shared", Quotas: quotaMap(nil, nil, num(100e9), num(10000)), Overrides: map[string]float64{}, CreatedAt: testNow},
	}
	if !reflect.DeepEqual(l.Tenants, want) {
		t.Fatalf("tenants\n got %+v\nwant %+v\n%s", l.Tenants, want, r.body)
	}
	if got := e.tenant("globex"); !reflect.DeepEqual(got, want[2]) {
		t.Fatalf("GET /tenants/globex = %+v", got)
	}
	wantError(t, e.do("GET", "/tenants/nobody", e.admin, nil), http.StatusNotFound, "not_found")
	wantError(t, e.do("GET", "/tenants/Not_A_Name", e.admin, nil), http.StatusBadRequest, "invalid_tenant")
}

// Only admin keys read or change tenants, and a refusal changes nothing.
func TestTenantsAdminOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, key := range []string{e.acme, e.globex} {
		e.unchanged(func() {
			wantError(t, e.do("GET", "/tenants", key, nil), http.StatusForbidden, "forbidden")
			wantError(t, e.do("GET", "/tenants/acme", key, nil), http.StatusForbidden, "forbidden")
			wantError(t, e.do("GET", "/tenants/nobody", key, nil), http.StatusForbidden, "forbidden")
			wantError(t, e.doJSON("PATCH", "/tenants/acme", key, map[string]any{"tier": "paid"}), http.StatusForbidden, "forbidden")
			wantError(t, e.doJSON("PATCH", "/tenants/acme", key, map[string]any{"quotas": map[string]any{"api_calls_per_day": nil}}),
				http.StatusForbidden, "forbidden")
			wantError(t, e.do("GET", "/admin/usage", key, nil), http.StatusForbidden, "forbidden")
		})
	}
	if got := e.tenant("acme"); got.Tier != "free" || len(got.Overrides) != 0 {
		t.Fatalf("acme changed: %+v", got)
	}
	wantError(t, e.do("GET", "/tenants", "", nil), http.StatusUnauthorized, "unauthorized")
}

func TestTenantPatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	got := e.patchTenant("acme", map[string]any{"pool": "gpu-a", "pool_only": true,
		"quotas": map[string]any{"gpu_minutes_per_month": 0.5, "storage_bytes": 5_000_000}})
	want := tenantJSON{Tenant: "acme", Tier: "free", Pool: "gpu-a", PoolOnly: true,
		Quotas:    quotaMap(num(100), num(0.5), num(5e6), num(100)),
		Overrides: map[string]float64{"gpu_minutes_per_month": 0.5, "storage_bytes": 5e6}, CreatedAt: testNow}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PATCH answered %+v\nwant %+v", got, want)
	}
	if got := e.tenant("acme"); !reflect.DeepEqual(got, want) {
		t.Fatalf("GET after PATCH = %+v", got)
	}
	if tn, _ := e.fsm.Tenant("acme"); tn.Pool != "gpu-a" || !tn.PoolOnly || tn.QuotaOverrides["storage_bytes"] != 5e6 {
		t.Fatalf("state %+v", tn)
	}

	// A paid tier, a quota back to the tier's default, the shared pool.
	got = e.patchTenant("acme", map[string]any{"tier": "paid", "pool": "shared", "pool_only": false,
		"quotas": map[string]any{"gpu_minutes_per_month": nil}})
	want = tenantJSON{Tenant: "acme", Tier: "paid", Pool: "shared",
		Quotas:    quotaMap(nil, nil, num(5e6), num(10000)),
		Overrides: map[string]float64{"storage_bytes": 5e6}, CreatedAt: testNow}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PATCH answered %+v\nwant %+v", got, want)
	}
	// The tenant's keys follow its tier: /usage says paid.
	var u usage
	e.do("GET", "/usage", e.acme, nil).decode(t, &u)
	if u.Tier != "paid" || u.Quotas.GPUMinutesPerMonth != nil || *u.Quotas.StorageBytes != 5e6 || *u.Quotas.QueuedJobs != 10000 {
		t.Fatalf("usage after PATCH %+v", u)
	}
	// An empty patch changes nothing and answers the tenant.
	e.unchanged(func() {
		r := e.doJSON("PATCH", "/tenants/acme", e.admin, map[string]any{})
		wantStatus(t, r, http.StatusOK)
		var v tenantJSON
		r.decode(t, &v)
		if !reflect.DeepEqual(v, want) {
			t.Fatalf("empty PATCH answered %+v", v)
		}
	})
}

func TestTenantPatchRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"acme", `{"quotas":{"gpu_hours":5}}`, 400, "unknown_quota"},
		{"acme", `{"quotas":{"storage_bytes":-1}}`, 400, "invalid_quota"},
		{"acme", `{"quotas":{"storage_bytes":"5"}}`, 400, "invalid_quota"},
		{"acme", `{"quotas":{"storage_bytes":true}}`, 400, "invalid_quota"},
		{"acme", `{"quotas":{"storage_bytes":{}}}`, 400, "invalid_quota"},
		{"acme", `{"quotas":{"storage_bytes":[1]}}`, 400, "invalid_quota"},
		{"acme", `{"quotas":{"storage_bytes":2e18}}`, 400, "invalid_quota"},
		{"acme", `{"quotas":{"storage_bytes":1e400}}`, 400, "invalid_quota"},
		{"acme", `{"quotas":{"queued_jobs":1,"gpu_hours":2}}`, 400, "unknown_quota"},
		{"acme", `{"quotas":[1]}`, 400, "invalid_json"},
		{"acme", `{"quotas":5}`, 400, "invalid_json"},
		{"acme", `{"tier":"gold"}`, 400, "invalid_tier"},
		{"acme", `{"tier":5}`, 400, "invalid_json"},
		{"acme", `{"pool":"Not A Pool"}`, 400, "invalid_pool"},
		{"acme", `{"pool":7}`, 400, "invalid_json"},
		{"acme", `{"pool_only":"yes"}`, 400, "invalid_json"},
		{"acme", `{"colour":"red"}`, 400, "invalid_json"},
		{"acme", `{"tier":"paid","tier":"free"}`, 400, "duplicate_key"},
		{"acme", `{"quotas":{"queued_jobs":1,"queued_jobs":2}}`, 400, "duplicate_key"},
		{"acme", `{"tier":"paid"`, 400, "invalid_json"},
		{"acme", `{"tier":"paid"} {}`, 400, "invalid_json"},
		{"nobody", `{"tier":"paid"}`, 404, "not_found"},
		{"Bad_Name", `{"tier":"paid"}`, 400, "invalid_tenant"},
		{"admin", `{"quotas":{"queued_jobs":5}}`, 400, "reserved_tenant"},
	} {
		e.unchanged(func() {
			r := e.doJSON("PATCH", "/tenants/"+c.path, e.admin, c.body)
			if r.status != c.status {
				t.Fatalf("PATCH %s %s: status %d, want %d: %s", c.path, c.body, r.status, c.status, r.body)
			}
			wantError(t, r, c.status, c.code)
		})
	}
	if got := e.tenant("acme"); got.Tier != "free" || got.Pool != "shared" || len(got.Overrides) != 0 {
		t.Fatalf("acme changed: %+v", got)
	}
}

// An override is what the FSM enforces: a queued-jobs quota of 1 refuses
// the second queued job with 429 quota_exceeded, without Retry-After (it
// frees up when a job starts, not with time), and changes nothing.
func TestTenantQuotaOverrideEnforced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.patchTenant("acme", map[string]any{"quotas": map[string]any{"queued_jobs": 1}})
	e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	e.jobsUnchanged("acme", func() {
		r := e.doJSON("POST", "/jobs", e.acme, map[string]any{"type": "generate_dataset"})
		wantError(t, r, http.StatusTooManyRequests, "quota_exceeded")
		if ra := r.header.Get("Retry-After"); ra != "" {
			t.Errorf("Retry-After %q on a queued-jobs refusal", ra)
		}
	})
	// Back to the tier's default (100): accepted again.
	e.patchTenant("acme", map[string]any{"quotas": map[string]any{"queued_jobs": nil}})
	e.submit(e.acme, map[string]any{"type": "generate_dataset"})
}

// A free tenant whose GPU-minutes are used gets 429 on its next GPU job,
// with Retry-After the seconds to the next UTC month.
func TestQuotaRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gpu := map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": 1}}
	j := e.submit(e.acme, gpu)
	// 15 minutes on one GPU; the free 10 cut the attempt's limit.
	e.finishJob(j.ID, testNow.Add(-20*time.Minute), testNow.Add(-5*time.Minute), []int{0}, []byte("b"))
	e.jobsUnchanged("acme", func() {
		r := e.doJSON("POST", "/jobs", e.acme, gpu)
		wantError(t, r, http.StatusTooManyRequests, "quota_exceeded")
		// testNow is 2026-03-15T12:00Z: 16.5 days to April.
		if ra := r.header.Get("Retry-After"); ra != "1425600" {
			t.Fatalf("Retry-After %q, want 1425600", ra)
		}
	})
	var u usage
	e.do("GET", "/usage", e.acme, nil).decode(t, &u)
	if u.GPUMinutes != 10 {
		t.Fatalf("gpu_minutes %v, want the 10 of the quota", u.GPUMinutes)
	}
	// A CPU job is not refused.
	e.submit(e.acme, map[string]any{"type": "generate_dataset"})
}

// jobsUnchanged runs f and fails if it changed tenant's jobs. (A refusal
// by the FSM, as a quota's, is a log entry that changes nothing.)
func (e *env) jobsUnchanged(tenant string, f func()) {
	e.t.Helper()
	before, _ := e.fsm.Jobs(scheduler.JobFilter{Tenant: tenant})
	f()
	after, _ := e.fsm.Jobs(scheduler.JobFilter{Tenant: tenant})
	if !reflect.DeepEqual(before, after) {
		e.t.Fatalf("jobs of %s changed: %d before, %d after", tenant, len(before), len(after))
	}
}

// The Go client reads what the server writes.
func TestTenantsThroughClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := client.New(e.url, e.admin)
	ctx := t.Context()
	paid, calls := "paid", 250.0
	got, err := admin.SetTenant(ctx, "acme", client.TenantPatch{Tier: &paid, Quotas: map[string]*float64{"api_calls_per_day": &calls}})
	if err != nil || got.Tier != "paid" || *got.Quotas["api_calls_per_day"] != 250 || got.Quotas["gpu_minutes_per_month"] != nil {
		t.Fatalf("SetTenant = %+v, %v", got, err)
	}
	got, err = admin.SetTenant(ctx, "acme", client.TenantPatch{Quotas: map[string]*float64{"api_calls_per_day": nil}})
	if err != nil || got.Quotas["api_calls_per_day"] != nil || len(got.Overrides) != 0 {
		t.Fatalf("SetTenant back to the default = %+v, %v", got, err)
	}
	l, err := admin.ListTenants(ctx)
	if err != nil || len(l) != 3 {
		t.Fatalf("ListTenants = %+v, %v", l, err)
	}
	var ae *client.APIError
	if _, err := client.New(e.url, e.acme).ListTenants(ctx); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("ListTenants with a tenant key: %v", err)
	}
	e.meter(1, testNow, map[string]int64{"globex": 300})
	inv, err := client.New(e.url, e.globex).Invoice(ctx, "2026-03", "")
	if err != nil || inv.Tenant != "globex" || inv.TotalCents != 30 || inv.Total != 0.3 || len(inv.Lines) != 3 {
		t.Fatalf("Invoice = %+v, %v", inv, err)
	}
	b, err := admin.InvoiceCSV(ctx, "2026-03", "globex")
	if err != nil || !strings.HasSuffix(string(b), "\ntotal,,,,,0.30\n") {
		t.Fatalf("InvoiceCSV = %q, %v", b, err)
	}
	all, err := admin.AdminUsage(ctx, "")
	if err != nil || len(all) != 3 {
		t.Fatalf("AdminUsage = %s, %v", all, err)
	}
}
