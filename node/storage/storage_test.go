package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/castest"
	"github.com/pwmesh/pwmesh/cas/fsstore"
	"github.com/pwmesh/pwmesh/cas/mirror"
	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
)

// These tests drive one node's storage over a real single-node Raft; the
// multi-node behaviour (replication, repair, peers) is tested with real
// nodes in package node.

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// alone is the peers of a node that has none.
type alone struct{}

func (alone) Live() []string { return nil }
func (alone) OpenStream(context.Context, string, string, []byte) (io.ReadCloser, error) {
	return nil, cas.ErrNotFound
}
func (alone) Call(context.Context, string, string, []byte) ([]byte, error) {
	return nil, cas.ErrNotFound
}

type fixture struct {
	t      *testing.T
	raft   *scheduler.Raft
	fsm    *scheduler.FSM
	local  *fsstore.Store
	mirror *mirror.Store
	clock  *clock
	s      *Storage
}

func masterKey(id string) seal.MasterKey {
	var k seal.MasterKey
	k.ID = id
	if _, err := rand.Read(k.Key[:]); err != nil {
		panic(err)
	}
	return k
}

func newFixture(t *testing.T, keys *seal.Keyring) *fixture {
	t.Helper()
	r := schedulertest.NewRaft(t)
	local, err := fsstore.New(t.TempDir(), fsstore.WithFsync(false))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mirror.Open(t.Context(), (&url.URL{Scheme: "file", Path: filepath.Join(t.TempDir(), "mirror")}).String(), mirror.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	f := &fixture{t: t, raft: r, fsm: r.FSM(), local: local, mirror: m, clock: &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	f.s = f.open(keys)
	schedulertest.MustApply(t, r, &scheduler.RegisterNode{At: f.clock.Now(), Node: scheduler.Node{ID: "n1", State: scheduler.NodeReady, Slots: 1, Incarnation: "i1"}})
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: f.clock.Now(), Key: scheduler.APIKey{Hash: "h-free", Tenant: "freeco", Tier: scheduler.PriorityFree}})
	schedulertest.MustApply(t, r, &scheduler.CreateKey{At: f.clock.Now(), Key: scheduler.APIKey{Hash: "h-paid", Tenant: "paidco", Tier: scheduler.PriorityPaid}})
	return f
}

