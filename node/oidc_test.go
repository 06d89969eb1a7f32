package node

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
	"github.com/pwmesh/pwmesh/web/oidc"
	"github.com/pwmesh/pwmesh/web/oidc/oidctest"
)

// TestTheLeaderChecksTheKeyASignInAsksFor: a node forwards a person's key
// with their ID token; the leader lets through exactly the key the sign-in
// entitles them to and nothing else.
func TestTheLeaderChecksTheKeyASignInAsksFor(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	r := schedulertest.NewRaft(t)
	now := time.Now()
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: now, Key: scheduler.APIKey{Hash: "h-acme", Tenant: "acme", Tier: "paid"}})
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: now, Key: scheduler.APIKey{Hash: "h-globex", Tenant: "globex", Tier: "free"}})
	n := &Node{cfg: Config{Clock: scheduler.SystemClock{}}, fsm: r.FSM(), log: slog.New(slog.DiscardHandler)}

	// A sign-in whose key request carries the ID token.
	got := make(chan oidc.KeyRequest, 4)
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	key, err := oidc.DeriveStateKey([]byte("a secret every node shares, 32 bytes"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := oidc.New(oidc.Config{Issuer: p.Issuer(), ClientID: p.ClientID, ClientSecret: p.ClientSecret,
		ExternalURL: "http://" + srv.Listener.Addr().String(), AdminGroup: oidctest.AdminGroup, StateKey: key},
		oidc.Deps{
			TenantExists: func(string) bool { return true },
			MintKey: func(_ context.Context, req oidc.KeyRequest) (oidc.Key, error) {
				got <- req
				return oidc.Key{}, errors.New("not here")
			},
			StartSession: func(http.ResponseWriter, *http.Request, oidc.Session, string) error { return nil },
		})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h.Handler()
	srv.Start()
	p.Queue(&oidctest.User{Subject: "u-ann", Email: "ann@acme.example", Tenant: "acme", Groups: []string{"staff"}})
	oidctest.NewBrowser(t).Get(srv.URL+oidc.LoginPath, nil)
	req := <-got
	if req.IDToken == "" {
		t.Fatal("the key request carries no ID token")
	}

	ctx := t.Context()
	exp := now.Add(12 * time.Hour)
	good := scheduler.APIKey{ID: "key_x", Hash: "h-x", Prefix: "pwm_x", Tenant: "acme", Tier: "paid", Name: "oidc:ann@acme.example", ExpiresAt: &exp}
	check := func(k scheduler.APIKey, token string) error {
		return n.checkSignInProof(ctx, &scheduler.CreateKey{At: now, Key: k}, token)
	}
	if err := check(good, req.IDToken); err == nil {
		t.Fatal("a leader without sign-in took a proof")
	}
	n.signIn.Store(h)
	if err := check(good, req.IDToken); err != nil {
		t.Fatalf("the key the sign-in asks for: %v", err)
	}
	cli := good
	cli.Name = "cli:ann@acme.example"
	if err := check(cli, req.IDToken); err != nil {
		t.Fatalf("the command line's key: %v", err)
	}
	long := now.Add(60 * 24 * time.Hour)
	for name, edit := range map[string]func(*scheduler.APIKey){
		"another tenant":   func(k *scheduler.APIKey) { k.Tenant, k.Tier = "globex", "free" },
		"admin":            func(k *scheduler.APIKey) { k.Admin = true },
		"another tier":     func(k *scheduler.APIKey) { k.Tier = "free" },
		"another name":     func(k *scheduler.APIKey) { k.Name = "ci" },
		"no expiry":        func(k *scheduler.APIKey) { k.ExpiresAt = nil },
		"a longer life":    func(k *scheduler.APIKey) { k.ExpiresAt = &long },
		"a reserved one":   func(k *scheduler.APIKey) { k.Tenant = "admin" },
		"tenant not known": func(k *scheduler.APIKey) { k.Tenant = "initech" },
	} {
		k := good
		edit(&k)
		if err := check(k, req.IDToken); !errors.Is(err, scheduler.ErrForbidden) {
			t.Errorf("%s: %v, want forbidden", name, err)
		}
	}
	forged := req.IDToken[:len(req.IDToken)-4] + "AAAA"
	if err := check(good, forged); !errors.Is(err, scheduler.ErrForbidden) {
		t.Errorf("a forged token: %v", err)
	}
	if err := n.checkSignInProof(ctx, &scheduler.RevokeKey{At: now, ID: "key_x"}, req.IDToken); !errors.Is(err, scheduler.ErrForbidden) {
		t.Errorf("another command: %v", err)
	}
}
