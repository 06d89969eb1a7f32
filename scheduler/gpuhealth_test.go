package scheduler

import (
	"strings"
	"testing"
	"time"
)

// TestUnhealthyGPUIsOutOfService: an unhealthy GPU takes no job, from
// placement or from an assignment; telemetry changes nothing else.
func TestUnhealthyGPUIsOutOfService(t *testing.T) {
	t.Parallel()
	runApplyCases(t, []applyCase{
		{name: "assignment to a failed GPU refused", prep: func(h *harness) Command {
			h.base()
			h.must(&UpdateGPUs{At: t0, Node: "n1", GPUs: []GPU{{Index: 0, Unhealthy: "XID 79"}, {Index: 1}}})
			h.must(submitCmd("j1", "acme", PriorityPaid, "ds1", 1))
			return &AssignJob{At: t0, JobID: "j1", Node: "n1", Incarnation: "i1", GPUs: []int{0}, ExpiresAt: t0.Add(time.Minute)}
		}, err: ErrConflict},
		{name: "telemetry kept, registration kept", prep: func(h *harness) Command {
			h.base()
			return &UpdateGPUs{At: t0, Node: "n1", GPUs: []GPU{{Index: 1, Utilization: 97, MemoryUsedMB: 1234, TemperatureC: 71}, {Index: 0}}}
		}, check: func(t *testing.T, h *harness, _ any) {
			n, _ := h.f.Node("n1")
			g := n.GPUs[1]
			if g.Utilization != 97 || g.MemoryUsedMB != 1234 || g.TemperatureC != 71 || g.UUID == "" || g.MemoryMB != 40960 {
				t.Fatalf("gpu %+v", g)
			}
		}},
		{name: "unknown GPU", prep: func(h *harness) Command {
			h.base()
			return &UpdateGPUs{At: t0, Node: "n1", GPUs: []GPU{{Index: 0}, {Index: 7}}}
		}, err: ErrInvalid},
		{name: "unknown node", prep: func(h *harness) Command {
			return &UpdateGPUs{At: t0, Node: "nobody", GPUs: []GPU{}}
		}, err: ErrNotFound},
	})
}

func TestPlacementSkipsFailedGPUs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	h.must(&UpdateGPUs{At: t0, Node: "n1", GPUs: []GPU{{Index: 0, Unhealthy: "double-bit ECC errors"}, {Index: 1}}})
	h.must(submitCmd("one", "acme", PriorityPaid, "ds1", 1))
	h.must(submitCmd("two", "acme", PriorityPaid, "ds1", 2))
	plan := Place(h.f.PlaceInput())
	var got []int
	for _, a := range plan.Assign {
		if a.JobID == "two" {
			t.Fatalf("a 2-GPU job placed on a node with one healthy GPU: %+v", a)
		}
		if a.JobID == "one" {
			got = a.GPUs
		}
	}
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("one-GPU job got %v, want GPU 1", got)
	}
	if r := plan.Reasons["two"]; !strings.Contains(r, "2 GPU") {
		t.Fatalf("reason %q", r)
	}
}
