package cas_test

import (
	"io"
	"math/rand/v2"
	"testing"

	"github.com/pwmesh/pwmesh/cas"
)

// repeatReader yields n bytes by cycling over buf, so that a large stream
// costs no memory and next to no time to produce. It has only Read (no
// WriteTo), so cas.Sum copies it as it would a file or a socket.
type repeatReader struct {
	buf []byte
	off int
	n   int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	total := 0
	for len(p) > 0 {
		k := copy(p, r.buf[r.off:])
		r.off = (r.off + k) % len(r.buf)
		p = p[k:]
		total += k
	}
	r.n -= int64(total)
	return total, nil
}

// BenchmarkCID1GiB computes the CID (SHA-256) of a 1 GiB stream through
// cas.Sum. The stream cycles over 1 MiB of random bytes.
func BenchmarkCID1GiB(b *testing.B) {
	const size = 1 << 30
	buf := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{4})
	_, _ = rng.Read(buf)
	b.SetBytes(size)
	for b.Loop() {
		ref, err := cas.Sum(&repeatReader{buf: buf, n: size})
		if err != nil {
			b.Fatal(err)
		}
		if ref.Size != size {
			b.Fatalf("summed %d bytes, want %d", ref.Size, size)
		}
	}
}
