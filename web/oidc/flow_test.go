package oidc_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/pwmesh/pwmesh/web/oidc"
	"github.com/pwmesh/pwmesh/web/oidc/oidctest"
)

func TestSignInStartsASessionWithTheTenantAndAdminOfTheToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	cases := []struct {
		name  string
		u     *oidctest.User
		admin bool
	}{
		{"member", &oidctest.User{Subject: "u1", Email: "ann@acme.example", Name: "Ann", Tenant: "acme", Groups: []string{"staff"}}, false},
		{"admin by group", &oidctest.User{Subject: "u2", Email: "bob@acme.example", Tenant: "acme", Groups: []string{"staff", "mesh-admins"}}, true},
		{"tenant claim as a list of one", &oidctest.User{Subject: "u3", Tenant: []string{"globex"}}, false},
	}
	for _, c := range cases {
		b := oidctest.NewBrowser(t)
		var authorize url.Values
		p := e.signIn(b, e.srv, c.u, "/ui/jobs/j1?x=1", func(u *url.URL) {
			if u.Path == mockoidc.AuthorizationEndpoint {
				authorize = u.Query()
			}
		})
		if p.Status != http.StatusOK || p.URL.Path != "/ui/jobs/j1" || p.Body != "ui page /ui/jobs/j1?x=1" {
			t.Fatalf("%s: ended at %d %s %q, want the UI's /ui/jobs/j1?x=1", c.name, p.Status, p.URL, p.Body)
		}
		// The request to the provider: code flow with PKCE S256, state,
		// nonce, the scopes and the fixed redirect URI.
		for k, want := range map[string]string{"response_type": "code", "code_challenge_method": "S256",
			"scope": "openid profile email groups", "redirect_uri": e.h.RedirectURL(), "client_id": e.m.ClientID} {
			if got := authorize.Get(k); got != want {
				t.Errorf("%s: authorize %s = %q, want %q", c.name, k, got, want)
			}
		}
		for _, k := range []string{"state", "nonce", "code_challenge"} {
			if len(authorize.Get(k)) < 43 {
				t.Errorf("%s: authorize %s = %q, want a random value", c.name, k, authorize.Get(k))
			}
		}
		s := e.deps.lastSession(t)
		tenant := c.u.Tenant
		if l, ok := tenant.([]string); ok {
			tenant = l[0]
		}
		if s.S.Identity.Tenant != tenant || s.S.Identity.Admin != c.admin || s.S.Identity.Subject != c.u.Subject ||
			s.S.Identity.Email != c.u.Email || s.S.Key.Secret != "pwm_secret_"+c.u.Subject || s.Next != "/ui/jobs/j1?x=1" {
			t.Fatalf("%s: session %+v", c.name, s)
		}
		e.deps.mu.Lock()
		req := e.deps.minted[len(e.deps.minted)-1]
		e.deps.mu.Unlock()
		wantName := "oidc:" + c.u.Email
		if c.u.Email == "" {
			wantName = "oidc:" + c.u.Subject
		}
		if req.Name != wantName || req.TTL != oidc.DefaultSessionKeyTTL || req.Identity.Admin != c.admin {
			t.Fatalf("%s: key request %+v", c.name, req)
		}
		// The ID token rides with the request; the leader verifies it
		// again and reads the same identity.
		if id, err := e.h.VerifyIDToken(t.Context(), req.IDToken); err != nil || id != req.Identity {
			t.Fatalf("%s: VerifyIDToken: %+v, %v; want %+v", c.name, id, err, req.Identity)
		}
		if _, err := e.h.VerifyIDToken(t.Context(), req.IDToken+"x"); err == nil {
			t.Fatalf("%s: a spoiled ID token verified", c.name)
		}
		// The state cookie was used up.
		for _, ck := range b.Client.Jar.Cookies(mustURL(t, e.srv.URL+oidc.CallbackPath)) {
			if strings.HasPrefix(ck.Name, "pwmesh_oidc_") {
				t.Errorf("%s: state cookie %s left behind", c.name, ck.Name)
			}
		}
	}
}

