package ui_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
)

// A session started on one node of a mesh is a session on every other:
// they derive the cookie's key from the cluster key they share. A key
// made through one node signs in on another at once.
func TestSessionAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh")
	}
	t.Parallel()
	c := nodetest.Start(t, nodetest.Voters(3)...)
	c.WaitForLeader(60 * time.Second)
	for _, n := range c.Nodes {
		c.WaitReady(n, 60*time.Second)
	}
	a, b2, b3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	// A real node's sign-in page names no node and no version.
	p := newBrowser(t, b2.URL).get("/ui/login")
	wantStatus(t, p, http.StatusOK)
	for _, s := range []string{a.ID(), b2.ID(), b3.ID(), "nodetest", nodetest.AdminToken} {
		if strings.Contains(p.body, s) || strings.Contains(fmt.Sprint(p.header), s) {
			t.Errorf("the sign-in page shows %q", s)
		}
	}

	admin := newBrowser(t, a.URL)
	admin.mustSignIn(nodetest.AdminToken)
	cookie := admin.sessionCookie()
	if cookie == nil {
		t.Fatal("no session cookie")
	}
	// The same cookie, presented to the other nodes by another browser.
	for _, n := range []*nodetest.Node{b2, b3} {
		other := newBrowser(t, n.URL)
		other.adopt(cookie)
		p := other.get("/ui/nodes")
		wantStatus(t, p, http.StatusOK)
		wantContains(t, p, a.ID(), b2.ID(), b3.ID(), "Sign out")
	}

	// An admin makes a key on node 1; its owner signs in on node 3.
	p = admin.post("/ui/keys", url.Values{"csrf": {admin.csrf()}, "tenant": {"acme"}, "tier": {"paid"}, "name": {"ada"}})
	wantStatus(t, p, http.StatusCreated)
	m := regexp.MustCompile(`readonly value="(pwm_[0-9a-f]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatal("the new key's secret is not shown")
	}
	user := newBrowser(t, b3.URL)
	user.mustSignIn(m[1])
	p = user.get("/ui/jobs")
	wantStatus(t, p, http.StatusOK)
	wantContains(t, p, "acme", "No jobs yet")

	// Sign-out on node 2 ends the session there and, the cookie being
	// gone, everywhere in that browser.
	u2 := newBrowser(t, b2.URL)
	u2.adopt(user.sessionCookie())
	wantStatus(t, u2.post("/ui/logout", url.Values{"csrf": {u2.csrf()}}), http.StatusSeeOther)
	wantStatus(t, u2.get("/ui/jobs"), http.StatusSeeOther)
}
