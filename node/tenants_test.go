package node_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/web/client"
)

// TestTenantPatchThroughFollower: PATCH /tenants/{t} answered by a
// follower is forwarded to the leader with the caller's admin key; the
// follower shows the change as soon as it answers, and so does every node
// soon after. A tenant's key is refused.
func TestTenantPatchThroughFollower(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Voters(3)...)
	leader := c.WaitForLeader(30 * time.Second)
	for _, n := range c.Nodes {
		c.WaitReady(n, 30*time.Second)
	}
	ctx := t.Context()
	k, err := leader.Client.CreateKey(ctx, "acme", "free")
	if err != nil {
		t.Fatal(err)
	}
	var via *nodetest.Node
	for _, n := range c.Nodes {
		if n != leader {
			via = n
			break
		}
	}
	paid, five := "paid", 5e6
	var ae *client.APIError
	if _, err := client.New(via.URL, k.Key).SetTenant(ctx, "acme", client.TenantPatch{Tier: &paid}); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("a tenant's own PATCH: %v", err)
	}
	admin := client.New(via.URL, nodetest.AdminToken)
	got, err := admin.SetTenant(ctx, "acme", client.TenantPatch{Tier: &paid, Quotas: map[string]*float64{"storage_bytes": &five}})
	if err != nil || got.Tier != "paid" || *got.Quotas["storage_bytes"] != 5e6 {
		t.Fatalf("PATCH through %s = %+v, %v", via, got, err)
	}
	if g, err := admin.GetTenant(ctx, "acme"); err != nil || g.Tier != "paid" || g.Overrides["storage_bytes"] != 5e6 {
		t.Fatalf("GET through %s right after = %+v, %v", via, g, err)
	}
	for _, n := range c.Nodes {
		nodetest.WaitFor(t, 5*time.Second, n.ID()+" has acme's change", func() bool {
			tn, ok := n.State().Tenant("acme")
			return ok && tn.Tier == "paid" && tn.QuotaOverrides["storage_bytes"] == 5e6
		})
	}
	if _, err := admin.GetTenant(ctx, "nobody"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("GET of an unknown tenant: %v", err)
	}
}
