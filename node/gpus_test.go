package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/gpu/gpufake"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

// TestGPUFaultTakesTheGPUOutOfService: an XID on a node's GPU shows in
// GET /nodes (the time it took is logged: ~20 ms unloaded, the goal is 5 s),
// and new GPU jobs go to its other GPU only.
func TestGPUFaultTakesTheGPUOutOfService(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true, GPUs: "fake:2xA100-80GB"})
	n := c.WaitForLeader(30 * time.Second)
	nodetest.WaitFor(t, 30*time.Second, "the node registered", func() bool {
		nodes, err := n.Client.Nodes(context.Background())
		return err == nil && len(nodes) == 1 && len(nodes[0].GPUs) == 2
	})
	fake := n.GPUs().(*gpufake.Inventory)
	fake.SetLoad(1, 55, 2048, 60)
	if err := fake.Fail(0, "XID 79"); err != nil {
		t.Fatal(err)
	}
	failedAt := time.Now()
	nodetest.WaitFor(t, 30*time.Second, "GPU 0 out of service in the state", func() bool {
		nd, ok := nodeRecord(n)
		return ok && !nd.GPUs[0].Healthy && nd.GPUs[0].Problem == "XID 79"
	})
	t.Logf("GPU out of service after %s", time.Since(failedAt).Round(time.Millisecond))
	two := submit(t, n, "generate_dataset", "", `{"size":16}`, scheduler.Resources{GPUs: 2})
	one := submit(t, n, "generate_dataset", "", `{"size":16}`, scheduler.Resources{GPUs: 1})
	done := waitState(t, n, one.ID, time.Minute, terminal)
	if done.State != scheduler.StateSucceeded {
		t.Fatalf("one-GPU job: %+v %+v", done, done.Error)
	}
	if j, _ := n.Job(two.ID); j.State != scheduler.StateQueued || j.Reason == "" {
		t.Fatalf("two-GPU job on a node with one healthy GPU: %s (%q)", j.State, j.Reason)
	}
}

func nodeRecord(n *nodetest.Node) (client.Node, bool) {
	nodes, err := n.Client.Nodes(context.Background())
	if err != nil || len(nodes) == 0 {
		return client.Node{}, false
	}
	return nodes[0], true
}
