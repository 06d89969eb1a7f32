package scheduler

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// applyCase runs one command against a prepared FSM. prep sets the state up
// and returns the command under test; when the command is refused, the state
// must be byte-for-byte what it was.
type applyCase struct {
	name  string
	prep  func(h *harness) Command
	err   error
	check func(t *testing.T, h *harness, v any)
}

func runApplyCases(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := tc.prep(h)
			before := snapshotBytes(t, h.f)
			v, err := h.apply(c)
			wantErr(t, err, tc.err)
			if err != nil {
				if v != nil {
					t.Errorf("refused command returned value %v", v)
				}
				if !bytes.Equal(before, snapshotBytes(t, h.f)) {
					t.Errorf("refused command changed the state")
				}
			}
			if tc.check != nil {
				tc.check(t, h, v)
			}
		})
	}
}

func TestApplyCreateKey(t *testing.T) {
	t.Parallel()
	runApplyCases(t, []applyCase{
		{name: "creates tenant", prep: func(h *harness) Command { return keyCmd("h1", "acme", PriorityFree) },
			check: func(t *testing.T, h *harness, v any) {
				ten, ok := h.f.Tenant("acme")
				if !ok || ten.Tier != PriorityFree || !ten.CreatedAt.Equal(t0) {
					t.Fatalf("tenant = %+v, %v", ten, ok)
				}
				k, ok := h.f.Key("h1")
				if !ok || k.Tenant != "acme" || !k.CreatedAt.Equal(t0) || v.(APIKey) != k || h.f.KeyCount() != 1 {
					t.Fatalf("key = %+v, %v; returned %+v", k, ok, v)
				}
			}},
		{name: "paid key raises tenant tier", prep: func(h *harness) Command {
			h.must(keyCmd("h1", "acme", PriorityFree))
			return keyCmd("h2", "acme", PriorityPaid)
		}, check: func(t *testing.T, h *harness, _ any) {
			if ten, _ := h.f.Tenant("acme"); ten.Tier != PriorityPaid {
				t.Fatalf("tier = %q", ten.Tier)
			}
		}},
		{name: "free key keeps paid tenant paid", prep: func(h *harness) Command {
			h.must(keyCmd("h1", "acme", PriorityPaid))
			return keyCmd("h2", "acme", PriorityFree)
		}, check: func(t *testing.T, h *harness, _ any) {
			if ten, _ := h.f.Tenant("acme"); ten.Tier != PriorityPaid {
				t.Fatalf("tier = %q", ten.Tier)
			}
		}},
		{name: "sprint tier refused", prep: func(h *harness) Command { return keyCmd("h1", "acme", PrioritySprint) }, err: ErrInvalid},
		{name: "unknown tier refused", prep: func(h *harness) Command { return keyCmd("h1", "acme", "gold") }, err: ErrInvalid},
		{name: "no tenant refused", prep: func(h *harness) Command { return keyCmd("h1", "", PriorityFree) }, err: ErrInvalid},
		{name: "duplicate hash refused", prep: func(h *harness) Command {
			h.must(keyCmd("h1", "acme", PriorityFree))
			return keyCmd("h1", "evil", PriorityPaid)
		}, err: ErrConflict, check: func(t *testing.T, h *harness, _ any) {
			if _, ok := h.f.Tenant("evil"); ok {
				t.Fatal("refused key created its tenant")
			}
		}},
	})
}

