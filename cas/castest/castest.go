package castest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/pwmesh/pwmesh/cas"
)

// TestStore runs the suite. newStore must return a new, empty store each
// call (subtests run in parallel, each on its own store) and arrange its
// cleanup with t.Cleanup.
func TestStore(t *testing.T, newStore func(t *testing.T) cas.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s cas.Store)
	}{
		{"PutOpenStatHas", testPutOpenStatHas},
		{"Empty", testEmpty},
		{"IdempotentPut", testIdempotentPut},
		{"NotFound", testNotFound},
		{"InvalidCID", testInvalidCID},
		{"Delete", testDelete},
		{"List", testList},
		{"ListStopsOnError", testListStopsOnError},
		{"PutExpected", testPutExpected},
		{"PutExpectedMismatch", testPutExpectedMismatch},
		{"OpenSeekable", testOpenSeekable},
		{"ServeContentRange", testServeContentRange},
		{"ConcurrentSameContent", testConcurrentSame},
		{"ConcurrentDifferentContent", testConcurrentDifferent},
		{"CancelledBeforePut", testCancelledBeforePut},
		{"CancelledDuringPut", testCancelledDuringPut},
		{"ReaderError", testReaderError},
		{"LargeStreamingPut", testLarge},
		{"Verify", testVerify},
		{"CIDStringRoundTrip", testCIDRoundTrip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func put(t *testing.T, s cas.Store, b []byte) cas.Ref {
	t.Helper()
	ref, err := s.Put(t.Context(), bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Put(%d bytes): %v", len(b), err)
	}
	return ref
}

func sameRef(a, b cas.Ref) bool {
	return a.CID.Equals(b.CID) && a.SHA256 == b.SHA256 && a.Size == b.Size
}

func readAll(t *testing.T, s cas.Store, c cid.Cid) []byte {
	t.Helper()
	f, err := s.Open(t.Context(), c)
	if err != nil {
		t.Fatalf("Open(%s): %v", c, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", c, err)
	}
	return b
}

func list(t *testing.T, s cas.Store) map[string]cas.Ref {
	t.Helper()
	out := map[string]cas.Ref{}
	err := s.List(t.Context(), func(r cas.Ref) error {
		if _, dup := out[r.CID.String()]; dup {
			return fmt.Errorf("listed %s twice", r.CID)
		}
		out[r.CID.String()] = r
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return out
}

func testPutOpenStatHas(t *testing.T, s cas.Store) {
	data := []byte("hello, content-addressed world")
	want := cas.SumBytes(data)
	ref := put(t, s, data)
	if !sameRef(ref, want) {
		t.Fatalf("Put = %+v, want %+v", ref, want)
	}
	if got := readAll(t, s, ref.CID); !bytes.Equal(got, data) {
		t.Errorf("Open read %q, want %q", got, data)
	}
	st, err := s.Stat(t.Context(), ref.CID)
	if err != nil || !sameRef(st, want) {
		t.Errorf("Stat = %+v, %v; want %+v", st, err, want)
	}
	if ok, err := s.Has(t.Context(), ref.CID); !ok || err != nil {
		t.Errorf("Has = %v, %v", ok, err)
	}
}

func testEmpty(t *testing.T, s cas.Store) {
	ref := put(t, s, nil)
	if !sameRef(ref, cas.SumBytes(nil)) {
		t.Fatalf("Put(empty) = %+v", ref)
	}
	if got := readAll(t, s, ref.CID); len(got) != 0 {
		t.Errorf("read %d bytes of empty object", len(got))
	}
	if err := s.Verify(t.Context(), ref.CID); err != nil {
		t.Errorf("Verify(empty): %v", err)
	}
}

func testIdempotentPut(t *testing.T, s cas.Store) {
	data := []byte("twice")
	a, b := put(t, s, data), put(t, s, data)
	if !sameRef(a, b) {
		t.Fatalf("refs differ: %+v, %+v", a, b)
	}
	if n := len(list(t, s)); n != 1 {
		t.Errorf("List has %d objects, want 1", n)
	}
	if got := readAll(t, s, a.CID); !bytes.Equal(got, data) {
		t.Errorf("read %q", got)
	}
}

func testNotFound(t *testing.T, s cas.Store) {
	c := cas.SumBytes([]byte("absent")).CID
	ctx := t.Context()
	if _, err := s.Open(ctx, c); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Open = %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, c); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, c); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Delete = %v, want ErrNotFound", err)
	}
	if err := s.Verify(ctx, c); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Verify = %v, want ErrNotFound", err)
	}
	if ok, err := s.Has(ctx, c); ok || err != nil {
		t.Errorf("Has = %v, %v; want false, nil", ok, err)
	}
	if n := len(list(t, s)); n != 0 {
		t.Errorf("new store lists %d objects", n)
	}
}

func testInvalidCID(t *testing.T, s cas.Store) {
	d := sha256.Sum256([]byte("x"))
	m, err := mh.Encode(d[:], mh.SHA2_256)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, c := range []cid.Cid{cid.Undef, cid.NewCidV0(m), cid.NewCidV1(cid.DagProtobuf, m)} {
		if _, err := s.Open(ctx, c); !errors.Is(err, cas.ErrInvalidCID) {
			t.Errorf("Open(%v) = %v", c, err)
		}
		if _, err := s.Stat(ctx, c); !errors.Is(err, cas.ErrInvalidCID) {
			t.Errorf("Stat(%v) = %v", c, err)
		}
		if _, err := s.Has(ctx, c); !errors.Is(err, cas.ErrInvalidCID) {
			t.Errorf("Has(%v) = %v", c, err)
		}
		if err := s.Delete(ctx, c); !errors.Is(err, cas.ErrInvalidCID) {
			t.Errorf("Delete(%v) = %v", c, err)
		}
		if err := s.Verify(ctx, c); !errors.Is(err, cas.ErrInvalidCID) {
			t.Errorf("Verify(%v) = %v", c, err)
		}
		if _, err := s.PutExpected(ctx, strings.NewReader("x"), c); !errors.Is(err, cas.ErrInvalidCID) {
			t.Errorf("PutExpected(%v) = %v", c, err)
		}
	}
	if n := len(list(t, s)); n != 0 {
		t.Errorf("store lists %d objects", n)
	}
}

func testDelete(t *testing.T, s cas.Store) {
	keep, gone := put(t, s, []byte("keep")), put(t, s, []byte("gone"))
	if err := s.Delete(t.Context(), gone.CID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if ok, _ := s.Has(t.Context(), gone.CID); ok {
		t.Error("Has after Delete = true")
	}
	if _, err := s.Open(t.Context(), gone.CID); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Open after Delete = %v", err)
	}
	if err := s.Delete(t.Context(), gone.CID); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("second Delete = %v", err)
	}
	l := list(t, s)
	if _, ok := l[keep.CID.String()]; !ok || len(l) != 1 {
		t.Errorf("List after Delete = %v", l)
	}
	// Content can be stored again after deletion.
	if again := put(t, s, []byte("gone")); !sameRef(again, gone) {
		t.Errorf("re-put = %+v", again)
	}
}

