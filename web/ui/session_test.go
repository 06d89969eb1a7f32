package ui_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/web/ui"
)

// Before sign-in, nothing about the cluster shows: not its node, tenants,
// jobs or datasets, on any page, header or the API behind /ui/api/.
func TestSignInPageLeaksNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, `{"type":"generate_dataset"}`)
	d := e.upload(e.globex, "secret-measurement.npz", []byte("data"))
	b := newBrowser(t, e.url)
	secrets := []string{nodeID, "acme", "globex", j.ID, d.ID, d.Name, "generate_dataset", "A100"}
	check := func(what string, p page) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(what, s) {
				continue // the address typed comes back in next=
			}
			if strings.Contains(p.body, s) {
				t.Errorf("%s shows %q before sign-in:\n%s", what, s, p.body)
			}
		}
		for k, vs := range p.header {
			for _, v := range vs {
				for _, s := range secrets {
					if strings.Contains(v, s) && !strings.Contains(what, s) {
						t.Errorf("%s: header %s shows %q before sign-in", what, k, s)
					}
				}
			}
		}
	}
	p := b.get("/ui/login")
	wantStatus(t, p, http.StatusOK)
	wantContains(t, p, "Sign in", `name="key"`, `<label for="key">API key</label>`)
	check("the sign-in page", p)

	for _, path := range []string{"/ui/jobs", "/ui/jobs/" + j.ID, "/ui/datasets", "/ui/nodes", "/ui/usage", "/ui/keys", "/ui/submit"} {
		p := b.get(path)
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/ui/login?next=") {
			t.Errorf("GET %s: %d to %q, want a redirect to sign-in", path, p.status, p.location())
		}
		check(path, p)
	}
	p = b.get("/ui/")
	if p.status != http.StatusFound || p.location() != "/ui/login" {
		t.Errorf("GET /ui/: %d to %q, want /ui/login", p.status, p.location())
	}
	p = b.get("/ui/api/jobs")
	wantStatus(t, p, http.StatusUnauthorized)
	check("/ui/api/jobs", p)
	p = b.get("/ui/no-such-page")
	wantStatus(t, p, http.StatusNotFound)
	check("a missing page", p)
	// The assets say nothing either, and need no session.
	p = b.get("/ui/static/ui.css")
	wantStatus(t, p, http.StatusOK)
	check("the style sheet", p)
}

// A wrong key shows an error and starts no session.
func TestSignInBadKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := newBrowser(t, e.url)
	p := b.signIn("pwm_00000000000000000000000000000000", "/ui/jobs")
	wantStatus(t, p, http.StatusUnauthorized)
	wantContains(t, p, "not valid", `role="alert"`)
	if strings.Contains(p.body, "pwm_0000") {
		t.Error("the refused key is shown back")
	}
	if b.sessionCookie() != nil {
		t.Fatal("a refused sign-in set a session cookie")
	}
	wantStatus(t, b.get("/ui/jobs"), http.StatusSeeOther)

	// A revoked key, and an expired one, are refused alike.
	exp := testNow.Add(time.Minute)
	expired := e.addKey("acme", "free", false, &exp)
	e.clock.add(2 * time.Minute)
	wantStatus(t, b.signIn(expired, "/ui/jobs"), http.StatusUnauthorized)
	if b.sessionCookie() != nil {
		t.Fatal("an expired key started a session")
	}

	// A sign-in form posted without the browser's sign-in token (from
	// another site) is refused, whatever key it carries.
	other := newBrowser(t, e.url)
	p = other.post("/ui/login", url.Values{"key": {e.acme}, "csrf": {"forged"}})
	wantStatus(t, p, http.StatusForbidden)
	if other.sessionCookie() != nil {
		t.Fatal("a forged sign-in started a session")
	}
}

