package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/web"
)

func TestCreateKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.doJSON("POST", "/keys", e.admin, map[string]string{"tenant": "initech", "tier": "paid"})
	wantStatus(t, r, http.StatusCreated)
	var k struct{ Key, Tenant, Tier string }
	r.decode(t, &k)
	if k.Tenant != "initech" || k.Tier != "paid" || !strings.HasPrefix(k.Key, "pwm_") {
		t.Fatalf("answer %+v", k)
	}
	stored, ok := e.fsm.Key(web.HashKey(k.Key))
	if !ok || stored.Prefix != k.Key[:8] || stored.Admin || stored.Tenant != "initech" {
		t.Fatalf("stored %+v %v", stored, ok)
	}
	if strings.Contains(string(r.body), stored.Hash) {
		t.Error("answer leaks the hash")
	}
	// The new key works at once and sees its own (empty) tenant.
	wantStatus(t, e.do("GET", "/jobs", k.Key, nil), http.StatusOK)

	// The tier defaults to free.
	r = e.doJSON("POST", "/keys", e.admin, map[string]string{"tenant": "hooli"})
	wantStatus(t, r, http.StatusCreated)
	r.decode(t, &k)
	if k.Tier != "free" {
		t.Fatalf("default tier %q", k.Tier)
	}
}

func TestCreateKeyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *web.Config, _ *web.Deps) { c.MaxJSONBytes = 256 })
	cases := []struct {
		name, key string
		body      any
		status    int
		code      string
	}{
		{"not admin", e.globex, map[string]string{"tenant": "x", "tier": "free"}, 403, "forbidden"},
		{"free not admin", e.acme, map[string]string{"tenant": "x", "tier": "free"}, 403, "forbidden"},
		{"empty tenant", e.admin, map[string]string{"tenant": "", "tier": "free"}, 400, "invalid_tenant"},
		{"upper case", e.admin, map[string]string{"tenant": "Acme", "tier": "free"}, 400, "invalid_tenant"},
		{"slash", e.admin, map[string]string{"tenant": "a/b", "tier": "free"}, 400, "invalid_tenant"},
		{"too long", e.admin, map[string]string{"tenant": strings.Repeat("a", 64), "tier": "free"}, 400, "invalid_tenant"},
		{"sprint tier", e.admin, map[string]string{"tenant": "x", "tier": "sprint"}, 400, "invalid_tier"},
		{"unknown tier", e.admin, map[string]string{"tenant": "x", "tier": "gold"}, 400, "invalid_tier"},
		{"unknown field", e.admin, map[string]any{"tenant": "x", "tier": "free", "admin": true}, 400, "invalid_json"},
		{"malformed", e.admin, `{"tenant":`, 400, "invalid_json"},
		{"trailing", e.admin, `{"tenant":"x"} {}`, 400, "invalid_json"},
		{"too large", e.admin, `{"tenant":"` + strings.Repeat("a", 300) + `"}`, 413, "too_large"},
	}
	for _, c := range cases {
		e.unchanged(func() {
			r := e.doJSON("POST", "/keys", c.key, c.body)
			if r.status != c.status {
				t.Fatalf("%s: status %d, want %d: %s", c.name, r.status, c.status, r.body)
			}
			wantError(t, r, c.status, c.code)
		})
	}
}