func testList(t *testing.T, s cas.Store) {
	want := map[string]cas.Ref{}
	for i := range 20 {
		r := put(t, s, []byte(strings.Repeat("L", i)))
		want[r.CID.String()] = r
	}
	got := list(t, s)
	if len(got) != len(want) {
		t.Fatalf("List has %d objects, want %d", len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !sameRef(g, w) {
			t.Errorf("List[%s] = %+v, want %+v", k, g, w)
		}
	}
}

func testListStopsOnError(t *testing.T, s cas.Store) {
	for i := range 5 {
		put(t, s, []byte{byte(i)})
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(t.Context(), func(cas.Ref) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List = %v after %d calls; want the callback's error after 1", err, calls)
	}
}

func testPutExpected(t *testing.T, s cas.Store) {
	data := []byte("expected")
	want := cas.SumBytes(data)
	ref, err := s.PutExpected(t.Context(), bytes.NewReader(data), want.CID)
	if err != nil || !sameRef(ref, want) {
		t.Fatalf("PutExpected = %+v, %v", ref, err)
	}
	// Idempotent too.
	if ref, err := s.PutExpected(t.Context(), bytes.NewReader(data), want.CID); err != nil || !sameRef(ref, want) {
		t.Fatalf("second PutExpected = %+v, %v", ref, err)
	}
	if got := readAll(t, s, want.CID); !bytes.Equal(got, data) {
		t.Errorf("read %q", got)
	}
}

func testPutExpectedMismatch(t *testing.T, s cas.Store) {
	want := cas.SumBytes([]byte("what was promised"))
	actual := cas.SumBytes([]byte("what was sent"))
	_, err := s.PutExpected(t.Context(), strings.NewReader("what was sent"), want.CID)
	if !errors.Is(err, cas.ErrCorrupt) {
		t.Fatalf("PutExpected mismatch = %v, want ErrCorrupt", err)
	}
	for _, c := range []cid.Cid{want.CID, actual.CID} {
		if ok, err := s.Has(t.Context(), c); ok || err != nil {
			t.Errorf("Has(%s) = %v, %v after refused put", c, ok, err)
		}
	}
	if n := len(list(t, s)); n != 0 {
		t.Errorf("List has %d objects after refused put", n)
	}
}

func testOpenSeekable(t *testing.T, s cas.Store) {
	data := make([]byte, 100_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	ref := put(t, s, data)
	f, err := s.Open(t.Context(), ref.CID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() != int64(len(data)) {
		t.Errorf("Size = %d, want %d", f.Size(), len(data))
	}
	if end, err := f.Seek(0, io.SeekEnd); err != nil || end != int64(len(data)) {
		t.Errorf("Seek end = %d, %v", end, err)
	}
	if _, err := f.Seek(54_321, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(f, buf); err != nil || !bytes.Equal(buf, data[54_321:55_321]) {
		t.Errorf("read after seek: %v", err)
	}
	if pos, err := f.Seek(-100, io.SeekCurrent); err != nil || pos != 55_221 {
		t.Errorf("Seek current = %d, %v", pos, err)
	}
}

func testServeContentRange(t *testing.T, s cas.Store) {
	data := []byte("0123456789abcdefghij")
	ref := put(t, s, data)
	f, err := s.Open(t.Context(), ref.CID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	req := httptest.NewRequest(http.MethodGet, "/blob", nil)
	req.Header.Set("Range", "bytes=5-9")
	rec := httptest.NewRecorder()
	http.ServeContent(rec, req, "", time.Time{}, f)
	if rec.Code != http.StatusPartialContent || rec.Body.String() != "56789" {
		t.Errorf("ServeContent range = %d %q", rec.Code, rec.Body.String())
	}
}

func testConcurrentSame(t *testing.T, s cas.Store) {
	data := bytes.Repeat([]byte("same"), 64<<10)
	want := cas.SumBytes(data)
	const n = 16
	refs := make([]cas.Ref, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { refs[i], errs[i] = s.Put(t.Context(), bytes.NewReader(data)) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !sameRef(refs[i], want) {
			t.Errorf("put %d = %+v, %v", i, refs[i], errs[i])
		}
	}
	if l := list(t, s); len(l) != 1 {
		t.Errorf("List has %d objects, want 1", len(l))
	}
	if got := readAll(t, s, want.CID); !bytes.Equal(got, data) {
		t.Error("content differs after concurrent puts")
	}
}

func testConcurrentDifferent(t *testing.T, s cas.Store) {
	const n = 16
	var wg sync.WaitGroup
	refs := make([]cas.Ref, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			data := bytes.Repeat([]byte{byte(i)}, 10_000+i)
			refs[i], errs[i] = s.Put(t.Context(), bytes.NewReader(data))
			if errs[i] == nil {
				// Concurrent readers and Has alongside the writers.
				_, errs[i] = s.Has(t.Context(), refs[i].CID)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("put %d: %v", i, errs[i])
		}
		if got := readAll(t, s, refs[i].CID); !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 10_000+i)) {
			t.Errorf("object %d has wrong content", i)
		}
	}
	if l := list(t, s); len(l) != n {
		t.Errorf("List has %d objects, want %d", len(l), n)
	}
}

func testCancelledBeforePut(t *testing.T, s cas.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Put(ctx, strings.NewReader("never")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with cancelled ctx = %v", err)
	}
	if err := s.List(ctx, func(cas.Ref) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("List with cancelled ctx = %v", err)
	}
	if n := len(list(t, s)); n != 0 {
		t.Errorf("List has %d objects", n)
	}
}

// cancellingReader yields data forever and cancels its context once it has
// yielded after bytes.
type cancellingReader struct {
	cancel func()
	after  int
	n      int
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if r.n >= r.after {
		r.cancel()
	}
	for i := range p {
		p[i] = byte(r.n + i)
	}
	r.n += len(p)
	return len(p), nil
}

func testCancelledDuringPut(t *testing.T, s cas.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The reader never ends: only cancellation can stop Put.
	r := &cancellingReader{cancel: cancel, after: 1 << 20}
	if _, err := s.Put(ctx, r); !errors.Is(err, context.Canceled) {
		t.Errorf("Put = %v, want context.Canceled", err)
	}
	if n := len(list(t, s)); n != 0 {
		t.Errorf("List has %d objects after cancelled put", n)
	}
}

type failingReader struct{ err error }

func (r failingReader) Read(p []byte) (int, error) { return 0, r.err }

func testReaderError(t *testing.T, s cas.Store) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("partial"), failingReader{boom})
	if _, err := s.Put(t.Context(), r); !errors.Is(err, boom) {
		t.Errorf("Put = %v, want the reader's error", err)
	}
	if n := len(list(t, s)); n != 0 {
		t.Errorf("List has %d objects after failed put", n)
	}
}

// LargeSize is the size of the streaming test's object.
const LargeSize = 32 << 20

func largeReader() io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{'p', 'w', 'm'}), LargeSize)
}

