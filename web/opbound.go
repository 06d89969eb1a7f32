package web

import (
	"encoding/json"

	"github.com/pwmesh/pwmesh/scheduler"
)

// checkOperatorBound refuses a job whose params would compile an operator
// past the bound of its tenant's tier (scheduler.MaxOperatorBytes). A job
// whose operator comes from its dataset is bounded when it runs.
func (s *Server) checkOperatorBound(c *caller, jt JobType, params json.RawMessage) error {
	if jt.OperatorBytes == nil {
		return nil
	}
	need, ok := jt.OperatorBytes(params)
	if !ok {
		return nil
	}
	t := s.callerTenant(c)
	bound, ok := t.MaxOperatorBytes()
	if !ok || need <= bound {
		return nil
	}
	return scheduler.OperatorTooLarge(t.Tier, need, bound)
}
