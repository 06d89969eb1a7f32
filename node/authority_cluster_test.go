package node_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/mesh"
	"github.com/pwmesh/pwmesh/node"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// forged is what an attacker puts on the apply protocol: the wire shape of
// a forwarded write, built by hand.
type forged struct {
	Command []byte `json:"command"`
	Caller  string `json:"caller,omitempty"`
}

type forgedReply struct {
	Value json.RawMessage `json:"value"`
	Error *struct {
		Kind    string `json:"kind"`
		Message string `json:"message"`
	} `json:"error"`
}

// peerCaller is a libp2p host that calls a peer's protocol (*mesh.Mesh).
type peerCaller interface {
	Call(ctx context.Context, peerID, protocol string, req []byte) ([]byte, error)
}

// sendApply sends c from a libp2p host to the leader's apply protocol,
// with caller as the API key secret ("" for none), and returns the kind of
// error the leader answered ("" for success).
func sendApply(t *testing.T, from peerCaller, leader *nodetest.Node, c scheduler.Command, caller string) string {
	t.Helper()
	b, err := scheduler.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(forged{Command: b, Caller: caller})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := from.Call(ctx, leader.Mesh().PeerID(), node.ApplyProtocol, req)
	if err != nil {
		t.Fatalf("%s: call: %v", c.Type(), err)
	}
	var r forgedReply
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatalf("%s: reply %q: %v", c.Type(), resp, err)
	}
	if r.Error != nil {
		return r.Error.Kind
	}
	return ""
}