func TestApplyDatasets(t *testing.T) {
	t.Parallel()
	runApplyCases(t, []applyCase{
		{name: "register", prep: func(h *harness) Command {
			h.stored("cid-d1")
			c := datasetCmd("d1", "acme")
			c.Dataset.CreatedAt = time.Time{}
			return c
		}, check: func(t *testing.T, h *harness, v any) {
			d, ok := h.f.Dataset("d1")
			if !ok || d.Tenant != "acme" || !d.CreatedAt.Equal(t0) || v.(Dataset) != d {
				t.Fatalf("dataset = %+v, %v (CreatedAt must default to the command's time)", d, ok)
			}
			if got := h.f.Datasets("acme"); len(got) != 1 || got[0].ID != "d1" {
				t.Fatalf("Datasets(acme) = %+v", got)
			}
			if got := h.f.Datasets("other"); len(got) != 0 {
				t.Fatalf("Datasets(other) = %+v", got)
			}
		}},
		{name: "register duplicate", prep: func(h *harness) Command {
			h.stored("cid-d1")
			h.must(datasetCmd("d1", "acme"))
			return datasetCmd("d1", "other")
		}, err: ErrConflict},
		{name: "register without cid", prep: func(h *harness) Command {
			c := datasetCmd("d1", "acme")
			c.Dataset.CID = ""
			return c
		}, err: ErrInvalid},
		{name: "delete", prep: func(h *harness) Command {
			h.base()
			return &DeleteDataset{At: t0, Tenant: "acme", ID: "ds1"}
		}, check: func(t *testing.T, h *harness, v any) {
			if _, ok := h.f.Dataset("ds1"); ok || v.(Dataset).ID != "ds1" {
				t.Fatal("dataset still there")
			}
		}},
		{name: "delete foreign tenant", prep: func(h *harness) Command {
			h.base()
			return &DeleteDataset{At: t0, Tenant: "other", ID: "ds1"}
		}, err: ErrNotFound},
		{name: "delete missing", prep: func(h *harness) Command { return &DeleteDataset{At: t0, Tenant: "acme", ID: "nope"} }, err: ErrNotFound},
		{name: "delete used by queued job", prep: func(h *harness) Command {
			h.base()
			h.must(submitCmd("j1", "acme", PriorityPaid, "ds1", 0))
			return &DeleteDataset{At: t0, Tenant: "acme", ID: "ds1"}
		}, err: ErrConflict},
		{name: "delete used by running job", prep: func(h *harness) Command {
			h.base()
			h.running("j1", 0)
			return &DeleteDataset{At: t0, Tenant: "acme", ID: "ds1"}
		}, err: ErrConflict},
		{name: "delete after job finished", prep: func(h *harness) Command {
			h.base()
			tok := h.running("j1", 0)
			h.must(&CompleteJob{At: t0, JobID: "j1", Token: tok, State: StateSucceeded})
			return &DeleteDataset{At: t0, Tenant: "acme", ID: "ds1"}
		}},
	})
}

func TestApplySubmit(t *testing.T) {
	t.Parallel()
	runApplyCases(t, []applyCase{
		{name: "queues with defaults", prep: func(h *harness) Command {
			h.base()
			c := submitCmd("j1", "acme", PriorityPaid, "ds1", 1)
			// Stale fields from the proposer are reset.
			c.Job.State, c.Job.Attempts, c.Job.Node, c.Job.CancelRequested = StateSucceeded, 3, "n9", true
			c.Job.Lease = &Lease{Token: 99}
			return c
		}, check: func(t *testing.T, h *harness, v any) {
			j := h.job("j1")
			if j.State != StateQueued || j.Seq != h.idx || !j.SubmittedAt.Equal(t0) || j.Attempts != 0 ||
				j.Node != "" || j.Lease != nil || j.CancelRequested || time.Duration(j.Timeout) != DefaultTimeout {
				t.Fatalf("job = %+v", j)
			}
			if r := v.(Job); r.ID != "j1" || r.State != StateQueued {
				t.Fatalf("returned %+v", r)
			}
		}},
		{name: "sprint default timeout", prep: func(h *harness) Command {
			h.base()
			return submitCmd("j1", "acme", PrioritySprint, "ds1", 1)
		}, check: func(t *testing.T, h *harness, _ any) {
			if d := time.Duration(h.job("j1").Timeout); d != SprintTimeout {
				t.Fatalf("timeout = %s", d)
			}
		}},
		{name: "timeout over 4h refused", prep: func(h *harness) Command {
			h.base()
			c := submitCmd("j1", "acme", PrioritySprint, "ds1", 1)
			c.Job.Timeout = Duration(MaxTimeout + time.Second)
			return c
		}, err: ErrInvalid},
		{name: "unknown priority refused", prep: func(h *harness) Command {
			h.base()
			return submitCmd("j1", "acme", "urgent", "ds1", 1)
		}, err: ErrInvalid},
		{name: "missing id refused", prep: func(h *harness) Command {
			h.base()
			return submitCmd("", "acme", PriorityFree, "ds1", 1)
		}, err: ErrInvalid},
		{name: "duplicate id refused", prep: func(h *harness) Command {
			h.base()
			h.must(submitCmd("j1", "acme", PriorityFree, "ds1", 0))
			return submitCmd("j1", "acme", PriorityFree, "ds1", 0)
		}, err: ErrConflict},
		{name: "missing dataset", prep: func(h *harness) Command {
			h.base()
			return submitCmd("j1", "acme", PriorityFree, "nope", 0)
		}, err: ErrNotFound},
		{name: "dataset of another tenant", prep: func(h *harness) Command {
			h.base()
			return submitCmd("j1", "acme", PriorityFree, "ds-other", 0)
		}, err: ErrNotFound},
		{name: "generate_dataset needs no dataset", prep: func(h *harness) Command {
			h.base()
			c := submitCmd("j1", "acme", PriorityFree, "", 0)
			c.Job.Type = "generate_dataset"
			return c
		}},
		{name: "network bridge kept for a job with an image", prep: func(h *harness) Command {
			h.base()
			c := submitCmd("j1", "acme", PriorityPaid, "ds1", 0)
			c.Job.Image, c.Job.Network = "pwm/fetch:1", NetworkBridge
			return c
		}, check: func(t *testing.T, h *harness, v any) {
			if j := h.job("j1"); j.Network != NetworkBridge || v.(Job).Network != NetworkBridge {
				t.Fatalf("job = %+v", j)
			}
		}},
		{name: "network none is not recorded", prep: func(h *harness) Command {
			h.base()
			c := submitCmd("j1", "acme", PriorityPaid, "ds1", 0)
			c.Job.Network = NetworkNone
			return c
		}, check: func(t *testing.T, h *harness, _ any) {
			if j := h.job("j1"); j.Network != "" {
				t.Fatalf("network = %q, want none recorded", j.Network)
			}
		}},
		{name: "network without an image refused", prep: func(h *harness) Command {
			h.base()
			c := submitCmd("j1", "acme", PriorityPaid, "ds1", 0)
			c.Job.Network = NetworkBridge
			return c
		}, err: ErrInvalid},
		{name: "unknown network refused", prep: func(h *harness) Command {
			h.base()
			c := submitCmd("j1", "acme", PriorityPaid, "ds1", 0)
			c.Job.Image, c.Job.Network = "pwm/fetch:1", "host"
			return c
		}, err: ErrInvalid},
		{name: "idempotency key returns the first job", prep: func(h *harness) Command {
			h.base()
			c := submitCmd("j1", "acme", PriorityFree, "ds1", 0)
			c.IdempotencyKey = "k1"
			h.must(c)
			c2 := submitCmd("j2", "acme", PriorityPaid, "ds1", 0)
			c2.IdempotencyKey = "k1"
			return c2
		}, check: func(t *testing.T, h *harness, v any) {
			if r := v.(Job); r.ID != "j1" || r.Priority != PriorityFree {
				t.Fatalf("returned %+v, want the first job", r)
			}
			if _, ok := h.f.Job("j2"); ok {
				t.Fatal("a second job was created")
			}
		}},
		{name: "idempotency keys are per tenant", prep: func(h *harness) Command {
			h.base()
			c := submitCmd("j1", "acme", PriorityFree, "ds1", 0)
			c.IdempotencyKey = "k1"
			h.must(c)
			c2 := submitCmd("j2", "other", PriorityFree, "ds-other", 0)
			c2.IdempotencyKey = "k1"
			return c2
		}, check: func(t *testing.T, h *harness, v any) {
			if r := v.(Job); r.ID != "j2" || r.Tenant != "other" {
				t.Fatalf("returned %+v", r)
			}
		}},
	})
}

