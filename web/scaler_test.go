package web_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

// TestScalerStatus: GET /scaler is an admin's and shows what the leader's
// scaler last recorded in the replicated state: mode, bounds, counts, the
// reason, the last action with its error, and one under way.
func TestScalerStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wantError(t, e.do("GET", "/scaler", e.globex, nil), http.StatusForbidden, "forbidden")
	wantError(t, e.do("GET", "/scaler", "", nil), http.StatusUnauthorized, "unauthorized")
	var v web.ScalerView
	r := e.do("GET", "/scaler", e.admin, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &v)
	if v.Mode != "none" || v.LastAction != nil || v.Reason == "" {
		t.Fatalf("no scaler yet: %+v", v)
	}
	st := scheduler.ScalerStatus{Mode: "exec", Min: 0, Max: 4, Idle: scheduler.Duration(5 * time.Minute), Cooldown: scheduler.Duration(time.Minute), Current: 0, Desired: 2, Reason: "2 GPU job(s) wait"}
	a := e.apply(&scheduler.ScaleBegin{At: testNow, Status: st, Action: scheduler.ScaleAction{Add: 2, Pool: "shared", GPUs: 1, Desired: 2}, Grace: scheduler.Duration(time.Hour)}).(scheduler.ScaleAction)
	e.do("GET", "/scaler", e.admin, nil).decode(t, &v)
	if v.Mode != "exec" || v.Max != 4 || v.Desired != 2 || v.Pending == nil || v.Pending.Add != 2 || v.Starting != 2 || v.Idle != "5m0s" {
		t.Fatalf("with an action under way: %+v", v)
	}
	e.apply(&scheduler.ScaleEnd{At: testNow.Add(time.Second), ID: a.ID, Error: "hook: exit status 3: no capacity"})
	r = e.do("GET", "/scaler", e.admin, nil)
	var raw map[string]any
	r.decode(t, &raw)
	last, ok := raw["last_action"].(map[string]any)
	if !ok {
		t.Fatalf("last_action missing: %v", raw)
	}
	for _, k := range []string{"at", "add", "remove", "ok", "error"} {
		if _, ok := last[k]; !ok {
			t.Errorf("last_action has no %q: %v", k, last)
		}
	}
	if last["ok"] != false || last["error"] != "hook: exit status 3: no capacity" || last["add"] != float64(2) {
		t.Fatalf("last_action %v", last)
	}
	for _, k := range []string{"mode", "min", "max", "current", "desired", "reason"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("answer has no %q: %v", k, raw)
		}
	}
	v = web.ScalerView{}
	e.do("GET", "/scaler", e.admin, nil).decode(t, &v)
	if v.Starting != 0 || v.Failures != 1 || v.NextTry == nil || v.Pending != nil {
		t.Fatalf("after a failed action: %+v", v)
	}
}
