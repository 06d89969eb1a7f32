package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/web/client"
	"github.com/pwmesh/pwmesh/web/oidc/oidctest"
)

// syncBuffer is a stream a test reads while the command still writes it.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// await returns the first match of re in the stream, waiting for it.
func (s *syncBuffer) await(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if m := re.FindStringSubmatch(s.String()); m != nil {
			return m
		}
		select {
		case <-s.changed:
		case <-deadline.C:
			t.Fatalf("waited %s for %s in:\n%s", timeout, re, s.String())
		}
	}
}

// TestLoginEndToEnd: `pwmesh login --no-browser` against a real node and
// a real provider, the test playing the person at the printed URL; later
// commands use the kept key, logout revokes it.
func TestLoginEndToEnd(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	secret := p.SecretFile(t)
	spec := nodetest.Voters(1)
	spec[0].Configure = func(c *node.Config) {
		c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecretFile = p.Issuer(), p.ClientID, secret
	}
	c := nodetest.Start(t, spec...)
	n := c.WaitForLeader(30 * time.Second)
	c.WaitReady(n, 30*time.Second)
	if _, err := n.Client.CreateKeyWith(t.Context(), client.KeyRequest{Tenant: "acme", Tier: "free", Name: "ops"}); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	env := map[string]string{envAddr: n.URL, envToken: "", "HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, "config")}

	// Without a key, and before login, the CLI has none to offer.
	r := cli(t, n.URL, env, "job", "list")
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "pwmesh login") {
		t.Fatalf("the hint names no pwmesh login: %s", r.stderr)
	}

	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	done := make(chan int, 1)
	go func() {
		vars := map[string]string{envAddr: n.URL}
		for k, v := range env {
			vars[k] = v
		}
		done <- run(t.Context(), []string{"login", "--no-browser"}, strings.NewReader(""), stdout, stderr, func(k string) string { return vars[k] })
	}()
	m := stderr.await(t, regexp.MustCompile(`open this URL to sign in: (\S+)\n`), 30*time.Second)
	code := stderr.await(t, regexp.MustCompile(`shows the code ([A-Z]{4}-[A-Z]{4})\n`), 5*time.Second)[1]
	p.Queue(&oidctest.User{Subject: "u-dee", Email: "dee@acme.example", Tenant: "acme"})
	if pg := oidctest.NewBrowser(t).ConfirmCLI(m[1], code); pg.Status != http.StatusOK || !strings.Contains(pg.Body, "You may close this tab") {
		t.Fatalf("the browser: %d %s", pg.Status, pg.Body)
	}
	select {
	case rc := <-done:
		if rc != 0 {
			t.Fatalf("login exited %d\nstdout: %s\nstderr: %s", rc, stdout, stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("login did not end\nstderr: %s", stderr)
	}
	if !strings.Contains(stdout.String(), "as dee@acme.example (tenant acme)") {
		t.Fatalf("login said %q", stdout)
	}

	// The key is kept, readable by its owner alone, for this node.
	path := filepath.Join(home, "config", "pwmesh", "credentials")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials mode %v, want 0600", fi.Mode().Perm())
	}
	var kept credentials
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &kept); err != nil {
		t.Fatal(err)
	}
	k, ok := kept.Nodes[nodeKey(n.URL)]
	if !ok || k.Tenant != "acme" || !strings.HasPrefix(k.Key, "pwm_") || k.ExpiresAt.Sub(time.Now()) < 29*24*time.Hour {
		t.Fatalf("kept %+v", kept)
	}

	// Later commands use it when PWMESH_TOKEN is not set.
	r = cli(t, n.URL, env, "job", "list")
	r.wantCode(t, 0)
	r = cli(t, n.URL, env, "--json", "key", "list")
	r.wantCode(t, 0)
	if !strings.Contains(r.stdout, `"cli:dee@acme.example"`) || strings.Contains(r.stdout, `"tenant": "admin"`) {
		t.Fatalf("the kept key, a key of acme, lists acme's keys alone: %s", r.stdout)
	}
	// PWMESH_TOKEN still wins.
	r = cli(t, n.URL, map[string]string{envToken: "pwm_not_a_key", "HOME": home, "XDG_CONFIG_HOME": env["XDG_CONFIG_HOME"]}, "job", "list")
	r.wantCode(t, 1)

	// logout revokes the key and forgets it.
	r = cli(t, n.URL, env, "logout")
	r.wantCode(t, 0)
	if _, _, err := client.New(n.URL, k.Key).ListJobs(t.Context(), client.ListJobsOptions{}); err == nil {
		t.Fatal("the key outlived logout")
	}
	b, _ = os.ReadFile(path)
	if strings.Contains(string(b), k.Key) {
		t.Fatal("logout left the key in the file")
	}
	cli(t, n.URL, env, "job", "list").wantCode(t, 1)
}