func TestApplyAssign(t *testing.T) {
	t.Parallel()
	assign := func(id, node, inc string, gpus ...int) *AssignJob {
		return &AssignJob{At: t0.Add(time.Second), JobID: id, Node: node, Incarnation: inc, GPUs: gpus, ExpiresAt: t0.Add(time.Minute)}
	}
	queued := func(h *harness) {
		h.base()
		h.must(submitCmd("j1", "acme", PriorityPaid, "ds1", 1))
	}
	runApplyCases(t, []applyCase{
		{name: "starts under a lease", prep: func(h *harness) Command { queued(h); return assign("j1", "n1", "i1", 1) },
			check: func(t *testing.T, h *harness, v any) {
				j := h.job("j1")
				want := Lease{Node: "n1", Token: h.idx, ExpiresAt: t0.Add(time.Minute), GPUs: []int{1}, Incarnation: "i1"}
				if j.State != StateRunning || j.Node != "n1" || j.Attempts != 1 || !j.StartedAt.Equal(t0.Add(time.Second)) ||
					j.Lease == nil || fmt.Sprint(*j.Lease) != fmt.Sprint(want) {
					t.Fatalf("job = %+v lease %+v", j, j.Lease)
				}
				if r := v.(Job); r.Lease.Token != h.idx {
					t.Fatalf("returned token %d", r.Lease.Token)
				}
			}},
		{name: "unknown job", prep: func(h *harness) Command { queued(h); return assign("nope", "n1", "i1", 0) }, err: ErrNotFound},
		{name: "running job", prep: func(h *harness) Command {
			queued(h)
			h.must(assign("j1", "n1", "i1", 0))
			return assign("j1", "n1", "i1", 1)
		}, err: ErrConflict},
		{name: "cancelled job", prep: func(h *harness) Command {
			queued(h)
			h.must(&CancelJob{At: t0, Tenant: "acme", JobID: "j1"})
			return assign("j1", "n1", "i1", 0)
		}, err: ErrConflict},
		{name: "unknown node", prep: func(h *harness) Command { queued(h); return assign("j1", "n9", "i1", 0) }, err: ErrConflict},
		{name: "node down", prep: func(h *harness) Command {
			queued(h)
			h.must(&SetNodeState{At: t0, ID: "n1", State: NodeDown})
			return assign("j1", "n1", "i1", 0)
		}, err: ErrConflict},
		{name: "stale incarnation", prep: func(h *harness) Command {
			queued(h)
			h.must(nodeCmd("n1", "i2", 2, a100s(2)...))
			return assign("j1", "n1", "i1", 0)
		}, err: ErrConflict},
		{name: "wrong GPU count", prep: func(h *harness) Command { queued(h); return assign("j1", "n1", "i1", 0, 1) }, err: ErrConflict},
		{name: "GPU not on node", prep: func(h *harness) Command { queued(h); return assign("j1", "n1", "i1", 7) }, err: ErrConflict},
		{name: "GPU held by another job", prep: func(h *harness) Command {
			queued(h)
			h.running("j0", 0)
			return assign("j1", "n1", "i1", 0)
		}, err: ErrConflict},
		{name: "second attempt counts", prep: func(h *harness) Command {
			queued(h)
			h.must(assign("j1", "n1", "i1", 0))
			h.must(&RequeueJob{At: t0, JobID: "j1", Token: h.idx, Reason: "node died"})
			return assign("j1", "n1", "i1", 0)
		}, check: func(t *testing.T, h *harness, _ any) {
			if j := h.job("j1"); j.Attempts != 2 || j.Lease.Token != h.idx || j.Reason != "" {
				t.Fatalf("job = %+v", j)
			}
		}},
	})
}

