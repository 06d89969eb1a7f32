package oidc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/pwmesh/pwmesh/web/oidc"
)

// user is a person at the test provider: the ID token carries the tenant
// claim always and the groups with the groups scope, as real providers do.
type user struct {
	sub, email, name string
	tenant           any // string, list, or nil for none
	groups           []string
}

type userClaims struct {
	*mockoidc.IDTokenClaims
	Email  string   `json:"email,omitempty"`
	Name   string   `json:"name,omitempty"`
	Tenant any      `json:"pwmesh_tenant,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

func (u *user) ID() string { return u.sub }

func (u *user) Userinfo([]string) ([]byte, error) {
	return json.Marshal(map[string]any{"sub": u.sub, "email": u.email})
}

func (u *user) Claims(scopes []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	c := &userClaims{IDTokenClaims: base, Email: u.email, Name: u.name, Tenant: u.tenant}
	for _, s := range scopes {
		if s == "groups" {
			c.Groups = u.groups
		}
	}
	return c, nil
}

// provider starts a real OpenID Connect provider (discovery, JWKS,
// authorize, token) on 127.0.0.1; down makes it answer 503 to everything.
func provider(t *testing.T) (*mockoidc.MockOIDC, *atomic.Bool) {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	down := &atomic.Bool{}
	if err := m.AddMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
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
	return m, down
}

// clock is the handler's clock: the wall clock plus an offset a test moves.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// deps are in-memory collaborators that record what the handler asked.
type deps struct {
	mu       sync.Mutex
	tenants  map[string]bool
	minted   []oidc.KeyRequest
	sessions []startedSession
	mintErr  error
}

type startedSession struct {
	S    oidc.Session
	Next string
}

func (d *deps) TenantExists(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tenants[name]
}

func (d *deps) MintKey(_ context.Context, req oidc.KeyRequest) (oidc.Key, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mintErr != nil {
		return oidc.Key{}, d.mintErr
	}
	d.minted = append(d.minted, req)
	return oidc.Key{ID: "key_test", Secret: "pwm_secret_" + req.Identity.Subject, ExpiresAt: time.Now().Add(req.TTL)}, nil
}

func (d *deps) StartSession(w http.ResponseWriter, r *http.Request, s oidc.Session, next string) error {
	d.mu.Lock()
	d.sessions = append(d.sessions, startedSession{s, next})
	d.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "test_session", Value: s.Key.Secret, Path: "/ui/"})
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

func (d *deps) counts() (minted, sessions int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.minted), len(d.sessions)
}

func (d *deps) lastSession(t *testing.T) startedSession {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.sessions) == 0 {
		t.Fatal("no session was started")
	}
	return d.sessions[len(d.sessions)-1]
}

// env is a node's sign-in handler in front of a stand-in for the UI (it
// answers every other /ui/ path with the path), at a real provider.
type env struct {
	t     *testing.T
	m     *mockoidc.MockOIDC
	down  *atomic.Bool
	deps  *deps
	clock *clock
	h     *oidc.Handler
	srv   *httptest.Server
	key   []byte
	// tokenHook, when set, rewrites the ID token of the provider's token
	// answers on their way to the handler (a forged answer).
	tokenHook atomic.Pointer[func(idToken string) string]
}

func stateKey(t *testing.T) []byte {
	k, err := oidc.DeriveStateKey([]byte("a cluster key shared by every node"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newEnv starts a provider and one node's handler; cfg adjusts the config.
func newEnv(t *testing.T, cfg func(*oidc.Config)) *env {
	t.Helper()
	m, down := provider(t)
	e := &env{t: t, m: m, down: down, deps: &deps{tenants: map[string]bool{"acme": true, "globex": true}}, clock: &clock{}, key: stateKey(t)}
	e.srv, e.h = e.node(m, cfg)
	return e
}

// node starts another node's handler at the same provider with the same
// state key.
func (e *env) node(m *mockoidc.MockOIDC, cfg func(*oidc.Config)) (*httptest.Server, *oidc.Handler) {
	t := e.t
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	c := oidc.Config{Issuer: m.Issuer(), ClientID: m.ClientID, ClientSecret: m.ClientSecret, ExternalURL: "http://" + srv.Listener.Addr().String(),
		AdminGroup: "mesh-admins", StateKey: e.key, Clock: e.clock,
		HTTPClient: &http.Client{Transport: &hookTransport{e: e}, Timeout: 10 * time.Second}}
	if cfg != nil {
		cfg(&c)
	}
	h, err := oidc.New(t.Context(), c, oidc.Deps{TenantExists: e.deps.TenantExists, MintKey: e.deps.MintKey, StartSession: e.deps.StartSession})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ui page "+r.URL.RequestURI())
	}))
	srv.Start()
	return srv, h
}

// hookTransport passes the handler's calls to the provider, rewriting the
// ID token of a token answer when the test set a hook.
type hookTransport struct{ e *env }

func (ht *hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	hook := ht.e.tokenHook.Load()
	if err != nil || hook == nil || r.URL.Path != mockoidc.TokenEndpoint || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, err
	}
	body["id_token"] = (*hook)(body["id_token"].(string))
	b, _ = json.Marshal(body)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// browser is a person's browser: a cookie jar, redirects followed one at
// a time so that a test may tamper with where they lead.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is a response read whole.
type page struct {
	Status int
	URL    *url.URL
	Body   string
	Header http.Header
}

// visit requests u and follows redirects, calling hook (when set) on each
// URL a redirect leads to before following it.
func (b *browser) visit(method, u string, form url.Values, hook func(*url.URL)) page {
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
		resp, err := b.c.Do(req)
		if err != nil {
			b.t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return page{Status: resp.StatusCode, URL: req.URL, Body: string(data), Header: resp.Header}
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
	b.t.Fatal("too many redirects")
	return page{}
}

func (b *browser) get(u string, hook func(*url.URL)) page {
	b.t.Helper()
	return b.visit(http.MethodGet, u, nil, hook)
}

// signIn queues u at the provider and signs the browser in at srv,
// returning to next.
func (e *env) signIn(b *browser, srv *httptest.Server, u *user, next string, hook func(*url.URL)) page {
	e.t.Helper()
	if u != nil {
		e.m.QueueUser(u)
	}
	return b.get(srv.URL+oidc.LoginPath+"?next="+url.QueryEscape(next), hook)
}

// onPath calls f on URLs whose path is path.
func onPath(path string, f func(q url.Values) url.Values) func(*url.URL) {
	return func(u *url.URL) {
		if u.Path == path {
			u.RawQuery = f(u.Query()).Encode()
		}
	}
}