// TestPeerWithTheClusterKeyCannotTakeOver: a worker node (it holds the
// cluster key, it is not a voter) sends every admin and leader-only command
// and uses another node's lease: the leader refuses each with "forbidden"
// and its state does not move. A forged caller key is refused too; the
// admin's real key goes through.
func TestPeerWithTheClusterKeyCannotTakeOver(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true}, nodetest.Spec{})
	leader := c.WaitForLeader(30 * time.Second)
	attacker := c.Nodes[1]
	c.WaitReady(attacker, 30*time.Second)
	ctx := context.Background()

	// The victim: a node registered from another peer, running a job under
	// a long lease (its region is nowhere, so only this assignment places it).
	now := time.Now()
	victim := scheduler.Node{ID: "victim", Region: "local", Slots: 1, Incarnation: "v1", PeerID: "12D3KooWvictimvictimvictimvictimvictimvictimvic"}
	for _, cmd := range []scheduler.Command{
		&scheduler.RegisterNode{At: now, Node: victim},
		&scheduler.SubmitJob{At: now, Job: scheduler.Job{ID: "job-victim", Tenant: node.AdminTenant, Type: "calibrate", Priority: "paid", Region: "nowhere"}},
		&scheduler.AssignJob{At: now, JobID: "job-victim", Node: "victim", Incarnation: "v1", ExpiresAt: now.Add(time.Hour)},
	} {
		if _, err := leader.Apply(ctx, cmd); err != nil {
			t.Fatalf("set up %s: %v", cmd.Type(), err)
		}
	}
	before, _ := leader.Job("job-victim")
	tok := before.Lease.Token
	keys, config := len(leader.State().Keys("")), leader.State().Config()
	self := attacker.ID()

	attacks := []scheduler.Command{
		&scheduler.CreateKey{At: now, Key: scheduler.APIKey{ID: "key_evil", Hash: "evil", Tenant: "evil", Tier: "paid", Admin: true}},
		&scheduler.RevokeKey{At: now, ID: leader.State().Keys("")[0].ID},
		&scheduler.SetClusterConfig{At: now, Config: scheduler.ClusterConfig{Replicas: 1}},
		&scheduler.AssignBatch{Assignments: []scheduler.AssignJob{{At: now, JobID: "job-victim", Node: self, ExpiresAt: now.Add(time.Hour)}}},
		&scheduler.AssignJob{At: now, JobID: "job-victim", Node: self, ExpiresAt: now.Add(time.Hour)},
		&scheduler.AssignJob{Claim: true, At: now, JobID: "job-victim", Node: "victim", Incarnation: "v1", ExpiresAt: now.Add(time.Hour)},
		&scheduler.ExpireBundles{At: now, Jobs: []string{"job-victim"}},
		&scheduler.ForgetBlobs{At: now, CIDs: []string{"x"}},
		&scheduler.PutOperator{At: now, Entry: scheduler.OperatorEntry{Key: "op", Ref: scheduler.BundleRef{CID: "evil"}}},
		&scheduler.RenewLease{At: now, JobID: "job-victim", Token: tok, ExpiresAt: now.Add(2 * time.Hour)},
		&scheduler.CompleteJob{At: now, JobID: "job-victim", Token: tok, State: scheduler.StateFailed},
		&scheduler.RequeueJob{At: now, JobID: "job-victim", Token: tok, Voluntary: true, Reason: "mine now"},
		&scheduler.RequeueJob{At: now, JobID: "job-victim", Token: tok, Reason: "mine now"},
		&scheduler.SetNodeState{At: now, ID: "victim", State: scheduler.NodeDown},
		&scheduler.SetNodeState{At: now, ID: leader.ID(), State: scheduler.NodeLeft},
		&scheduler.SetNodeState{At: now, ID: self, State: scheduler.NodeReady},
		&scheduler.RegisterNode{At: now, Node: scheduler.Node{ID: "victim", Region: "local", Slots: 9, Incarnation: "v2", PeerID: attacker.Mesh().PeerID()}},
		&scheduler.RegisterNode{At: now, Node: scheduler.Node{ID: "ghost", Region: "local", Slots: 9, Incarnation: "g", PeerID: victim.PeerID}},
		&scheduler.BlobStored{At: now, CID: "x", Size: 1, Kind: scheduler.BlobBundle, Node: leader.ID()},
		&scheduler.BlobDropped{At: now, CID: "x", Node: leader.ID()},
		&scheduler.UpdateGPUs{At: now, Node: "victim"},
		&scheduler.SubmitJob{At: now, Job: scheduler.Job{ID: "job-evil", Tenant: node.AdminTenant, Type: "calibrate", Priority: "sprint"}},
		&scheduler.CancelJob{At: now, Tenant: node.AdminTenant, JobID: "job-victim"},
		&scheduler.RegisterDataset{At: now, Dataset: scheduler.Dataset{ID: "ds-evil", Tenant: node.AdminTenant, CID: "x"}},
		&scheduler.DeleteDataset{At: now, Tenant: node.AdminTenant, ID: "ds-evil"},
	}
	// And the zero command of every admin and leader-only type.
	for _, ct := range scheduler.CommandTypes() {
		if a := scheduler.AuthorityOf(ct); a == scheduler.AuthLeader || a == scheduler.AuthAdmin {
			b, _ := json.Marshal(struct{}{})
			cmd, err := scheduler.Decode(append([]byte{byte(ct)}, b...))
			if err != nil {
				t.Fatal(err)
			}
			attacks = append(attacks, cmd)
		}
	}
	for _, a := range attacks {
		if kind := sendApply(t, attacker.Mesh(), leader, a, ""); kind != "forbidden" {
			t.Errorf("%s from a worker: answered %q, want forbidden", a.Type(), kind)
		}
	}
	// A bare libp2p host with the cluster key, that never registered as a
	// node, gets the same answers, and cannot even say it stored a copy.
	intruder := intruderHost(t, c)
	if err := intruder.AddPeer(leader.Mesh().PeerID(), leader.Mesh().P2PAddrs()); err != nil {
		t.Fatal(err)
	}
	for _, a := range append(attacks, &scheduler.BlobStored{At: now, CID: "x", Size: 1, Kind: scheduler.BlobBundle, Node: "intruder"},
		&scheduler.TouchKeys{At: now, Used: map[string]time.Time{"key_x": now}}) {
		if kind := sendApply(t, intruder, leader, a, ""); kind != "forbidden" {
			t.Errorf("%s from a bare host: answered %q, want forbidden", a.Type(), kind)
		}
	}
	// A forged API key is refused whatever it asks; so is one for
	// another tenant's job.
	for _, a := range []scheduler.Command{
		&scheduler.CreateKey{At: now, Key: scheduler.APIKey{ID: "key_evil2", Hash: "evil2", Tenant: "evil", Tier: "paid"}},
		&scheduler.CancelJob{At: now, Tenant: node.AdminTenant, JobID: "job-victim"},
	} {
		if kind := sendApply(t, attacker.Mesh(), leader, a, "pwm_not_a_real_key"); kind != "forbidden" {
			t.Errorf("%s with a forged key: answered %q, want forbidden", a.Type(), kind)
		}
	}

	after, _ := leader.Job("job-victim")
	if after.State != scheduler.StateRunning || after.Lease == nil || after.Lease.Token != tok || !after.Lease.ExpiresAt.Equal(before.Lease.ExpiresAt) || after.Lease.Node != "victim" {
		t.Errorf("victim's job changed: %+v (lease %+v)", after, after.Lease)
	}
	if n := len(leader.State().Keys("")); n != keys {
		t.Errorf("%d keys, want %d", n, keys)
	}
	if got := leader.State().Config(); got != config {
		t.Errorf("cluster config %+v, want %+v", got, config)
	}
	if v, ok := leader.State().Node("victim"); !ok || v.State != scheduler.NodeReady || v.PeerID != victim.PeerID || v.Slots != 1 {
		t.Errorf("victim node changed: %+v", v)
	}
	if _, ok := leader.State().Node("ghost"); ok {
		t.Error("the attacker registered a node under another peer's ID")
	}
	if _, ok := leader.Job("job-evil"); ok {
		t.Error("the attacker submitted a job")
	}

	// The admin's real key, forwarded by the same peer, is taken: the
	// refusals above were about authority, not the path.
	ok := &scheduler.CreateKey{At: now, Key: scheduler.APIKey{ID: "key_ci", Hash: "hash-ci", Tenant: "acme", Tier: "free"}}
	if kind := sendApply(t, attacker.Mesh(), leader, ok, nodetest.AdminToken); kind != "" {
		t.Fatalf("admin key forwarded: answered %q", kind)
	}
	if _, ok := leader.State().KeyByID("key_ci"); !ok {
		t.Fatal("the admin's forwarded key creation was not applied")
	}
}

// intruderHost starts a libp2p host holding c's cluster key that is no
// node of the mesh.
func intruderHost(t *testing.T, c *nodetest.Cluster) *mesh.Mesh {
	t.Helper()
	raw, err := os.ReadFile(c.ClusterKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := mesh.ParseClusterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mesh.New(mesh.Config{DataDir: t.TempDir(), NodeID: "intruder", Bind: "127.0.0.1", ClusterKey: key,
		NodeMeta: func() mesh.NodeMeta { return mesh.NodeMeta{} }, Timings: mesh.Fast()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = m.Close()
	})
	return m
}
