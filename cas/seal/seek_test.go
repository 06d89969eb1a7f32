package seal_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/pwmesh/pwmesh/cas/seal"
)

func TestPlainSizeInvertsSealedSize(t *testing.T) {
	t.Parallel()
	for _, n := range append(sizes, 2, seg-2, 5*seg+17) {
		got, err := seal.PlainSize(seal.SealedSize(int64(n)))
		if err != nil || got != int64(n) {
			t.Errorf("PlainSize(SealedSize(%d)) = %d, %v", n, got, err)
		}
	}
	bad := []int64{0, hdr - 1, hdr, hdr + tagSize - 1}
	for k := int64(1); k <= tagSize; k++ {
		bad = append(bad, seal.SealedSize(seg)+k, seal.SealedSize(3*seg)+k)
	}
	for _, n := range bad {
		if got, err := seal.PlainSize(n); !errors.Is(err, seal.ErrFormat) {
			t.Errorf("PlainSize(%d) = %d, %v; want ErrFormat", n, got, err)
		}
	}
}

// countingSource counts the bytes read from a sealed object.
type countingSource struct {
	*bytes.Reader
	n int
}

func (c *countingSource) Read(p []byte) (int, error) {
	n, err := c.Reader.Read(p)
	c.n += n
	return n, err
}

func newSeekReader(t *testing.T, sealed []byte, key [32]byte) (io.ReadSeeker, *countingSource) {
	t.Helper()
	src := &countingSource{Reader: bytes.NewReader(sealed)}
	r, err := seal.NewSeekReader(src, oneKey(key), testAAD)
	if err != nil {
		t.Fatal(err)
	}
	return r, src
}

// TestSeekReader: every seek lands on the right plaintext byte, across
// segment boundaries and in either direction, and the whole object still
// reads as with NewReader.
func TestSeekReader(t *testing.T) {
	t.Parallel()
	key := dataKey(7)
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			plain := plaintext(n)
			sealed := sealChunked(t, key, 3, testAAD, plain)
			r, _ := newSeekReader(t, sealed, key)
			if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("ReadAll = %d bytes, %v", len(got), err)
			}
			if end, err := r.Seek(0, io.SeekEnd); err != nil || end != int64(n) {
				t.Fatalf("SeekEnd = %d, %v", end, err)
			}
			offsets := []int{0, 1, seg - 1, seg, seg + 1, 2*seg - 1, 3 * seg, n / 2, n - 1, n}
			for _, off := range offsets {
				if off < 0 || off > n {
					continue
				}
				if _, err := r.Seek(int64(off), io.SeekStart); err != nil {
					t.Fatal(err)
				}
				want := plain[off:min(off+100, n)]
				got := make([]byte, len(want))
				if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("100 bytes at %d: %v", off, err)
				}
			}
			// Random seeks and reads against bytes.Reader as the oracle.
			rng := rand.New(rand.NewPCG(uint64(n), 1))
			oracle := bytes.NewReader(plain)
			if _, err := r.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			for range 200 {
				off, whence := int64(rng.IntN(n+1)), io.SeekStart
				switch rng.IntN(3) {
				case 1:
					off, whence = off-int64(n), io.SeekEnd
				case 2:
					cur, _ := oracle.Seek(0, io.SeekCurrent)
					off, whence = off-cur, io.SeekCurrent
				}
				p1, err1 := r.Seek(off, whence)
				p2, _ := oracle.Seek(off, whence)
				if err1 != nil || p1 != p2 {
					t.Fatalf("Seek(%d, %d) = %d, %v; want %d", off, whence, p1, err1, p2)
				}
				buf1 := make([]byte, rng.IntN(3*seg))
				buf2 := make([]byte, len(buf1))
				k, err := io.ReadFull(r, buf1)
				k2, _ := io.ReadFull(oracle, buf2)
				if k != k2 || !bytes.Equal(buf1[:k], buf2[:k2]) || (err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF)) {
					t.Fatalf("read %d at %d: %d bytes, %v; want %d", len(buf1), p2, k, err, k2)
				}
			}
		})
	}
}

// TestSeekReaderReadsOneSegment: a seek to the end of a large object reads
// one segment (and the header), not the object before it.
func TestSeekReaderReadsOneSegment(t *testing.T) {
	t.Parallel()
	key := dataKey(8)
	plain := plaintext(40*seg + 5)
	r, src := newSeekReader(t, sealChunked(t, key, 1, testAAD, plain), key)
	if _, err := r.Seek(-10, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, plain[len(plain)-10:]) {
		t.Fatalf("the last 10 bytes: %q, %v", got, err)
	}
	if src.n > hdr+2*sealedSeg {
		t.Fatalf("read %d sealed bytes for the last 10 plaintext bytes", src.n)
	}
}

// TestSeekReaderTamper: a seek into a damaged, moved or missing segment
// fails with ErrAuth, and so does every read after it; a seek that stays
// in intact segments before the damage reads them.
func TestSeekReaderTamper(t *testing.T) {
	t.Parallel()
	key := dataKey(9)
	plain := plaintext(3*seg + 100)
	sealed := sealChunked(t, key, 2, testAAD, plain)
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	s := func(i int) []byte { return sealed[segAt(i):min(segAt(i+1), len(sealed))] }
	for _, tc := range []struct {
		name string
		in   []byte
		at   int64 // a plaintext offset in the damage
	}{
		{"third segment body", flip(segAt(2) + 10), 2*seg + 3},
		{"final segment tag", flip(len(sealed) - 1), 3*seg + 50},
		{"final segment dropped", sealed[:segAt(3)], 2*seg + 5},
		{"segments 1 and 2 swapped", bytes.Join([][]byte{sealed[:hdr], s(0), s(2), s(1), s(3)}, nil), seg + 1},
		{"appended segment", bytes.Join([][]byte{sealed, s(1)}, nil), 3*seg + 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := seal.NewSeekReader(bytes.NewReader(tc.in), oneKey(key), testAAD)
			if err != nil {
				t.Fatal(err)
			}
			first := make([]byte, 100)
			if _, err := io.ReadFull(r, first); err != nil || !bytes.Equal(first, plain[:100]) {
				t.Fatalf("the intact first segment: %v", err)
			}
			if _, err := r.Seek(tc.at, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(r); !errors.Is(err, seal.ErrAuth) {
				t.Fatalf("read at %d: %v, want ErrAuth", tc.at, err)
			}
			if _, err := r.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Read(first); !errors.Is(err, seal.ErrAuth) {
				t.Fatalf("read after the failure: %v, want ErrAuth", err)
			}
		})
	}
	if _, err := seal.NewSeekReader(bytes.NewReader(sealed[:segAt(3)+5]), oneKey(key), testAAD); !errors.Is(err, seal.ErrFormat) {
		t.Fatalf("a length no object has: %v, want ErrFormat", err)
	}
}
