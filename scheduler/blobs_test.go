package scheduler

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func storedOn(cid, node string) *BlobStored {
	return &BlobStored{At: t0, CID: cid, Size: 100, Kind: BlobBundle, Node: node}
}

func completeWith(id string, tok uint64, bundle string) *CompleteJob {
	return &CompleteJob{At: t0.Add(time.Minute), JobID: id, Token: tok, State: StateSucceeded,
		RunBundle: &BundleRef{CID: bundle, SHA256: "s", Size: 100}}
}

// TestDurabilityRule walks the rule a succeeded job must meet: its bundle on
// min(replicas, ready nodes) live nodes, or on one and the mirror.
func TestDurabilityRule(t *testing.T) {
	t.Parallel()
	runApplyCases(t, []applyCase{
		{name: "bundle nowhere", prep: func(h *harness) Command {
			h.base()
			return completeWith("j1", h.running("j1", 0), "new")
		}, err: ErrNotDurable},
		{name: "one of two copies", prep: func(h *harness) Command {
			h.base() // n1 and the store node are ready: two copies wanted
			h.must(storedOn("new", "n1"))
			return completeWith("j1", h.running("j1", 0), "new")
		}, err: ErrNotDurable},
		{name: "two copies", prep: func(h *harness) Command {
			h.base()
			h.must(storedOn("new", "n1"))
			h.must(storedOn("new", storeNode))
			return completeWith("j1", h.running("j1", 0), "new")
		}, check: func(t *testing.T, h *harness, _ any) {
			if j := h.job("j1"); j.State != StateSucceeded {
				t.Fatalf("state %s", j.State)
			}
		}},
		{name: "one copy and the mirror", prep: func(h *harness) Command {
			h.base()
			h.must(storedOn("new", "n1"))
			h.must(&BlobMirrored{At: t0, CID: "new"})
			return completeWith("j1", h.running("j1", 0), "new")
		}},
		{name: "a copy on a down node does not count", prep: func(h *harness) Command {
			h.base()
			tok := h.running("j1", 0)
			h.must(nodeCmd("n2", "i2", 1))
			h.must(storedOn("new", "n1"))
			h.must(storedOn("new", "n2"))
			h.must(&SetNodeState{At: t0, ID: "n2", State: NodeDown})
			return completeWith("j1", tok, "new")
		}, err: ErrNotDurable},
		{name: "replicas 1 needs one copy", prep: func(h *harness) Command {
			h.base()
			h.must(&SetClusterConfig{At: t0, Config: ClusterConfig{Replicas: 1}})
			h.must(storedOn("new", "n1"))
			return completeWith("j1", h.running("j1", 0), "new")
		}},
		{name: "a failed job needs no bundle", prep: func(h *harness) Command {
			h.base()
			c := completeWith("j1", h.running("j1", 0), "new")
			c.State, c.Error = StateFailed, &JobError{Code: "x", Message: "y"}
			return c
		}},
		{name: "dataset not durable", prep: func(h *harness) Command {
			h.base()
			c := datasetCmd("d9", "acme")
			return c
		}, err: ErrNotDurable},
	})
}

func TestSingleNodeNeedsOneCopy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.must(keyCmd("hash-acme", "acme", PriorityPaid))
	h.must(nodeCmd("solo", "i1", 1))
	if h.f.WantCopies() != 1 {
		t.Fatalf("WantCopies = %d with one ready node", h.f.WantCopies())
	}
	h.must(&BlobStored{At: t0, CID: "c1", Size: 5, Kind: BlobDataset, Node: "solo"})
	h.must(&RegisterDataset{At: t0, Dataset: Dataset{ID: "d1", Tenant: "acme", Name: "n", CID: "p1", StoredCID: "c1", StoredSize: 5, Size: 3}})
	h.must(nodeCmd("two", "i2", 1))
	if h.f.WantCopies() != 2 || h.f.Durable("c1") == nil {
		t.Fatalf("a second node must raise the want to 2: want %d, durable %v", h.f.WantCopies(), h.f.Durable("c1"))
	}
}

