package oidc_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/web/oidc"
	"github.com/pwmesh/pwmesh/web/oidc/oidctest"
)

type started struct {
	URL       string `json:"url"`
	Poll      string `json:"poll"`
	Code      string `json:"code"`
	ExpiresIn int    `json:"expires_in"`
}

// startCLI is the command line's first call.
func (e *env) startCLI() started {
	e.t.Helper()
	resp, err := http.Post(e.srv.URL+oidc.CLILoginPath, "application/json", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s started
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&s) != nil {
		e.t.Fatalf("start: %d", resp.StatusCode)
	}
	return s
}

// poll is the command line's poll: the status and the body.
func (e *env) poll(token, wait string) (int, map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"poll": token, "wait": wait})
	resp, err := http.Post(e.srv.URL+oidc.CLIPollPath, "application/json", bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		e.t.Fatalf("poll answer %d %q: %v", resp.StatusCode, data, err)
	}
	return resp.StatusCode, v
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// confirm plays the person: open the link, check the code, press the
// button, sign in at the provider.
func (e *env) confirm(b *oidctest.Browser, s started, u *oidctest.User) oidctest.Page {
	e.t.Helper()
	p := b.Get(s.URL, nil)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, s.Code) {
		e.t.Fatalf("the link's page: %d %s", p.Status, p.Body)
	}
	m := csrfField.FindStringSubmatch(p.Body)
	if m == nil {
		e.t.Fatalf("no confirmation form: %s", p.Body)
	}
	if u != nil {
		e.m.QueueUser(u)
	}
	return b.Visit(http.MethodPost, s.URL, url.Values{"csrf": {m[1]}}, nil)
}

func TestCLILoginHandsOutAKeyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.startCLI()
	if !strings.HasPrefix(s.URL, e.srv.URL+oidc.CLILoginPath+"/") || len(s.Poll) < 43 || s.ExpiresIn != 600 ||
		!regexp.MustCompile(`^[A-Z]{4}-[A-Z]{4}$`).MatchString(s.Code) {
		t.Fatalf("start: %+v", s)
	}
	if st, v := e.poll(s.Poll, ""); st != http.StatusAccepted || v["status"] != "pending" {
		t.Fatalf("pending: %d %v", st, v)
	}
	// A poll that waits answers as soon as the person has signed in.
	type answer struct {
		status int
		body   map[string]any
	}
	got := make(chan answer, 1)
	go func() {
		st, v := e.poll(s.Poll, "30s")
		got <- answer{st, v}
	}()
	p := e.confirm(oidctest.NewBrowser(t), s, &oidctest.User{Subject: "u9", Email: "cli@acme.example", Tenant: "acme", Groups: []string{"mesh-admins"}})
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "You may close this tab") {
		t.Fatalf("after the provider: %d %s", p.Status, p.Body)
	}
	var a answer
	select {
	case a = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting poll did not answer")
	}
	if a.status != http.StatusOK || a.body["key"] != "pwm_secret_u9" || a.body["tenant"] != "acme" || a.body["admin"] != true {
		t.Fatalf("poll: %d %v", a.status, a.body)
	}
	e.deps.mu.Lock()
	req := e.deps.minted[0]
	e.deps.mu.Unlock()
	if req.Name != "cli:cli@acme.example" || req.TTL != oidc.DefaultCLIKeyTTL || !req.Identity.Admin {
		t.Fatalf("key request %+v", req)
	}
	if _, s := e.deps.counts(); s != 0 {
		t.Fatal("a command-line sign-in started a browser session")
	}
	// Once only.
	if st, _ := e.poll(s.Poll, ""); st != http.StatusNotFound {
		t.Fatalf("second poll: %d", st)
	}
	// The link is used up too.
	if p := oidctest.NewBrowser(t).Get(s.URL, nil); p.Status != http.StatusNotFound {
		t.Fatalf("used link: %d", p.Status)
	}
}

func TestCLILoginRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *oidc.Config) { c.MaxPendingCLI = 3 })

	// A stranger: the poll says so, once, and no key is made.
	s := e.startCLI()
	if p := e.confirm(oidctest.NewBrowser(t), s, &oidctest.User{Subject: "x", Tenant: "initech"}); p.Status != http.StatusForbidden {
		t.Fatalf("stranger's page: %d", p.Status)
	}
	if st, v := e.poll(s.Poll, "1s"); st != http.StatusForbidden || v["error"].(map[string]any)["code"] != "no_tenant" {
		t.Fatalf("stranger's poll: %d %v", st, v)
	}
	if m, _ := e.deps.counts(); m != 0 {
		t.Fatal("a key was made for a stranger")
	}

	// A confirmation posted without the page's token (another site's
	// form) does not reach the provider.
	s = e.startCLI()
	b := oidctest.NewBrowser(t)
	if p := b.Get(s.URL, nil); p.Status != http.StatusOK {
		t.Fatal(p.Status)
	}
	if p := b.Visit(http.MethodPost, s.URL, url.Values{"csrf": {"guess"}}, nil); p.Status != http.StatusForbidden {
		t.Fatalf("forged confirmation: %d", p.Status)
	}
	if p := oidctest.NewBrowser(t).Visit(http.MethodPost, s.URL, url.Values{}, nil); p.Status != http.StatusForbidden {
		t.Fatalf("confirmation without the cookie: %d", p.Status)
	}

	// Unknown links and tokens.
	if p := oidctest.NewBrowser(t).Get(e.srv.URL+oidc.CLILoginPath+"/nosuchlogin", nil); p.Status != http.StatusNotFound {
		t.Fatalf("unknown link: %d", p.Status)
	}
	if st, _ := e.poll("nosuchtoken", ""); st != http.StatusNotFound {
		t.Fatalf("unknown token: %d", st)
	}

	// The bound: two pending now (s and the next), a third fills it.
	e.startCLI()
	resp, err := http.Post(e.srv.URL+oidc.CLILoginPath, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("third: %d", resp.StatusCode)
	}
	resp, err = http.Post(e.srv.URL+oidc.CLILoginPath, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("past the bound: %d", resp.StatusCode)
	}

	// They expire, and make room.
	e.clock.Advance(oidc.DefaultLoginTTL + time.Second)
	if st, _ := e.poll(s.Poll, ""); st != http.StatusNotFound {
		t.Fatalf("expired: %d", st)
	}
	if p := oidctest.NewBrowser(t).Get(s.URL, nil); p.Status != http.StatusNotFound {
		t.Fatalf("expired link: %d", p.Status)
	}
	e.startCLI()
}

// TestCLILoginFinishedPastItsLinkIsRefused: the browser reached the
// provider in time but came back after the sign-in expired.
func TestCLILoginFinishedPastItsLinkIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *oidc.Config) { c.LoginTTL = time.Minute })
	s := e.startCLI()
	b := oidctest.NewBrowser(t)
	p := b.Get(s.URL, nil)
	m := csrfField.FindStringSubmatch(p.Body)
	e.m.QueueUser(&oidctest.User{Subject: "u1", Tenant: "acme"})
	p = b.Visit(http.MethodPost, s.URL, url.Values{"csrf": {m[1]}}, func(u *url.URL) {
		if u.Path == oidc.CallbackPath {
			e.clock.Advance(time.Minute)
		}
	})
	if p.Status == http.StatusOK {
		t.Fatalf("finished after expiry: %d %s", p.Status, p.Body)
	}
	if st, _ := e.poll(s.Poll, ""); st != http.StatusNotFound {
		t.Fatalf("poll: %d", st)
	}
	if m, _ := e.deps.counts(); m != 0 {
		t.Fatal("minted")
	}
}

func TestCLIPollRetriesAKeyTheNodeCouldNotMake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	s := e.startCLI()
	e.confirm(oidctest.NewBrowser(t), s, &oidctest.User{Subject: "u1", Tenant: "acme"})
	e.deps.mu.Lock()
	e.deps.mintErr = io.ErrUnexpectedEOF // no leader, say
	e.deps.mu.Unlock()
	if st, _ := e.poll(s.Poll, ""); st != http.StatusServiceUnavailable {
		t.Fatalf("no leader: %d", st)
	}
	e.deps.mu.Lock()
	e.deps.mintErr = nil
	e.deps.mu.Unlock()
	if st, v := e.poll(s.Poll, ""); st != http.StatusOK || v["key"] == "" {
		t.Fatalf("retry: %d %v", st, v)
	}
}