func TestAStrangerToTheMeshSeesOnlyThatAndGetsNoKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, u := range []*oidctest.User{
		{Subject: "x1", Email: "eve@else.example", Tenant: "initech", Groups: []string{"mesh-admins"}}, // unknown tenant
		{Subject: "x2", Email: "mal@else.example"},                                                     // no claim
		{Subject: "x3", Tenant: []string{"acme", "globex"}},                                            // two tenants
	} {
		b := oidctest.NewBrowser(t)
		p := e.signIn(b, e.srv, u, "/ui/jobs", nil)
		if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "your account is not assigned to a tenant of this mesh; ask an operator") {
			t.Fatalf("%s: %d %s", u.Subject, p.Status, p.Body)
		}
		for _, leak := range []string{"acme", "globex", "initech", "/ui/jobs"} {
			if strings.Contains(p.Body, leak) {
				t.Errorf("%s: the refusal shows %q", u.Subject, leak)
			}
		}
	}
	if m, s := e.deps.counts(); m != 0 || s != 0 {
		t.Fatalf("%d keys minted, %d sessions started for strangers", m, s)
	}
	// A tenant the node refuses at minting (e.g. reserved) reads the same.
	e.deps.mu.Lock()
	e.deps.mintErr = oidc.ErrNoTenant
	e.deps.mu.Unlock()
	p := e.signIn(oidctest.NewBrowser(t), e.srv, &oidctest.User{Subject: "x4", Tenant: "acme"}, "/ui/jobs", nil)
	if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "not assigned to a tenant") {
		t.Fatalf("refused at minting: %d %s", p.Status, p.Body)
	}
}

// TestForgedCallbacksAreRefused tampers with each thing the flow checks;
// none signs anyone in.
func TestForgedCallbacksAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherKeys, err := mockoidc.NewKeypair(other)
	if err != nil {
		t.Fatal(err)
	}
	// resign rewrites the ID token's claims and signs it with keys.
	resign := func(keys *mockoidc.Keypair, edit func(jwt.MapClaims)) func(string) string {
		return func(raw string) string {
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
				t.Error(err)
				return raw
			}
			edit(claims)
			s, err := keys.SignJWT(claims)
			if err != nil {
				t.Error(err)
			}
			return s
		}
	}
	nop := func(jwt.MapClaims) {}
	var cur *oidctest.Browser // the case's browser
	cases := []struct {
		name   string
		status int
		hook   func(*url.URL)
		token  func(string) string
		before func(b *oidctest.Browser)
	}{
		{name: "state changed on the way back", status: http.StatusBadRequest,
			hook: onPath(oidc.CallbackPath, func(q url.Values) url.Values {
				s := q.Get("state")
				q.Set("state", s[:len(s)-1]+flip(s[len(s)-1]))
				return q
			})},
		{name: "state of another sign-in", status: http.StatusBadRequest,
			hook: onPath(oidc.CallbackPath, func(q url.Values) url.Values {
				q.Set("state", strings.Repeat("A", 43))
				return q
			})},
		{name: "nonce changed on the way out", status: http.StatusBadGateway,
			hook: onPath(mockoidc.AuthorizationEndpoint, func(q url.Values) url.Values {
				q.Set("nonce", "attacker-chosen-nonce-attacker-chosen-nonce")
				return q
			})},
		{name: "PKCE challenge of another verifier", status: http.StatusBadGateway,
			hook: onPath(mockoidc.AuthorizationEndpoint, func(q url.Values) url.Values {
				q.Set("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
				return q
			})},
		{name: "code of another sign-in", status: http.StatusBadGateway,
			hook: onPath(oidc.CallbackPath, func(q url.Values) url.Values {
				q.Set("code", "a-code-the-provider-never-issued")
				return q
			})},
		{name: "ID token signed by another key", status: http.StatusBadGateway, token: resign(otherKeys, nop)},
		{name: "ID token for another client", status: http.StatusBadGateway,
			token: resign(e.m.Keypair, func(c jwt.MapClaims) { c["aud"] = "another-client" })},
		{name: "ID token of another issuer", status: http.StatusBadGateway,
			token: resign(e.m.Keypair, func(c jwt.MapClaims) { c["iss"] = "https://evil.example/oidc" })},
		{name: "ID token expired", status: http.StatusBadGateway,
			token: resign(e.m.Keypair, func(c jwt.MapClaims) {
				c["exp"] = time.Now().Add(-time.Hour).Unix()
				c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
				c["nbf"] = c["iat"]
			})},
		{name: "ID token with the nonce removed", status: http.StatusBadGateway,
			token: resign(e.m.Keypair, func(c jwt.MapClaims) { delete(c, "nonce") })},
		{name: "state cookie tampered with", status: http.StatusBadRequest,
			hook: func(u *url.URL) {
				if u.Path == oidc.CallbackPath {
					tamperStateCookie(t, cur, u)
				}
			}},
		{name: "provider error", status: http.StatusForbidden,
			hook: onPath(oidc.CallbackPath, func(q url.Values) url.Values {
				q.Del("code")
				q.Set("error", "access_denied")
				return q
			})},
	}
	for _, c := range cases {
		if c.token != nil {
			e.tokenHook.Store(&c.token)
		} else {
			e.tokenHook.Store(nil)
		}
		cur = oidctest.NewBrowser(t)
		p := e.signIn(cur, e.srv, &oidctest.User{Subject: "u1", Email: "ann@acme.example", Tenant: "acme"}, "/ui/jobs", c.hook)
		if p.Status != c.status || p.URL.Path != oidc.CallbackPath {
			t.Errorf("%s: %d at %s, want %d at the callback: %s", c.name, p.Status, p.URL, c.status, p.Body)
		}
		if strings.Contains(p.Body, "acme") {
			t.Errorf("%s: the refusal names the tenant", c.name)
		}
	}
	e.tokenHook.Store(nil)
	if m, s := e.deps.counts(); m != 0 || s != 0 {
		t.Fatalf("forged callbacks minted %d keys and started %d sessions", m, s)
	}
	// The same browser, untouched, signs in.
	if p := e.signIn(oidctest.NewBrowser(t), e.srv, &oidctest.User{Subject: "u1", Tenant: "acme"}, "/ui/jobs", nil); p.Status != http.StatusOK {
		t.Fatalf("a clean sign-in after the forgeries: %d %s", p.Status, p.Body)
	}
}

