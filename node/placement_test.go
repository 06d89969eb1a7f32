package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// TestGPUPlacementAcrossNodes: jobs asking for a GPU count, model or memory
// run only where they fit, each on GPUs of its own, and a job nothing fits
// waits with a reason.
func TestGPUPlacementAcrossNodes(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t,
		nodetest.Spec{Voter: true, GPUs: "fake:1xT4-16GB"},
		nodetest.Spec{Voter: true, GPUs: "fake:2xA100-80GB"},
		nodetest.Spec{Voter: true},
	)
	leader := c.WaitForLeader(30 * time.Second)
	nodetest.WaitFor(t, 30*time.Second, "three registered nodes", func() bool {
		nodes, err := leader.Client.Nodes(context.Background())
		return err == nil && len(nodes) == 3
	})
	t4, a100 := c.Nodes[0].ID(), c.Nodes[1].ID()
	gen := `{"size":16}`
	cases := []struct {
		res  scheduler.Resources
		want string
	}{
		{scheduler.Resources{GPUs: 2, GPUModel: "a100"}, a100},
		{scheduler.Resources{GPUs: 1, GPUMemoryMB: 40000}, a100},
		{scheduler.Resources{GPUs: 1, GPUModel: "T4"}, t4},
	}
	var ids []string
	for _, tc := range cases {
		ids = append(ids, submit(t, leader, "generate_dataset", "", gen, tc.res).ID)
	}
	never := submit(t, leader, "generate_dataset", "", gen, scheduler.Resources{GPUs: 1, GPUModel: "H100"})
	for i, id := range ids {
		j := waitState(t, leader, id, 2*time.Minute, terminal)
		if j.State != scheduler.StateSucceeded || j.Node != cases[i].want {
			t.Errorf("job %d (%+v): %s on %s, want succeeded on %s", i, cases[i].res, j.State, j.Node, cases[i].want)
		}
	}
	j, _ := leader.Job(never.ID)
	if j.State != scheduler.StateQueued || !strings.Contains(j.Reason, "H100") {
		t.Fatalf("H100 job: %s, reason %q", j.State, j.Reason)
	}
}