func TestApplyFencing(t *testing.T) {
	t.Parallel()
	stale := func(c func(tok uint64) Command) func(h *harness) Command {
		return func(h *harness) Command {
			h.base()
			tok := h.running("j1", 0)
			return c(tok - 1)
		}
	}
	fresh := func(c func(tok uint64) Command) func(h *harness) Command {
		return func(h *harness) Command {
			h.base()
			return c(h.running("j1", 0))
		}
	}
	// A runner whose job was requeued and started again elsewhere holds the
	// old token: everything it sends is refused.
	reassigned := func(c func(tok uint64) Command) func(h *harness) Command {
		return func(h *harness) Command {
			h.base()
			old := h.running("j1", 0)
			h.must(&RequeueJob{At: t0, JobID: "j1", Token: old, Reason: "lease expired"})
			h.must(&AssignJob{At: t0, JobID: "j1", Node: "n1", Incarnation: "i1", GPUs: []int{1}, ExpiresAt: t0.Add(time.Minute)})
			return c(old)
		}
	}
	renew := func(tok uint64) Command {
		return &RenewLease{At: t0, JobID: "j1", Token: tok, ExpiresAt: t0.Add(time.Hour)}
	}
	complete := func(tok uint64) Command {
		return &CompleteJob{At: t0.Add(time.Minute), JobID: "j1", Token: tok, State: StateSucceeded,
			Metrics: map[string]any{"psnr_db": 30.0}, RunBundle: &BundleRef{CID: "b", SHA256: "s", Size: 10}}
	}
	requeue := func(tok uint64) Command { return &RequeueJob{At: t0, JobID: "j1", Token: tok, Reason: "node n1 died"} }
	runApplyCases(t, []applyCase{
		{name: "renew extends", prep: fresh(renew), check: func(t *testing.T, h *harness, _ any) {
			if j := h.job("j1"); !j.Lease.ExpiresAt.Equal(t0.Add(time.Hour)) {
				t.Fatalf("lease = %+v", j.Lease)
			}
		}},
		{name: "renew never shortens", prep: fresh(func(tok uint64) Command {
			return &RenewLease{At: t0, JobID: "j1", Token: tok, ExpiresAt: t0}
		}), check: func(t *testing.T, h *harness, _ any) {
			if j := h.job("j1"); !j.Lease.ExpiresAt.Equal(t0.Add(15 * time.Second)) {
				t.Fatalf("lease = %+v", j.Lease)
			}
		}},
		{name: "renew stale", prep: stale(renew), err: ErrStaleToken},
		{name: "renew after reassignment", prep: reassigned(renew), err: ErrStaleToken},
		{name: "renew unknown job", prep: func(h *harness) Command { return renew(1) }, err: ErrNotFound},
		{name: "complete", prep: fresh(complete), check: func(t *testing.T, h *harness, _ any) {
			j := h.job("j1")
			if j.State != StateSucceeded || j.Lease != nil || !j.FinishedAt.Equal(t0.Add(time.Minute)) ||
				j.Metrics["psnr_db"] != 30.0 || j.RunBundle.CID != "b" || j.Node != "n1" {
				t.Fatalf("job = %+v", j)
			}
			if refs := h.f.References(); !strings.Contains(strings.Join(refs, ","), "b") {
				t.Fatalf("References = %v, want the bundle", refs)
			}
		}},
		{name: "complete stale", prep: stale(complete), err: ErrStaleToken},
		{name: "complete after reassignment", prep: reassigned(complete), err: ErrStaleToken},
		{name: "complete twice", prep: func(h *harness) Command {
			h.base()
			tok := h.running("j1", 0)
			h.must(complete(tok))
			return complete(tok)
		}, err: ErrStaleToken},
		{name: "complete with bad state", prep: fresh(func(tok uint64) Command {
			return &CompleteJob{At: t0, JobID: "j1", Token: tok, State: StateQueued}
		}), err: ErrInvalid},
		{name: "complete records operator", prep: fresh(func(tok uint64) Command {
			return &CompleteJob{At: t0, JobID: "j1", Token: tok, State: StateSucceeded, Operator: &OperatorEntry{Key: "op1", Ref: BundleRef{CID: "opcid"}}}
		}), check: func(t *testing.T, h *harness, _ any) {
			if r, ok := h.f.Operator("op1"); !ok || r.CID != "opcid" {
				t.Fatalf("operator = %+v, %v", r, ok)
			}
		}},
		{name: "requeue", prep: fresh(requeue), check: func(t *testing.T, h *harness, _ any) {
			j := h.job("j1")
			if j.State != StateQueued || j.Lease != nil || j.StartedAt != nil || j.Attempts != 1 || j.Reason != "node n1 died" {
				t.Fatalf("job = %+v", j)
			}
		}},
		{name: "requeue stale", prep: stale(requeue), err: ErrStaleToken},
		{name: "requeue after reassignment", prep: reassigned(requeue), err: ErrStaleToken},
		{name: "requeue past MaxAttempts fails", prep: func(h *harness) Command {
			h.base()
			h.must(submitCmd("j1", "acme", PriorityPaid, "ds1", 0))
			for i := 0; i < MaxAttempts-1; i++ {
				h.must(&AssignJob{At: t0, JobID: "j1", Node: "n1", Incarnation: "i1", ExpiresAt: t0})
				h.must(requeue(h.idx))
			}
			h.must(&AssignJob{At: t0, JobID: "j1", Node: "n1", Incarnation: "i1", ExpiresAt: t0})
			return requeue(h.idx)
		}, check: func(t *testing.T, h *harness, _ any) {
			j := h.job("j1")
			if j.State != StateFailed || j.Attempts != MaxAttempts || j.Error == nil || j.Error.Code != "too_many_attempts" || j.FinishedAt == nil {
				t.Fatalf("job = %+v", j)
			}
		}},
	})
}

