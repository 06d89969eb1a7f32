package mirror

import (
	"bytes"
	"context"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/fsstore"
)

// BenchmarkUploadGofakes3 uploads a 64 MiB object to an in-process gofakes3
// (default PartSize and Concurrency): PutExpected streams to the final key,
// Put goes through a temporary key and a server-side copy, Uploader is
// PutExpected fed from an fsstore by the mirror queue.
func BenchmarkUploadGofakes3(b *testing.B) {
	const size = 64 << 20
	data := randomBytes(9, size)
	ref := cas.SumBytes(data)
	s := open(b, startS3(b, nil), Options{})
	cleanup := func() {
		b.StopTimer()
		if err := s.Delete(b.Context(), ref.CID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}

	b.Run("PutExpected", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			if _, err := s.PutExpected(b.Context(), bytes.NewReader(data), ref.CID); err != nil {
				b.Fatal(err)
			}
			cleanup()
		}
	})
	b.Run("Put", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			if _, err := s.Put(b.Context(), bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			cleanup()
		}
	})
	b.Run("Uploader", func(b *testing.B) {
		src, err := fsstore.New(b.TempDir(), fsstore.WithFsync(false))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := src.Put(b.Context(), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		u := NewUploader(src, s, UploaderConfig{OnDone: func(_ cid.Cid, err error) { done <- err }})
		ctx, cancel := context.WithCancel(b.Context())
		ran := make(chan error)
		go func() { ran <- u.Run(ctx) }()
		b.SetBytes(size)
		b.ResetTimer()
		for range b.N {
			u.Enqueue(ref.CID)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			cleanup()
		}
		cancel()
		<-ran
	})
}