// tamperStateCookie spoils one character of b's state cookie.
func tamperStateCookie(t *testing.T, b *oidctest.Browser, u *url.URL) {
	jar := b.Client.Jar
	for _, c := range jar.Cookies(u) {
		if strings.HasPrefix(c.Name, "pwmesh_oidc_") {
			v := []byte(c.Value)
			v[len(v)/2] = flip(v[len(v)/2])[0]
			jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: string(v), Path: oidc.CallbackPath}})
			return
		}
	}
	t.Error("no state cookie to tamper with")
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestAStateOlderThanTheLoginTTLIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	b := oidctest.NewBrowser(t)
	p := e.signIn(b, e.srv, &oidctest.User{Subject: "u1", Tenant: "acme"}, "/ui/jobs", func(u *url.URL) {
		if u.Path == oidc.CallbackPath {
			e.clock.Advance(oidc.DefaultLoginTTL + time.Second) // the person took 10 minutes at the provider
		}
	})
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "took too long") {
		t.Fatalf("%d %s", p.Status, p.Body)
	}
	if m, s := e.deps.counts(); m != 0 || s != 0 {
		t.Fatalf("minted %d, sessions %d", m, s)
	}
}

func TestNextNeverLeavesTheUI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, next := range []string{"https://evil.example/", "//evil.example/ui/jobs", "/\\evil.example", "/ui/../admin",
		"javascript:alert(1)", "/ui/login", "/ui/callback?code=x", "/ui/logout", "/health", "", "/ui/jobs\r\nSet-Cookie: x=y"} {
		b := oidctest.NewBrowser(t)
		p := e.signIn(b, e.srv, &oidctest.User{Subject: "u1", Tenant: "acme"}, next, nil)
		if p.Status != http.StatusOK || p.URL.Host != mustURL(t, e.srv.URL).Host || p.URL.Path != "/ui/jobs" {
			t.Errorf("next=%q: ended at %d %s", next, p.Status, p.URL)
		}
		if s := e.deps.lastSession(t); s.Next != "/ui/jobs" {
			t.Errorf("next=%q: StartSession got next %q", next, s.Next)
		}
	}
}

// TestTheCallbackMayLandOnAnotherNode: a sign-in started on one node ends
// on another that shares the key (a load balancer in front of the mesh).
func TestTheCallbackMayLandOnAnotherNode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	srv2, _ := e.node(e.m, nil)
	b := oidctest.NewBrowser(t)
	p := e.signIn(b, e.srv, &oidctest.User{Subject: "u1", Tenant: "acme"}, "/ui/datasets", func(u *url.URL) {
		if u.Path == oidc.CallbackPath {
			u.Host = mustURL(t, srv2.URL).Host
		}
	})
	if p.Status != http.StatusOK || p.URL.Host != mustURL(t, srv2.URL).Host || p.Body != "ui page /ui/datasets" {
		t.Fatalf("%d %s %s", p.Status, p.URL, p.Body)
	}
	// A node with another key cannot read the state.
	e2 := newEnv(t, nil)
	e2.key = stateKey(t)
	e2.key[0] ^= 1
	srv3, _ := e2.node(e.m, nil)
	p = e.signIn(oidctest.NewBrowser(t), e.srv, &oidctest.User{Subject: "u1", Tenant: "acme"}, "/ui/datasets", func(u *url.URL) {
		if u.Path == oidc.CallbackPath {
			u.Host = mustURL(t, srv3.URL).Host
		}
	})
	if p.Status != http.StatusBadRequest {
		t.Fatalf("a node with another key: %d %s", p.Status, p.Body)
	}
}

