package web_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

type fakeRotator struct{ rotated []string }

func (f *fakeRotator) RotateTenantKey(_ context.Context, tenant string) (uint32, error) {
	if tenant == "nobody" {
		return 0, scheduler.ErrNotFound
	}
	f.rotated = append(f.rotated, tenant)
	return 2, nil
}

func (f *fakeRotator) RewrapAll(context.Context) (int, string, error) { return 3, "m2", nil }

// TestKeyAdminEndpoints: only admin keys rotate; answers and refusals.
func TestKeyAdminEndpoints(t *testing.T) {
	t.Parallel()
	rot := &fakeRotator{}
	e := newEnv(t, func(_ *web.Config, d *web.Deps) { d.Keys = rot })
	wantError(t, e.doJSON("POST", "/admin/tenants/acme/rotate-key", e.acme, nil), http.StatusForbidden, "forbidden")
	wantError(t, e.doJSON("POST", "/admin/rewrap-keys", e.globex, nil), http.StatusForbidden, "forbidden")
	wantError(t, e.doJSON("POST", "/admin/tenants/Bad_Name/rotate-key", e.admin, nil), http.StatusBadRequest, "invalid_tenant")
	wantError(t, e.doJSON("POST", "/admin/tenants/nobody/rotate-key", e.admin, nil), http.StatusNotFound, "not_found")
	r := e.doJSON("POST", "/admin/tenants/acme/rotate-key", e.admin, nil)
	wantStatus(t, r, http.StatusOK)
	var got struct {
		Tenant     string `json:"tenant"`
		KeyVersion uint32 `json:"key_version"`
	}
	r.decode(t, &got)
	if got.Tenant != "acme" || got.KeyVersion != 2 || len(rot.rotated) != 1 {
		t.Fatalf("rotate answered %+v (%v)", got, rot.rotated)
	}
	r = e.doJSON("POST", "/admin/rewrap-keys", e.admin, nil)
	wantStatus(t, r, http.StatusOK)
	// Without a rotator the endpoints say they are not supported.
	bare := newEnv(t)
	wantError(t, bare.doJSON("POST", "/admin/rewrap-keys", bare.admin, nil), http.StatusNotImplemented, "not_supported")
}
