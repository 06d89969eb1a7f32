package fsstore_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/castest"
	"github.com/pwmesh/pwmesh/cas/fsstore"
)

func newStore(t *testing.T, opts ...fsstore.Option) *fsstore.Store {
	t.Helper()
	s, err := fsstore.New(filepath.Join(t.TempDir(), "cas"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	t.Parallel()
	castest.TestStore(t, func(t *testing.T) cas.Store { return newStore(t) })
}

func TestStoreNoFsync(t *testing.T) {
	t.Parallel()
	castest.TestStore(t, func(t *testing.T) cas.Store { return newStore(t, fsstore.WithFsync(false)) })
}

func TestLayout(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ref, err := s.Put(t.Context(), bytes.NewReader([]byte("layout")))
	if err != nil {
		t.Fatal(err)
	}
	str := ref.CID.String()
	p := filepath.Join(s.Dir(), "blocks", str[len(str)-2:], str)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("object not at %s: %v", p, err)
	}
	if fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("object mode %v is writable", fi.Mode())
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp holds %d files after put", len(ents))
	}
}

func TestNewCleansTemp(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cas")
	s, err := fsstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := s.Put(t.Context(), bytes.NewReader([]byte("survives")))
	if err != nil {
		t.Fatal(err)
	}
	// What a crash mid-put leaves: a partial temp file, never a CID name.
	leftover := filepath.Join(dir, "tmp", "put-123")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := fsstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover temp file survived New: %v", err)
	}
	if ok, err := s2.Has(t.Context(), ref.CID); !ok || err != nil {
		t.Errorf("object lost on reopen: %v, %v", ok, err)
	}
	n := 0
	if err := s2.List(t.Context(), func(cas.Ref) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("List = %d, %v", n, err)
	}
}

func TestVerifyDetectsCorruption(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ref, err := s.Put(t.Context(), bytes.NewReader([]byte("pristine")))
	if err != nil {
		t.Fatal(err)
	}
	str := ref.CID.String()
	p := filepath.Join(s.Dir(), "blocks", str[len(str)-2:], str)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(t.Context(), ref.CID); !errors.Is(err, cas.ErrCorrupt) {
		t.Errorf("Verify = %v, want ErrCorrupt", err)
	}
}

func TestListIgnoresStrayFiles(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if _, err := s.Put(t.Context(), bytes.NewReader([]byte("real"))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"blocks/zz/not-a-cid", "blocks/README"} {
		if err := os.WriteFile(filepath.Join(s.Dir(), p), nil, 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	n := 0
	if err := s.List(t.Context(), func(cas.Ref) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("List = %d, %v; want 1 object", n, err)
	}
}

func TestNewEmptyDir(t *testing.T) {
	t.Parallel()
	if _, err := fsstore.New(""); err == nil {
		t.Error("New(\"\") succeeded")
	}
}

const benchSize = 16 << 20

func benchData(b *testing.B) []byte {
	b.Helper()
	data := make([]byte, benchSize)
	if _, err := io.ReadFull(rand.NewChaCha8([32]byte{1}), data); err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkPut16MiB measures a full Put (stream, hash, fsync, rename) of a new
// 16 MiB object; the object is deleted between iterations, off the clock.
func BenchmarkPut16MiB(b *testing.B) {
	s, err := fsstore.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := benchData(b)
	ref := cas.SumBytes(data)
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := s.Put(b.Context(), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Delete(b.Context(), ref.CID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkPutExisting16MiB measures Put of content already stored (hashing
// and a temp write, no fsync or rename).
func BenchmarkPutExisting16MiB(b *testing.B) {
	s, err := fsstore.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := benchData(b)
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := s.Put(b.Context(), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen16MiB measures Open and reading a 16 MiB object to the end.
func BenchmarkOpen16MiB(b *testing.B) {
	s, err := fsstore.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ref, err := s.Put(b.Context(), bytes.NewReader(benchData(b)))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	b.SetBytes(benchSize)
	for b.Loop() {
		f, err := s.Open(b.Context(), ref.CID)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// TestPutStreams checks that Put does not hold the content in memory. It is
// deliberately not parallel: it reads the process-wide allocation counter,
// and Go runs sequential tests while every parallel test is paused.
func TestPutStreams(t *testing.T) {
	s := newStore(t, fsstore.WithFsync(false))
	const size = 32 << 20
	src := io.LimitReader(rand.NewChaCha8([32]byte{2}), size)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ref, err := s.Put(t.Context(), src)
	runtime.ReadMemStats(&after)
	if err != nil || ref.Size != size {
		t.Fatalf("Put = %+v, %v", ref, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Errorf("Put of %d bytes allocated %d bytes: it buffers the content", size, alloc)
	}
}
