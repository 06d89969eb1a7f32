package fsstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pwmesh/pwmesh/cas"
)

// TestFullDisk fills a real 1 MiB tmpfs: Put fails with an error that says
// ENOSPC, nothing half-written is visible or left in tmp/, and the store
// works again once there is room.
func TestFullDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
	s, err := New(filepath.Join(dir, "cas"))
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 2<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = s.Put(ctx, bytes.NewReader(big))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk: %v, want ENOSPC", err)
	}
	_, err = s.PutExpected(ctx, bytes.NewReader(big), cas.SumBytes(big).CID)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("PutExpected on a full disk: %v, want ENOSPC", err)
	}
	n := 0
	if err := s.List(ctx, func(cas.Ref) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("after failed puts: %d objects listed, %v", n, err)
	}
	if has, _ := s.Has(ctx, cas.SumBytes(big).CID); has {
		t.Fatal("a half-written object is visible")
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "cas", tmpDir)); len(ents) != 0 {
		t.Fatalf("temp files left behind: %d", len(ents))
	}
	small := []byte("fits")
	ref, err := s.Put(ctx, bytes.NewReader(small))
	if err != nil {
		t.Fatalf("a small Put after the failure: %v", err)
	}
	if err := s.Verify(ctx, ref.CID); err != nil {
		t.Fatal(err)
	}
}