func TestBlobIndexCommands(t *testing.T) {
	t.Parallel()
	runApplyCases(t, []applyCase{
		{name: "stored twice", prep: func(h *harness) Command {
			h.base()
			h.must(storedOn("x", "n1"))
			return storedOn("x", "n1")
		}, err: ErrConflict},
		{name: "stored with another size", prep: func(h *harness) Command {
			h.base()
			h.must(storedOn("x", "n1"))
			c := storedOn("x", storeNode)
			c.Size = 7
			return c
		}, err: ErrConflict},
		{name: "stored of unknown kind", prep: func(h *harness) Command {
			c := storedOn("x", "n1")
			c.Kind = "junk"
			return c
		}, err: ErrInvalid},
		{name: "dropped", prep: func(h *harness) Command {
			h.base()
			h.must(storedOn("x", "n1"))
			h.must(storedOn("x", storeNode))
			return &BlobDropped{At: t0, CID: "x", Node: "n1", Reason: "corrupt"}
		}, check: func(t *testing.T, h *harness, _ any) {
			b, _ := h.f.Blob("x")
			if !slices.Equal(b.Holders, []string{storeNode}) {
				t.Fatalf("holders %v", b.Holders)
			}
		}},
		{name: "dropped by a non-holder", prep: func(h *harness) Command {
			h.base()
			h.must(storedOn("x", "n1"))
			return &BlobDropped{At: t0, CID: "x", Node: storeNode}
		}, err: ErrNotFound},
		{name: "mirrored twice", prep: func(h *harness) Command {
			h.base()
			h.must(storedOn("x", "n1"))
			h.must(&BlobMirrored{At: t0, CID: "x"})
			return &BlobMirrored{At: t0, CID: "x"}
		}, err: ErrConflict},
		{name: "forget referenced", prep: func(h *harness) Command {
			h.base()
			return &ForgetBlobs{At: t0, CIDs: []string{"cid-ds1"}}
		}, err: ErrConflict},
		{name: "forget unreferenced", prep: func(h *harness) Command {
			h.base()
			h.must(storedOn("x", "n1"))
			return &ForgetBlobs{At: t0, CIDs: []string{"x", "cid-ds1"}}
		}, check: func(t *testing.T, h *harness, v any) {
			if _, ok := h.f.Blob("x"); ok || !h.f.Tombstoned("x") {
				t.Fatal("x must be forgotten and tombstoned")
			}
			if _, ok := h.f.Blob("cid-ds1"); !ok {
				t.Fatal("a referenced blob was forgotten")
			}
			if !slices.Equal(v.([]string), []string{"x"}) {
				t.Fatalf("forgot %v", v)
			}
		}},
		{name: "stored again after forget clears the tombstone", prep: func(h *harness) Command {
			h.base()
			h.must(storedOn("x", "n1"))
			h.must(&ForgetBlobs{At: t0, CIDs: []string{"x"}})
			return storedOn("x", "n1")
		}, check: func(t *testing.T, h *harness, _ any) {
			if h.f.Tombstoned("x") {
				t.Fatal("tombstone kept")
			}
		}},
		{name: "replicas out of range", prep: func(h *harness) Command {
			return &SetClusterConfig{At: t0, Config: ClusterConfig{Replicas: 99}}
		}, err: ErrInvalid},
	})
}

