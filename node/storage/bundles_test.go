package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/bundle"
	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// testBundle is a real RunBundle tar of about size bytes of payload.
func testBundle(t *testing.T, jobID string, size int) bundle.Built {
	t.Helper()
	m := bundle.Manifest{SpecID: "reconstruct", Timestamp: "2026-01-01T00:00:00Z",
		Metrics:   map[string]any{"psnr_db": 30.5},
		Artifacts: map[string]string{"x_hat": "x_hat.npy"},
		Execution: bundle.Execution{JobID: jobID, JobType: "reconstruct", Tenant: "paidco", Node: "n1", Attempts: 1, FencingToken: 1,
			StartedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), FinishedAt: time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)},
	}
	b, err := bundle.Build(m, map[string][]byte{"x_hat.npy": append([]byte("\x93NUMPY\x01\x00"), randomBytes(size)...)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inClear reports whether stored shows any sign of a plain tar.
func inClear(stored []byte) bool {
	return bytes.Contains(stored, []byte(bundle.ManifestName)) || bytes.Contains(stored, []byte("ustar")) ||
		bytes.Contains(stored, []byte("\x93NUMPY"))
}

// TestBundlesAreSealedAtRest: a RunBundle is stored, kept and mirrored in
// its sealed form; the job's reference names that object and the plain
// tar's SHA-256 and size; opening it gives back the plain tar, for its
// tenant only.
func TestBundlesAreSealedAtRest(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	ctx := t.Context()
	tar := testBundle(t, "job_1", 150_000)
	b, stored, err := f.s.PutBundle(ctx, "paidco", bytes.NewReader(tar.Data))
	if err != nil {
		t.Fatal(err)
	}
	if b.SHA256 != tar.Ref.SHA256 || b.Size != tar.Ref.Size || b.CID != stored.CID.String() || b.CID == tar.Ref.CID.String() ||
		stored.Size != seal.SealedSize(tar.Ref.Size) {
		t.Fatalf("reference %+v, stored %+v; plain tar %+v", b, stored, tar.Ref)
	}
	if sealed, err := BundleSealed(b); err != nil || !sealed {
		t.Fatalf("BundleSealed = %v, %v", sealed, err)
	}
	if err := f.s.Keep(ctx, stored, scheduler.BlobBundle); err != nil {
		t.Fatal(err)
	}
	if f.fsm.Durable(b.CID) != nil {
		t.Fatal("the kept bundle is not durable under the job's CID")
	}
	rc, err := f.local.Open(ctx, stored.CID)
	onDisk := readAll(t)(rc, err)
	if inClear(onDisk) {
		t.Fatal("the disk keeps the bundle in clear")
	}
	rc2, err := f.s.OpenBundle(ctx, "paidco", b)
	if got := readAll(t)(rc2, err); !bytes.Equal(got, tar.Data) {
		t.Fatal("the opened bundle is not the plain tar")
	}
	// It seeks: a range in the third 64 KiB segment, then one in the first.
	rs, err := f.s.OpenBundle(ctx, "paidco", b)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{140_000, 65_500, 0} {
		got := make([]byte, 100)
		if _, err := rs.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rs, got); err != nil || !bytes.Equal(got, tar.Data[off:off+100]) {
			t.Fatalf("100 bytes at %d: %v", off, err)
		}
	}
	rs.Close()

	// The mirror's copy (uploaded in the background) is the sealed one.
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.s.Run(ctx2); close(done) }()
	schedulertest.WaitFor(t, 30*time.Second, "the mirror copy", func() bool { bl, _ := f.fsm.Blob(b.CID); return bl.Mirrored })
	cancel()
	<-done
	rc, err = f.mirror.Open(ctx, stored.CID)
	if m := readAll(t)(rc, err); !bytes.Equal(m, onDisk) || inClear(m) {
		t.Fatal("the mirror does not hold the sealed form")
	}

	// Another tenant's key does not open it: the tenant is bound in.
	if _, _, err := f.s.currentKey(ctx, "freeco"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(mustOpenBundle(t, f.s, "freeco", b)); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("another tenant's read: %v, want seal.ErrAuth", err)
	}
	wrong := b
	wrong.SHA256 = testBundle(t, "job_2", 10).Ref.SHA256
	// A reference naming other plaintext is refused before the tar is
	// whole, also when read exactly to its size as a download reads it.
	got, err := io.ReadAll(io.LimitReader(mustOpenBundle(t, f.s, "paidco", wrong), b.Size))
	if !errors.Is(err, cas.ErrCorrupt) || int64(len(got)) >= b.Size {
		t.Fatalf("a reference to other plaintext: %d bytes, %v; want fewer and cas.ErrCorrupt", len(got), err)
	}
}

