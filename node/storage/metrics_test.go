package storage

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// TestBacklog: an object only a departed node holds is short of copies,
// one this node holds is not; an object waiting for its upload is in the
// mirror queue until the uploader has run.
func TestBacklog(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	ctx := t.Context()
	if r, q := f.s.Replication(), f.s.MirrorQueue(); r != (Replication{}) || q != (MirrorQueue{}) {
		t.Fatalf("empty store: %+v, %+v", r, q)
	}
	here, err := f.local.Put(ctx, bytes.NewReader(randomBytes(100)))
	if err != nil {
		t.Fatal(err)
	}
	// Stored here only for its CID: the index says n2, not alive, holds it.
	gone, err := f.local.Put(ctx, bytes.NewReader(randomBytes(100)))
	if err != nil {
		t.Fatal(err)
	}
	schedulertest.MustApply(t, f.raft, &scheduler.BlobStored{At: f.clock.Now(), CID: here.CID.String(), Size: here.Size, Kind: scheduler.BlobDataset, Node: "n1"})
	schedulertest.MustApply(t, f.raft, &scheduler.BlobStored{At: f.clock.Now(), CID: gone.CID.String(), Size: gone.Size, Kind: scheduler.BlobDataset, Node: "n2"})
	f.s.up.enqueue(here.CID)
	if got, want := f.s.Replication(), (Replication{Objects: 2, ShortOfCopies: 1}); got != want {
		t.Errorf("Replication = %+v, want %+v", got, want)
	}
	if got, want := f.s.MirrorQueue(), (MirrorQueue{Pending: 1}); got != want {
		t.Errorf("MirrorQueue = %+v, want %+v", got, want)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.s.up.run(runCtx) }()
	defer func() { stop(); <-done }()
	schedulertest.WaitFor(t, 30*time.Second, "the upload", func() bool { return f.s.MirrorQueue().Pending == 0 })
	if q := f.s.MirrorQueue(); q.Failures != 0 {
		t.Errorf("after the upload: %+v", q)
	}
}