func TestAProviderDownAtStartIsFoundLater(t *testing.T) {
	t.Parallel()
	m := oidctest.Start(t)
	m.SetDown(true)
	e := &env{t: t, m: m, deps: &deps{tenants: map[string]bool{"acme": true}}, clock: &clock{}, key: stateKey(t)}
	e.srv, e.h = e.node(m, nil)
	b := oidctest.NewBrowser(t)
	p := e.signIn(b, e.srv, nil, "/ui/jobs", nil)
	if p.Status != http.StatusServiceUnavailable || !strings.Contains(p.Body, "cannot be reached") {
		t.Fatalf("provider down: %d %s", p.Status, p.Body)
	}
	m.SetDown(false)
	e.clock.Advance(3 * time.Second) // past the gap between two discoveries
	if p := e.signIn(b, e.srv, &oidctest.User{Subject: "u1", Tenant: "acme"}, "/ui/jobs", nil); p.Status != http.StatusOK || p.URL.Path != "/ui/jobs" {
		t.Fatalf("provider back: %d %s %s", p.Status, p.URL, p.Body)
	}
	// Run returns at once once the provider is known.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.h.Run(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("Run: %v (ctx %v)", err, ctx.Err())
	}
}

func TestRunFindsAProviderThatComesUp(t *testing.T) {
	t.Parallel()
	m := oidctest.Start(t)
	m.SetDown(true)
	e := &env{t: t, m: m, deps: &deps{tenants: map[string]bool{"acme": true}}, clock: &clock{}, key: stateKey(t)}
	e.srv, e.h = e.node(m, nil)
	done := make(chan error, 1)
	go func() { done <- e.h.Run(t.Context()) }()
	m.SetDown(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not find the provider")
	}
	if p := e.signIn(oidctest.NewBrowser(t), e.srv, &oidctest.User{Subject: "u1", Tenant: "acme"}, "/ui/jobs", nil); p.Status != http.StatusOK {
		t.Fatalf("%d %s", p.Status, p.Body)
	}
}

func TestNewRefusesAnIncompleteConfig(t *testing.T) {
	t.Parallel()
	d := &deps{}
	ok := oidc.Deps{TenantExists: d.TenantExists, MintKey: d.MintKey, StartSession: d.StartSession}
	good := oidc.Config{Issuer: "http://127.0.0.1:1/oidc", ClientID: "c", ExternalURL: "https://mesh.example", StateKey: stateKey(t)}
	for name, c := range map[string]func(*oidc.Config, *oidc.Deps){
		"no issuer":       func(c *oidc.Config, _ *oidc.Deps) { c.Issuer = "" },
		"issuer not http": func(c *oidc.Config, _ *oidc.Deps) { c.Issuer = "ftp://idp.example" },
		"no client":       func(c *oidc.Config, _ *oidc.Deps) { c.ClientID = "" },
		"no external url": func(c *oidc.Config, _ *oidc.Deps) { c.ExternalURL = "" },
		"relative url":    func(c *oidc.Config, _ *oidc.Deps) { c.ExternalURL = "mesh.example" },
		"url with a path": func(c *oidc.Config, _ *oidc.Deps) { c.ExternalURL = "https://mesh.example/pwmesh" },
		"short key":       func(c *oidc.Config, _ *oidc.Deps) { c.StateKey = []byte("short") },
		"no deps":         func(_ *oidc.Config, d *oidc.Deps) { d.MintKey = nil },
	} {
		cfg, dp := good, ok
		c(&cfg, &dp)
		if _, err := oidc.New(cfg, dp); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	h, err := oidc.New(good, ok) // no provider answers there: New asks it nothing

	if err != nil {
		t.Fatal(err)
	}
	if h.RedirectURL() != "https://mesh.example/ui/callback" {
		t.Fatalf("redirect %s", h.RedirectURL())
	}
	if _, err := oidc.DeriveStateKey([]byte("short")); err == nil {
		t.Fatal("a short secret derived a key")
	}
	if !errors.Is(oidc.ErrNoTenant, oidc.ErrNoTenant) {
		t.Fatal("sentinel")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
