package client

import (
	"context"
	"net/http"
)

// Node is one entry of GET /nodes (CONTRACT.md §3). Role is
// scheduler.RoleLeader, RoleFollower or RoleWorker; State is
// scheduler.NodeReady, NodeDown or NodeLeft.
type Node struct {
	ID     string `json:"id"`
	Region string `json:"region"`
	Pool   string `json:"pool"`
	Role   string `json:"role"`
	State  string `json:"state"`
	GPUs   []GPU  `json:"gpus"`
	// Managed: a scaler started the node and may remove it.
	Managed bool `json:"managed,omitempty"`
}

// GPU is one device of a node in GET /nodes, with its latest telemetry.
type GPU struct {
	Index        int     `json:"index"`
	UUID         string  `json:"uuid"`
	Model        string  `json:"model"`
	MemoryMB     int     `json:"memory_mb"`
	Utilization  float64 `json:"utilization"`
	MemoryUsedMB int     `json:"memory_used_mb"`
	TemperatureC int     `json:"temperature_c"`
	Healthy      bool    `json:"healthy"`
	// Problem says why an unhealthy GPU is out of service.
	Problem string `json:"problem,omitempty"`
}

// Nodes returns the members of the mesh.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var page struct {
		Nodes []Node `json:"nodes"`
	}
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/nodes"}, &page)
	return page.Nodes, err
}

// DrainNode drains a node (POST /nodes/{id}/drain; admin key): it takes no
// new job and finishes what it runs.
func (c *Client) DrainNode(ctx context.Context, id string) (Node, error) {
	var n Node
	err := c.doJSON(ctx, request{method: http.MethodPost, path: pathf("/nodes/%s/drain", id)}, &n)
	return n, err
}

// UndrainNode gives a drained node jobs again (DELETE /nodes/{id}/drain;
// admin key).
func (c *Client) UndrainNode(ctx context.Context, id string) (Node, error) {
	var n Node
	err := c.doJSON(ctx, request{method: http.MethodDelete, path: pathf("/nodes/%s/drain", id)}, &n)
	return n, err
}