func TestLoginWithoutAProvider(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{})
	r := cli(t, addr, map[string]string{envToken: "", "HOME": t.TempDir()}, "login", "--no-browser")
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "--oidc-issuer") || !strings.Contains(r.stderr, envToken) {
		t.Fatalf("stderr: %s", r.stderr)
	}
}

// TestLoginRefusals: the node's refusals end the command with its words.
func TestLoginRefusals(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		status int
		code   string
		want   string
	}{
		{http.StatusForbidden, "no_tenant", "not assigned to a tenant"},
		{http.StatusNotFound, "not_found", "run pwmesh login again"},
	} {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /ui/cli-login", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"url": "http://" + r.Host + "/ui/cli-login/x", "poll": "p", "code": "BCDF-GHJK", "expires_in": 600})
		})
		mux.HandleFunc("POST /ui/cli-login/poll", func(w http.ResponseWriter, r *http.Request) {
			apiError(w, c.status, c.code, "your account is not assigned to a tenant of this mesh; ask an operator")
		})
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		home := t.TempDir()
		r := cli(t, srv.URL, map[string]string{envToken: "", "HOME": home}, "login", "--no-browser")
		r.wantCode(t, 1)
		if !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "/ui/cli-login/x") {
			t.Fatalf("%d: stderr %s", c.status, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(home, ".config", "pwmesh", "credentials")); !os.IsNotExist(err) {
			t.Fatalf("%d: a refused login kept something: %v", c.status, err)
		}
	}
}

func TestKeptKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := &app{env: func(k string) string {
		return map[string]string{envConfigDir: dir, envAddr: "HTTP://Node.Example:8080/"}[k]
	}}
	if _, ok := a.storedKey(); ok {
		t.Fatal("a key before any login")
	}
	path, err := a.credentialsPath()
	if err != nil || path != filepath.Join(dir, "credentials") {
		t.Fatalf("%s %v", path, err)
	}
	c := credentials{Nodes: map[string]credential{
		"http://node.example:8080": {Key: "pwm_live", ExpiresAt: time.Now().Add(time.Hour)},
		"http://old.example:8080":  {Key: "pwm_old", ExpiresAt: time.Now().Add(-time.Hour)},
	}}
	if err := saveCredentials(path, c); err != nil {
		t.Fatal(err)
	}
	if k, ok := a.storedKey(); !ok || k.Key != "pwm_live" {
		t.Fatalf("the node's key: %+v %v", k, ok)
	}
	if tok := a.client(); tok == nil || !a.loggedIn {
		t.Fatal("the client does not use the kept key")
	}
	b := &app{env: func(k string) string {
		return map[string]string{envConfigDir: dir, envAddr: "http://old.example:8080"}[k]
	}}
	if _, ok := b.storedKey(); ok {
		t.Fatal("an expired key is used")
	}
	// userConfigDir follows os.UserConfigDir's rules on this system.
	if d, err := userConfigDir(os.Getenv); err == nil {
		if want, err := os.UserConfigDir(); err != nil || d != want {
			t.Fatalf("userConfigDir %s, os.UserConfigDir %s (%v)", d, want, err)
		}
	}
}

// The agent's sign-in flags are checked before anything starts: a bad one
// exits 2 naming it.
func TestAgentRefusesBadSignInSettings(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--oidc-client-id", "pwmesh"}, "--oidc-issuer"},
		{[]string{"--oidc-issuer", "http://idp.example", "--oidc-client-id", "pwmesh"}, "want https"},
		{[]string{"--oidc-issuer", "https://idp.example"}, "--oidc-client-id is required"},
		{[]string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "pwmesh", "--oidc-client-secret-file", filepath.Join(t.TempDir(), "none")}, "--oidc-client-secret-file"},
		{[]string{"--external-url", "mesh.example"}, "--external-url"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"agent", "--dev", "--data-dir", dir, "--http", "127.0.0.1:0", "--p2p-port", "0", "--gossip-port", "0"}, c.flags...)
		r := cli(t, "", nil, args...)
		r.wantCode(t, 2)
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: stderr %q, want it to name %s", c.flags, r.stderr, c.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%v: a refused start created its data dir: %v", c.flags, err)
		}
	}
}
