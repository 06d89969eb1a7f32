package client

import (
	"context"
	"net/http"
	"time"
)

// Tenant is a tenant as GET /tenants shows it. Quotas holds every quota
// by name (api_calls_per_day, gpu_minutes_per_month, storage_bytes,
// queued_jobs); nil is unlimited. Overrides are the ones an operator set.
type Tenant struct {
	Tenant    string              `json:"tenant"`
	Tier      string              `json:"tier"`
	Pool      string              `json:"pool"`
	PoolOnly  bool                `json:"pool_only"`
	Quotas    map[string]*float64 `json:"quotas"`
	Overrides map[string]float64  `json:"overrides"`
	CreatedAt time.Time           `json:"created_at"`
}

// TenantPatch is what SetTenant changes: nil fields stay as they are. A
// quota mapped to nil goes back to the tier's default.
type TenantPatch struct {
	Tier     *string             `json:"tier,omitempty"`
	Pool     *string             `json:"pool,omitempty"`
	PoolOnly *bool               `json:"pool_only,omitempty"`
	Quotas   map[string]*float64 `json:"quotas,omitempty"`
}

// ListTenants lists every tenant (GET /tenants; admin key).
func (c *Client) ListTenants(ctx context.Context) ([]Tenant, error) {
	var l struct {
		Tenants []Tenant `json:"tenants"`
	}
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/tenants"}, &l)
	return l.Tenants, err
}

// GetTenant returns one tenant (GET /tenants/{tenant}; admin key).
func (c *Client) GetTenant(ctx context.Context, tenant string) (Tenant, error) {
	var t Tenant
	err := c.doJSON(ctx, request{method: http.MethodGet, path: pathf("/tenants/%s", tenant)}, &t)
	return t, err
}

// SetTenant changes a tenant's tier, pool and quotas (PATCH
// /tenants/{tenant}; admin key) and returns it as it now is.
func (c *Client) SetTenant(ctx context.Context, tenant string, p TenantPatch) (Tenant, error) {
	var t Tenant
	err := c.doJSON(ctx, request{method: http.MethodPatch, path: pathf("/tenants/%s", tenant), json: p}, &t)
	return t, err
}
