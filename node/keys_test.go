package node_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/web/client"
)

// TestKeyRevocationReachesEveryNode: a key revoked through one node gets
// 401 on every node within 2 s (CONTRACT §3), and its listing is gone.
func TestKeyRevocationReachesEveryNode(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Voters(3)...)
	leader := c.WaitForLeader(30 * time.Second)
	for _, n := range c.Nodes {
		c.WaitReady(n, 30*time.Second)
	}
	ctx := t.Context()
	k, err := leader.Client.CreateKeyWith(ctx, client.KeyRequest{Tenant: "acme", Tier: "paid", Name: "ci", ExpiresIn: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	// The key works on every node.
	for _, n := range c.Nodes {
		if _, _, err := client.New(n.URL, k.Key).ListJobs(ctx, client.ListJobsOptions{}); err != nil {
			t.Fatalf("%s: the new key: %v", n, err)
		}
	}
	// A follower answers the revocation; every node refuses the key
	// within 2 s of its answer.
	var via *nodetest.Node
	for _, n := range c.Nodes {
		if n != leader {
			via = n
			break
		}
	}
	if err := client.New(via.URL, k.Key).RevokeKey(ctx, k.ID); err != nil {
		t.Fatalf("revoke through %s: %v", via, err)
	}
	// Every request, its own time included, must end within the 2 s.
	within, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		for {
			_, _, err := client.New(n.URL, k.Key).ListJobs(within, client.ListJobsOptions{})
			var ae *client.APIError
			if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
				break
			}
			if within.Err() != nil {
				t.Fatalf("%s still accepts the revoked key 2 s after its revocation: %v", n, err)
			}
		}
	}
	keys, err := leader.Client.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range keys {
		if x.ID == k.ID {
			t.Fatalf("the revoked key is still listed: %+v", x)
		}
	}
}