func TestTenantKeys(t *testing.T) {
	t.Parallel()
	k := func(v uint32, master string) SealedKey {
		return SealedKey{Version: v, Master: master, Sealed: []byte("sealed-" + master)}
	}
	runApplyCases(t, []applyCase{
		{name: "first key", prep: func(h *harness) Command {
			h.base()
			return &PutTenantKeys{At: t0, Tenant: "acme", Keys: []SealedKey{k(1, "m1")}}
		}, check: func(t *testing.T, h *harness, _ any) {
			ten, _ := h.f.Tenant("acme")
			if len(ten.Keys) != 1 || ten.KeysGen != 1 {
				t.Fatalf("tenant %+v", ten)
			}
		}},
		{name: "concurrent first keys: the second is refused", prep: func(h *harness) Command {
			h.base()
			h.must(&PutTenantKeys{At: t0, Tenant: "acme", Keys: []SealedKey{k(1, "m1")}})
			return &PutTenantKeys{At: t0, Tenant: "acme", Keys: []SealedKey{k(1, "other")}}
		}, err: ErrConflict},
		{name: "rotation keeps every version", prep: func(h *harness) Command {
			h.base()
			h.must(&PutTenantKeys{At: t0, Tenant: "acme", Keys: []SealedKey{k(1, "m1")}})
			return &PutTenantKeys{At: t0, Tenant: "acme", PrevGen: 1, Keys: []SealedKey{k(2, "m2"), k(1, "m2")}}
		}, check: func(t *testing.T, h *harness, _ any) {
			ten, _ := h.f.Tenant("acme")
			if len(ten.Keys) != 2 || ten.Keys[0].Version != 1 || ten.Keys[1].Master != "m2" {
				t.Fatalf("keys %+v", ten.Keys)
			}
		}},
		{name: "losing a version is refused", prep: func(h *harness) Command {
			h.base()
			h.must(&PutTenantKeys{At: t0, Tenant: "acme", Keys: []SealedKey{k(1, "m1")}})
			return &PutTenantKeys{At: t0, Tenant: "acme", PrevGen: 1, Keys: []SealedKey{k(2, "m1")}}
		}, err: ErrConflict},
		{name: "repeated version", prep: func(h *harness) Command {
			h.base()
			return &PutTenantKeys{At: t0, Tenant: "acme", Keys: []SealedKey{k(1, "m1"), k(1, "m2")}}
		}, err: ErrInvalid},
		{name: "unknown tenant", prep: func(h *harness) Command {
			return &PutTenantKeys{At: t0, Tenant: "nobody", Keys: []SealedKey{k(1, "m1")}}
		}, err: ErrNotFound},
	})
}

func TestRetention(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base() // acme is paid, other is free
	h.must(storedOn("bun-free", "n1"))
	h.must(storedOn("bun-free", storeNode))
	h.must(storedOn("bun-paid", "n1"))
	h.must(storedOn("bun-paid", storeNode))
	tok := h.running("jp", 0)
	h.must(completeWith("jp", tok, "bun-paid"))
	h.must(&SubmitJob{At: t0, Job: Job{ID: "jf", Tenant: "other", Type: "reconstruct", Priority: PriorityFree, Dataset: "ds-other"}})
	h.must(&AssignJob{At: t0, JobID: "jf", Node: "n1", Incarnation: "i1", ExpiresAt: t0.Add(time.Minute)})
	h.must(completeWith("jf", h.job("jf").Lease.Token, "bun-free"))

	finished := t0.Add(time.Minute)
	if got := h.f.ExpiredBundles(finished.Add(BundleRetention - time.Second)); len(got) != 0 {
		t.Fatalf("expired before 30 days: %v", got)
	}
	got := h.f.ExpiredBundles(finished.Add(BundleRetention))
	if !slices.Equal(got, []string{"jf"}) {
		t.Fatalf("expired = %v, want only the free tenant's job", got)
	}
	before := h.f.StoredBytes("other")
	h.must(&ExpireBundles{At: finished.Add(BundleRetention), Jobs: got})
	if !h.job("jf").BundleExpired || h.job("jp").BundleExpired {
		t.Fatal("wrong bundle expired")
	}
	if after := h.f.StoredBytes("other"); after != before-100 {
		t.Fatalf("stored bytes %d -> %d, want the bundle's 100 bytes gone", before, after)
	}
	garbage := h.f.Garbage(finished.Add(BundleRetention))
	if !slices.Contains(garbage, "bun-free") || slices.Contains(garbage, "bun-paid") {
		t.Fatalf("garbage = %v", garbage)
	}
	if _, err := h.apply(&ExpireBundles{At: finished.Add(BundleRetention), Jobs: got}); !errors.Is(err, ErrConflict) {
		t.Fatalf("expiring twice: %v", err)
	}
}

func TestStoredBytesDeduplicates(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	// A second dataset of acme sharing ds1's stored content counts once.
	h.must(&RegisterDataset{At: t0, Dataset: Dataset{ID: "dup", Tenant: "acme", Name: "n", CID: "cid-ds1", SHA256: "s", Size: 1024}})
	if got := h.f.StoredBytes("acme"); got != 1024 {
		t.Fatalf("StoredBytes = %d, want 1024", got)
	}
}
