package web

import (
	"net/http"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// ScalerView is GET /scaler's answer (CONTRACT.md §3); the fields after
// last_action are extensions.
type ScalerView struct {
	Mode       string      `json:"mode"`
	Min        int         `json:"min"`
	Max        int         `json:"max"`
	Current    int         `json:"current"`
	Desired    int         `json:"desired"`
	Reason     string      `json:"reason"`
	LastAction *ActionView `json:"last_action"`
	// Idle and Cooldown are the leader's --scaler-idle and
	// --scaler-cooldown; Starting counts the workers asked for that have
	// not joined yet; Pending is an action under way; Recent the last
	// finished ones, newest last; NextTry when an action may be tried
	// again after a failure; UpdatedAt when the leader last reported.
	Idle      string       `json:"idle,omitempty"`
	Cooldown  string       `json:"cooldown,omitempty"`
	Starting  int          `json:"starting"`
	Pending   *ActionView  `json:"pending,omitempty"`
	Recent    []ActionView `json:"recent"`
	Failures  int          `json:"failures,omitempty"`
	NextTry   *time.Time   `json:"next_try,omitempty"`
	UpdatedAt *time.Time   `json:"updated_at,omitempty"`
}

// ActionView is one scaling action.
type ActionView struct {
	At     time.Time `json:"at"`
	Add    int       `json:"add"`
	Remove []string  `json:"remove"`
	OK     bool      `json:"ok"`
	Error  string    `json:"error"`
	// Extensions.
	ID       uint64     `json:"id"`
	Done     bool       `json:"done"`
	Pool     string     `json:"pool,omitempty"`
	GPUClass string     `json:"gpu_class,omitempty"`
	GPUs     int        `json:"gpus,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	EndedAt  *time.Time `json:"ended_at,omitempty"`
}

func actionView(a scheduler.ScaleAction) *ActionView {
	v := &ActionView{At: a.At, Add: a.Add, Remove: a.Remove, OK: a.OK, Error: a.Error, ID: a.ID, Done: a.Done,
		Pool: a.Pool, GPUClass: a.GPUClass, GPUs: a.GPUs, Reason: a.Reason}
	if v.Remove == nil {
		v.Remove = []string{}
	}
	if !a.EndedAt.IsZero() {
		t := a.EndedAt
		v.EndedAt = &t
	}
	return v
}

// getScaler handles GET /scaler (admin): what the leader's autoscaler last
// reported, from the replicated state, so every node answers the same.
// A mesh whose leader runs no scaler shows mode "none".
func (s *Server) getScaler(_ http.ResponseWriter, _ *http.Request, c *caller) (any, error) {
	if err := requireAdmin(c, "read the scaler"); err != nil {
		return nil, err
	}
	st := s.deps.State.Scaler()
	v := ScalerView{Mode: st.Status.Mode, Min: st.Status.Min, Max: st.Status.Max, Current: st.Status.Current,
		Desired: st.Status.Desired, Reason: st.Status.Reason, Failures: st.Failures, Recent: []ActionView{}}
	if v.Mode == "" {
		v.Mode, v.Reason = scheduler.ScalerNone, "no leader of this mesh has run a scaler (start the voters with --scaler exec:CMD or --scaler docker)"
	}
	if st.Status.Idle > 0 || st.Status.Cooldown > 0 {
		v.Idle, v.Cooldown = time.Duration(st.Status.Idle).String(), time.Duration(st.Status.Cooldown).String()
	}
	now := s.now()
	for _, l := range st.Launching {
		if now.Before(l.Until) {
			v.Starting += l.Count
		}
	}
	if last := st.Last(); last != nil {
		v.LastAction = actionView(*last)
	}
	if st.Pending != nil {
		v.Pending = actionView(*st.Pending)
	}
	for _, a := range st.Recent {
		v.Recent = append(v.Recent, *actionView(a))
	}
	if !st.NextTry.IsZero() && now.Before(st.NextTry) {
		t := st.NextTry
		v.NextTry = &t
	}
	if !st.Status.At.IsZero() {
		t := st.Status.At
		v.UpdatedAt = &t
	}
	return v, nil
}
