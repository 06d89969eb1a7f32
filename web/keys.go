package web

import (
	"net/http"
	"regexp"

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
