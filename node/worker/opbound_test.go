package worker

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/workload/npy"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// A free tenant's job on a dataset whose spec.json claims a size and
// sampling past the free tier's operator bound (an upload can claim
// anything) fails with operator_too_large, naming the bound and the tier,
// and leaves no operator in the cache; the real workload runs in a child.
func TestFreeJobRefusesLargeOperator(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	schedulertest.MustApply(t, f.raft, &scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{Hash: "hf", Tenant: "freeco", Tier: scheduler.PriorityFree}})

	// size 128 at sampling 1: a 16384×16384 operator of 32 MiB.
	y := make([]float64, 128*128)
	raw, err := npy.WriteNPZ(map[string]npy.Array{"y": npy.New(y, len(y))},
		map[string][]byte{"spec.json": []byte(`{"size":128,"sampling":1,"operator_seed":7}`)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.storage.PutDataset(context.Background(), "freeco", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	d.ID, d.Name, d.CreatedAt = "ds_crafted", "crafted.npz", time.Now()
	schedulertest.MustApply(t, f.raft, &scheduler.RegisterDataset{At: d.CreatedAt, Dataset: d})

	id := f.newID("job_")
	schedulertest.MustApply(t, f.raft, &scheduler.SubmitJob{At: time.Now(), Job: scheduler.Job{
		ID: id, Tenant: "freeco", Type: "reconstruct", Dataset: d.ID, Priority: scheduler.PriorityFree,
		Params: []byte(`{"iterations":1}`), Timeout: scheduler.Duration(time.Minute)}})
	j := f.wait(id, done)
	if j.State != scheduler.StateFailed || j.Error == nil || j.Error.Code != CodeOperatorTooLarge {
		t.Fatalf("got %s, error %+v; want failed with %s", j.State, j.Error, CodeOperatorTooLarge)
	}
	t.Logf("error: %s", j.Error.Message)
	for _, want := range []string{"32 MiB", "16 MiB", "free tier", scheduler.OperatorBound} {
		if !strings.Contains(j.Error.Message, want) {
			t.Errorf("message %q lacks %q", j.Error.Message, want)
		}
	}
	if n := f.fsm.StoredBytes("freeco"); n != d.StoredBytes() {
		t.Errorf("freeco stores %d bytes after the refusal, want its dataset's %d (no operator)", n, d.StoredBytes())
	}
}

// The bound a job runs under is its tenant's tier's; a tenant without a
// record falls back to the job's priority.
func TestOperatorBoundByTier(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	schedulertest.MustApply(t, f.raft, &scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{Hash: "hf", Tenant: "freeco", Tier: scheduler.PriorityFree}})
	free, _ := scheduler.MaxOperatorBytes(scheduler.PriorityFree)
	for _, c := range []struct {
		tenant, priority string
		want             int64
		tier             string
	}{
		{"freeco", scheduler.PriorityFree, free, scheduler.PriorityFree},
		{"acme", scheduler.PriorityFree, 0, scheduler.PriorityPaid}, // a paid tenant's free job
		{"nobody", scheduler.PriorityFree, free, scheduler.PriorityFree},
		{"nobody", scheduler.PrioritySprint, 0, scheduler.PriorityPaid},
	} {
		n, tier := f.worker.operatorBound(scheduler.Job{Tenant: c.tenant, Priority: c.priority})
		if n != c.want || tier != c.tier {
			t.Errorf("%s %s: bound %d of %s, want %d of %s", c.tenant, c.priority, n, tier, c.want, c.tier)
		}
	}
}
