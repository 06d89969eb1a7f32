package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// tenantView is a tenant as /tenants shows it: its effective quotas (null:
// unlimited) and, apart, the ones an operator set.
type tenantView struct {
	Tenant    string              `json:"tenant"`
	Tier      string              `json:"tier"`
	Pool      string              `json:"pool"`
	PoolOnly  bool                `json:"pool_only"`
	Quotas    map[string]*float64 `json:"quotas"`
	Overrides map[string]float64  `json:"overrides"`
	CreatedAt time.Time           `json:"created_at"`
}

type tenantList struct {
	Tenants []tenantView `json:"tenants"`
}

func viewTenant(t scheduler.Tenant) tenantView {
	v := tenantView{Tenant: t.Name, Tier: t.Tier, Pool: t.Pool, PoolOnly: t.PoolOnly,
		Quotas: map[string]*float64{}, Overrides: map[string]float64{}, CreatedAt: t.CreatedAt.UTC()}
	if v.Tier == "" {
		v.Tier = scheduler.PriorityFree
	}
	if v.Pool == "" {
		v.Pool = scheduler.PoolShared
	}
	q := t.Quotas()
	for _, name := range scheduler.QuotaNames {
		if lim, ok := q[name]; ok {
			v.Quotas[name] = &lim
		} else {
			v.Quotas[name] = nil
		}
	}
	maps.Copy(v.Overrides, t.QuotaOverrides)
	return v
}

// listTenants handles GET /tenants (admin).
func (s *Server) listTenants(_ http.ResponseWriter, _ *http.Request, c *caller) (any, error) {
	if err := requireAdmin(c, "list tenants"); err != nil {
		return nil, err
	}
	ts := s.deps.State.Tenants()
	out := tenantList{Tenants: make([]tenantView, 0, len(ts))}
	for _, t := range ts {
		out.Tenants = append(out.Tenants, viewTenant(t))
	}
	return out, nil
}

// getTenant handles GET /tenants/{tenant} (admin).
func (s *Server) getTenant(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	if err := requireAdmin(c, "read tenants"); err != nil {
		return nil, err
	}
	name, err := pathTenant(r)
	if err != nil {
		return nil, err
	}
	t, ok := s.deps.State.Tenant(name)
	if !ok {
		return nil, notFound("tenant " + name)
	}
	return viewTenant(t), nil
}

// tenantPatch is the body of PATCH /tenants/{tenant}: absent fields stay
// as they are; a quota of null goes back to the tier's default.
type tenantPatch struct {
	Tier     *string                    `json:"tier"`
	Pool     *string                    `json:"pool"`
	PoolOnly *bool                      `json:"pool_only"`
	Quotas   map[string]json.RawMessage `json:"quotas"`
}

// maxQuota bounds a quota (the FSM's own bound).
const maxQuota = 1e18

// patchTenant handles PATCH /tenants/{tenant} (admin): a tier, a pool and
// quota overrides, checked here and committed as one SetTenant.
func (s *Server) patchTenant(w http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	if err := requireAdmin(c, "change tenants"); err != nil {
		return nil, err
	}
	name, err := pathTenant(r)
	if err != nil {
		return nil, err
	}
	var p tenantPatch
	if err := s.decodeJSON(w, r, &p); err != nil {
		return nil, err
	}
	cmd := &scheduler.SetTenant{At: s.now(), Tenant: name, Tier: p.Tier, PoolOnly: p.PoolOnly}
	if p.Tier != nil && *p.Tier != scheduler.PriorityFree && *p.Tier != scheduler.PriorityPaid {
		return nil, badRequest("invalid_tier", "tier %q is not free or paid", truncate(*p.Tier, 64))
	}
	if p.Pool != nil {
		pool := *p.Pool
		if pool != "" && pool != scheduler.PoolShared && !scheduler.ValidPool(pool) {
			return nil, badRequest("invalid_pool", "pool %q: use 1 to 63 lower-case letters, digits and '-' (or \"shared\" for none)", truncate(pool, 64))
		}
		cmd.Pool = &pool
	}
	if p.Quotas != nil {
		cmd.Quotas = make(map[string]*float64, len(p.Quotas))
		for k, raw := range p.Quotas {
			if !scheduler.ValidQuota(k) {
				return nil, badRequest("unknown_quota", "unknown quota %q (known: %s)", truncate(k, 64), strings.Join(scheduler.QuotaNames, ", "))
			}
			v, err := quotaValue(k, raw)
			if err != nil {
				return nil, err
			}
			cmd.Quotas[k] = v
		}
	}
	t, ok := s.deps.State.Tenant(name)
	if !ok {
		return nil, notFound("tenant " + name)
	}
	if len(cmd.Quotas) > 0 && scheduler.ReservedTenant(name) {
		return nil, badRequest("reserved_tenant", "tenant %q belongs to the mesh itself and has no quotas", name)
	}
	if cmd.Tier == nil && cmd.Pool == nil && cmd.PoolOnly == nil && len(cmd.Quotas) == 0 {
		return viewTenant(t), nil // nothing to change
	}
	v, err := s.deps.Writer.Apply(r.Context(), cmd)
	if err != nil {
		return nil, err
	}
	got, ok := asTenant(v)
	if !ok {
		return nil, fmt.Errorf("web: set tenant %s: unexpected answer %T", name, v)
	}
	s.cfg.Logger.InfoContext(r.Context(), "audit: tenant changed", "tenant", name, "tier", got.Tier, "pool", got.Pool,
		"pool_only", got.PoolOnly, "overrides", got.QuotaOverrides, "by", c.key.ID)
	// A read through this node right after the answer sees the change.
	s.await(r.Context(), func() bool {
		cur, ok := s.deps.State.Tenant(name)
		return ok && sameTenant(cur, got)
	})
	return viewTenant(got), nil
}

// quotaValue reads one quota of a patch: null (the tier's default) or a
// number from 0 to maxQuota.
func quotaValue(name string, raw json.RawMessage) (*float64, error) {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return nil, nil
	}
	var n json.Number
	if len(raw) == 0 || raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
		return nil, badRequest("invalid_quota", "quota %s must be a number or null (the tier's default)", name)
	}
	v, err := n.Float64()
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > maxQuota {
		return nil, badRequest("invalid_quota", "quota %s must be a number from 0 to %g, or null (the tier's default)", name, float64(maxQuota))
	}
	return &v, nil
}

// pathTenant returns the {tenant} path value when it is a well-formed name.
func pathTenant(r *http.Request) (string, error) {
	name := r.PathValue("tenant")
	if !tenantPattern.MatchString(name) {
		return "", badRequest("invalid_tenant", "tenant must be 1 to 63 characters of a-z, 0-9 and '-'")
	}
	return name, nil
}

// asTenant reads the answer of a Writer in any shape it may deliver.
func asTenant(v any) (scheduler.Tenant, bool) {
	switch v := v.(type) {
	case scheduler.Tenant:
		return v, v.Name != ""
	case *scheduler.Tenant:
		if v == nil {
			return scheduler.Tenant{}, false
		}
		return *v, v.Name != ""
	case nil:
		return scheduler.Tenant{}, false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return scheduler.Tenant{}, false
	}
	var t scheduler.Tenant
	if json.Unmarshal(b, &t) != nil {
		return scheduler.Tenant{}, false
	}
	return t, t.Name != ""
}

// sameTenant compares what PATCH /tenants changes.
func sameTenant(a, b scheduler.Tenant) bool {
	return a.Tier == b.Tier && a.Pool == b.Pool && a.PoolOnly == b.PoolOnly && maps.Equal(a.QuotaOverrides, b.QuotaOverrides)
}