func TestApplyGenerateDataset(t *testing.T) {
	t.Parallel()
	gen := func(h *harness) uint64 {
		h.base()
		c := submitCmd("g1", "acme", PriorityPaid, "", 0)
		c.Job.Type = "generate_dataset"
		h.must(c)
		h.must(&AssignJob{At: t0, JobID: "g1", Node: "n1", Incarnation: "i1", ExpiresAt: t0.Add(time.Minute)})
		return h.idx
	}
	out := func(tok uint64, tenant, id string) *CompleteJob {
		return &CompleteJob{At: t0.Add(time.Minute), JobID: "g1", Token: tok, State: StateSucceeded,
			Dataset: &Dataset{ID: id, Tenant: tenant, Name: "gen", CID: "cid-gen", SHA256: "s", Size: 5}}
	}
	runApplyCases(t, []applyCase{
		{name: "registers output", prep: func(h *harness) Command { return out(gen(h), "acme", "dgen") },
			check: func(t *testing.T, h *harness, _ any) {
				d, ok := h.f.Dataset("dgen")
				if !ok || d.Tenant != "acme" || d.Job != "g1" || !d.CreatedAt.Equal(t0.Add(time.Minute)) {
					t.Fatalf("dataset = %+v, %v", d, ok)
				}
				if j := h.job("g1"); j.Outputs["dataset"] != "dgen" || j.State != StateSucceeded {
					t.Fatalf("job = %+v", j)
				}
			}},
		{name: "output of another tenant refused", prep: func(h *harness) Command { return out(gen(h), "other", "dgen") }, err: ErrInvalid,
			check: func(t *testing.T, h *harness, _ any) {
				if j := h.job("g1"); j.State != StateRunning || j.Lease == nil {
					t.Fatalf("refused completion changed the job: %+v", j)
				}
			}},
		{name: "output id taken refused", prep: func(h *harness) Command { return out(gen(h), "acme", "ds-other") }, err: ErrConflict},
		{name: "failed job registers nothing", prep: func(h *harness) Command {
			c := out(gen(h), "acme", "dgen")
			c.State = StateFailed
			return c
		}, check: func(t *testing.T, h *harness, _ any) {
			if _, ok := h.f.Dataset("dgen"); ok {
				t.Fatal("failed job registered its dataset")
			}
		}},
	})
}

