package web

import "net/http"

type healthAnswer struct {
	Status  string `json:"status"`
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Role    string `json:"role"`
	Members int    `json:"members"`
}

// getHealth handles GET /health (no auth): 200 once the node serves and
// knows a leader, else 503 with the same shape.
func (s *Server) getHealth(_ http.ResponseWriter, _ *http.Request, _ *caller) (any, error) {
	h := s.deps.Cluster.Health()
	if h.Node == "" {
		h.Node = s.cfg.NodeID
	}
	a := healthAnswer{Status: "ok", Node: h.Node, Leader: h.Leader, Role: h.Role, Members: h.Members}
	if !h.Ready {
		a.Status = "unavailable"
		return withStatus{http.StatusServiceUnavailable, a}, nil
	}
	return a, nil
}
