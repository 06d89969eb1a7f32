package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

// tenantKey creates a key of tenant (tier) through n and applies the
// tenant changes set on the leader.
func tenantKey(t *testing.T, c *nodetest.Cluster, tenant, tier string, set *scheduler.SetTenant) string {
	t.Helper()
	var k client.Key
	var err error
	nodetest.WaitFor(t, 30*time.Second, "a key of "+tenant, func() bool {
		k, err = c.WaitForLeader(30*time.Second).Client.CreateKey(context.Background(), tenant, tier)
		return err == nil
	})
	if set != nil {
		set.Tenant, set.At = tenant, time.Now().UTC()
		nodetest.WaitFor(t, 30*time.Second, "the tenant change", func() bool {
			_, err := c.WaitForLeader(30*time.Second).Apply(context.Background(), set)
			return err == nil
		})
	}
	return k.Key
}

// TestAPICallsMeteredExactlyAcrossLeaderKill: a tenant allowed 100 calls a
// day makes them through two followers while the leader is killed; every
// call answered is metered once, none more, and the 101st is refused with
// 429 and Retry-After on every node.
func TestAPICallsMeteredExactlyAcrossLeaderKill(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Voters(3)...)
	leader := c.WaitForLeader(30 * time.Second)
	// Paid, so that the per-key rate limit stays out of the way; an
	// operator's override gives it the free tier's daily calls.
	key := tenantKey(t, c, "meter", "paid", &scheduler.SetTenant{Quotas: map[string]*float64{scheduler.QuotaAPICalls: ptr(100.0)}})
	var followers []*nodetest.Node
	for _, n := range c.Nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	var answered, refused atomic.Int64
	get := func(n *nodetest.Node) (int, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, n.URL+"/jobs", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil // not answered
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		switch {
		case resp.StatusCode == http.StatusOK:
			answered.Add(1)
		case resp.StatusCode == http.StatusTooManyRequests && strings.Contains(string(b), "quota_exceeded"):
			refused.Add(1)
		}
		return resp.StatusCode, resp.Header
	}
	killed := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			n := followers[w%2]
			for {
				st, _ := get(n)
				if answered.Load() >= 30 {
					once.Do(func() { c.Kill(leader); close(killed) })
				}
				if st == http.StatusTooManyRequests {
					return
				}
			}
		})
	}
	wg.Wait()
	<-killed
	if got := answered.Load(); got != 100 {
		t.Fatalf("%d calls answered, want exactly 100", got)
	}
	now := time.Now().UTC()
	for _, n := range followers {
		nodetest.WaitFor(t, 30*time.Second, "the ledger on "+n.ID(), func() bool {
			u := n.State().Usage("meter", now, now)
			return u.APICalls == 100
		})
		st, h := get(n)
		if st != http.StatusTooManyRequests {
			t.Fatalf("call 101 on %s: status %d, want 429", n, st)
		}
		if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra <= 0 || ra > 86400 {
			t.Fatalf("Retry-After %q, want the seconds to the next UTC day", h.Get("Retry-After"))
		}
	}
	// Refused calls are not counted, and a restarted node agrees.
	c.Restart(leader)
	c.WaitReady(leader, time.Minute)
	nodetest.WaitFor(t, 30*time.Second, "the restarted node's ledger", func() bool {
		return leader.State().Usage("meter", now, now).APICalls == 100
	})
	if u := followers[0].State().Usage("meter", now, now); u.APICalls != 100 {
		t.Fatalf("ledger %d after refusals, want 100", u.APICalls)
	}
}

func ptr[T any](v T) *T { return &v }

