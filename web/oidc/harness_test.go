package oidc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/pwmesh/pwmesh/web/oidc"
	"github.com/pwmesh/pwmesh/web/oidc/oidctest"
)

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
	m     *oidctest.Provider
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
	m := oidctest.Start(t)
	e := &env{t: t, m: m, deps: &deps{tenants: map[string]bool{"acme": true, "globex": true}}, clock: &clock{}, key: stateKey(t)}
	e.srv, e.h = e.node(m, cfg)
	return e
}

// node starts another node's handler at the same provider with the same
// state key.
func (e *env) node(m *oidctest.Provider, cfg func(*oidc.Config)) (*httptest.Server, *oidc.Handler) {
	t := e.t
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	c := oidc.Config{Issuer: m.Issuer(), ClientID: m.ClientID, ClientSecret: m.ClientSecret, ExternalURL: "http://" + srv.Listener.Addr().String(),
		AdminGroup: "mesh-admins", StateKey: e.key, Clock: e.clock,
		HTTPClient: &http.Client{Transport: &hookTransport{e: e}, Timeout: 10 * time.Second}}
	if cfg != nil {
		cfg(&c)
	}
	h, err := oidc.New(c, oidc.Deps{TenantExists: e.deps.TenantExists, MintKey: e.deps.MintKey, StartSession: e.deps.StartSession})
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

// signIn queues u at the provider and signs the browser in at srv,
// returning to next.
func (e *env) signIn(b *oidctest.Browser, srv *httptest.Server, u *oidctest.User, next string, hook func(*url.URL)) oidctest.Page {
	e.t.Helper()
	if u != nil {
		e.m.QueueUser(u)
	}
	return b.Get(srv.URL+oidc.LoginPath+"?next="+url.QueryEscape(next), hook)
}

// onPath calls f on URLs whose path is path.
func onPath(path string, f func(q url.Values) url.Values) func(*url.URL) {
	return func(u *url.URL) {
		if u.Path == path {
			u.RawQuery = f(u.Query()).Encode()
		}
	}
}
