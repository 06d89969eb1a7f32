package client

import (
	"context"
	"net/http"

	"github.com/pwmesh/pwmesh/scheduler"
)

// Node is one entry of GET /nodes: the scheduler's node record plus its
// role in the mesh (scheduler.RoleLeader, RoleFollower or RoleWorker).
type Node struct {
	scheduler.Node
	Role string `json:"role"`
}

// Nodes returns the members of the mesh.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var page struct {
		Nodes []Node `json:"nodes"`
	}
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/nodes"}, &page)
	return page.Nodes, err
}
