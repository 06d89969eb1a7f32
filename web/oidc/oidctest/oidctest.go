// Package oidctest gives tests a real OpenID Connect provider (discovery,
// JWKS, authorize, token: github.com/oauth2-proxy/mockoidc on 127.0.0.1)
// whose users carry a tenant claim and groups, and a browser that follows
// a sign-in one redirect at a time (a cookie jar, and a hook that may
// tamper with where each redirect leads).
package oidctest

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
)

// AdminGroup is the group tests make admins of (--oidc-admin-group).
const AdminGroup = "mesh-admins"

// Provider is a running OpenID Connect provider. Sign-ins pop the users
// queued with Queue, in order.
type Provider struct {
	*mockoidc.MockOIDC
	down atomic.Bool
}

// Start starts a provider on 127.0.0.1; it stops at test cleanup.
func Start(t testing.TB) *Provider {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{MockOIDC: m}
	if err := m.AddMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p.down.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return p
}

// SetDown makes the provider answer 503 to everything (true) or serve
// again (false).
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

// Queue makes u the next user to sign in.
func (p *Provider) Queue(u *User) { p.QueueUser(u) }

// SecretFile writes the client secret to a file for
// --oidc-client-secret-file and returns its path.
func (p *Provider) SecretFile(t testing.TB) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "oidc-client-secret")
	if err := os.WriteFile(f, []byte(p.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// User is a person at the provider. The ID token carries the tenant claim
// always and the groups with the groups scope, as real providers do.
type User struct {
	Subject, Email, Name string
	// Tenant is the tenant claim's value: a string, a list, or nil for
	// none.
	Tenant any
	Groups []string
	// TenantClaim names the claim (default pwmesh_tenant).
	TenantClaim string
}

// ID implements mockoidc.User.
func (u *User) ID() string { return u.Subject }

// Userinfo implements mockoidc.User.
func (u *User) Userinfo([]string) ([]byte, error) {
	return json.Marshal(map[string]any{"sub": u.Subject, "email": u.Email})
}

// Claims implements mockoidc.User.
func (u *User) Claims(scopes []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	extra := map[string]any{}
	if u.Email != "" {
		extra["email"] = u.Email
	}
	if u.Name != "" {
		extra["name"] = u.Name
	}
	if u.Tenant != nil {
		claim := u.TenantClaim
		if claim == "" {
			claim = "pwmesh_tenant"
		}
		extra[claim] = u.Tenant
	}
	for _, s := range scopes {
		if s == "groups" && u.Groups != nil {
			extra["groups"] = u.Groups
		}
	}
	return &claims{IDTokenClaims: base, extra: extra}, nil
}

// claims are the ID token's registered claims and the user's own.
type claims struct {
	*mockoidc.IDTokenClaims
	extra map[string]any
}

func (c *claims) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(c.IDTokenClaims)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range c.extra {
		m[k] = v
	}
	return json.Marshal(m)
}

// Browser is a person's browser: a cookie jar, redirects followed one at
// a time.
type Browser struct {
	t      testing.TB
	Client *http.Client
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser(t testing.TB) *Browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Browser{t: t, Client: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// Page is an answer read whole: the last one of a chain of redirects.
type Page struct {
	Status int
	URL    *url.URL
	Body   string
	Header http.Header
}

// Visit requests u (a form post when form is not nil) and follows
// redirects, calling hook (when not nil) on each URL a redirect leads to
// before following it.
func (b *Browser) Visit(method, u string, form url.Values, hook func(*url.URL)) Page {
	b.t.Helper()
	for range 10 {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, u, body)
		if err != nil {
			b.t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := b.Client.Do(req)
		if err != nil {
			b.t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return Page{Status: resp.StatusCode, URL: req.URL, Body: string(data), Header: resp.Header}
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			b.t.Fatal(err)
		}
		if hook != nil {
			hook(next)
		}
		method, u, form = http.MethodGet, next.String(), nil
	}
	b.t.Fatal("oidctest: too many redirects")
	return Page{}
}

// Get is Visit with GET.
func (b *Browser) Get(u string, hook func(*url.URL)) Page {
	b.t.Helper()
	return b.Visit(http.MethodGet, u, nil, hook)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// FormToken is the anti-forgery token of the first form on a page ("" for
// none).
func FormToken(body string) string {
	if m := csrfField.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

// ConfirmCLI plays the person who opens the link `pwmesh login` printed:
// the page must show code (when not ""); the person presses the button
// and signs in at the provider as whoever is queued. It returns the last
// page.
func (b *Browser) ConfirmCLI(link, code string) Page {
	b.t.Helper()
	p := b.Get(link, nil)
	if p.Status != http.StatusOK || (code != "" && !strings.Contains(p.Body, code)) {
		b.t.Fatalf("oidctest: the sign-in link's page: %d %s", p.Status, p.Body)
	}
	tok := FormToken(p.Body)
	if tok == "" {
		b.t.Fatalf("oidctest: no confirmation form on %s", p.Body)
	}
	return b.Visit(http.MethodPost, link, url.Values{"csrf": {tok}}, nil)
}
