package web

import (
	"errors"
	"net/http"
	"regexp"

	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/scheduler"
)

var tenantPattern = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

type keyRequest struct {
	Tenant string `json:"tenant"`
	Tier   string `json:"tier"`
}

type keyAnswer struct {
	Key    string `json:"key"`
	Tenant string `json:"tenant"`
	Tier   string `json:"tier"`
}

// createKey handles POST /keys (admin keys only). The secret is shown once;
// the state keeps only its hash.
func (s *Server) createKey(w http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	if !c.key.Admin {
		return nil, apiError(http.StatusForbidden, "forbidden", "only an admin key may create keys")
	}
	var req keyRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return nil, err
	}
	if !tenantPattern.MatchString(req.Tenant) {
		return nil, badRequest("invalid_tenant", "tenant must be 1 to 63 characters of a-z, 0-9 and '-'")
	}
	if req.Tier == "" {
		req.Tier = scheduler.PriorityFree
	}
	if req.Tier != scheduler.PriorityFree && req.Tier != scheduler.PriorityPaid {
		return nil, badRequest("invalid_tier", "tier %q is not free or paid", req.Tier)
	}
	secret := NewKeySecret()
	k := scheduler.APIKey{Hash: HashKey(secret), Prefix: secret[:8], Tenant: req.Tenant, Tier: req.Tier}
	if _, err := s.deps.Writer.Apply(r.Context(), &scheduler.CreateKey{At: s.now(), Key: k}); err != nil {
		return nil, err
	}
	// The new key works on this node as soon as the answer arrives.
	s.await(r.Context(), func() bool { _, ok := s.deps.State.Key(k.Hash); return ok })
	return keyAnswer{Key: secret, Tenant: req.Tenant, Tier: req.Tier}, nil
}

type rotated struct {
	Tenant     string `json:"tenant"`
	KeyVersion uint32 `json:"key_version"`
}

// rotateTenantKey handles POST /admin/tenants/{tenant}/rotate-key (admin):
// the tenant's new datasets are sealed with a new data key version; older
// ones keep theirs.
func (s *Server) rotateTenantKey(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	if err := s.keyAdmin(c); err != nil {
		return nil, err
	}
	tenant := r.PathValue("tenant")
	if !tenantPattern.MatchString(tenant) {
		return nil, badRequest("invalid_tenant", "tenant must be 1 to 63 characters of a-z, 0-9 and '-'")
	}
	v, err := s.deps.Keys.RotateTenantKey(r.Context(), tenant)
	if errors.Is(err, scheduler.ErrNotFound) {
		return nil, notFound("tenant " + tenant)
	}
	if err != nil {
		return nil, err
	}
	return rotated{Tenant: tenant, KeyVersion: v}, nil
}

type rewrapped struct {
	Tenants int    `json:"tenants"`
	Master  string `json:"master"`
}

// rewrapKeys handles POST /admin/rewrap-keys (admin): every tenant's data
// keys are wrapped with the answering node's active master key (step
// three of a master-key rotation, docs/storage.md).
func (s *Server) rewrapKeys(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	if err := s.keyAdmin(c); err != nil {
		return nil, err
	}
	n, master, err := s.deps.Keys.RewrapAll(r.Context())
	if errors.Is(err, seal.ErrUnknownMaster) {
		return nil, &Error{Status: http.StatusConflict, Code: "master_key_missing",
			Message: "a data key is wrapped by a master key this node lacks: add it to this node's --master-key-file (any line) and retry", Err: err}
	}
	if err != nil {
		return nil, err
	}
	return rewrapped{Tenants: n, Master: master}, nil
}

func (s *Server) keyAdmin(c *caller) error {
	if !c.key.Admin {
		return apiError(http.StatusForbidden, "forbidden", "only an admin key may rotate keys")
	}
	if s.deps.Keys == nil {
		return apiError(http.StatusNotImplemented, "not_supported", "this node cannot rotate keys")
	}
	return nil
}