// TestGPUMinuteQuotaCutsARunningJob: a tenant with a little GPU time left
// gets a GPU job whose time limit is cut to it; the job ends timed_out
// naming the quota, the month is charged no more than the quota, and the
// next GPU submission is refused with 429.
func TestGPUMinuteQuotaCutsARunningJob(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true, GPUs: "fake:1xA100-80GB"})
	leader := c.WaitForLeader(30 * time.Second)
	// 1.5 GPU-seconds: the job gets a one-second limit.
	key := tenantKey(t, c, "short", "free", &scheduler.SetTenant{Quotas: map[string]*float64{scheduler.QuotaGPUMinutes: ptr(0.025)}})
	cl := client.New(leader.URL, key)
	ctx := context.Background()
	gen, err := cl.SubmitJob(ctx, scheduler.JobRequest{Type: "generate_dataset", Params: json.RawMessage(`{"size":64}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	g := waitState(t, leader, gen.ID, 2*time.Minute, terminal)
	if g.State != scheduler.StateSucceeded {
		t.Fatalf("dataset job %s: %+v", g.State, g.Error)
	}
	// 2000 iterations at size 64 take far longer than a second.
	long, err := cl.SubmitJob(ctx, scheduler.JobRequest{Type: "reconstruct", Dataset: g.Outputs["dataset"],
		Params: json.RawMessage(`{"iterations":2000}`), Resources: scheduler.Resources{GPUs: 1}}, "")
	if err != nil {
		t.Fatal(err)
	}
	j := waitState(t, leader, long.ID, 2*time.Minute, terminal)
	if j.State != scheduler.StateTimedOut || !strings.Contains(j.Reason, scheduler.QuotaGPUMinutes) ||
		j.Error == nil || j.Error.Code != "quota_exceeded" {
		t.Fatalf("cut job: %s, reason %q, error %+v; want timed_out naming the quota", j.State, j.Reason, j.Error)
	}
	now := time.Now().UTC()
	if u := leader.State().Usage("short", now, now); u.GPUTime != time.Second {
		t.Fatalf("charged %s, want the 1s limit", u.GPUTime)
	}
	_, err = cl.SubmitJob(ctx, scheduler.JobRequest{Type: "reconstruct", Dataset: g.Outputs["dataset"], Resources: scheduler.Resources{GPUs: 1}}, "")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != "quota_exceeded" || !strings.Contains(ae.Message, scheduler.QuotaGPUMinutes) {
		t.Fatalf("GPU submission with nothing left: %v, want 429 quota_exceeded naming the quota", err)
	}
	// A CPU job is still taken.
	if _, err := cl.SubmitJob(ctx, scheduler.JobRequest{Type: "reconstruct", Dataset: g.Outputs["dataset"]}, ""); err != nil {
		t.Fatalf("CPU job: %v", err)
	}
}

// TestDedicatedPoolAcrossNodes: a node of pool "acme" runs only the jobs
// of the tenant assigned to it; that tenant, pinned, runs only there.
func TestDedicatedPoolAcrossNodes(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t,
		nodetest.Spec{Voter: true, GPUs: "fake:1xA100-80GB"},
		nodetest.Spec{Voter: true, GPUs: "fake:1xA100-80GB", Pool: "acme"},
		nodetest.Spec{Voter: true},
	)
	leader := c.WaitForLeader(30 * time.Second)
	nodetest.WaitFor(t, 30*time.Second, "three registered nodes", func() bool {
		nodes, err := leader.Client.Nodes(context.Background())
		return err == nil && len(nodes) == 3
	})
	shared, dedicated := c.Nodes[0].ID(), c.Nodes[1].ID()
	acme := client.New(leader.URL, tenantKey(t, c, "acme", "paid", &scheduler.SetTenant{Pool: ptr("acme"), PoolOnly: ptr(true)}))
	other := client.New(leader.URL, tenantKey(t, c, "other", "paid", nil))
	ctx := context.Background()
	gpu := scheduler.Resources{GPUs: 1}
	var otherJobs, acmeJobs []string
	for range 3 {
		j, err := other.SubmitJob(ctx, scheduler.JobRequest{Type: "generate_dataset", Params: json.RawMessage(`{"size":16}`), Resources: gpu}, "")
		if err != nil {
			t.Fatal(err)
		}
		otherJobs = append(otherJobs, j.ID)
		j, err = acme.SubmitJob(ctx, scheduler.JobRequest{Type: "generate_dataset", Params: json.RawMessage(`{"size":16}`), Resources: gpu}, "")
		if err != nil {
			t.Fatal(err)
		}
		acmeJobs = append(acmeJobs, j.ID)
	}
	for _, id := range otherJobs {
		if j := waitState(t, leader, id, 2*time.Minute, terminal); j.State != scheduler.StateSucceeded || j.Node != shared {
			t.Errorf("other's job %s: %s on %s, want succeeded on the shared node %s", id, j.State, j.Node, shared)
		}
	}
	for _, id := range acmeJobs {
		if j := waitState(t, leader, id, 2*time.Minute, terminal); j.State != scheduler.StateSucceeded || j.Node != dedicated {
			t.Errorf("acme's job %s: %s on %s, want succeeded on its pool's node %s", id, j.State, j.Node, dedicated)
		}
	}
	// GET /nodes shows each node's pool.
	nodes, err := leader.Client.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		want := "shared"
		if n.ID == dedicated {
			want = "acme"
		}
		if n.Pool != want {
			t.Errorf("node %s pool %q, want %q", n.ID, n.Pool, want)
		}
	}
}