func testLarge(t *testing.T, s cas.Store) {
	want, err := cas.Sum(largeReader())
	if err != nil {
		t.Fatal(err)
	}
	ref, err := s.Put(t.Context(), largeReader())
	if err != nil || !sameRef(ref, want) {
		t.Fatalf("Put = %+v, %v; want %+v", ref, err, want)
	}
	f, err := s.Open(t.Context(), ref.CID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() != LargeSize {
		t.Errorf("Size = %d", f.Size())
	}
	got, err := cas.Sum(f)
	if err != nil || !sameRef(got, want) {
		t.Errorf("read back = %+v, %v", got, err)
	}
	if err := s.Verify(t.Context(), ref.CID); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func testVerify(t *testing.T, s cas.Store) {
	ref := put(t, s, []byte("verify me"))
	if err := s.Verify(t.Context(), ref.CID); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func testCIDRoundTrip(t *testing.T, s cas.Store) {
	ref := put(t, s, []byte("round trip"))
	str := ref.CID.String()
	if !strings.HasPrefix(str, "bafkrei") {
		t.Errorf("cid %s is not base32 CIDv1 raw sha2-256", str)
	}
	c, err := cas.ParseCID(str)
	if err != nil || !c.Equals(ref.CID) {
		t.Fatalf("ParseCID(%s) = %v, %v", str, c, err)
	}
	if st, err := s.Stat(t.Context(), c); err != nil || !sameRef(st, ref) {
		t.Errorf("Stat(parsed) = %+v, %v", st, err)
	}
}

// DamageFile flips one byte in the middle of a stored object's file, as a
// failing disk would (stored objects are read-only: it makes the file
// writable first).
func DamageFile(tb testing.TB, path string) {
	tb.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(b) == 0 {
		tb.Fatalf("castest: %s is empty: nothing to damage", path)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}
