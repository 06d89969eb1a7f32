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
	// Managed: a scaler started the node and may remove it (an extension).
	Managed bool `json:"managed,omitempty"`
}

type nodeList struct {
	Nodes []nodeView `json:"nodes"`
}

// listNodes handles GET /nodes. Role comes from the cluster's leader and
// each node's suffrage.
func (s *Server) listNodes(_ http.ResponseWriter, _ *http.Request, _ *caller) (any, error) {
	nodes := s.deps.State.Nodes()
	out := nodeList{Nodes: make([]nodeView, 0, len(nodes))}
	busy := s.runningByNode()
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, s.nodeView(n, busy))
	}
	return out, nil
}

// runningByNode counts the running jobs of each node.
func (s *Server) runningByNode() map[string]int {
	running, _ := s.deps.State.Jobs(scheduler.JobFilter{State: scheduler.StateRunning})
	busy := map[string]int{}
	for _, j := range running {
		busy[j.Node]++
	}
	return busy
}

// Node states beyond the replicated ones: a drained node that still runs
// jobs is "draining", one that runs none "drained".
const (
	stateDraining = "draining"
	stateDrained  = "drained"
)

func (s *Server) nodeView(n scheduler.Node, busy map[string]int) nodeView {
	leader := s.deps.Cluster.Health().Leader
	v := nodeView{ID: n.ID, Region: n.Region, Pool: n.Pool, State: n.State, GPUs: make([]gpuView, 0, len(n.GPUs)), Managed: n.Managed}
	if n.Draining && n.State == scheduler.NodeReady {
		v.State = stateDrained
		if busy[n.ID] > 0 {
			v.State = stateDraining
		}
	}
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
	return v
}

// drainNode handles POST /nodes/{id}/drain (admin): the node takes no new
// job and finishes what it runs; GET /nodes then shows it "draining", and
// "drained" once nothing runs there.
func (s *Server) drainNode(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	return s.setDrain(r, c, false)
}

// undrainNode handles DELETE /nodes/{id}/drain (admin, an extension): the
// node takes jobs again.
func (s *Server) undrainNode(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	return s.setDrain(r, c, true)
}

func (s *Server) setDrain(r *http.Request, c *caller, undo bool) (any, error) {
	if err := requireAdmin(c, "drain a node"); err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	if _, ok := s.deps.State.Node(id); !ok {
		return nil, notFound("node " + id)
	}
	v, err := s.deps.Writer.Apply(r.Context(), &scheduler.DrainNode{At: s.now(), ID: id, Undo: undo})
	if err != nil {
		return nil, err
	}
	n, _ := v.(scheduler.Node)
	s.await(r.Context(), func() bool { cur, ok := s.deps.State.Node(id); return ok && cur.Draining == !undo })
	return s.nodeView(n, s.runningByNode()), nil
}
