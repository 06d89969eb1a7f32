package seal_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/pwmesh/pwmesh/cas/seal"
)

// The documented format, restated so the tests check it independently.
const (
	seg       = 64 << 10 // plaintext per segment
	tagSize   = 16
	sealedSeg = seg + tagSize
	hdr       = 28
)

var testAAD = []byte("tenant:acme")

func dataKey(b byte) [32]byte {
	var k [32]byte
	for i := range k {
		k[i] = b ^ byte(i*7)
	}
	return k
}

// oneKey answers every version with key.
func oneKey(key [32]byte) func(uint32) ([32]byte, error) {
	return func(uint32) ([32]byte, error) { return key, nil }
}

// plaintext returns n deterministic pseudo-random bytes.
func plaintext(n int) []byte {
	p := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)}).Read(p)
	return p
}

// sealChunked seals plain writing it in chunks of the sizes given, cycled;
// none means one Write.
func sealChunked(t testing.TB, key [32]byte, version uint32, aad, plain []byte, chunks ...int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := seal.NewWriter(&buf, key, version, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) == 0 {
		chunks = []int{len(plain) + 1}
	}
	for i, p := 0, plain; len(p) > 0; i++ {
		c := min(chunks[i%len(chunks)], len(p))
		n, err := w.Write(p[:c])
		if err != nil || n != c {
			t.Fatalf("Write = %d, %v; want %d", n, err, c)
		}
		p = p[c:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// open reads sealed to its end and returns what it yielded before any error.
func open(sealed []byte, keys func(uint32) ([32]byte, error), aad []byte) ([]byte, error) {
	r, err := seal.NewReader(bytes.NewReader(sealed), keys, aad)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// readOdd reads r in chunks of 7919 bytes (a prime, so reads straddle
// segment boundaries everywhere).
func readOdd(r io.Reader) ([]byte, error) {
	var out []byte
	buf := make([]byte, 7919)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

var sizes = []int{0, 1, 100, seg - 1, seg, seg + 1, 2*seg - 1, 3 * seg, 3<<20 + 12345}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	key := dataKey(1)
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			plain := plaintext(n)
			for _, chunks := range [][]int{nil, {1, 1000, 70000, seg, 3}, {seg}, {2*seg + 5}} {
				sealed := sealChunked(t, key, 9, testAAD, plain, chunks...)
				if got, want := int64(len(sealed)), seal.SealedSize(int64(n)); got != want {
					t.Fatalf("writes %v: sealed %d bytes, SealedSize says %d", chunks, got, want)
				}
				got, err := open(sealed, oneKey(key), testAAD)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("writes %v: ReadAll = %d bytes, %v", chunks, len(got), err)
				}
			}

			sealed := sealChunked(t, key, 9, testAAD, plain)
			readers := map[string]func() (io.Reader, error){
				"odd chunks from a half reader": func() (io.Reader, error) {
					return seal.NewReader(iotest.HalfReader(bytes.NewReader(sealed)), oneKey(key), testAAD)
				},
				"one-byte source with data+EOF": func() (io.Reader, error) {
					return seal.NewReader(iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(sealed))), oneKey(key), testAAD)
				},
			}
			for name, mk := range readers {
				r, err := mk()
				if err != nil {
					t.Fatal(err)
				}
				got, err := readOdd(r)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("%s: read %d bytes, %v", name, len(got), err)
				}
			}
			r, err := seal.NewReader(bytes.NewReader(sealed), oneKey(key), testAAD)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if n, err := io.Copy(&buf, r); err != nil || n != int64(len(plain)) || !bytes.Equal(buf.Bytes(), plain) {
				t.Fatalf("io.Copy (WriteTo) = %d, %v", n, err)
			}
			r, err = seal.NewReader(bytes.NewReader(sealed), oneKey(key), testAAD)
			if err != nil {
				t.Fatal(err)
			}
			if err := iotest.TestReader(r, plain); err != nil {
				t.Fatal(err)
			}
			if n <= 3*seg {
				r, err := seal.NewReader(bytes.NewReader(sealed), oneKey(key), testAAD)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(iotest.OneByteReader(r))
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("one byte at a time: %d bytes, %v", len(got), err)
				}
			}
		})
	}
}

