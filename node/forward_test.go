package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
	"github.com/pwmesh/pwmesh/web"
)

// loopback delivers Calls straight to a handler, standing in for the wire;
// from is the peer ID the handler sees ("peer" when empty).
type loopback struct {
	h    func(ctx context.Context, from string, req []byte) ([]byte, error)
	from string
}

func (l loopback) Call(ctx context.Context, _, _ string, req []byte) ([]byte, error) {
	from := l.from
	if from == "" {
		from = "peer"
	}
	return l.h(ctx, from, req)
}

// follower is a leaderView that never leads and points at the leader.
type follower struct{ addr string }

func (f follower) IsLeader() bool     { return false }
func (f follower) LeaderAddr() string { return f.addr }
func (f follower) Apply(context.Context, scheduler.Command) (any, error) {
	return nil, scheduler.ErrNotLeader
}

const adminSecret = "pwm_forward_test_admin"

// withAdmin stores an admin key on r and returns a context carrying it, as
// the web layer's does for an admin's request.
func withAdmin(t *testing.T, r *scheduler.Raft) context.Context {
	t.Helper()
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{ID: "key_admin", Hash: web.HashKey(adminSecret),
		Tenant: "admin", Tier: scheduler.PriorityPaid, Admin: true}})
	return scheduler.WithCaller(context.Background(), adminSecret)
}

