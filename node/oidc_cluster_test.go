package node_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/web/client"
	"github.com/pwmesh/pwmesh/web/oidc/oidctest"
)

// TestOIDCSignInAcrossTheMesh signs people in through a real provider on
// a mesh of three nodes whose callback lands wherever a load balancer
// sends it: the session works on every node with a key the real API
// accepts, sign-out revokes it, an admin is an admin by group, a stranger
// gets nothing, and `pwmesh login`'s flow hands its key to the command
// line.
func TestOIDCSignInAcrossTheMesh(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	secret := p.SecretFile(t)
	specs := nodetest.Voters(3)
	for i := range specs {
		specs[i].Configure = func(c *node.Config) {
			c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecretFile = p.Issuer(), p.ClientID, secret
			c.OIDCAdminGroup = oidctest.AdminGroup
		}
	}
	c := nodetest.Start(t, specs...)
	leader := c.WaitForLeader(30 * time.Second)
	for _, n := range c.Nodes {
		c.WaitReady(n, 30*time.Second)
	}
	ctx := t.Context()
	// An operator made tenant acme, paid.
	if _, err := leader.Client.CreateKeyWith(ctx, client.KeyRequest{Tenant: "acme", Tier: "paid", Name: "ops"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		nodetest.WaitFor(t, 10*time.Second, "tenant acme on "+n.ID(), func() bool { _, ok := n.State().Tenant("acme"); return ok })
	}
	// Both the sign-in and the command line's key are made on followers:
	// the leader checks the ID token they forward.
	var followers []*nodetest.Node
	for _, n := range c.Nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	start, land := followers[0], followers[1]
	landOn := func(n *nodetest.Node) func(*url.URL) {
		return func(u *url.URL) {
			if u.Path == "/ui/callback" {
				u.Host = hostOf(t, n.URL)
			}
		}
	}
	// keyNamed looks the key up on the current leader, waiting (a while)
	// until its presence is what the test expects: a replica may lag a
	// write another node committed.
	keyNamed := func(name string, want bool) (client.KeyInfo, bool) {
		var found client.KeyInfo
		var ok bool
		nodetest.Poll(10*time.Second, func() bool {
			keys, err := c.WaitForLeader(30 * time.Second).Client.ListKeys(ctx)
			if err != nil {
				return false
			}
			found, ok = client.KeyInfo{}, false
			for _, k := range keys {
				if k.Name == name {
					found, ok = k, true
				}
			}
			return ok == want
		})
		return found, ok
	}

	// The sign-in page offers the provider, and its button carries the
	// way back.
	b := oidctest.NewBrowser(t)
	if pg := b.Get(start.URL+"/ui/jobs", nil); pg.Status != http.StatusOK || !strings.Contains(pg.Body, `href="/ui/login/oidc?next=`) ||
		!strings.Contains(pg.Body, "Sign in with single sign-on") {
		t.Fatalf("the sign-in page: %d %s\n%s", pg.Status, pg.URL, pg.Body)
	}

	// A member of acme signs in on one node; the provider's redirect
	// lands on another.
	p.Queue(&oidctest.User{Subject: "u-ann", Email: "ann@acme.example", Name: "Ann", Tenant: "acme", Groups: []string{"staff"}})
	pg := b.Get(start.URL+"/ui/login/oidc?next=/ui/datasets", landOn(land))
	if pg.Status != http.StatusOK || pg.URL.Host != hostOf(t, land.URL) || pg.URL.Path != "/ui/datasets" || !strings.Contains(pg.Body, "acme") {
		t.Fatalf("sign-in ended at %d %s:\n%s", pg.Status, pg.URL, pg.Body)
	}
	k, ok := keyNamed("oidc:ann@acme.example", true)
	if !ok || k.Tenant != "acme" || k.Tier != "paid" || k.Admin || k.ExpiresAt == nil ||
		k.ExpiresAt.Sub(time.Now()) < 11*time.Hour || k.ExpiresAt.Sub(time.Now()) > 13*time.Hour {
		t.Fatalf("the session's key: %+v (found %v)", k, ok)
	}
	// The session calls the real API with that key, on every node.
	for _, n := range c.Nodes {
		resp, err := b.Client.Get(n.URL + "/ui/api/jobs")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: the session's API call: %d", n, resp.StatusCode)
		}
		if pg := b.Get(n.URL+"/ui/jobs", nil); pg.Status != http.StatusOK || pg.URL.Path != "/ui/jobs" {
			t.Fatalf("%s: jobs page %d %s", n, pg.Status, pg.URL)
		}
	}
	// Sign-out revokes the key.
	pg = b.Get(c.Nodes[0].URL+"/ui/jobs", nil)
	tok := oidctest.FormToken(pg.Body)
	if pg = b.Visit(http.MethodPost, c.Nodes[0].URL+"/ui/logout", url.Values{"csrf": {tok}}, nil); pg.Status != http.StatusOK {
		t.Fatalf("sign-out: %d %s", pg.Status, pg.URL)
	}
	if _, ok := keyNamed("oidc:ann@acme.example", false); ok {
		t.Fatal("the session's key outlived sign-out")
	}

	// An admin by group.
	p.Queue(&oidctest.User{Subject: "u-bob", Email: "bob@acme.example", Tenant: "acme", Groups: []string{oidctest.AdminGroup}})
	if pg := oidctest.NewBrowser(t).Get(land.URL+"/ui/login/oidc?next=/ui/keys", nil); pg.Status != http.StatusOK || pg.URL.Path != "/ui/keys" {
		t.Fatalf("admin sign-in: %d %s", pg.Status, pg.URL)
	}
	if k, ok := keyNamed("oidc:bob@acme.example", true); !ok || !k.Admin || k.Tenant != "acme" {
		t.Fatalf("admin's key %+v", k)
	}

	// A stranger sees that and nothing else; no key is made.
	before, err := c.WaitForLeader(30 * time.Second).Client.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []*oidctest.User{
		{Subject: "u-eve", Email: "eve@initech.example", Tenant: "initech", Groups: []string{oidctest.AdminGroup}},
		{Subject: "u-mal", Email: "mal@nowhere.example"},
		{Subject: "u-root", Email: "root@nowhere.example", Tenant: "admin"}, // reserved, not an admin
	} {
		p.Queue(u)
		pg := oidctest.NewBrowser(t).Get(start.URL+"/ui/login/oidc", landOn(land))
		if pg.Status != http.StatusForbidden || !strings.Contains(pg.Body, "your account is not assigned to a tenant of this mesh; ask an operator") {
			t.Fatalf("%s: %d %s", u.Subject, pg.Status, pg.Body)
		}
		for _, leak := range []string{"acme", "node-", "nodetest"} {
			if strings.Contains(pg.Body, leak) {
				t.Errorf("%s: the refusal shows %q", u.Subject, leak)
			}
		}
	}
	if after, err := c.WaitForLeader(30 * time.Second).Client.ListKeys(ctx); err != nil || len(after) != len(before) {
		t.Fatalf("keys before %d, after %d (%v)", len(before), len(after), err)
	}

	// The command line's flow: started on one node, confirmed in a
	// browser, its key handed to the poll once, and that key works on
	// every node.
	var st struct {
		URL, Poll, Code string
	}
	postJSON(t, start.URL+"/ui/cli-login", nil, http.StatusOK, &st)
	if !strings.HasPrefix(st.URL, start.URL+"/ui/cli-login/") {
		t.Fatalf("the link %q does not name the node asked", st.URL)
	}
	p.Queue(&oidctest.User{Subject: "u-cy", Email: "cy@acme.example", Tenant: "acme"})
	if pg := oidctest.NewBrowser(t).ConfirmCLI(st.URL, st.Code); pg.Status != http.StatusOK || !strings.Contains(pg.Body, "You may close this tab") {
		t.Fatalf("confirmation: %d %s", pg.Status, pg.Body)
	}
	var got struct {
		Key, Tenant string
		Admin       bool
		ExpiresAt   time.Time `json:"expires_at"`
	}
	postJSON(t, start.URL+"/ui/cli-login/poll", map[string]string{"poll": st.Poll, "wait": "10s"}, http.StatusOK, &got)
	if got.Tenant != "acme" || got.Admin || got.ExpiresAt.Sub(time.Now()) < 29*24*time.Hour {
		t.Fatalf("the command line's key: %+v", got)
	}
	for _, n := range c.Nodes {
		if _, _, err := client.New(n.URL, got.Key).ListJobs(ctx, client.ListJobsOptions{}); err != nil {
			t.Fatalf("%s: the command line's key: %v", n, err)
		}
	}
	if k, ok := keyNamed("cli:cy@acme.example", true); !ok || k.Tenant != "acme" || k.Tier != "paid" {
		t.Fatalf("cli key %+v", k)
	}
	postJSON(t, start.URL+"/ui/cli-login/poll", map[string]string{"poll": st.Poll}, http.StatusNotFound, nil)
}