func TestSealedSize(t *testing.T) {
	t.Parallel()
	for plain, want := range map[int64]int64{
		0:                 hdr + tagSize,
		1:                 hdr + 1 + tagSize,
		seg - 1:           hdr + seg - 1 + tagSize,
		seg:               hdr + seg + tagSize,
		seg + 1:           hdr + seg + 1 + 2*tagSize,
		3 * seg:           hdr + 3*seg + 3*tagSize,
		3*seg + 1:         hdr + 3*seg + 1 + 4*tagSize,
		1 << 40:           hdr + 1<<40 + (1<<24)*tagSize,
		3<<20 + 12345:     hdr + 3<<20 + 12345 + 49*tagSize,
		1<<48 - 1:         hdr + 1<<48 - 1 + (1<<32)*tagSize,
		seal.HeaderSize:   hdr + hdr + tagSize,
		int64(sealedSeg):  hdr + sealedSeg + 2*tagSize,
		int64(2*seg - 1):  hdr + 2*seg - 1 + 2*tagSize,
		int64(2*seg + 15): hdr + 2*seg + 15 + 3*tagSize,
	} {
		if got := seal.SealedSize(plain); got != want {
			t.Errorf("SealedSize(%d) = %d, want %d", plain, got, want)
		}
	}
	if seal.HeaderSize != hdr {
		t.Errorf("HeaderSize = %d, want %d", seal.HeaderSize, hdr)
	}
	defer func() {
		if recover() == nil {
			t.Error("SealedSize(-1) did not panic")
		}
	}()
	seal.SealedSize(-1)
}

func TestSealIsRandomised(t *testing.T) {
	t.Parallel()
	key, plain := dataKey(2), plaintext(1000)
	a := sealChunked(t, key, 1, testAAD, plain)
	b := sealChunked(t, key, 1, testAAD, plain)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one plaintext are equal")
	}
	if bytes.Equal(a[12:hdr], b[12:hdr]) {
		t.Error("two objects share a salt")
	}
	if bytes.Contains(a, plain[:32]) {
		t.Error("sealed object holds plaintext")
	}
	for _, s := range [][]byte{a, b} {
		if got, err := open(s, oneKey(key), testAAD); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("open: %v", err)
		}
	}
}