// The session cookie is HttpOnly, SameSite=Lax, under /ui/, lasts the
// session lifetime or the key's expiry if sooner, and is Secure under TLS.
func TestSessionCookieFlags(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := newBrowser(t, e.url)
	p := b.signIn(e.acme, "/ui/datasets")
	if p.status != http.StatusSeeOther || p.location() != "/ui/datasets" {
		t.Fatalf("sign-in: %d to %q", p.status, p.location())
	}
	c := setCookie(t, p, "pwmesh_session")
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/ui/" || c.Secure {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, Path=/ui/, not Secure over plain HTTP", c)
	}
	if c.MaxAge != int(ui.DefaultSessionLifetime/time.Second) {
		t.Errorf("Max-Age %d, want the session lifetime %v", c.MaxAge, ui.DefaultSessionLifetime)
	}
	if strings.Contains(c.Value, e.acme) || strings.Contains(c.Value, "acme") {
		t.Error("the cookie shows its key or tenant: it must be sealed")
	}
	// The page shows who is signed in.
	wantContains(t, b.get("/ui/jobs"), "acme", "acme-key", "Sign out")

	// A key that expires in an hour makes a session of an hour.
	exp := testNow.Add(time.Hour)
	short := e.addKey("acme", "free", false, &exp)
	p = newBrowser(t, e.url).signIn(short, "/ui/jobs")
	if c := setCookie(t, p, "pwmesh_session"); c.MaxAge != 3600 {
		t.Errorf("Max-Age %d, want the key's remaining 3600 s", c.MaxAge)
	}

	// A node that serves TLS marks its cookies Secure.
	tls := newEnv(t, func(c *ui.Config) { c.Secure = true })
	p = newBrowser(t, tls.url).signIn(tls.acme, "/ui/jobs")
	if c := setCookie(t, p, "pwmesh_session"); !c.Secure {
		t.Error("cookie not Secure with Config.Secure")
	}

	// Signing out clears the cookie.
	tok := b.csrf()
	p = b.post("/ui/logout", url.Values{"csrf": {tok}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/ui/login") {
		t.Fatalf("sign-out: %d to %q", p.status, p.location())
	}
	if c := setCookie(t, p, "pwmesh_session"); c.MaxAge >= 0 {
		t.Errorf("sign-out left the cookie: %+v", c)
	}
	wantStatus(t, b.get("/ui/jobs"), http.StatusSeeOther)
}

func setCookie(t testing.TB, p page, name string) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no Set-Cookie %s in %v", name, p.header["Set-Cookie"])
	return nil
}

// Every state change without the session's anti-forgery token (missing or
// wrong) gets 403 and changes nothing; with it, it goes through.
func TestCSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.upload(e.acme, "keep.npz", []byte("measurement"))
	j := e.submit(e.acme, `{"type":"generate_dataset"}`)
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)
	tok := b.csrf()
	admin := newBrowser(t, e.url)
	admin.mustSignIn(e.admin)

	index := func() uint64 { return e.fsm.LastIndex() }
	for _, bad := range []string{"", "wrong", tok[:len(tok)-1]} {
		before := index()
		form := func(v url.Values) url.Values {
			if bad != "" {
				v.Set("csrf", bad)
			}
			return v
		}
		for _, c := range []struct {
			br   *browser
			path string
			form url.Values
		}{
			{b, "/ui/datasets/" + d.ID + "/delete", form(url.Values{})},
			{b, "/ui/jobs/" + j.ID + "/cancel", form(url.Values{})},
			{b, "/ui/submit", form(url.Values{"type": {"generate_dataset"}})},
			{b, "/ui/logout", form(url.Values{})},
			{admin, "/ui/keys", form(url.Values{"tenant": {"mallory"}, "tier": {"paid"}})},
			{admin, "/ui/tenants/acme", form(url.Values{"tier": {"paid"}})},
		} {
			p := c.br.post(c.path, c.form)
			if p.status != http.StatusForbidden {
				t.Errorf("POST %s with token %q: %d, want 403", c.path, bad, p.status)
			}
		}
		// The script's proxy wants the token in its header.
		hdr := []string{}
		if bad != "" {
			hdr = []string{"X-CSRF-Token", bad}
		}
		if p := b.send("DELETE", "/ui/api/datasets/"+d.ID, nil, hdr...); p.status != http.StatusForbidden {
			t.Errorf("DELETE /ui/api/datasets with token %q: %d, want 403", bad, p.status)
		}
		if p := b.send("POST", "/ui/api/datasets?name=x", strings.NewReader("x"), append(hdr, "Content-Type", "application/octet-stream")...); p.status != http.StatusForbidden {
			t.Errorf("POST /ui/api/datasets with token %q: %d, want 403", bad, p.status)
		}
		// A multipart upload whose token is wrong stores nothing.
		if body, ct := multipartUpload(t, bad, "x.npz", []byte("x")); b.send("POST", "/ui/datasets", body, "Content-Type", ct).status != http.StatusForbidden {
			t.Errorf("a multipart upload with token %q was not refused with 403", bad)
		}
		if after := index(); after != before {
			t.Fatalf("token %q: the state changed (index %d to %d)", bad, before, after)
		}
	}
	if _, ok := e.fsm.Dataset(d.ID); !ok {
		t.Fatal("the dataset is gone")
	}
	if got, _ := e.fsm.Job(j.ID); got.CancelRequested || got.State == "cancelled" {
		t.Fatal("the job was cancelled")
	}
	wantStatus(t, b.get("/ui/jobs"), http.StatusOK) // still signed in

	// With the token, the same requests work.
	p := b.post("/ui/datasets/"+d.ID+"/delete", url.Values{"csrf": {tok}})
	if p.status != http.StatusSeeOther || p.location() != "/ui/datasets?ok=deleted" {
		t.Fatalf("delete with the token: %d to %q: %s", p.status, p.location(), p.body)
	}
	if _, ok := e.fsm.Dataset(d.ID); ok {
		t.Fatal("the dataset was not deleted")
	}
	p = b.send("POST", "/ui/api/datasets?name=via-proxy.npz", strings.NewReader("bytes"), "X-CSRF-Token", tok, "Content-Type", "application/octet-stream")
	wantStatus(t, p, http.StatusCreated)
	body, ct := multipartUpload(t, tok, "via-form.npz", []byte("more bytes"))
	p = b.send("POST", "/ui/datasets", body, "Content-Type", ct)
	if p.status != http.StatusSeeOther || p.location() != "/ui/datasets?ok=uploaded" {
		t.Fatalf("multipart upload with the token: %d to %q: %s", p.status, p.location(), p.body)
	}
	wantContains(t, b.get(p.location()), "via-proxy.npz", "via-form.npz", "Dataset uploaded.")
}

