package web_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
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

// keyID is the ID the state gave the key whose secret is secret.
func (e *env) keyID(secret string) string {
	e.t.Helper()
	k, ok := e.fsm.Key(web.HashKey(secret))
	if !ok {
		e.t.Fatal("no such key")
	}
	return k.ID
}

type listedKey struct {
	ID         string     `json:"id"`
	Tenant     string     `json:"tenant"`
	Tier       string     `json:"tier"`
	Admin      bool       `json:"admin"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

func (e *env) listKeys(key string) []listedKey {
	e.t.Helper()
	r := e.do("GET", "/keys", key, nil)
	wantStatus(e.t, r, http.StatusOK)
	if strings.Contains(string(r.body), "pwm_") || strings.Contains(string(r.body), "hash") {
		e.t.Fatalf("a listing shows a secret or a hash: %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		e.t.Error("a key listing may be cached")
	}
	var l struct{ Keys []listedKey }
	r.decode(e.t, &l)
	return l.Keys
}

func tenantsOf(keys []listedKey) string {
	var ts []string
	for _, k := range keys {
		ts = append(ts, k.Tenant)
	}
	slices.Sort(ts)
	return strings.Join(ts, ",")
}

// A key's name and expiry: shown in the answer and the listing; past its
// expiry, by the node's clock, the key gets 401.
func TestKeyNameAndExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.doJSON("POST", "/keys", e.admin, map[string]string{"tenant": "initech", "tier": "paid", "name": "ci", "expires_in": "720h"})
	wantStatus(t, r, http.StatusCreated)
	var k struct {
		ID, Key, Tenant, Tier, Name string
		ExpiresAt                   *time.Time `json:"expires_at"`
	}
	r.decode(t, &k)
	if !strings.HasPrefix(k.ID, "key_") || k.Name != "ci" || k.ExpiresAt == nil || !k.ExpiresAt.Equal(testNow.Add(720*time.Hour)) {
		t.Fatalf("answer %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Error("the answer with a secret may be cached")
	}
	l := e.listKeys(k.Key)
	if len(l) != 1 || l[0].ID != k.ID || l[0].Name != "ci" || l[0].Admin || l[0].Tier != "paid" ||
		!l[0].CreatedAt.Equal(testNow) || l[0].ExpiresAt == nil || !l[0].ExpiresAt.Equal(*k.ExpiresAt) {
		t.Fatalf("listing %+v", l)
	}
	e.clock.set(testNow.Add(720*time.Hour - time.Second))
	wantStatus(t, e.do("GET", "/jobs", k.Key, nil), http.StatusOK)
	e.clock.set(testNow.Add(720 * time.Hour))
	wantError(t, e.do("GET", "/jobs", k.Key, nil), http.StatusUnauthorized, "unauthorized")
	// A key without expiry lists null.
	for _, k := range e.listKeys(e.admin) {
		if k.Tenant == "acme" && k.ExpiresAt != nil {
			t.Fatalf("acme's key expires: %+v", k)
		}
	}
}

func TestCreateKeyBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		body map[string]string
		code string
	}{
		{map[string]string{"tenant": "admin"}, "reserved_tenant"},
		{map[string]string{"tenant": "root", "tier": "paid"}, "reserved_tenant"},
		{map[string]string{"tenant": "system"}, "reserved_tenant"},
		{map[string]string{"tenant": "x", "expires_in": "soon"}, "invalid_expires_in"},
		{map[string]string{"tenant": "x", "expires_in": "-1h"}, "invalid_expires_in"},
		{map[string]string{"tenant": "x", "expires_in": "0s"}, "invalid_expires_in"},
		{map[string]string{"tenant": "x", "expires_in": "8761h"}, "invalid_expires_in"},
		{map[string]string{"tenant": "x", "name": strings.Repeat("n", 65)}, "invalid_name"},
		{map[string]string{"tenant": "x", "name": "a\nb"}, "invalid_name"},
	} {
		e.unchanged(func() { wantError(t, e.doJSON("POST", "/keys", e.admin, c.body), http.StatusBadRequest, c.code) })
	}
}

// Tenants see and revoke their own keys only; an admin sees and revokes
// every key; a revoked key gets 401 at once.
func TestListAndRevokeKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	acme2 := e.addKey("acme", scheduler.PriorityFree, false)
	if got := tenantsOf(e.listKeys(e.admin)); got != "acme,acme,admin,globex" {
		t.Fatalf("admin lists %s", got)
	}
	if got := tenantsOf(e.listKeys(e.acme)); got != "acme,acme" {
		t.Fatalf("acme lists %s", got)
	}
	if got := tenantsOf(e.listKeys(e.globex)); got != "globex" {
		t.Fatalf("globex lists %s", got)
	}

	// Another tenant's key, a missing one and a malformed ID.
	e.unchanged(func() {
		wantError(t, e.do("DELETE", "/keys/"+e.keyID(e.globex), e.acme, nil), http.StatusNotFound, "not_found")
		wantError(t, e.do("DELETE", "/keys/"+e.keyID(e.admin), e.acme, nil), http.StatusNotFound, "not_found")
		wantError(t, e.do("DELETE", "/keys/key_missing", e.acme, nil), http.StatusNotFound, "not_found")
		wantError(t, e.do("DELETE", "/keys/bad$id", e.acme, nil), http.StatusBadRequest, "invalid_id")
		wantError(t, e.do("DELETE", "/keys/"+e.keyID(e.acme), "", nil), http.StatusUnauthorized, "unauthorized")
		// The last admin key stays.
		wantError(t, e.do("DELETE", "/keys/"+e.keyID(e.admin), e.admin, nil), http.StatusConflict, "last_admin_key")
	})
	wantStatus(t, e.do("GET", "/jobs", e.globex, nil), http.StatusOK)

	// A tenant revokes its own key; then that key gets 401.
	r := e.do("DELETE", "/keys/"+e.keyID(acme2), e.acme, nil)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("revoke: %d %q", r.status, r.body)
	}
	wantError(t, e.do("GET", "/jobs", acme2, nil), http.StatusUnauthorized, "unauthorized")
	wantStatus(t, e.do("GET", "/jobs", e.acme, nil), http.StatusOK)
	if got := tenantsOf(e.listKeys(e.acme)); got != "acme" {
		t.Fatalf("acme lists %s after revoking", got)
	}
	// An admin revokes another tenant's key.
	id := e.keyID(e.globex)
	wantStatus(t, e.do("DELETE", "/keys/"+id, e.admin, nil), http.StatusNoContent)
	wantError(t, e.do("GET", "/jobs", e.globex, nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, e.do("DELETE", "/keys/"+id, e.admin, nil), http.StatusNotFound, "not_found")
}

// Uses show in the listing at once and reach the replicated state when
// the Server's Run flushes them.
func TestKeyLastUsed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *web.Config, _ *web.Deps) { c.KeyUseInterval = 10 * time.Millisecond })
	acmeID := e.keyID(e.acme)
	for _, k := range e.listKeys(e.admin) {
		if k.Tenant != "admin" && k.LastUsedAt != nil {
			t.Fatalf("unused key with a last use: %+v", k)
		}
	}
	e.clock.set(testNow.Add(time.Hour))
	wantStatus(t, e.do("GET", "/jobs", e.acme, nil), http.StatusOK)
	for _, k := range e.listKeys(e.admin) {
		if k.ID == acmeID && (k.LastUsedAt == nil || !k.LastUsedAt.Equal(testNow.Add(time.Hour))) {
			t.Fatalf("acme's key %+v", k)
		}
	}
	if k, _ := e.fsm.KeyByID(acmeID); !k.LastUsedAt.IsZero() {
		t.Fatal("recorded before a flush")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.srv.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, 10*time.Second, "the use in the state", func() bool {
		k, _ := e.fsm.KeyByID(acmeID)
		return k.LastUsedAt.Equal(testNow.Add(time.Hour))
	})
	cancel()
	wg.Wait()
}

// A follower gives an unknown key a moment to replicate (it may have been
// created through another node), but a key it has seen before and no
// longer holds was revoked: refused without waiting.
func TestRevokedKeyRefusedAtOnceOnFollower(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cluster.set(web.Health{Node: "n1", Leader: "n2", Role: "follower", Members: 2, Ready: true})
	k := e.addKey("acme", scheduler.PriorityFree, false)
	wantStatus(t, e.do("GET", "/jobs", k, nil), http.StatusOK)
	e.apply(&scheduler.RevokeKey{At: testNow, ID: e.keyID(k)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second) // under the 2 s catch-up wait
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/jobs", nil)
	req.Header.Set("Authorization", "Bearer "+k)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the revoked key waited for the replica: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d", res.StatusCode)
	}
}
