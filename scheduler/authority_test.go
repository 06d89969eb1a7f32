package scheduler

import (
	"context"
	"errors"
	"testing"
	"time"
)

// authFixture: keys of an admin, of tenant acme (paid) and of tenant
// freeco (free, expiring at t0+1h); nodes n1 (peer p1) and n2 (peer p2);
// job j1 of acme running on n1, with its token; down nodes n-down and
// n-down-busy (which still holds job j-busy).
func authFixture(t *testing.T) (*harness, uint64) {
	h := newHarness(t)
	h.base() // acme (hash-acme), other (hash-other), n1, ds1
	exp := t0.Add(time.Hour)
	h.must(adminKeyCmd("hash-admin", "key_admin"))
	free := keyCmd("hash-free", "freeco", PriorityFree)
	free.Key.ExpiresAt = &exp
	h.must(free)
	n1 := nodeCmd("n1", "i1", 2, a100s(2)...)
	n1.Node.PeerID = "p1"
	h.must(n1)
	n2 := nodeCmd("n2", "i2", 2)
	n2.Node.PeerID = "p2"
	h.must(n2)
	h.must(&PutTenantKeys{At: t0, Tenant: "acme", Keys: []SealedKey{{Version: 1, Master: "m", Sealed: []byte{1}}}})
	tok := h.running("j1", 0)
	// n-down is down; n-down-busy is down and still holds a job.
	for _, id := range []string{"n-down", "n-down-busy"} {
		h.must(nodeCmd2(id, "p-"+id))
	}
	h.must(submitCmd("j-busy", "acme", PriorityPaid, "", 0))
	h.must(&AssignJob{At: t0, JobID: "j-busy", Node: "n-down-busy", Incarnation: "i-n-down-busy", ExpiresAt: t0.Add(time.Minute)})
	for _, id := range []string{"n-down", "n-down-busy"} {
		h.must(&SetNodeState{At: t0, ID: id, State: NodeDown})
	}
	return h, tok
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	h, tok := authFixture(t)
	admin := Principal{Peer: "p2", KeyHash: "hash-admin", Now: t0}
	acme := Principal{Peer: "p2", KeyHash: "hash-acme", Now: t0}
	free := Principal{Peer: "p2", KeyHash: "hash-free", Now: t0}
	expired := Principal{Peer: "p2", KeyHash: "hash-free", Now: t0.Add(2 * time.Hour)}
	forged := Principal{Peer: "p2", KeyHash: "hash-nobody", Now: t0}
	n1, n2, stranger := Principal{Peer: "p1"}, Principal{Peer: "p2"}, Principal{Peer: "p9"}
	job := func(tenant, prio string) *SubmitJob { return submitCmd("jx", tenant, prio, "", 0) }
	keysAdd := &PutTenantKeys{At: t0, Tenant: "acme", PrevGen: 1, Keys: []SealedKey{{Version: 1, Master: "m", Sealed: []byte{1}}, {Version: 2, Master: "m", Sealed: []byte{2}}}}
	keysRewrap := &PutTenantKeys{At: t0, Tenant: "acme", PrevGen: 1, Keys: []SealedKey{{Version: 1, Master: "m2", Sealed: []byte{9}}}}
	// Two nodes made acme's first key at once: the slower one read
	// generation 0 and proposes its own version 1.
	keysRace := &PutTenantKeys{At: t0, Tenant: "acme", PrevGen: 0, Keys: []SealedKey{{Version: 1, Master: "m", Sealed: []byte{7}}}}
	cases := []struct {
		name string
		c    Command
		p    Principal
		ok   bool
	}{
		{"admin creates a key", keyCmd("hx", "acme", PriorityFree), admin, true},
		{"tenant creates a key", keyCmd("hx", "acme", PriorityFree), acme, false},
		{"node creates a key", keyCmd("hx", "acme", PriorityFree), n1, false},
		{"forged key creates a key", keyCmd("hx", "acme", PriorityFree), forged, false},
		{"admin revokes any key", &RevokeKey{ID: "key_x"}, admin, true},
		{"tenant revokes its own", &RevokeKey{ID: "key_x", Tenant: "acme"}, acme, true},
		{"tenant revokes another's", &RevokeKey{ID: "key_x", Tenant: "other"}, acme, false},
		{"tenant revokes without a tenant", &RevokeKey{ID: "key_x"}, acme, false},
		{"node revokes", &RevokeKey{ID: "key_x"}, n1, false},
		{"tenant submits", job("acme", PrioritySprint), acme, true},
		{"tenant submits for another", job("other", PriorityPaid), acme, false},
		{"admin submits for any", job("other", PriorityFree), admin, true},
		{"free key submits free", job("freeco", PriorityFree), free, true},
		{"free key submits paid", job("freeco", PriorityPaid), free, false},
		{"expired key submits", job("freeco", PriorityFree), expired, false},
		{"forged key submits", job("acme", PriorityFree), forged, false},
		{"node submits", job("acme", PriorityFree), n1, false},
		{"tenant cancels its job", &CancelJob{Tenant: "acme", JobID: "j1"}, acme, true},
		{"tenant cancels another's", &CancelJob{Tenant: "other", JobID: "j1"}, acme, false},
		{"tenant registers a dataset", datasetCmd("d9", "acme"), acme, true},
		{"tenant registers another's dataset", datasetCmd("d9", "other"), acme, false},
		{"tenant deletes another's dataset", &DeleteDataset{Tenant: "other", ID: "ds-other"}, acme, false},
		{"node registers itself", nodeCmd2("n3", "p3"), Principal{Peer: "p3"}, true},
		{"node registers again", nodeCmd2("n1", "p1"), n1, true},
		{"node takes another's id", nodeCmd2("n1", "p2"), n2, false},
		{"node names another peer", nodeCmd2("n3", "p1"), n2, false},
		{"a new peer takes a down node's id", nodeCmd2("n-down", "p4"), Principal{Peer: "p4"}, true},
		{"a new peer takes a down node's id while it holds a lease", nodeCmd2("n-down-busy", "p4"), Principal{Peer: "p4"}, false},
		{"node claims for itself", &AssignJob{Claim: true, JobID: "j9", Node: "n1"}, n1, true},
		{"node claims for another", &AssignJob{Claim: true, JobID: "j9", Node: "n1"}, n2, false},
		{"node assigns", &AssignJob{JobID: "j9", Node: "n2"}, n2, false},
		{"holder renews", &RenewLease{JobID: "j1", Token: tok}, n1, true},
		{"other node renews", &RenewLease{JobID: "j1", Token: tok}, n2, false},
		{"admin key renews another node's lease", &RenewLease{JobID: "j1", Token: tok}, Principal{Peer: "p2", KeyHash: "hash-admin"}, false},
		{"stale token goes to the FSM", &RenewLease{JobID: "j1", Token: tok + 100}, n2, true},
		{"holder completes", &CompleteJob{JobID: "j1", Token: tok, State: StateSucceeded}, n1, true},
		{"other node completes", &CompleteJob{JobID: "j1", Token: tok, State: StateFailed}, n2, false},
		{"holder hands back", &RequeueJob{JobID: "j1", Token: tok, Voluntary: true}, n1, true},
		{"other node hands back", &RequeueJob{JobID: "j1", Token: tok, Voluntary: true}, n2, false},
		{"node requeues involuntarily", &RequeueJob{JobID: "j1", Token: tok}, n1, false},
		{"node records its copy", &BlobStored{CID: "c", Node: "n2"}, n2, true},
		{"node records another's copy", &BlobStored{CID: "c", Node: "n1"}, n2, false},
		{"node drops another's copy", &BlobDropped{CID: "c", Node: "n1"}, n2, false},
		{"stranger records a copy", &BlobStored{CID: "c", Node: "n9"}, stranger, false},
		{"node records a mirrored copy", &BlobMirrored{CID: "c"}, n2, true},
		{"stranger records a mirrored copy", &BlobMirrored{CID: "c"}, stranger, false},
		{"node updates its GPUs", &UpdateGPUs{Node: "n1"}, n1, true},
		{"node updates another's GPUs", &UpdateGPUs{Node: "n1"}, n2, false},
		{"node leaves", &SetNodeState{ID: "n2", State: NodeLeft}, n2, true},
		{"node marks itself ready", &SetNodeState{ID: "n2", State: NodeReady}, n2, false},
		{"node marks another down", &SetNodeState{ID: "n1", State: NodeDown}, n2, false},
		{"node touches keys", &TouchKeys{}, n2, true},
		{"stranger touches keys", &TouchKeys{}, stranger, false},
		{"admin rewraps", keysRewrap, admin, true},
		{"tenant adds a data key", keysAdd, acme, true},
		{"node adds a data key", keysAdd, n1, true},
		{"tenant rewraps", keysRewrap, acme, false},
		{"node rewraps", keysRewrap, n1, false},
		{"node loses the race for the first key: the FSM answers conflict", keysRace, n1, true},
		{"other tenant adds a data key", keysAdd, Principal{Peer: "p2", KeyHash: "hash-other"}, false},
		{"stranger adds a data key", keysAdd, stranger, false},
		{"admin sets a tenant", &SetTenant{Tenant: "acme", Tier: ptrTo("paid")}, admin, true},
		{"tenant sets its own tier", &SetTenant{Tenant: "acme", Tier: ptrTo("paid")}, acme, false},
		{"node sets a tenant", &SetTenant{Tenant: "acme"}, n1, false},
		{"node meters its calls", &MeterCalls{Node: "n2", Seq: 1}, n2, true},
		{"node meters for another node", &MeterCalls{Node: "n1", Seq: 1}, n2, false},
		{"stranger meters calls", &MeterCalls{Node: "n9", Seq: 1}, stranger, false},
		{"tenant key from a stranger meters calls", &MeterCalls{Node: "n2", Seq: 1}, Principal{Peer: "p9", KeyHash: "hash-acme"}, false},
		{"admin drains a node", &DrainNode{ID: "n2"}, admin, true},
		{"tenant drains a node", &DrainNode{ID: "n2"}, acme, false},
		{"node drains itself", &DrainNode{ID: "n2"}, n2, false},
		{"node puts an operator", &PutOperator{}, n1, false},
		{"admin assigns a batch", &AssignBatch{}, admin, false},
		{"node expires bundles", &ExpireBundles{}, n1, false},
		{"admin forgets blobs", &ForgetBlobs{}, admin, false},
		{"admin sets the cluster config", &SetClusterConfig{}, admin, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := h.f.Authorize(tc.c, tc.p)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrForbidden) {
				t.Fatalf("got %v, want ErrForbidden", err)
			}
		})
	}
}

