package web

import "github.com/pwmesh/pwmesh/scheduler"

// The quota checks the API makes before it writes or stores anything
// (CONTRACT.md §3 "Quotas"). The FSM checks its quotas again against the
// state it applies to; these spare the log an entry and the store a body.
// Their errors wrap scheduler.ErrQuota: 429 quota_exceeded.

// callerTenant is the caller's tenant record, or one of the key's tier
// when the tenant has none.
func (s *Server) callerTenant(c *caller) scheduler.Tenant {
	t, ok := s.deps.State.Tenant(c.tenant())
	if !ok {
		t = scheduler.Tenant{Name: c.tenant()}
	}
	if t.Tier == "" {
		t.Tier = c.tier()
	}
	return t
}

// checkUploadQuota refuses an upload of size bytes (-1: not declared) that
// would take the caller's tenant past its storage quota, and any upload
// while the tenant is at or over it.
func (s *Server) checkUploadQuota(c *caller, size int64) error {
	t := s.callerTenant(c)
	q, ok := t.Quotas()[scheduler.QuotaStorage]
	if !ok {
		return nil
	}
	used := s.deps.State.StoredBytes(t.Name)
	switch {
	case float64(used) >= q:
		return scheduler.QuotaExceeded(scheduler.QuotaStorage,
			"tenant %s stores %d bytes, its limit is %.0f; delete datasets to upload again", t.Name, used, q)
	case size > 0 && float64(used+size) > q:
		return scheduler.QuotaExceeded(scheduler.QuotaStorage,
			"tenant %s stores %d bytes; this upload of %d bytes would pass its limit of %.0f", t.Name, used, size, q)
	}
	return nil
}
