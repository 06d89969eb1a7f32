package node_test

import (
	"slices"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// TestJobOnANonLeaderFinishesOnce: with two copies wanted, a job run by a
// worker that does not lead (its completion is forwarded, and must come
// back as a local one would, errors included) succeeds on its first run,
// and its RunBundle is on two nodes.
func TestJobOnANonLeaderFinishesOnce(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true}, nodetest.Spec{GPUs: "fake:1xT4-16GB"}, nodetest.Spec{})
	leader := c.WaitForLeader(30 * time.Second)
	worker := c.Nodes[1]
	for _, n := range c.Nodes[1:] {
		c.WaitReady(n, 30*time.Second)
	}
	if worker.IsLeader() {
		t.Fatal("the worker leads")
	}
	if got := leader.State().WantCopies(); got != 2 {
		t.Fatalf("want %d copies, the test needs 2", got)
	}
	j := submit(t, c.Nodes[2], "generate_dataset", "", `{"size":16}`, scheduler.Resources{GPUs: 1, GPUModel: "T4"})
	done := waitState(t, leader, j.ID, time.Minute, terminal)
	if done.State != scheduler.StateSucceeded || done.Attempts != 1 || done.Node != worker.ID() {
		t.Fatalf("job: %s after %d attempt(s) on %s (%+v); want succeeded after 1 on %s", done.State, done.Attempts, done.Node, done.Error, worker.ID())
	}
	b, ok := leader.State().Blob(done.RunBundle.CID)
	if !ok || len(b.Holders) < 2 || !slices.Contains(b.Holders, worker.ID()) {
		t.Fatalf("RunBundle index entry %+v, want two holders with %s", b, worker.ID())
	}
}