// TestNoOIDCIssuerNoSignInPaths: without --oidc-issuer none of the sign-in
// paths is served, and the sign-in page offers no provider.
func TestNoOIDCIssuerNoSignInPaths(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Voters(1)...)
	n := c.WaitForLeader(30 * time.Second)
	if pg := oidctest.NewBrowser(t).Get(n.URL+"/ui/login", nil); pg.Status != http.StatusOK || strings.Contains(pg.Body, "/ui/login/oidc") {
		t.Fatalf("the sign-in page: %d\n%s", pg.Status, pg.Body)
	}
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/ui/login/oidc"}, {http.MethodGet, "/ui/callback?code=x&state=y"},
		{http.MethodPost, "/ui/cli-login"}, {http.MethodPost, "/ui/cli-login/poll"}, {http.MethodGet, "/ui/cli-login/abc"},
	} {
		req, err := http.NewRequest(r.method, n.URL+r.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404", r.method, r.path, resp.StatusCode)
		}
	}
}

func hostOf(t *testing.T, s string) string {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// postJSON posts body as JSON and decodes the answer into out, which must
// come with status.
func postJSON(t *testing.T, u string, body any, status int, out any) {
	t.Helper()
	var r io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	resp, err := http.Post(u, "application/json", r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("POST %s: %d %s, want %d", u, resp.StatusCode, data, status)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("POST %s: %v: %s", u, err, data)
		}
	}
}
