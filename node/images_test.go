package node_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

// TestImageNotAllowedAtSubmit: the node's --allowed-images reaches the
// API, which refuses another image at submission (403
// image_not_allowed) and accepts one that matches.
func TestImageNotAllowedAtSubmit(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true, AllowedImages: []string{"pwm/*"}})
	n := c.Nodes[0]
	c.WaitForLeader(30 * time.Second)
	c.WaitReady(n, 30*time.Second)
	_, err := n.Client.SubmitJob(t.Context(), scheduler.JobRequest{Type: "generate_dataset", Image: "evil/miner:1"}, "")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Code != "image_not_allowed" {
		t.Fatalf("an image outside the list: err = %v, want 403 image_not_allowed", err)
	}
	if _, err := n.Client.SubmitJob(t.Context(), scheduler.JobRequest{Type: "generate_dataset", Image: "pwm/solver:2"}, ""); err != nil {
		t.Fatalf("an image on the list: %v", err)
	}
}
