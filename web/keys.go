package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/scheduler"
)

var tenantPattern = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// Bounds of a key request.
const (
	maxKeyName   = 64
	maxKeyExpiry = 8760 * time.Hour // a year
)

type keyRequest struct {
	Tenant    string `json:"tenant"`
	Tier      string `json:"tier"`
	Name      string `json:"name"`
	ExpiresIn string `json:"expires_in"`
}

// keyCreated is the answer of POST /keys: the only time the secret shows.
type keyCreated struct {
	ID        string     `json:"id"`
	Key       string     `json:"key"`
	Tenant    string     `json:"tenant"`
	Tier      string     `json:"tier"`
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// keyView is a key as GET /keys lists it: never its secret or hash.
type keyView struct {
	ID         string     `json:"id"`
	Tenant     string     `json:"tenant"`
	Tier       string     `json:"tier"`
	Admin      bool       `json:"admin"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

type keyList struct {
	Keys []keyView `json:"keys"`
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
	if scheduler.ReservedTenant(req.Tenant) {
		return nil, badRequest("reserved_tenant", "tenant name %q is reserved for the mesh itself", req.Tenant)
	}
	if req.Tier == "" {
		req.Tier = scheduler.PriorityFree
	}
	if req.Tier != scheduler.PriorityFree && req.Tier != scheduler.PriorityPaid {
		return nil, badRequest("invalid_tier", "tier %q is not free or paid", req.Tier)
	}
	if len(req.Name) > maxKeyName {
		return nil, badRequest("invalid_name", "name is longer than %d bytes", maxKeyName)
	}
	if err := checkText("name", req.Name); err != nil {
		return nil, badRequest("invalid_name", "%v", err)
	}
	now := s.now()
	var expires *time.Time
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 || d > maxKeyExpiry {
			return nil, badRequest("invalid_expires_in",
				"expires_in %q must be a duration such as \"720h\", above 0 and at most %s", truncate(req.ExpiresIn, 64), maxKeyExpiry)
		}
		at := now.Add(d)
		expires = &at
	}
	secret := NewKeySecret()
	k := scheduler.APIKey{ID: s.deps.NewID("key_"), Hash: HashKey(secret), Prefix: secret[:8], Tenant: req.Tenant,
		Tier: req.Tier, Name: req.Name, ExpiresAt: expires}
	if _, err := s.deps.Writer.Apply(r.Context(), &scheduler.CreateKey{At: now, Key: k}); err != nil {
		return nil, err
	}
	s.cfg.Logger.InfoContext(r.Context(), "audit: key created", "key_id", k.ID, "tenant", k.Tenant, "tier", k.Tier, "by", c.key.ID)
	// The new key works on this node as soon as the answer arrives.
	s.await(r.Context(), func() bool { _, ok := s.deps.State.Key(k.Hash); return ok })
	return keyCreated{ID: k.ID, Key: secret, Tenant: k.Tenant, Tier: k.Tier, Name: k.Name, ExpiresAt: expires}, nil
}

// listKeys handles GET /keys: every key for an admin, the caller's
// tenant's otherwise.
func (s *Server) listKeys(_ http.ResponseWriter, _ *http.Request, c *caller) (any, error) {
	tenant := c.tenant()
	if c.key.Admin {
		tenant = ""
	}
	keys := s.deps.State.Keys(tenant)
	out := keyList{Keys: make([]keyView, 0, len(keys))}
	for _, k := range keys {
		v := keyView{ID: k.ID, Tenant: k.Tenant, Tier: k.Tier, Admin: k.Admin, Name: k.Name,
			CreatedAt: k.CreatedAt.UTC(), ExpiresAt: k.ExpiresAt}
		// Uses this node saw since its last flush are newer than the state's.
		last := k.LastUsedAt
		if at, ok := s.uses.last(k.ID); ok && at.After(last) {
			last = at
		}
		if !last.IsZero() {
			last = last.UTC()
			v.LastUsedAt = &last
		}
		out.Keys = append(out.Keys, v)
	}
	return out, nil
}

// deleteKey handles DELETE /keys/{id}: an admin revokes any key, another
// key only its own tenant's; another tenant's key is not found.
func (s *Server) deleteKey(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	k, ok := s.deps.State.KeyByID(id)
	if !ok || (!c.key.Admin && k.Tenant != c.tenant()) {
		return nil, notFound("key " + id)
	}
	// Refuse here what the FSM would refuse, sparing the log an entry; the
	// FSM checks again against the state it applies to.
	if k.Admin && !otherAdmin(s.deps.State.Keys(""), id) {
		return nil, errLastAdminKey(id, nil)
	}
	cmd := &scheduler.RevokeKey{At: s.now(), ID: id}
	if !c.key.Admin {
		cmd.Tenant = c.tenant()
	}
	_, err = s.deps.Writer.Apply(r.Context(), cmd)
	switch {
	case errors.Is(err, scheduler.ErrNotFound):
		return nil, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "key " + id + " not found", Err: err}
	case errors.Is(err, scheduler.ErrConflict):
		return nil, errLastAdminKey(id, err)
	case err != nil:
		return nil, err
	}
	s.cfg.Logger.InfoContext(r.Context(), "audit: key revoked", "key_id", id, "tenant", k.Tenant, "by", c.key.ID)
	s.uses.forget(id)
	// The key is refused on this node as soon as the answer arrives.
	s.await(r.Context(), func() bool { _, ok := s.deps.State.KeyByID(id); return !ok })
	return rawBody(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	}), nil
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

func errLastAdminKey(id string, err error) error {
	return &Error{Status: http.StatusConflict, Code: "last_admin_key",
		Message: fmt.Sprintf("key %s is the last admin key; create another admin key first", id), Err: err}
}

// otherAdmin reports whether keys hold an admin key other than id.
func otherAdmin(keys []scheduler.APIKey, id string) bool {
	for _, k := range keys {
		if k.Admin && k.ID != id {
			return true
		}
	}
	return false
}

// keyUses notes when this node last saw each key used; Run flushes them
// to the replicated state (TouchKeys), so a key's last use costs no Raft
// write per request.
type keyUses struct {
	mu    sync.Mutex
	used  map[string]time.Time // key ID -> latest use not yet flushed
	known map[string]bool      // hashes of the keys this node authenticated
}

// seen notes that the key whose hash is hash authenticated here.
func (u *keyUses) seen(hash string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.known[hash] {
		if u.known == nil {
			u.known = map[string]bool{}
		}
		u.known[hash] = true
	}
}

// revoked reports whether a key the state does not hold authenticated
// here before: then it was revoked, not created a moment ago elsewhere,
// and there is no replica lag to wait for. (The set holds one entry per
// key ever used on this node, revoked ones included.)
func (u *keyUses) revoked(hash string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.known[hash]
}

func (u *keyUses) note(id string, at time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.used == nil {
		u.used = map[string]time.Time{}
	}
	if at.After(u.used[id]) {
		u.used[id] = at
	}
}

func (u *keyUses) last(id string) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	at, ok := u.used[id]
	return at, ok
}

func (u *keyUses) forget(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.used, id)
}

// take returns the uses noted since the last take and clears them.
func (u *keyUses) take() map[string]time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	used := u.used
	u.used = nil
	return used
}

// putBack returns uses whose flush failed, keeping newer ones.
func (u *keyUses) putBack(used map[string]time.Time) {
	for id, at := range used {
		u.note(id, at)
	}
}

// flushTimeout bounds the flush that Run makes as it returns.
const flushTimeout = 2 * time.Second

// Run records the key uses this node saw in the replicated state (a
// TouchKeys write) every Config.KeyUseInterval, and once more when ctx
// ends. It returns nil when ctx ends.
func (s *Server) Run(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.KeyUseInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			defer cancel()
			s.flushKeyUses(fctx)
			return nil
		case <-tick.C:
			s.flushKeyUses(ctx)
		}
	}
}

// flushKeyUses writes the uses noted since the last flush; a failed write
// keeps them for the next.
func (s *Server) flushKeyUses(ctx context.Context) {
	used := s.uses.take()
	if len(used) == 0 {
		return
	}
	if _, err := s.deps.Writer.Apply(ctx, &scheduler.TouchKeys{At: s.now(), Used: used}); err != nil {
		s.uses.putBack(used)
		s.cfg.Logger.Warn("web: record key uses", "keys", len(used), "err", err)
	}
}