func nodeCmd2(id, peer string) *RegisterNode {
	c := nodeCmd(id, "i-"+id, 1)
	c.Node.PeerID = peer
	return c
}

// Every leader-only and admin command is refused from a node without a
// key, whatever it says.
func TestAuthorizeRefusesPrivilegedCommandsFromNodes(t *testing.T) {
	t.Parallel()
	h, _ := authFixture(t)
	for _, ct := range CommandTypes() {
		if a := AuthorityOf(ct); a != AuthLeader && a != AuthAdmin {
			continue
		}
		c := commands[ct].new()
		for _, p := range []Principal{{Peer: "p1"}, {Peer: "p1", KeyHash: "hash-acme", Now: t0}} {
			if err := h.f.Authorize(c, p); !errors.Is(err, ErrForbidden) {
				t.Errorf("%s from %+v: %v, want ErrForbidden", ct, p, err)
			}
		}
	}
}

func TestCallerContext(t *testing.T) {
	t.Parallel()
	if CallerSecret(context.Background()) != "" {
		t.Fatal("a bare context has a caller")
	}
	if got := CallerSecret(WithCaller(context.Background(), "s3cret")); got != "s3cret" {
		t.Fatalf("CallerSecret = %q", got)
	}
}

// BenchmarkAuthorize measures the leader's check of one forwarded API
// write (key lookup, expiry, tenant and tier rules).
func BenchmarkAuthorize(b *testing.B) {
	h := newHarness(b)
	h.base()
	c := submitCmd("jx", "acme", PriorityPaid, "", 0)
	p := Principal{Peer: "p2", KeyHash: "hash-acme", Now: t0}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.f.Authorize(c, p); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFirstDataKeyRace: two nodes sealing a tenant's first output at once
// both propose version 1; the loser must hear ErrConflict (read again and
// use the winner's key), not ErrForbidden, or its job fails.
func TestFirstDataKeyRace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	n1 := nodeCmd("n1", "i1", 2)
	n1.Node.PeerID = "p1"
	h.must(n1)
	n2 := nodeCmd("n2", "i2", 2)
	n2.Node.PeerID = "p2"
	h.must(n2)
	first := &PutTenantKeys{At: t0, Tenant: "acme", Keys: []SealedKey{{Version: 1, Master: "m", Sealed: []byte{1}}}}
	second := &PutTenantKeys{At: t0, Tenant: "acme", Keys: []SealedKey{{Version: 1, Master: "m", Sealed: []byte{2}}}}
	if err := h.f.Authorize(first, Principal{Peer: "p1"}); err != nil {
		t.Fatalf("first key refused: %v", err)
	}
	h.must(first)
	if err := h.f.Authorize(second, Principal{Peer: "p2"}); err != nil {
		t.Fatalf("second node's stale proposal refused by authority (%v); want it to reach the FSM", err)
	}
	if _, err := h.apply(second); !errors.Is(err, ErrConflict) {
		t.Fatalf("second node's stale proposal: got %v, want ErrConflict", err)
	}
	// Read again: the current generation with the first key changed is
	// still refused.
	second.PrevGen = 1
	if err := h.f.Authorize(second, Principal{Peer: "p2"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("rewrap by a node at the current generation: got %v, want ErrForbidden", err)
	}
}