func TestKeyVersion(t *testing.T) {
	t.Parallel()
	key := dataKey(3)
	sealed := sealChunked(t, key, 0xdeadbeef, nil, plaintext(10))
	r := bytes.NewReader(sealed)
	v, err := seal.KeyVersion(r)
	if err != nil || v != 0xdeadbeef {
		t.Fatalf("KeyVersion = %#x, %v", v, err)
	}
	if r.Len() != len(sealed)-seal.HeaderSize {
		t.Errorf("KeyVersion read %d bytes, want %d", len(sealed)-r.Len(), seal.HeaderSize)
	}
	if !bytes.Equal(sealed[:8], []byte("PWMSEAL1")) || binary.BigEndian.Uint32(sealed[8:12]) != 0xdeadbeef {
		t.Errorf("header = %q", sealed[:12])
	}
	bad := bytes.Clone(sealed)
	bad[7] = '2'
	for name, in := range map[string][]byte{"empty": nil, "short": sealed[:hdr-1], "bad magic": bad} {
		if _, err := seal.KeyVersion(bytes.NewReader(in)); !errors.Is(err, seal.ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
	boom := errors.New("disk on fire")
	if _, err := seal.KeyVersion(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
}

// segAt returns the offset of sealed segment i.
func segAt(i int) int { return hdr + i*sealedSeg }

func TestTamper(t *testing.T) {
	t.Parallel()
	key := dataKey(4)
	plain := plaintext(3*seg + 100) // segments 0-2 full, 3 holds 100 bytes
	sealed := sealChunked(t, key, 2, testAAD, plain)
	if len(sealed) != segAt(3)+100+tagSize {
		t.Fatalf("sealed %d bytes", len(sealed))
	}
	other := sealChunked(t, key, 2, testAAD, plain) // same key and aad, other salt

	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	s := func(i int) []byte { return sealed[segAt(i):min(segAt(i+1), len(sealed))] }
	h := sealed[:hdr]

	for _, tc := range []struct {
		name string
		in   []byte
		good int   // plaintext bytes the reader may yield before failing
		want error // ErrAuth or ErrFormat
	}{
		{"header magic", flip(3), 0, seal.ErrFormat},
		{"header version", flip(11), 0, seal.ErrAuth},
		{"header salt", flip(20), 0, seal.ErrAuth},
		{"header last byte", flip(hdr - 1), 0, seal.ErrAuth},
		{"first segment body", flip(segAt(0)), 0, seal.ErrAuth},
		{"second segment body", flip(segAt(1) + 5000), seg, seal.ErrAuth},
		{"third segment tag", flip(segAt(3) - 1), 2 * seg, seal.ErrAuth},
		{"final segment body", flip(segAt(3) + 50), 3 * seg, seal.ErrAuth},
		{"final segment tag", flip(len(sealed) - 1), 3 * seg, seal.ErrAuth},
		{"truncated header", sealed[:hdr-1], 0, seal.ErrFormat},
		{"header only", sealed[:hdr], 0, seal.ErrAuth},
		{"final segment dropped", sealed[:segAt(3)], 2 * seg, seal.ErrAuth},
		{"truncated to one segment", sealed[:segAt(1)], 0, seal.ErrAuth},
		{"truncated mid-segment", sealed[:segAt(1)+1000], seg, seal.ErrAuth},
		{"truncated one byte after a boundary", sealed[:segAt(2)+1], 2 * seg, seal.ErrAuth},
		{"truncated in final tag", sealed[:len(sealed)-5], 3 * seg, seal.ErrAuth},
		{"final segment cut to a stub", sealed[:segAt(3)+3], 3 * seg, seal.ErrAuth},
		{"segments 0 and 1 swapped", cat(h, s(1), s(0), s(2), s(3)), 0, seal.ErrAuth},
		{"segments 1 and 2 swapped", cat(h, s(0), s(2), s(1), s(3)), seg, seal.ErrAuth},
		{"middle segment dropped", cat(h, s(0), s(2), s(3)), seg, seal.ErrAuth},
		{"segment repeated", cat(h, s(0), s(0), s(1), s(2), s(3)), seg, seal.ErrAuth},
		{"segment appended", cat(sealed, s(1)), 3 * seg, seal.ErrAuth},
		{"final segment appended again", cat(sealed, s(3)), 3 * seg, seal.ErrAuth},
		{"one byte appended", cat(sealed, []byte{0}), 3 * seg, seal.ErrAuth},
		{"segment from another object", cat(h, s(0), other[segAt(1):segAt(2)], s(2), s(3)), seg, seal.ErrAuth},
		{"header from another object", cat(other[:hdr], sealed[hdr:]), 0, seal.ErrAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := open(tc.in, oneKey(key), testAAD)
			checkFailure(t, got, err, plain[:tc.good], tc.want)
			// Also through odd-sized reads and a source that trickles.
			r, err := seal.NewReader(iotest.HalfReader(bytes.NewReader(tc.in)), oneKey(key), testAAD)
			if err == nil {
				got, err = readOdd(r)
			}
			checkFailure(t, got, err, plain[:tc.good], tc.want)
			// And through io.Copy, which uses the reader's WriteTo.
			var buf bytes.Buffer
			r, err = seal.NewReader(bytes.NewReader(tc.in), oneKey(key), testAAD)
			if err == nil {
				_, err = io.Copy(&buf, r)
			}
			checkFailure(t, buf.Bytes(), err, plain[:tc.good], tc.want)
		})
	}
}

// checkFailure asserts that a read failed with want and yielded exactly
// good: all of the segments before the bad one, nothing of it.
func checkFailure(t *testing.T, got []byte, err error, good []byte, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if !strings.HasPrefix(err.Error(), "seal: ") {
		t.Errorf("error %q lacks the seal: prefix", err)
	}
	if !bytes.Equal(got, good) {
		t.Fatalf("yielded %d bytes before failing, want exactly the %d of the good segments", len(got), len(good))
	}
}

func TestWrongKeyAADOrVersion(t *testing.T) {
	t.Parallel()
	k1, k2 := dataKey(5), dataKey(6)
	plain := plaintext(seg + 10)
	sealed := sealChunked(t, k2, 2, testAAD, plain)
	versions := func(v uint32) ([32]byte, error) {
		switch v {
		case 1:
			return k1, nil
		case 2:
			return k2, nil
		}
		return [32]byte{}, fmt.Errorf("no data key version %d", v)
	}
	if got, err := open(sealed, versions, testAAD); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("right key: %v", err)
	}
	for name, tc := range map[string]struct {
		keys func(uint32) ([32]byte, error)
		aad  []byte
	}{
		"wrong key":            {oneKey(k1), testAAD},
		"wrong version lookup": {func(v uint32) ([32]byte, error) { return versions(v - 1) }, testAAD},
		"wrong aad":            {versions, []byte("tenant:evil")},
		"no aad":               {versions, nil},
		"longer aad":           {versions, append(bytes.Clone(testAAD), 0)},
	} {
		got, err := open(sealed, tc.keys, tc.aad)
		if !errors.Is(err, seal.ErrAuth) || len(got) != 0 {
			t.Errorf("%s: yielded %d bytes, err %v; want nothing and ErrAuth", name, len(got), err)
		}
	}

	// A version the caller has no key for: its error comes back wrapped.
	noKey := errors.New("no such version")
	_, err := open(sealed, func(uint32) ([32]byte, error) { return [32]byte{}, noKey }, testAAD)
	if !errors.Is(err, noKey) || errors.Is(err, seal.ErrAuth) {
		t.Errorf("key lookup failure: %v", err)
	}
	// A header whose version was edited asks for that version.
	edited := bytes.Clone(sealed)
	binary.BigEndian.PutUint32(edited[8:12], 1)
	if got, err := open(edited, versions, testAAD); !errors.Is(err, seal.ErrAuth) || len(got) != 0 {
		t.Errorf("version edited to 1: %d bytes, %v", len(got), err)
	}
	binary.BigEndian.PutUint32(edited[8:12], 3)
	if _, err := open(edited, versions, testAAD); err == nil || !strings.Contains(err.Error(), "version 3") {
		t.Errorf("version edited to 3: %v", err)
	}
}

// TestFormatMatchesDoc opens a sealed object with an independent
// implementation of the format documented in doc.go, and checks that the
// reader refuses an authentic but non-canonical object (an empty final
// segment after a full one).
func TestFormatMatchesDoc(t *testing.T) {
	t.Parallel()
	key := dataKey(7)
	plain := plaintext(seg + 300)
	sealed := sealChunked(t, key, 42, testAAD, plain)

	header := sealed[:hdr]
	okm, err := hkdf.Key(sha256.New, key[:], header[12:28], "pwmesh seal stream v1", 39)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	ad := append(bytes.Clone(header), testAAD...)
	nonce := func(i uint32, last bool) []byte {
		n := append(bytes.Clone(okm[32:39]), 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint32(n[7:11], i)
		if last {
			n[11] = 1
		}
		return n
	}
	p0, err := gcm.Open(nil, nonce(0, false), sealed[segAt(0):segAt(1)], ad)
	if err != nil {
		t.Fatalf("segment 0: %v", err)
	}
	p1, err := gcm.Open(nil, nonce(1, true), sealed[segAt(1):], ad)
	if err != nil {
		t.Fatalf("segment 1: %v", err)
	}
	if !bytes.Equal(append(p0, p1...), plain) {
		t.Fatal("documented format decrypts to other plaintext")
	}

	// seg bytes as one non-final segment, then an empty final one.
	odd := bytes.Clone(sealed[:segAt(1)])
	odd = gcm.Seal(odd, nonce(1, true), nil, ad)
	got, err := open(odd, oneKey(key), testAAD)
	if !errors.Is(err, seal.ErrFormat) || !bytes.Equal(got, plain[:seg]) {
		t.Fatalf("empty final segment after a full one: %d bytes, %v", len(got), err)
	}
}

func TestEmptyPlaintext(t *testing.T) {
	t.Parallel()
	key := dataKey(8)
	sealed := sealChunked(t, key, 1, nil, nil)
	if len(sealed) != hdr+tagSize {
		t.Fatalf("sealed empty plaintext is %d bytes, want %d", len(sealed), hdr+tagSize)
	}
	if got, err := open(sealed, oneKey(key), nil); err != nil || len(got) != 0 {
		t.Fatalf("open: %d bytes, %v", len(got), err)
	}
	// An empty write changes nothing.
	var buf bytes.Buffer
	w, err := seal.NewWriter(&buf, key, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v", n, err)
	}
	if buf.Len() != 0 {
		t.Error("bytes written before Close")
	}
	if err := w.Close(); err != nil || buf.Len() != hdr+tagSize {
		t.Fatalf("Close: %v, %d bytes", err, buf.Len())
	}
	for name, in := range map[string][]byte{
		"tag flipped":      append(bytes.Clone(sealed[:len(sealed)-1]), sealed[len(sealed)-1]^1),
		"segment dropped":  sealed[:hdr],
		"segment doubled":  append(bytes.Clone(sealed), sealed[hdr:]...),
		"tag cut to 15":    sealed[:len(sealed)-1],
		"non-empty before": append(bytes.Clone(sealed), 1),
	} {
		if got, err := open(in, oneKey(key), nil); !errors.Is(err, seal.ErrAuth) || len(got) != 0 {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
	}
}

type failWriter struct {
	after int // bytes accepted before failing
	err   error
}

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.after {
		return 0, f.err
	}
	f.after -= len(p)
	return len(p), nil
}

func TestWriterLifecycle(t *testing.T) {
	t.Parallel()
	key := dataKey(9)
	var buf bytes.Buffer
	w, err := seal.NewWriter(&buf, key, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if got, err := open(buf.Bytes(), oneKey(key), nil); err != nil || string(got) != "hello" {
		t.Fatalf("open: %q, %v", got, err)
	}

	// A destination error is returned and sticks.
	boom := errors.New("disk full")
	w, err = seal.NewWriter(&failWriter{after: hdr + sealedSeg, err: boom}, key, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := w.Write(plaintext(3 * seg))
	if !errors.Is(err, boom) || n != seg {
		t.Fatalf("Write = %d, %v; want %d, %v", n, err, seg, boom)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, boom) {
		t.Errorf("Write after failure: %v", err)
	}
	if err := w.Close(); !errors.Is(err, boom) {
		t.Errorf("Close after failure: %v", err)
	}

	if _, err := seal.NewWriter(nil, key, 1, nil); err == nil {
		t.Error("nil destination accepted")
	}
	if _, err := seal.NewReader(bytes.NewReader(nil), nil, nil); err == nil {
		t.Error("nil key lookup accepted")
	}
}

func TestReaderSourceError(t *testing.T) {
	t.Parallel()
	key := dataKey(10)
	plain := plaintext(2*seg + 1)
	sealed := sealChunked(t, key, 1, nil, plain)
	boom := errors.New("connection reset")
	src := io.MultiReader(bytes.NewReader(sealed[:segAt(1)+10]), iotest.ErrReader(boom))
	r, err := seal.NewReader(src, oneKey(key), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) || errors.Is(err, seal.ErrAuth) {
		t.Fatalf("err = %v, want the source's error", err)
	}
	if !bytes.Equal(got, plain[:seg]) {
		t.Fatalf("yielded %d bytes, want %d", len(got), seg)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, boom) {
		t.Errorf("error did not stick: %v", err)
	}
}

func FuzzReader(f *testing.F) {
	key := dataKey(11)
	for _, n := range []int{0, 1, 100, seg, seg + 1} {
		f.Add(sealChunked(f, key, 1, testAAD, plaintext(n)))
	}
	f.Add([]byte{})
	f.Add([]byte("PWMSEAL1"))
	f.Add([]byte("PWMSEAL1\x00\x00\x00\x010123456789abcdef"))
	f.Add([]byte("PWMSEAL1\x00\x00\x00\x010123456789abcdef0123456789abcdef"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := seal.NewReader(bytes.NewReader(data), oneKey(key), testAAD)
		if err != nil {
			if !errors.Is(err, seal.ErrFormat) {
				t.Fatalf("NewReader: %v", err)
			}
			return
		}
		out, err := io.ReadAll(r)
		if err != nil {
			if !errors.Is(err, seal.ErrAuth) && !errors.Is(err, seal.ErrFormat) {
				t.Fatalf("Read: %v", err)
			}
			return
		}
		if got := seal.SealedSize(int64(len(out))); got != int64(len(data)) {
			t.Fatalf("opened %d bytes from %d, SealedSize says %d", len(out), len(data), got)
		}
	})
}

const benchSize = 64 << 20

func BenchmarkSeal(b *testing.B) {
	key, plain := dataKey(12), plaintext(benchSize)
	b.SetBytes(benchSize)
	for b.Loop() {
		w, err := seal.NewWriter(io.Discard, key, 1, testAAD)
		if err != nil {
			b.Fatal(err)
		}
		for p := plain; len(p) > 0; p = p[1<<20:] {
			if _, err := w.Write(p[:1<<20]); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	key := dataKey(13)
	sealed := sealChunked(b, key, 1, testAAD, plaintext(benchSize))
	b.SetBytes(benchSize)
	for b.Loop() {
		r, err := seal.NewReader(bytes.NewReader(sealed), oneKey(key), testAAD)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != benchSize {
			b.Fatal(n, err)
		}
	}
}
