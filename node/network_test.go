package node_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// TestNetworkJobWaitsForADockerNode: a node with the process executor
// advertises no job network, and a job that asks for network waits in the
// queue, saying why, instead of running there without it.
func TestNetworkJobWaitsForADockerNode(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true, AllowedImages: []string{"pwm/*"}})
	n := c.Nodes[0]
	c.WaitForLeader(30 * time.Second)
	c.WaitReady(n, 30*time.Second)
	if reg, ok := n.Registration(); !ok || reg.JobNetwork {
		t.Fatalf("registration %+v (found %v), want no job network", reg, ok)
	}
	j, err := n.Client.SubmitJob(t.Context(), scheduler.JobRequest{Type: "generate_dataset", Image: "pwm/fetch:1", Network: scheduler.NetworkBridge}, "")
	if err != nil {
		t.Fatal(err)
	}
	if j.Network != scheduler.NetworkBridge {
		t.Fatalf("job network %q", j.Network)
	}
	got := waitState(t, n, j.ID, 30*time.Second, func(j scheduler.Job) bool { return j.Reason != "" })
	if got.State != scheduler.StateQueued || !strings.Contains(got.Reason, "no Docker executor") {
		t.Fatalf("job %s %s: %q, want it queued for want of a Docker node", got.ID, got.State, got.Reason)
	}
}