func TestApplyCancel(t *testing.T) {
	t.Parallel()
	cancel := &CancelJob{At: t0.Add(time.Minute), Tenant: "acme", JobID: "j1"}
	runApplyCases(t, []applyCase{
		{name: "queued is cancelled at once", prep: func(h *harness) Command {
			h.base()
			h.must(submitCmd("j1", "acme", PriorityPaid, "ds1", 0))
			return cancel
		}, check: func(t *testing.T, h *harness, _ any) {
			j := h.job("j1")
			if j.State != StateCancelled || !j.FinishedAt.Equal(t0.Add(time.Minute)) || j.Error.Code != "cancelled" || j.QueuePosition != 0 {
				t.Fatalf("job = %+v", j)
			}
		}},
		{name: "running is asked to stop", prep: func(h *harness) Command {
			h.base()
			h.running("j1", 0)
			return cancel
		}, check: func(t *testing.T, h *harness, _ any) {
			if j := h.job("j1"); j.State != StateRunning || !j.CancelRequested || j.Lease == nil {
				t.Fatalf("job = %+v", j)
			}
		}},
		{name: "completion after request is cancelled", prep: func(h *harness) Command {
			h.base()
			tok := h.running("j1", 0)
			h.must(cancel)
			return &CompleteJob{At: t0, JobID: "j1", Token: tok, State: StateFailed}
		}, check: func(t *testing.T, h *harness, _ any) {
			if j := h.job("j1"); j.State != StateCancelled || j.Error.Code != "cancelled" {
				t.Fatalf("job = %+v", j)
			}
		}},
		{name: "requeue after request is cancelled", prep: func(h *harness) Command {
			h.base()
			tok := h.running("j1", 0)
			h.must(cancel)
			return &RequeueJob{At: t0, JobID: "j1", Token: tok, Reason: "node died"}
		}, check: func(t *testing.T, h *harness, _ any) {
			if j := h.job("j1"); j.State != StateCancelled || j.Lease != nil || j.FinishedAt == nil {
				t.Fatalf("job = %+v", j)
			}
		}},
		{name: "terminal refused", prep: func(h *harness) Command {
			h.base()
			h.must(submitCmd("j1", "acme", PriorityPaid, "ds1", 0))
			h.must(cancel)
			return cancel
		}, err: ErrConflict},
		{name: "other tenant sees nothing", prep: func(h *harness) Command {
			h.base()
			h.must(submitCmd("j1", "acme", PriorityPaid, "ds1", 0))
			return &CancelJob{At: t0, Tenant: "other", JobID: "j1"}
		}, err: ErrNotFound},
	})
}

func TestApplyNodesAndOperators(t *testing.T) {
	t.Parallel()
	runApplyCases(t, []applyCase{
		{name: "register defaults to ready", prep: func(h *harness) Command { return nodeCmd("n1", "i1", 1, a100s(1)...) },
			check: func(t *testing.T, h *harness, v any) {
				n, ok := h.f.Node("n1")
				if !ok || n.State != NodeReady || !n.UpdatedAt.Equal(t0) || len(n.GPUs) != 1 || v.(Node).ID != "n1" {
					t.Fatalf("node = %+v, %v", n, ok)
				}
			}},
		{name: "register without id", prep: func(h *harness) Command { return nodeCmd("", "i1", 1) }, err: ErrInvalid},
		{name: "register with a repeated GPU index", prep: func(h *harness) Command {
			return nodeCmd("n1", "i1", 1, append(a100s(2), a100s(1)...)...)
		}, err: ErrInvalid},
		{name: "set state", prep: func(h *harness) Command {
			h.must(nodeCmd("n1", "i1", 1))
			return &SetNodeState{At: t0.Add(time.Second), ID: "n1", State: NodeLeft}
		}, check: func(t *testing.T, h *harness, _ any) {
			if n, _ := h.f.Node("n1"); n.State != NodeLeft || !n.UpdatedAt.Equal(t0.Add(time.Second)) {
				t.Fatalf("node = %+v", n)
			}
		}},
		{name: "set bad state", prep: func(h *harness) Command {
			h.must(nodeCmd("n1", "i1", 1))
			return &SetNodeState{At: t0, ID: "n1", State: "sleeping"}
		}, err: ErrInvalid},
		{name: "set state of unknown node", prep: func(h *harness) Command { return &SetNodeState{At: t0, ID: "n9", State: NodeDown} }, err: ErrNotFound},
		{name: "put operator", prep: func(h *harness) Command {
			return &PutOperator{At: t0, Entry: OperatorEntry{Key: "cassi-256-seed7", Ref: BundleRef{CID: "opcid", SHA256: "s", Size: 3}}}
		}, check: func(t *testing.T, h *harness, _ any) {
			if r, ok := h.f.Operator("cassi-256-seed7"); !ok || r.CID != "opcid" {
				t.Fatalf("operator = %+v, %v", r, ok)
			}
			if _, ok := h.f.Operator("other"); ok {
				t.Fatal("unknown operator found")
			}
		}},
	})
}