// multipartUpload is the upload form as a browser without script sends it
// (token, name, file): the body and its Content-Type.
func multipartUpload(t testing.TB, token, name string, data []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if token != "" {
		if err := mw.WriteField("csrf", token); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.WriteField("name", name); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("file", "f.npz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(data)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, mw.FormDataContentType()
}

// An expired session sends the browser to sign-in with next=, and a
// submission it interrupted comes back filled in after sign-in.
func TestExpiredSessionKeepsTheDraft(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)
	tok := b.csrf()
	e.clock.add(ui.DefaultSessionLifetime + time.Minute)

	p := b.get("/ui/jobs?state=queued")
	wantStatus(t, p, http.StatusSeeOther)
	loc, _ := url.Parse(p.location())
	if loc.Path != "/ui/login" || loc.Query().Get("next") != "/ui/jobs?state=queued" || loc.Query().Get("expired") != "1" {
		t.Fatalf("expired session went to %q", p.location())
	}
	wantContains(t, b.get(p.location()), "Your session has expired")

	before := e.fsm.LastIndex()
	p = b.post("/ui/submit", url.Values{"csrf": {tok}, "type": {"generate_dataset"}, "generate_dataset.size": {"24"}, "generate_dataset.severity": {"severe"}})
	wantStatus(t, p, http.StatusSeeOther)
	loc, _ = url.Parse(p.location())
	next := loc.Query().Get("next")
	if loc.Path != "/ui/login" || !strings.HasPrefix(next, "/ui/submit?") {
		t.Fatalf("expired submit went to %q", p.location())
	}
	if e.fsm.LastIndex() != before {
		t.Fatal("an expired session submitted a job")
	}
	p = b.signIn(e.acme, next)
	if p.status != http.StatusSeeOther || p.location() != next {
		t.Fatalf("sign-in went to %q, want %q", p.location(), next)
	}
	p = b.get(next)
	wantStatus(t, p, http.StatusOK)
	wantContains(t, p, `value="24"`, `<option value="severe" selected>`)

	// next= never leads off the UI.
	for _, evil := range []string{"https://evil.example/", "//evil.example/ui/", "/ui/../api", "/jobs"} {
		p := newBrowser(t, e.url).signIn(e.acme, evil)
		if p.location() != "/ui/jobs" {
			t.Errorf("next=%q led to %q", evil, p.location())
		}
	}
}

// A session made on one node works on another that shares the secret,
// and a cookie sealed with another secret, or tampered with, is no session.
func TestSessionFromAnotherNode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)
	c := b.sessionCookie()

	// The same API, a second UI over it with the same secret: another node.
	key, _ := ui.DeriveSessionKey([]byte("a secret every node of this mesh shares"))
	other, err := ui.New(ui.Config{SessionKey: key, Clock: e.clock}, ui.Deps{API: e.api.Handler(), Identify: e.api.Identify})
	if err != nil {
		t.Fatal(err)
	}
	get := func(u *ui.UI, cookie *http.Cookie) int {
		req, _ := http.NewRequest("GET", "/ui/jobs", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		u.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	if code := get(other, c); code != http.StatusOK {
		t.Fatalf("another node answered %d to the session", code)
	}
	key2, _ := ui.DeriveSessionKey([]byte("the secret of some other mesh!!"))
	stranger, _ := ui.New(ui.Config{SessionKey: key2, Clock: e.clock}, ui.Deps{API: e.api.Handler(), Identify: e.api.Identify})
	if code := get(stranger, c); code != http.StatusSeeOther {
		t.Fatalf("a node of another mesh answered %d to the session", code)
	}
	tampered := *c
	v := []byte(c.Value)
	v[len(v)/2] ^= 1
	if v[len(v)/2] == '-' || v[len(v)/2] == '_' {
		v[len(v)/2] = 'A'
	}
	tampered.Value = string(v)
	if code := get(other, &tampered); code != http.StatusSeeOther {
		t.Fatalf("a tampered cookie got %d", code)
	}
}

// A revoked key's session ends at its next page.
func TestRevokedKeyEndsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := e.addKey("acme", "free", false, nil)
	b := newBrowser(t, e.url)
	b.mustSignIn(key)
	wantStatus(t, b.get("/ui/datasets"), http.StatusOK)
	if st, body := e.apiCall("DELETE", "/keys/key_"+key[4:14], e.admin, nil, ""); st != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", st, body)
	}
	p := b.get("/ui/datasets")
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/ui/login?") {
		t.Fatalf("a revoked key's session got %d to %q", p.status, p.location())
	}
	wantStatus(t, b.get("/ui/api/jobs"), http.StatusUnauthorized)
}

