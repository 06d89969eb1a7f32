package ui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// keyView is a key as GET /keys lists it.
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

// keyCreated is POST /keys's answer: the only time a secret shows.
type keyCreated struct {
	ID        string     `json:"id"`
	Key       string     `json:"key"`
	Tenant    string     `json:"tenant"`
	Tier      string     `json:"tier"`
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expires_at"`
}

type keysData struct {
	Keys    []keyView
	Created *keyCreated
	// Form holds what the create form was sent with, when it failed.
	Form url.Values
	// Own is the session's own key's ID.
	Own string
}

// keysPage lists keys (every key for an admin, the tenant's otherwise)
// with, for admins, the form that creates one.
func (u *UI) keysPage(w http.ResponseWriter, r *http.Request, s *session) {
	u.renderKeys(w, r, s, http.StatusOK, &keysData{}, "")
}

func (u *UI) renderKeys(w http.ResponseWriter, r *http.Request, s *session, status int, d *keysData, msg string) {
	d.Own = s.KeyID
	var list struct {
		Keys []keyView `json:"keys"`
	}
	if err := u.getJSON(r, s, "/keys", &list); err != nil {
		u.apiFailure(w, r, s, err)
		return
	}
	d.Keys = list.Keys
	v := newView(s, "API keys", "keys", d)
	switch {
	case msg != "":
		v = v.withError(msg)
	case d.Created != nil:
		v = v.withFlash("Key created. Copy its secret now: it is shown only this once.")
	default:
		v = v.withFlash(flash(r))
	}
	u.render(w, r, status, "keys", v)
}

// createKey makes a key (admin) and shows its secret once.
func (u *UI) createKey(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	body := map[string]string{"tenant": strings.TrimSpace(f.Get("tenant")), "tier": f.Get("tier")}
	if n := strings.TrimSpace(f.Get("name")); n != "" {
		body["name"] = n
	}
	if e := strings.TrimSpace(f.Get("expires_in")); e != "" {
		body["expires_in"] = e
	}
	var c keyCreated
	if err := u.sendJSON(r, s, http.MethodPost, "/keys", body, &c); err != nil {
		e := asAPIError(err)
		if e.Status == http.StatusUnauthorized {
			u.apiFailure(w, r, s, err)
			return
		}
		u.renderKeys(w, r, s, e.Status, &keysData{Form: f}, e.Message)
		return
	}
	u.renderKeys(w, r, s, http.StatusCreated, &keysData{Created: &c}, "")
}

// deleteKey revokes a key.
func (u *UI) deleteKey(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if err := u.sendJSON(r, s, http.MethodDelete, "/keys/"+url.PathEscape(id), nil, nil); err != nil {
		e := asAPIError(err)
		if e.Status == http.StatusUnauthorized {
			u.apiFailure(w, r, s, err)
			return
		}
		u.renderKeys(w, r, s, e.Status, &keysData{}, e.Message)
		return
	}
	http.Redirect(w, r, "/ui/keys?ok=revoked", http.StatusSeeOther)
}

// tenantView is a tenant as GET /tenants shows it.
type tenantView struct {
	Tenant    string              `json:"tenant"`
	Tier      string              `json:"tier"`
	Pool      string              `json:"pool"`
	Quotas    map[string]*float64 `json:"quotas"`
	Overrides map[string]float64  `json:"overrides"`
	CreatedAt time.Time           `json:"created_at"`
}

type tenantsData struct {
	Tenants []tenantView
	Quotas  []string
}

// Reserved reports whether a tenant is the mesh's own (no quotas).
func (tenantsData) Reserved(name string) bool { return scheduler.ReservedTenant(name) }

// QuotaLabel names a quota in words.
func (tenantsData) QuotaLabel(q string) string {
	switch q {
	case scheduler.QuotaAPICalls:
		return "API calls a day"
	case scheduler.QuotaGPUMinutes:
		return "GPU-minutes a month"
	case scheduler.QuotaStorage:
		return "Storage (bytes)"
	case scheduler.QuotaQueued:
		return "Queued jobs"
	}
	return q
}

// tenantsPage lists tenants with a form each to change tier, pool and
// quotas (admin).
func (u *UI) tenantsPage(w http.ResponseWriter, r *http.Request, s *session) {
	u.renderTenants(w, r, s, http.StatusOK, "")
}

func (u *UI) renderTenants(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	var list struct {
		Tenants []tenantView `json:"tenants"`
	}
	if err := u.getJSON(r, s, "/tenants", &list); err != nil {
		u.apiFailure(w, r, s, err)
		return
	}
	v := newView(s, "Tenants", "tenants", &tenantsData{Tenants: list.Tenants, Quotas: scheduler.QuotaNames})
	if msg != "" {
		v = v.withError(msg)
	} else {
		v = v.withFlash(flash(r))
	}
	u.render(w, r, status, "tenants", v)
}

// patchTenant changes a tenant's tier, pool and quota overrides (an
// empty quota field: the tier's default).
func (u *UI) patchTenant(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	body := map[string]any{}
	if t := f.Get("tier"); t != "" {
		body["tier"] = t
	}
	if p := strings.TrimSpace(f.Get("pool")); p != "" {
		body["pool"] = p
	}
	quotas := map[string]any{}
	for _, q := range scheduler.QuotaNames {
		if _, sent := f["q."+q]; !sent {
			continue
		}
		v := strings.TrimSpace(f.Get("q." + q))
		if v == "" {
			quotas[q] = nil
			continue
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			u.renderTenants(w, r, s, http.StatusBadRequest, q+" must be a number, or empty for the tier's default.")
			return
		}
		quotas[q] = x
	}
	if len(quotas) > 0 && !scheduler.ReservedTenant(r.PathValue("tenant")) {
		body["quotas"] = quotas
	}
	if err := u.sendJSON(r, s, http.MethodPatch, "/tenants/"+url.PathEscape(r.PathValue("tenant")), body, nil); err != nil {
		e := asAPIError(err)
		if e.Status == http.StatusUnauthorized {
			u.apiFailure(w, r, s, err)
			return
		}
		u.renderTenants(w, r, s, e.Status, e.Message)
		return
	}
	http.Redirect(w, r, "/ui/tenants?ok=tenant", http.StatusSeeOther)
}