// TestApplyResultIsACopy checks that what Apply returns shares no memory with
// the FSM: the caller reads it on another goroutine while the FSM goes on.
func TestApplyResultIsACopy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	h.must(submitCmd("j1", "acme", PriorityPaid, "ds1", 1))
	v := h.must(&AssignJob{At: t0, JobID: "j1", Node: "n1", Incarnation: "i1", GPUs: []int{0}, ExpiresAt: t0.Add(time.Second)})
	got := v.(Job)
	h.must(&RenewLease{At: t0, JobID: "j1", Token: got.Lease.Token, ExpiresAt: t0.Add(time.Hour)})
	if !got.Lease.ExpiresAt.Equal(t0.Add(time.Second)) {
		t.Fatal("a renewal changed a lease already returned to a caller")
	}
	got.Params[0] = 'X'
	got.Lease.GPUs[0] = 9
	if j := h.job("j1"); j.Params[0] != '{' || j.Lease.GPUs[0] != 0 {
		t.Fatal("caller's changes reached the FSM")
	}
}

func TestJobsListingAndAnnotations(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	// n1 has 2 GPUs: j1 runs on one; j2 (2 GPUs) cannot start; j3 (1 GPU) can.
	h.running("j1", 0)
	h.must(submitCmd("j2", "acme", PriorityPaid, "ds1", 2))
	h.must(submitCmd("j3", "acme", PriorityFree, "ds1", 1))
	h.must(submitCmd("j4", "other", PriorityFree, "ds-other", 0))
	h.must(&CancelJob{At: t0, Tenant: "other", JobID: "j4"})

	j2 := h.job("j2")
	if j2.QueuePosition != 1 || !strings.Contains(j2.Reason, "queue position 1") || !strings.Contains(j2.Reason, "2 GPU(s)") {
		t.Fatalf("j2 = position %d reason %q", j2.QueuePosition, j2.Reason)
	}
	if j3 := h.job("j3"); j3.QueuePosition != 2 || j3.Reason != "about to start" {
		t.Fatalf("j3 = position %d reason %q", j3.QueuePosition, j3.Reason)
	}
	if j1 := h.job("j1"); j1.QueuePosition != 0 || j1.Reason != "" {
		t.Fatalf("running j1 = position %d reason %q", j1.QueuePosition, j1.Reason)
	}

	var ids []string
	var cursor uint64
	for page := 0; ; page++ {
		jobs, next := h.f.Jobs(JobFilter{Tenant: "acme", Limit: 2, After: cursor})
		for _, j := range jobs {
			ids = append(ids, j.ID)
		}
		if next == 0 {
			break
		}
		if page > 3 {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if got := strings.Join(ids, ","); got != "j1,j2,j3" {
		t.Fatalf("acme's jobs = %s", got)
	}
	if jobs, _ := h.f.Jobs(JobFilter{State: StateCancelled}); len(jobs) != 1 || jobs[0].ID != "j4" {
		t.Fatalf("cancelled jobs = %+v", jobs)
	}
	if jobs, _ := h.f.Jobs(JobFilter{Node: "n1", State: StateRunning}); len(jobs) != 1 || jobs[0].ID != "j1" {
		t.Fatalf("jobs on n1 = %+v", jobs)
	}
}

// scenario is a log that touches every command type and every job state.
func scenario(h *harness) {
	h.base()
	tok := h.running("j1", 0)
	h.must(&RenewLease{At: t0, JobID: "j1", Token: tok, ExpiresAt: t0.Add(time.Hour)})
	h.must(&CompleteJob{At: t0.Add(time.Hour), JobID: "j1", Token: tok, State: StateSucceeded,
		Metrics:   map[string]any{"psnr_db": 31.25, "gain": 1.5, "nested": map[string]any{"b": 1.0, "a": []any{1.0, "x"}}},
		RunBundle: &BundleRef{CID: "bcid", SHA256: "bsha", Size: 99}, Operator: &OperatorEntry{Key: "op", Ref: BundleRef{CID: "ocid"}}})
	tok = h.running("j2", 1)
	h.must(&RequeueJob{At: t0, JobID: "j2", Token: tok, Reason: "lease expired"})
	c := submitCmd("j3", "other", PriorityFree, "ds-other", 0)
	c.IdempotencyKey = "idem-1"
	h.must(c)
	h.must(&CancelJob{At: t0, Tenant: "other", JobID: "j3"})
	h.must(submitCmd("j4", "acme", PrioritySprint, "ds1", 2))
	c = submitCmd("j5", "acme", PriorityPaid, "", 0)
	c.Job.Image, c.Job.Network = "pwm/fetch:1", NetworkBridge
	h.must(c)
	h.must(nodeCmd("n2", "i1", 4))
	h.must(&SetNodeState{At: t0, ID: "n2", State: NodeDown})
	h.must(&PutOperator{At: t0, Entry: OperatorEntry{Key: "op2", Ref: BundleRef{CID: "o2"}}})
	h.stored("cid-ds-gone")
	h.must(datasetCmd("ds-gone", "acme"))
	h.must(&DeleteDataset{At: t0, Tenant: "acme", ID: "ds-gone"})
	_, _ = h.apply(keyCmd("hash-acme", "acme", PriorityFree)) // refused entries are part of the log too
}

func TestDeterministicReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scenario(h)
	want := snapshotBytes(t, h.f)
	if len(want) == 0 {
		t.Fatal("empty snapshot")
	}
	for range 2 {
		f := NewFSM()
		for _, l := range h.log {
			f.Apply(l)
		}
		if got := snapshotBytes(t, f); !bytes.Equal(got, want) {
			t.Fatal("replaying the same log gave a different snapshot")
		}
		if f.LastIndex() != h.idx {
			t.Fatalf("LastIndex = %d, want %d", f.LastIndex(), h.idx)
		}
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scenario(h)
	want := snapshotBytes(t, h.f)

	f := NewFSM()
	watch := f.Watch()
	if err := f.Restore(io.NopCloser(bytes.NewReader(want))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watch:
	default:
		t.Fatal("Restore did not signal watchers")
	}
	if got := snapshotBytes(t, f); !bytes.Equal(got, want) {
		t.Fatal("snapshot after restore differs")
	}
	if j, ok := f.Job("j1"); !ok || j.Metrics["psnr_db"] != 31.25 {
		t.Fatalf("restored j1 = %+v", j)
	}
	if k, ok := f.Key("hash-acme"); !ok || k.Tenant != "acme" {
		t.Fatalf("restored key = %+v", k)
	}
	if j, ok := f.Job("j5"); !ok || j.Network != NetworkBridge || j.Image != "pwm/fetch:1" {
		t.Fatalf("restored j5 = %+v", j)
	}

	// The idempotency index survives: the same key returns the first job.
	h2 := &harness{tb: t, f: f, idx: h.idx}
	c := submitCmd("j-new", "other", PriorityFree, "ds-other", 0)
	c.IdempotencyKey = "idem-1"
	if v := h2.must(c); v.(Job).ID != "j3" {
		t.Fatalf("idempotent submit after restore returned %s, want j3", v.(Job).ID)
	}
	if _, ok := f.Job("j-new"); ok {
		t.Fatal("idempotent submit after restore created a job")
	}
}

func TestRestoreRefusesCorruptStreams(t *testing.T) {
	t.Parallel()
	src := newHarness(t)
	scenario(src)
	good := snapshotBytes(t, src.f)

	record := func(typ byte, body string) []byte {
		b := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(len(body)))
		return append(b, body...)
	}
	cases := []struct {
		name   string
		stream []byte
	}{
		{"unknown record type", append(slicesClone(good), record(99, `{}`)...)},
		{"truncated body", good[:len(good)-3]},
		{"truncated header", append(slicesClone(good), recJob, 0)},
		{"oversize length", append(slicesClone(good), recJob, 0xff, 0xff, 0xff, 0xff)},
		{"bad json", append(slicesClone(good), record(recJob, `{"id":`)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.base()
			before := snapshotBytes(t, h.f)
			if err := h.f.Restore(io.NopCloser(bytes.NewReader(tc.stream))); err == nil {
				t.Fatal("Restore accepted a corrupt stream")
			}
			if !bytes.Equal(before, snapshotBytes(t, h.f)) {
				t.Fatal("a failed Restore replaced the state")
			}
		})
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

func BenchmarkFSMApplySubmit(b *testing.B) {
	h := newHarness(b)
	h.base()
	logs := make([]*raft.Log, b.N)
	for i := range logs {
		c := submitCmd(fmt.Sprintf("job-%09d", i), "acme", PriorityPaid, "ds1", 1)
		c.IdempotencyKey = fmt.Sprintf("k-%d", i)
		data, err := Encode(c)
		if err != nil {
			b.Fatal(err)
		}
		logs[i] = &raft.Log{Index: h.idx + uint64(i) + 1, Type: raft.LogCommand, Data: data}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, l := range logs {
		if r := h.f.Apply(l).(ApplyResult); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}