// SignIn is where other sign-in methods (OpenID Connect) end: it starts a
// session for an identity with a key minted for it, which sign-out
// revokes; the sign-in page shows their buttons.
func TestSignInSeam(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *ui.Config) { c.SignInProviders = []ui.Provider{{Name: "Example SSO", Path: "/ui/login/oidc"}} })
	p := newBrowser(t, e.url).get("/ui/login?next=%2Fui%2Fnodes")
	wantContains(t, p, "Sign in with Example SSO", `href="/ui/login/oidc?next=%2fui%2fnodes"`)

	st, body := e.apiCall("POST", "/keys", e.admin, strings.NewReader(`{"tenant":"acme","tier":"free","name":"oidc:ada@example.com","expires_in":"30m"}`), "application/json")
	if st != http.StatusCreated {
		t.Fatalf("mint: %d %s", st, body)
	}
	k := decode[struct{ ID, Key string }](t, body)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/ui/callback?code=x", nil)
	err := e.ui.SignIn(rec, req, ui.Identity{Tenant: "acme", Name: "Ada Lovelace", Key: k.Key, KeyID: k.ID, RevokeOnSignOut: true,
		ExpiresAt: testNow.Add(30 * time.Minute)}, "/ui/datasets")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/ui/datasets" {
		t.Fatalf("SignIn answered %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	c := setCookie(t, page{header: rec.Header()}, "pwmesh_session")
	if c.MaxAge != 1800 {
		t.Errorf("Max-Age %d, want the key's 1800 s", c.MaxAge)
	}
	b := newBrowser(t, e.url)
	b.adopt(c)
	wantContains(t, b.get("/ui/jobs"), "Ada Lovelace", "acme")
	p = b.post("/ui/logout", url.Values{"csrf": {b.csrf()}})
	wantStatus(t, p, http.StatusSeeOther)
	if st, _ := e.apiCall("GET", "/jobs", k.Key, nil, ""); st != http.StatusUnauthorized {
		t.Fatalf("the session's key still works after sign-out: %d", st)
	}

	// An identity without a key, or one already expired, starts nothing.
	for _, id := range []ui.Identity{{Tenant: "acme"}, {Tenant: "acme", Key: k.Key, ExpiresAt: testNow.Add(-time.Second)}} {
		rec := httptest.NewRecorder()
		if err := e.ui.SignIn(rec, req, id, "/ui/jobs"); err == nil || len(rec.Header()) != 0 || rec.Body.Len() != 0 {
			t.Errorf("SignIn(%+v): %v, wrote %v", id, err, rec.Header())
		}
	}
}
