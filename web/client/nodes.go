package client

import (
	"context"
	"net/http"

	"github.com/pwmesh/pwmesh/scheduler"
)

// Node is one entry of GET /nodes (CONTRACT.md §3). Role is
// scheduler.RoleLeader, RoleFollower or RoleWorker; State is
// scheduler.NodeReady, NodeDown or NodeLeft.
type Node struct {
	ID     string          `json:"id"`
	Region string          `json:"region"`
	Role   string          `json:"role"`
	State  string          `json:"state"`
	GPUs   []scheduler.GPU `json:"gpus"`
}

// Nodes returns the members of the mesh.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var page struct {
		Nodes []Node `json:"nodes"`
	}
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/nodes"}, &page)
	return page.Nodes, err
}