func TestForwardCarriesValuesAndErrors(t *testing.T) {
	t.Parallel()
	r := schedulertest.NewRaft(t)
	fw := &forwarder{raft: follower{addr: "leader"}, net: loopback{h: serveApply(r, r.FSM(), scheduler.SystemClock{}, nil)}}
	ctx := withAdmin(t, r)
	key := scheduler.APIKey{ID: "key_1", Hash: "h1", Tenant: "acme", Tier: "paid"}
	v, err := fw.Apply(ctx, &scheduler.CreateKey{At: time.Now(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := v.(scheduler.APIKey)
	if stored, found := r.FSM().Key("h1"); !found || !ok || got != stored {
		t.Fatalf("forwarded write: returned %#v, stored %#v", v, stored)
	}
	// The leader's error comes back with its sentinel.
	_, err = fw.Apply(ctx, &scheduler.CreateKey{At: time.Now(), Key: key})
	if !errors.Is(err, scheduler.ErrConflict) {
		t.Fatalf("duplicate key: %v, want ErrConflict", err)
	}
	_, err = fw.Apply(ctx, &scheduler.CancelJob{At: time.Now(), Tenant: "acme", JobID: "nope"})
	if !errors.Is(err, scheduler.ErrNotFound) {
		t.Fatalf("missing job: %v, want ErrNotFound", err)
	}
}

func TestForwardWithoutLeader(t *testing.T) {
	t.Parallel()
	fw := &forwarder{raft: follower{}, wait: 50 * time.Millisecond}
	_, err := fw.Apply(context.Background(), &scheduler.CreateKey{})
	if !errors.Is(err, scheduler.ErrNoLeader) {
		t.Fatalf("got %v, want ErrNoLeader", err)
	}
	// A peer that answers "not the leader" twice gives up with that error.
	fw = &forwarder{raft: follower{addr: "stale"}, net: loopback{h: serveApply(follower{}, nil, nil, nil)}, wait: 200 * time.Millisecond}
	if _, err := fw.Apply(context.Background(), &scheduler.CreateKey{}); !errors.Is(err, scheduler.ErrNotLeader) {
		t.Fatalf("got %v, want ErrNotLeader", err)
	}
}

// The leader's clock decides lease times: a runner whose clock is an hour
// behind still gets a lease of the length it asked for, from now.
func TestRestampUsesTheLeadersClock(t *testing.T) {
	t.Parallel()
	now := time.Now()
	skewed := now.Add(-time.Hour)
	c := restamp(&scheduler.RenewLease{At: skewed, ExpiresAt: skewed.Add(9 * time.Second)}, fixedClock{now}).(*scheduler.RenewLease)
	if !c.At.Equal(now) || !c.ExpiresAt.Equal(now.Add(9*time.Second)) {
		t.Fatalf("restamped renewal: at %v expires %v", c.At, c.ExpiresAt)
	}
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// failing is a network on which every call fails, as to a dead leader.
type failing struct{ calls int }

func (f *failing) Call(context.Context, string, string, []byte) ([]byte, error) {
	f.calls++
	return nil, errors.New("connection refused")
}

// A renewal waits through a failover (the leader silent) until the wait
// runs out; a submit without an idempotency key is not sent twice.
func TestForwardRetriesOnlyRepeatableCommands(t *testing.T) {
	t.Parallel()
	net := &failing{}
	fw := &forwarder{raft: follower{addr: "dead"}, net: net, wait: 200 * time.Millisecond}
	_, err := fw.Apply(context.Background(), &scheduler.RenewLease{JobID: "j", Token: 1})
	if !errors.Is(err, scheduler.ErrNoLeader) || net.calls < 2 {
		t.Fatalf("renewal: %v after %d calls, want ErrNoLeader after retries", err, net.calls)
	}
	net.calls = 0
	_, err = fw.Apply(context.Background(), &scheduler.SubmitJob{Job: scheduler.Job{ID: "j"}})
	if !errors.Is(err, scheduler.ErrNoLeader) || net.calls != 1 {
		t.Fatalf("submit: %v after %d calls, want ErrNoLeader after one call", err, net.calls)
	}
}

// counting wraps a network and counts its calls.
type counting struct {
	caller
	calls int
}

func (c *counting) Call(ctx context.Context, peer, proto string, req []byte) ([]byte, error) {
	c.calls++
	return c.caller.Call(ctx, peer, proto, req)
}

// A write that may be applied twice keeps asking while a stale leader says
// "not the leader"; any other gives up after one retry.
func TestForwardRepeatableWaitsForANewLeader(t *testing.T) {
	t.Parallel()
	net := &counting{caller: loopback{h: serveApply(follower{}, nil, nil, nil)}}
	fw := &forwarder{raft: follower{addr: "stale"}, net: net, wait: 300 * time.Millisecond}
	if _, err := fw.Apply(context.Background(), &scheduler.RenewLease{JobID: "j", Token: 1}); !errors.Is(err, scheduler.ErrNotLeader) || net.calls < 3 {
		t.Fatalf("renewal: %v after %d calls, want ErrNotLeader after several", err, net.calls)
	}
	net.calls = 0
	if _, err := fw.Apply(context.Background(), &scheduler.CreateKey{}); !errors.Is(err, scheduler.ErrNotLeader) || net.calls != 2 {
		t.Fatalf("create key: %v after %d calls, want ErrNotLeader after 2", err, net.calls)
	}
}

// trusting lets every forwarded command through, so that the result test
// reaches the apply path with commands no peer may send.
type trusting struct{ authority }

func (trusting) Authorize(scheduler.Command, scheduler.Principal) error { return nil }

// erring is a leader whose every write fails with err.
type erring struct{ err error }

func (e erring) IsLeader() bool     { return true }
func (e erring) LeaderAddr() string { return "self" }
func (e erring) Apply(context.Context, scheduler.Command) (any, error) {
	return nil, e.err
}

// Every sentinel of the scheduler crosses the hop: the forwarder's error
// errors.Is the leader's sentinel and says what the leader said.
func TestForwardKeepsEverySentinel(t *testing.T) {
	t.Parallel()
	for _, k := range scheduler.ErrorKinds {
		t.Run(k.Kind, func(t *testing.T) {
			t.Parallel()
			leaderErr := fmt.Errorf("scheduler: create_key: %w", k.Err)
			fw := &forwarder{raft: follower{addr: "leader"}, wait: 100 * time.Millisecond,
				net: loopback{h: serveApply(erring{leaderErr}, trusting{}, nil, nil)}}
			_, err := fw.Apply(context.Background(), &scheduler.CreateKey{})
			if !errors.Is(err, k.Err) || err.Error() != leaderErr.Error() {
				t.Fatalf("forwarded %v (errors.Is %v), want %v", err, errors.Is(err, k.Err), leaderErr)
			}
		})
	}
}

// step builds the next command of resultScenario from the state it runs on
// (fencing tokens are Raft indexes).
type step func(f *scheduler.FSM) scheduler.Command

// resultScenario is a log in which every command type succeeds once.
func resultScenario(at time.Time) []step {
	exp := at.Add(time.Minute)
	fixed := func(c scheduler.Command) step { return func(*scheduler.FSM) scheduler.Command { return c } }
	token := func(f *scheduler.FSM, id string) uint64 {
		j, _ := f.Job(id)
		if j.Lease == nil {
			return 0
		}
		return j.Lease.Token
	}
	gpus := []scheduler.GPU{{Index: 0, UUID: "GPU-0", Model: "A100", MemoryMB: 40960}}
	return []step{
		fixed(&scheduler.CreateKey{At: at, Key: scheduler.APIKey{ID: "key_acme", Hash: "h-acme", Tenant: "acme", Tier: "paid", Name: "ci", ExpiresAt: &exp}}),
		fixed(&scheduler.RegisterNode{At: at, Node: scheduler.Node{ID: "n1", Region: "eu", Slots: 2, GPUs: gpus, Incarnation: "i1", PeerID: "p1"}}),
		fixed(&scheduler.UpdateGPUs{At: at, Node: "n1", GPUs: gpus}),
		fixed(&scheduler.BlobStored{At: at, CID: "cid-ds1", Size: 4, Kind: scheduler.BlobDataset, Node: "n1"}),
		fixed(&scheduler.BlobMirrored{At: at, CID: "cid-ds1"}),
		fixed(&scheduler.RegisterDataset{At: at, Dataset: scheduler.Dataset{ID: "ds1", Tenant: "acme", Name: "d", CID: "cid-ds1", SHA256: "s", Size: 4}}),
		fixed(&scheduler.SubmitJob{At: at, IdempotencyKey: "k1", RequestHash: "rh", Job: scheduler.Job{ID: "j1", Tenant: "acme", Type: "reconstruct",
			Priority: "paid", Dataset: "ds1", Params: []byte(`{"iters":10}`)}}),
		fixed(&scheduler.AssignJob{At: at, JobID: "j1", Node: "n1", Incarnation: "i1", ExpiresAt: exp}),
		func(f *scheduler.FSM) scheduler.Command {
			return &scheduler.RenewLease{At: at, JobID: "j1", Token: token(f, "j1"), ExpiresAt: exp.Add(time.Minute)}
		},
		fixed(&scheduler.BlobStored{At: at, CID: "bcid", Size: 9, Kind: scheduler.BlobBundle, Node: "n1"}),
		func(f *scheduler.FSM) scheduler.Command {
			return &scheduler.CompleteJob{At: at, JobID: "j1", Token: token(f, "j1"), State: scheduler.StateSucceeded,
				Metrics: map[string]any{"psnr_db": 31.5}, RunBundle: &scheduler.BundleRef{CID: "bcid", SHA256: "s", Size: 9}}
		},
		fixed(&scheduler.SubmitJob{At: at, Job: scheduler.Job{ID: "j2", Tenant: "acme", Type: "calibrate", Priority: "paid"}}),
		fixed(&scheduler.AssignBatch{Assignments: []scheduler.AssignJob{{At: at, JobID: "j2", Node: "n1", Incarnation: "i1", ExpiresAt: exp}}}),
		func(f *scheduler.FSM) scheduler.Command {
			return &scheduler.RequeueJob{At: at, JobID: "j2", Token: token(f, "j2"), Reason: "leaving", Voluntary: true}
		},
		fixed(&scheduler.CancelJob{At: at, Tenant: "acme", JobID: "j2"}),
		fixed(&scheduler.PutOperator{At: at, Entry: scheduler.OperatorEntry{Key: "op", Ref: scheduler.BundleRef{CID: "ocid"}}}),
		fixed(&scheduler.ExpireBundles{At: at, Jobs: []string{"j1"}}),
		fixed(&scheduler.ForgetBlobs{At: at, CIDs: []string{"bcid"}}),
		fixed(&scheduler.PutTenantKeys{At: at, Tenant: "acme", Keys: []scheduler.SealedKey{{Version: 1, Master: "m", Sealed: []byte{1, 2, 3}}}}),
		fixed(&scheduler.DeleteDataset{At: at, Tenant: "acme", ID: "ds1"}),
		fixed(&scheduler.BlobDropped{At: at, CID: "cid-ds1", Node: "n1", Reason: "gc"}),
		fixed(&scheduler.SetClusterConfig{At: at, Config: scheduler.ClusterConfig{Replicas: 2}}),
		fixed(&scheduler.SetNodeState{At: at, ID: "n1", State: scheduler.NodeLeft}),
		fixed(&scheduler.TouchKeys{At: at, Used: map[string]time.Time{"key_acme": exp}}),
		fixed(&scheduler.RevokeKey{At: at, ID: "key_acme", Tenant: "acme"}),
		fixed(&scheduler.PruneJobs{At: at, JobsBefore: at.Add(time.Second), IdempotencyBefore: at.Add(time.Second)}),
		fixed(&scheduler.SetTenant{At: at, Tenant: "acme", Tier: ptrTo("free"), Pool: ptrTo("gpu-a"),
			Quotas: map[string]*float64{scheduler.QuotaGPUMinutes: ptrTo(2.5)}}),
		fixed(&scheduler.MeterCalls{At: at, Node: "n1", Incarnation: "i1", Seq: 1, Calls: map[string]int64{"acme": 3}}),
		fixed(&scheduler.RegisterNode{At: at, Node: scheduler.Node{ID: "n2", Region: "eu", Slots: 1, Incarnation: "i2", PeerID: "p2"}}),
		fixed(&scheduler.DrainNode{At: at, ID: "n2"}),
		fixed(&scheduler.ScaleStatus{At: at, Status: scheduler.ScalerStatus{Mode: "exec", Max: 4, Desired: 1, Reason: "r"}}),
		fixed(&scheduler.ScaleBegin{At: at, Action: scheduler.ScaleAction{Add: 1, Pool: "shared", GPUs: 1}, Grace: scheduler.Duration(time.Minute)}),
		func(f *scheduler.FSM) scheduler.Command {
			var id uint64
			if p := f.Scaler().Pending; p != nil {
				id = p.ID
			}
			return &scheduler.ScaleEnd{At: at, ID: id, OK: true}
		},
	}
}

// A forwarded write returns what a local one does: the same Go type and
// the same value, for every command type, on two real Raft leaders fed the
// same log (one locally, one through the apply protocol).
func TestForwardedResultsMatchLocal(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := fixedClock{now}
	local, remote := schedulertest.NewRaft(t), schedulertest.NewRaft(t)
	direct := &forwarder{raft: local, clock: clock}
	fw := &forwarder{raft: follower{addr: "leader"}, net: loopback{h: serveApply(remote, trusting{}, clock, nil)}}
	seen := map[scheduler.CommandType]bool{}
	for i, st := range resultScenario(now) {
		lc, rc := st(local.FSM()), st(remote.FSM())
		lv, lerr := direct.Apply(context.Background(), lc)
		rv, rerr := fw.Apply(context.Background(), rc)
		if lerr != nil || rerr != nil {
			t.Fatalf("step %d %s: local %v, forwarded %v", i, lc.Type(), lerr, rerr)
		}
		want := reflect.TypeOf(scheduler.NewResult(lc.Type())).Elem()
		if reflect.TypeOf(lv) != want || reflect.TypeOf(rv) != want {
			t.Errorf("%s: local %T, forwarded %T, registry %s", lc.Type(), lv, rv, want)
		}
		if !reflect.DeepEqual(lv, rv) {
			t.Errorf("%s: values differ:\n local     %#v\n forwarded %#v", lc.Type(), lv, rv)
		}
		seen[lc.Type()] = true
	}
	for _, ct := range scheduler.CommandTypes() {
		if !seen[ct] {
			t.Errorf("%s has no step in the result scenario", ct)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
