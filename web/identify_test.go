package web_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

// Identify checks a key as a bearer is checked and says whom it speaks
// for, without counting an API call (the web UI's sign-in).
func TestIdentify(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withMeter(t))
	ctx := context.Background()
	k, err := e.srv.Identify(ctx, " "+e.acme+" ")
	if err != nil {
		t.Fatal(err)
	}
	if k.Tenant != "acme" || k.Tier != scheduler.PriorityFree || k.Admin || k.ID == "" || k.Prefix != e.acme[:8] {
		t.Fatalf("identity %+v", k)
	}
	if a, err := e.srv.Identify(ctx, e.admin); err != nil || !a.Admin {
		t.Fatalf("admin: %+v, %v", a, err)
	}
	if u := e.fsm.Usage("acme", testNow, testNow); u.APICalls != 0 {
		t.Fatalf("Identify counted %d calls", u.APICalls)
	}

	exp := testNow.Add(time.Minute)
	secret := web.NewKeySecret()
	e.apply(&scheduler.CreateKey{At: testNow, Key: scheduler.APIKey{Hash: web.HashKey(secret), Prefix: secret[:8], Tenant: "acme", Tier: "free", ExpiresAt: &exp}})
	if k, err := e.srv.Identify(ctx, secret); err != nil || k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) {
		t.Fatalf("a key with an expiry: %+v, %v", k, err)
	}
	e.clock.set(exp)
	for _, bad := range []string{secret, "", "pwm_unknown", web.NewKeySecret()} {
		var we *web.Error
		if _, err := e.srv.Identify(ctx, bad); !errors.As(err, &we) || we.Status != http.StatusUnauthorized {
			t.Errorf("Identify(%q): %v, want 401", bad, err)
		}
	}
}