// open is node n1's storage with keys, over the fixture's disk and mirror.
func (f *fixture) open(keys *seal.Keyring) *Storage {
	f.t.Helper()
	s, err := New(Config{NodeID: "n1", Local: f.local, Mirror: f.mirror, SharedMirror: true, Keys: keys, Clock: f.clock, Grace: time.Hour}, f.fsm, f.raft, alone{})
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// readAll(t)(open()) reads everything an open call returned.
func readAll(t *testing.T) func(io.ReadCloser, error) []byte {
	return func(rc io.ReadCloser, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// TestDatasetsAreSealedAtRest: what the disk and the mirror hold is
// ciphertext; the tenant reads back exactly what it uploaded.
func TestDatasetsAreSealedAtRest(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	ctx := t.Context()
	plain := append([]byte("PLAINTEXT-MARKER "), randomBytes(200_000)...)
	d, err := f.s.PutDataset(ctx, "paidco", bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(plain)
	if d.SHA256 != hex.EncodeToString(sum[:]) || d.Size != int64(len(plain)) || d.StoredCID == "" || d.StoredCID == d.CID || d.KeyVersion != 1 {
		t.Fatalf("dataset = %+v", d)
	}
	sc, _ := cas.ParseCID(d.StoredCID)
	rc, err := f.local.Open(ctx, sc)
	stored := readAll(t)(rc, err)
	if bytes.Contains(stored, []byte("PLAINTEXT-MARKER")) || int64(len(stored)) != seal.SealedSize(int64(len(plain))) {
		t.Fatalf("the disk holds %d bytes that are not the sealed form", len(stored))
	}
	if f.fsm.Durable(d.StoredCID) != nil {
		t.Fatal("a one-node mesh's dataset is durable once kept")
	}
	got := readAll(t)(f.s.OpenDataset(ctx, d))
	if !bytes.Equal(got, plain) {
		t.Fatal("plaintext differs")
	}
	// It seeks: from the middle of a segment, across the next boundary.
	rs, err := f.s.OpenDataset(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if off, err := rs.Seek(100_000, io.SeekStart); err != nil || off != 100_000 {
		t.Fatalf("seek = %d, %v", off, err)
	}
	part := make([]byte, 40_000)
	if _, err := io.ReadFull(rs, part); err != nil || !bytes.Equal(part, plain[100_000:140_000]) {
		t.Fatalf("read after a seek: %v", err)
	}
	rs.Close()
	// The mirror copy (uploaded in the background) is ciphertext too.
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.s.Run(ctx2); close(done) }()
	schedulertest.WaitFor(t, 30*time.Second, "the mirror copy", func() bool { b, _ := f.fsm.Blob(d.StoredCID); return b.Mirrored })
	cancel()
	<-done
	rc, err = f.mirror.Open(ctx, sc)
	if m := readAll(t)(rc, err); !bytes.Equal(m, stored) {
		t.Fatal("the mirror holds other bytes than the disk")
	}
	// Another tenant's key cannot open it: the AAD binds the tenant.
	d.Tenant = "freeco"
	if _, _, err := f.s.currentKey(ctx, "freeco"); err != nil {
		t.Fatal(err)
	}
	other, err := f.s.OpenDataset(ctx, d)
	if err == nil {
		_, err = io.ReadAll(other)
		other.Close()
	}
	if !errors.Is(err, seal.ErrAuth) && err == nil {
		t.Fatal("another tenant read the dataset")
	}
}

// TestKeyRotation rotates a tenant's data key and then the master key:
// every dataset stays readable, also by a node that has only the new
// master key.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	old, next := masterKey("m-old"), masterKey("m-new")
	keys, _ := seal.NewKeyring(old)
	f := newFixture(t, keys)
	ctx := t.Context()
	p1, p2 := randomBytes(70_000), randomBytes(1000)
	d1, err := f.s.PutDataset(ctx, "paidco", bytes.NewReader(p1))
	if err != nil {
		t.Fatal(err)
	}
	// Data-key rotation: new content gets version 2, old keeps 1.
	if v, err := f.s.RotateTenantKey(ctx, "paidco"); err != nil || v != 2 {
		t.Fatalf("rotate = %d, %v", v, err)
	}
	d2, err := f.s.PutDataset(ctx, "paidco", bytes.NewReader(p2))
	if err != nil || d2.KeyVersion != 2 || d1.KeyVersion != 1 {
		t.Fatalf("versions %d, %d, %v", d1.KeyVersion, d2.KeyVersion, err)
	}
	// Master-key rotation: every node gets the new key first (active),
	// the old one second; the data keys are rewrapped; the old key goes.
	both, _ := seal.NewKeyring(next, old)
	if err := f.open(both).RewrapTenantKeys(ctx, "paidco"); err != nil {
		t.Fatal(err)
	}
	ten, _ := f.fsm.Tenant("paidco")
	for _, k := range ten.Keys {
		if k.Master != "m-new" {
			t.Fatalf("key %d still wrapped by %s", k.Version, k.Master)
		}
	}
	onlyNew, _ := seal.NewKeyring(next)
	s := f.open(onlyNew)
	if got := readAll(t)(s.OpenDataset(ctx, d1)); !bytes.Equal(got, p1) {
		t.Fatal("dataset 1 unreadable after the rotations")
	}
	if got := readAll(t)(s.OpenDataset(ctx, d2)); !bytes.Equal(got, p2) {
		t.Fatal("dataset 2 unreadable after the rotations")
	}
	// A node left with only the old key cannot unwrap any more.
	onlyOld, _ := seal.NewKeyring(old)
	if _, err := f.open(onlyOld).OpenDataset(ctx, d1); err == nil {
		if _, err = io.ReadAll(mustOpen(t, f.open(onlyOld), d1)); err == nil {
			t.Fatal("the retired master key still opens data")
		}
	}
}

func mustOpen(t *testing.T, s *Storage, d scheduler.Dataset) io.Reader {
	rc, err := s.OpenDataset(t.Context(), d)
	if err != nil {
		return errReader{err}
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestDedupWithinTenant: the same dataset uploaded twice is stored once.
func TestDedupWithinTenant(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	ctx := t.Context()
	p := randomBytes(5000)
	d1, err := f.s.PutDataset(ctx, "paidco", bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	d1.ID, d1.Name = "d1", "a"
	schedulertest.MustApply(t, f.raft, &scheduler.RegisterDataset{At: f.clock.Now(), Dataset: d1})
	d2, err := f.s.PutDataset(ctx, "paidco", bytes.NewReader(p))
	if err != nil || d2.StoredCID != d1.StoredCID {
		t.Fatalf("second upload stored apart: %+v %v", d2, err)
	}
	n := 0
	_ = f.local.List(ctx, func(cas.Ref) error { n++; return nil })
	if n != 1 {
		t.Fatalf("%d objects on disk, want 1", n)
	}
}

// TestRetentionRemovesFreeBundles moves the clock past 30 days: the free
// tenant's RunBundle is expired, forgotten after the grace period, and
// deleted from the disk and the mirror; the paid tenant's stays.
func TestRetentionRemovesFreeBundles(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	ctx := t.Context()
	bundles := map[string]cas.Ref{}
	for _, tenant := range []string{"freeco", "paidco"} {
		ref, err := f.local.Put(ctx, bytes.NewReader(randomBytes(3000)))
		if err != nil {
			t.Fatal(err)
		}
		bundles[tenant] = ref
		if _, err := f.mirror.PutExpected(ctx, mustOpenLocal(t, f, ref), ref.CID); err != nil {
			t.Fatal(err)
		}
		if err := f.s.Keep(ctx, ref, scheduler.BlobBundle); err != nil {
			t.Fatal(err)
		}
		id := "job-" + tenant
		schedulertest.MustApply(t, f.raft, &scheduler.SubmitJob{At: f.clock.Now(), Job: scheduler.Job{ID: id, Tenant: tenant, Type: "calibrate", Priority: scheduler.PriorityFree, Timeout: scheduler.Duration(time.Hour)}})
		schedulertest.MustApply(t, f.raft, &scheduler.AssignJob{At: f.clock.Now(), JobID: id, Node: "n1", Incarnation: "i1", ExpiresAt: f.clock.Now().Add(time.Hour)})
		j, _ := f.fsm.Job(id)
		schedulertest.MustApply(t, f.raft, &scheduler.CompleteJob{At: f.clock.Now(), JobID: id, Token: j.Lease.Token, State: scheduler.StateSucceeded,
			RunBundle: &scheduler.BundleRef{CID: ref.CID.String(), SHA256: ref.SHA256, Size: ref.Size}})
	}
	f.clock.add(29 * 24 * time.Hour)
	f.s.RetainOnce(ctx)
	if j, _ := f.fsm.Job("job-freeco"); j.BundleExpired {
		t.Fatal("expired before 30 days")
	}
	f.clock.add(48 * time.Hour)
	f.s.RetainOnce(ctx) // expires; the blob is younger than nothing: forgotten after the grace
	if j, _ := f.fsm.Job("job-freeco"); !j.BundleExpired {
		t.Fatal("free bundle not expired after 31 days")
	}
	if j, _ := f.fsm.Job("job-paidco"); j.BundleExpired {
		t.Fatal("paid bundle expired")
	}
	f.s.CollectOnce(ctx)
	free, paid := bundles["freeco"].CID, bundles["paidco"].CID
	if has, _ := f.local.Has(ctx, free); has {
		t.Fatal("free bundle deleted from disk")
	}
	if has, _ := f.mirror.Has(ctx, free); has {
		t.Fatal("free bundle still in the mirror")
	}
	if has, _ := f.local.Has(ctx, paid); !has {
		t.Fatal("paid bundle deleted")
	}
	if has, _ := f.mirror.Has(ctx, paid); !has {
		t.Fatal("paid bundle deleted from the mirror")
	}
	if got := f.fsm.StoredBytes("freeco"); got != 0 {
		t.Fatalf("freeco still billed for %d bytes", got)
	}
}

// corrupt flips a byte of ref's file on disk.
func corrupt(t *testing.T, local *fsstore.Store, ref cas.Ref) {
	t.Helper()
	castest.DamageFile(t, local.Path(ref.CID))
}

func mustOpenLocal(t *testing.T, f *fixture, ref cas.Ref) io.Reader {
	rc, err := f.local.Open(t.Context(), ref.CID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// TestCorruptCopyIsDetected: a flipped byte on disk is caught on read; with
// the mirror holding a copy, the read is served from it and the disk
// repaired.
func TestCorruptCopyIsDetected(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	ctx := t.Context()
	content := randomBytes(10_000)
	ref, err := f.local.Put(ctx, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.mirror.PutExpected(ctx, bytes.NewReader(content), ref.CID); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Keep(ctx, ref, scheduler.BlobBundle); err != nil {
		t.Fatal(err)
	}
	corrupt(t, f.local, ref)
	rc, err := f.s.Store().Open(ctx, ref.CID)
	if got := readAll(t)(rc, err); !bytes.Equal(got, content) {
		t.Fatal("served corrupt bytes")
	}
	if err := f.local.Verify(ctx, ref.CID); err != nil {
		t.Fatalf("disk copy not repaired: %v", err)
	}
	// Without another copy the read fails clearly instead of serving junk.
	if err := f.mirror.Delete(ctx, ref.CID); err != nil {
		t.Fatal(err)
	}
	f.s.mu.Lock()
	f.s.verified = map[string]time.Time{}
	f.s.mu.Unlock()
	corrupt(t, f.local, ref)
	if _, err := f.s.Store().Open(ctx, ref.CID); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("open of the only, corrupt copy: %v", err)
	}
}

// TestBehavesAsAStore: the store Storage hands the API and the worker
// passes the behavioural suite every cas.Store passes.
func TestBehavesAsAStore(t *testing.T) {
	t.Parallel()
	castest.TestStore(t, func(t *testing.T) cas.Store {
		keys, _ := seal.NewKeyring(masterKey("m1"))
		return newFixture(t, keys).s.Store()
	})
}

// liar serves every CID with wrong bytes.
type liar struct{ asked int }

func (l *liar) Live() []string { return []string{"liar"} }
func (l *liar) OpenStream(context.Context, string, string, []byte) (io.ReadCloser, error) {
	l.asked++
	return io.NopCloser(strings.NewReader("not what you asked for")), nil
}
func (l *liar) Call(context.Context, string, string, []byte) ([]byte, error) {
	return nil, errors.New("no")
}

// TestLyingPeerIsRefused: bytes that do not hash to the CID are refused
// and logged, nothing is kept, and the next source (the mirror) serves.
func TestLyingPeerIsRefused(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	var logs bytes.Buffer
	l := &liar{}
	s, err := New(Config{NodeID: "n1", Local: f.local, Mirror: f.mirror, SharedMirror: true, Keys: keys, Clock: f.clock,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, f.fsm, f.raft, l)
	if err != nil {
		t.Fatal(err)
	}
	content := randomBytes(4096)
	ref := cas.SumBytes(content)
	ctx := t.Context()
	if _, err := s.Store().Open(ctx, ref.CID); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("open with only a liar: %v", err)
	}
	if has, _ := f.local.Has(ctx, ref.CID); has || l.asked == 0 {
		t.Fatalf("kept the liar's bytes (has %v, asked %d)", has, l.asked)
	}
	if !strings.Contains(logs.String(), "refused wrong bytes") {
		t.Fatalf("not logged:\n%s", logs.String())
	}
	if _, err := f.mirror.PutExpected(ctx, bytes.NewReader(content), ref.CID); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Store().Open(ctx, ref.CID)
	if got := readAll(t)(rc, err); !bytes.Equal(got, content) {
		t.Fatal("wrong content after the mirror had it")
	}
}

// TestLocalCopiesAreIndexed: a referenced object on this disk that the
// index does not list here is recorded as this node's copy again.
func TestLocalCopiesAreIndexed(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	ctx := t.Context()
	ref, err := f.local.Put(ctx, bytes.NewReader(randomBytes(100)))
	if err != nil {
		t.Fatal(err)
	}
	schedulertest.MustApply(t, f.raft, &scheduler.BlobStored{At: f.clock.Now(), CID: ref.CID.String(), Size: ref.Size, Kind: scheduler.BlobDataset, Node: "n1"})
	schedulertest.MustApply(t, f.raft, &scheduler.RegisterDataset{At: f.clock.Now(), Dataset: scheduler.Dataset{ID: "old", Tenant: "paidco", Name: "old", CID: ref.CID.String(), Size: ref.Size}})
	schedulertest.MustApply(t, f.raft, &scheduler.BlobDropped{At: f.clock.Now(), CID: ref.CID.String(), Node: "n1"})
	if b, _ := f.fsm.Blob(ref.CID.String()); len(b.Holders) != 0 {
		t.Fatalf("holders %v", b.Holders)
	}
	f.s.adopt(ctx)
	if b, _ := f.fsm.Blob(ref.CID.String()); len(b.Holders) != 1 {
		t.Fatalf("local copy not indexed: %+v", b)
	}
}

// TestServeBlobNeverPassesACorruptCopy: a damaged copy sent to a peer ends
// in an error, not a clean end, and is removed.
func TestServeBlobNeverPassesACorruptCopy(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	ctx := t.Context()
	content := randomBytes(50_000)
	ref, err := f.local.Put(ctx, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := f.s.ServeBlob(ctx, "peer", []byte(ref.CID.String()))
	if got := readAll(t)(rc, err); !bytes.Equal(got, content) {
		t.Fatal("a good copy was not sent whole")
	}
	corrupt(t, f.local, ref)
	rc, err = f.s.ServeBlob(ctx, "peer", []byte(ref.CID.String()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, cas.ErrCorrupt) {
		t.Fatalf("sending a damaged copy ended with %v", err)
	}
	if has, _ := f.local.Has(ctx, ref.CID); has {
		t.Fatal("the damaged copy was kept")
	}
}

// others says nodes n2 and n3 are alive; they serve nothing.
type others struct{ alone }

func (others) Live() []string { return []string{"n2", "n3"} }

// TestCachedCopiesAreEvicted: a local copy the index does not list here,
// of an object with all its copies elsewhere, is a cache: kept while
// fresh, evicted once idle; kept when the object is short of copies.
func TestCachedCopiesAreEvicted(t *testing.T) {
	t.Parallel()
	keys, _ := seal.NewKeyring(masterKey("m1"))
	f := newFixture(t, keys)
	s, err := New(Config{NodeID: "n1", Local: f.local, Keys: keys, Clock: f.clock}, f.fsm, f.raft, others{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, id := range []string{"n2", "n3"} {
		schedulertest.MustApply(t, f.raft, &scheduler.RegisterNode{At: f.clock.Now(), Node: scheduler.Node{ID: id, State: scheduler.NodeReady, Incarnation: "i"}})
	}
	put := func(holders ...string) cas.Ref {
		ref, err := f.local.Put(ctx, bytes.NewReader(randomBytes(1000)))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range holders {
			schedulertest.MustApply(t, f.raft, &scheduler.BlobStored{At: f.clock.Now(), CID: ref.CID.String(), Size: ref.Size, Kind: scheduler.BlobBundle, Node: h})
		}
		return ref
	}
	age := func(ref cas.Ref) {
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(f.local.Path(ref.CID), old, old); err != nil {
			t.Fatal(err)
		}
	}
	// Three ready nodes want two copies.
	cachedIdle, cachedFresh, short, mine := put("n2", "n3"), put("n2", "n3"), put("n2"), put("n1", "n2")
	for _, r := range []cas.Ref{cachedIdle, short, mine} {
		age(r)
	}
	s.CollectOnce(ctx)
	for _, c := range []struct {
		ref  cas.Ref
		kept bool
		what string
	}{{cachedIdle, false, "an idle cached copy"}, {cachedFresh, true, "a fresh cached copy"}, {short, true, "a copy of a short object"}, {mine, true, "a listed copy"}} {
		if has, _ := f.local.Has(ctx, c.ref.CID); has != c.kept {
			t.Errorf("%s: kept %v, want %v", c.what, has, c.kept)
		}
	}
}