func mustOpenBundle(t *testing.T, s *Storage, tenant string, b scheduler.BundleRef) io.Reader {
	rc, err := s.OpenBundle(t.Context(), tenant, b)
	if err != nil {
		return errReader{err}
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// TestClearBundleStillOpens: a bundle stored before bundles were sealed
// (its CID is its plain tar's) opens as stored, and seeks.
func TestClearBundleStillOpens(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	ctx := t.Context()
	tar := testBundle(t, "job_old", 20_000)
	ref, err := f.local.Put(ctx, bytes.NewReader(tar.Data))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.Keep(ctx, ref, scheduler.BlobBundle); err != nil {
		t.Fatal(err)
	}
	b := scheduler.BundleRef{CID: ref.CID.String(), SHA256: ref.SHA256, Size: ref.Size}
	if sealed, err := BundleSealed(b); err != nil || sealed {
		t.Fatalf("BundleSealed = %v, %v", sealed, err)
	}
	rc, err := f.s.OpenBundle(ctx, "paidco", b)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sk, ok := rc.(io.Seeker)
	if !ok {
		t.Fatal("a clear bundle does not seek")
	}
	if _, err := sk.Seek(100, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(rc); !bytes.Equal(got, tar.Data[100:]) {
		t.Fatal("the clear bundle reads other bytes")
	}
}

// TestBundleKeyRotation: bundles sealed under data key 1 and 2 stay
// readable after the master key is rotated, by a node that holds only the
// new master key.
func TestBundleKeyRotation(t *testing.T) {
	t.Parallel()
	old, next := masterKey("m-old"), masterKey("m-new")
	keys, _ := seal.NewKeyring(old)
	f := newFixture(t, keys)
	ctx := t.Context()
	t1, t2 := testBundle(t, "job_1", 70_000), testBundle(t, "job_2", 1000)
	b1, _, err := f.s.PutBundle(ctx, "paidco", bytes.NewReader(t1.Data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.RotateTenantKey(ctx, "paidco"); err != nil {
		t.Fatal(err)
	}
	b2, s2, err := f.s.PutBundle(ctx, "paidco", bytes.NewReader(t2.Data))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := f.local.Open(ctx, s2.CID)
	if err != nil {
		t.Fatal(err)
	}
	v, err := seal.KeyVersion(rc)
	rc.Close()
	if err != nil || v != 2 {
		t.Fatalf("the second bundle's key version = %d, %v; want 2", v, err)
	}
	both, _ := seal.NewKeyring(next, old)
	if err := f.open(both).RewrapTenantKeys(ctx, "paidco"); err != nil {
		t.Fatal(err)
	}
	onlyNew, _ := seal.NewKeyring(next)
	s := f.open(onlyNew)
	if got := readAll(t)(s.OpenBundle(ctx, "paidco", b1)); !bytes.Equal(got, t1.Data) {
		t.Fatal("bundle 1 unreadable after the rotations")
	}
	if got := readAll(t)(s.OpenBundle(ctx, "paidco", b2)); !bytes.Equal(got, t2.Data) {
		t.Fatal("bundle 2 unreadable after the rotations")
	}
	onlyOld, _ := seal.NewKeyring(old)
	if _, err := io.ReadAll(mustOpenBundle(t, f.open(onlyOld), "paidco", b1)); err == nil {
		t.Fatal("the retired master key still opens a bundle")
	}
}
