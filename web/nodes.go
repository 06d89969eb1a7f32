package web

import (
	"net/http"

	"github.com/pwmesh/pwmesh/scheduler"
)

type gpuView struct {
	Index        int     `json:"index"`
	Model        string  `json:"model"`
	MemoryMB     int     `json:"memory_mb"`
	Utilization  float64 `json:"utilization"`
	UUID         string  `json:"uuid"`
	MemoryUsedMB int     `json:"memory_used_mb"`
	TemperatureC int     `json:"temperature_c"`
	Healthy      bool    `json:"healthy"`
	// Problem says why an unhealthy GPU is out of service.
	Problem string `json:"problem,omitempty"`
}

type nodeView struct {
	ID     string    `json:"id"`
	Region string    `json:"region"`
	Pool   string    `json:"pool"`
	Role   string    `json:"role"`
	State  string    `json:"state"`
	GPUs   []gpuView `json:"gpus"`
}

type nodeList struct {
	Nodes []nodeView `json:"nodes"`
}

// listNodes handles GET /nodes. Role comes from the cluster's leader and
// each node's suffrage.
func (s *Server) listNodes(_ http.ResponseWriter, _ *http.Request, _ *caller) (any, error) {
	leader := s.deps.Cluster.Health().Leader
	nodes := s.deps.State.Nodes()
	out := nodeList{Nodes: make([]nodeView, 0, len(nodes))}
	for _, n := range nodes {
		v := nodeView{ID: n.ID, Region: n.Region, Pool: n.Pool, State: n.State, GPUs: make([]gpuView, 0, len(n.GPUs))}
		if v.Pool == "" {
			v.Pool = scheduler.PoolShared
		}
		switch {
		case leader != "" && n.ID == leader:
			v.Role = scheduler.RoleLeader
		case n.Voter:
			v.Role = scheduler.RoleFollower
		default:
			v.Role = scheduler.RoleWorker
		}
		for _, g := range n.GPUs {
			v.GPUs = append(v.GPUs, gpuView{Index: g.Index, Model: g.Model, MemoryMB: g.MemoryMB, Utilization: g.Utilization, UUID: g.UUID,
				MemoryUsedMB: g.MemoryUsedMB, TemperatureC: g.TemperatureC, Healthy: g.Unhealthy == "", Problem: g.Unhealthy})
		}
		out.Nodes = append(out.Nodes, v)
	}
	return out, nil
}
