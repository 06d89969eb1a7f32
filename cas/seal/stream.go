package seal

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

const (
	magic    = "PWMSEAL1" // 8 bytes
	saltSize = 16
	// HeaderSize is the length of the header that starts every sealed
	// object: magic, key version, salt.
	HeaderSize = 28 // len(magic) + 4 (version) + saltSize

	// segmentSize is the plaintext size of every segment but the last.
	segmentSize = 64 << 10
	// sealedSegmentSize is the stored size of a full segment.
	sealedSegmentSize = segmentSize + gcmTagSize
	// noncePrefixSize is the part of each GCM nonce derived per object; the
	// remaining 5 bytes are the segment counter and the last-segment flag.
	noncePrefixSize = gcmNonceSize - 4 - 1

	// streamInfo is the HKDF info label of per-object subkeys.
	streamInfo = "pwmesh seal stream v1"
)

// errClosed is returned by Write after Close.
var errClosed = errors.New("seal: write to closed writer")

// stream is the per-object cipher state shared by writer and reader.
type stream struct {
	aead  cipher.AEAD
	nonce [gcmNonceSize]byte // prefix fixed; counter and flag set per segment
	ad    []byte             // header || caller's aad
}

// newStream derives the object's subkey and nonce prefix from the data key
// and the header's salt: HKDF-SHA256(ikm=key, salt=salt, info=streamInfo)
// gives 32 key bytes then 7 prefix bytes.
func newStream(key [KeySize]byte, header, aad []byte) (*stream, error) {
	okm, err := hkdf.Key(sha256.New, key[:], header[HeaderSize-saltSize:HeaderSize], streamInfo, KeySize+noncePrefixSize)
	if err != nil {
		return nil, fmt.Errorf("seal: derive object key: %w", err)
	}
	defer clear(okm)
	aead, err := newGCM(okm[:KeySize])
	if err != nil {
		return nil, err
	}
	s := &stream{aead: aead, ad: make([]byte, 0, HeaderSize+len(aad))}
	copy(s.nonce[:], okm[KeySize:])
	s.ad = append(append(s.ad, header[:HeaderSize]...), aad...)
	return s, nil
}

// nonceFor returns the nonce of segment seq: prefix || seq (4 bytes
// big-endian) || 1 for the last segment, 0 otherwise.
func (s *stream) nonceFor(seq uint32, last bool) []byte {
	binary.BigEndian.PutUint32(s.nonce[noncePrefixSize:], seq)
	s.nonce[gcmNonceSize-1] = 0
	if last {
		s.nonce[gcmNonceSize-1] = 1
	}
	return s.nonce[:]
}

// SealedSize returns the exact length of the sealed form of plain bytes of
// plaintext: the header plus a 16-byte tag per segment, with at least one
// segment. It panics if plain is negative.
func SealedSize(plain int64) int64 {
	if plain < 0 {
		panic("seal: SealedSize of a negative length")
	}
	segs := plain / segmentSize
	if plain%segmentSize != 0 || plain == 0 {
		segs++
	}
	return HeaderSize + plain + segs*gcmTagSize
}

// KeyVersion reads a header (exactly HeaderSize bytes) from r and returns the
// data-key version it names. It fails with ErrFormat when r holds no header.
func KeyVersion(r io.Reader) (uint32, error) {
	var h [HeaderSize]byte
	if err := readHeader(r, h[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(h[len(magic):]), nil
}

func readHeader(r io.Reader, h []byte) error {
	n, err := io.ReadFull(r, h)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: header is %d bytes, want %d", ErrFormat, n, HeaderSize)
	case err != nil:
		return fmt.Errorf("seal: read header: %w", err)
	case string(h[:len(magic)]) != magic:
		return fmt.Errorf("%w: not a sealed object (bad magic)", ErrFormat)
	}
	return nil
}

// writer seals what it is given, one segment at a time.
type writer struct {
	dst    io.Writer
	s      *stream
	header []byte // written with the first segment, then nil
	buf    []byte // plaintext of the segment being filled; cap segmentSize
	out    []byte // scratch: header (first time) and one sealed segment
	seq    uint32 // number of the next segment
	closed bool
	err    error // sticky: the first write error
}

// NewWriter returns a WriteCloser that seals what is written to it into dst
// with data key key, of the given version, binding aad (which NewReader must
// be given again). Each object gets a random salt, so sealing the same
// plaintext twice gives different bytes.
//
// Plaintext is buffered one 64 KiB segment at a time; nothing reaches dst
// before the first segment is full or Close is called. Close seals the final
// segment and must be called, or the object is unreadable; it does not close
// dst. The writer is not safe for concurrent use.
func NewWriter(dst io.Writer, key [KeySize]byte, version uint32, aad []byte) (io.WriteCloser, error) {
	if dst == nil {
		return nil, errors.New("seal: new writer: nil destination")
	}
	h := make([]byte, HeaderSize)
	copy(h, magic)
	binary.BigEndian.PutUint32(h[len(magic):], version)
	rand.Read(h[HeaderSize-saltSize:]) // never fails; crashes the program if it cannot read
	s, err := newStream(key, h, aad)
	if err != nil {
		return nil, err
	}
	return &writer{
		dst:    dst,
		s:      s,
		header: h,
		buf:    make([]byte, 0, segmentSize),
		out:    make([]byte, 0, HeaderSize+sealedSegmentSize),
	}, nil
}

func (w *writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errClosed
	}
	n := 0
	for len(p) > 0 {
		if len(w.buf) == segmentSize {
			// More plaintext follows, so the buffered segment is not the last.
			if err := w.seal(w.buf, false); err != nil {
				return n, err
			}
			w.buf = w.buf[:0]
		}
		if len(w.buf) == 0 && len(p) > segmentSize {
			// A full segment with more after it: seal it straight from p.
			if err := w.seal(p[:segmentSize], false); err != nil {
				return n, err
			}
			p, n = p[segmentSize:], n+segmentSize
			continue
		}
		k := copy(w.buf[len(w.buf):segmentSize], p)
		w.buf = w.buf[:len(w.buf)+k]
		p, n = p[k:], n+k
	}
	return n, nil
}

// Close seals and writes the final segment. Calling it again returns the
// first call's result.
func (w *writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil {
		w.err = w.seal(w.buf, true)
	}
	clear(w.buf[:cap(w.buf)])
	w.buf, w.out = nil, nil
	return w.err
}

func (w *writer) seal(plain []byte, last bool) error {
	if !last && w.seq == math.MaxUint32 {
		w.err = fmt.Errorf("seal: object too large: more than %d segments", uint64(math.MaxUint32)+1)
		return w.err
	}
	out := append(w.out[:0], w.header...)
	out = w.s.aead.Seal(out, w.s.nonceFor(w.seq, last), plain, w.s.ad)
	w.out = out
	if _, err := w.dst.Write(out); err != nil {
		w.err = fmt.Errorf("seal: write segment %d: %w", w.seq, err)
		return w.err
	}
	w.header = nil
	w.seq++
	return nil
}

// reader opens a sealed object one segment at a time.
type reader struct {
	src   io.Reader
	s     *stream
	buf   []byte // one sealed segment and one byte of look-ahead
	plain []byte // authenticated plaintext not yet returned, within buf
	ahead bool   // a look-ahead byte is pending in next
	next  byte
	seq   uint32 // number of the next segment
	err   error  // sticky; io.EOF after the final segment
}

// NewReader reads a header from src, asks keys for the data key of the
// version it names, and returns a Reader of the plaintext. aad must equal
// the one given to NewWriter.
//
// The reader authenticates each 64 KiB segment before returning any of it.
// Any tampering (altered bytes, reordered, dropped or added segments, a
// truncated or extended object), a wrong key or a wrong aad makes Read fail
// with an error wrapping ErrAuth (or ErrFormat for a malformed header) once it
// reaches the bad segment; plaintext of earlier segments has been returned by
// then, so callers that must not act on partial content should read to io.EOF
// first. An error from keys is returned wrapped. Memory use is one segment.
func NewReader(src io.Reader, keys func(version uint32) ([KeySize]byte, error), aad []byte) (io.Reader, error) {
	if src == nil || keys == nil {
		return nil, errors.New("seal: new reader: nil source or key lookup")
	}
	h := make([]byte, HeaderSize)
	if err := readHeader(src, h); err != nil {
		return nil, err
	}
	version := binary.BigEndian.Uint32(h[len(magic):])
	key, err := keys(version)
	if err != nil {
		return nil, fmt.Errorf("seal: data key version %d: %w", version, err)
	}
	s, err := newStream(key, h, aad)
	clear(key[:])
	if err != nil {
		return nil, err
	}
	return &reader{src: src, s: s, buf: make([]byte, sealedSegmentSize+1)}, nil
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		r.err = r.readSegment()
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

// WriteTo writes the plaintext to w a segment at a time, sparing io.Copy a
// buffer. It stops at the first error, as Read does, having written only
// authenticated segments.
func (r *reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(r.plain) > 0 {
			n, err := w.Write(r.plain)
			total += int64(n)
			r.plain = r.plain[n:]
			if err != nil {
				return total, err
			}
			continue
		}
		if r.err == io.EOF {
			return total, nil
		}
		if r.err != nil {
			return total, r.err
		}
		r.err = r.readSegment()
	}
}

// readSegment reads, authenticates and decrypts the next segment into
// r.plain. It returns io.EOF after the final one. A segment is final when the
// source ends within one full sealed segment of its start; otherwise the
// byte after it is kept as look-ahead for the next.
func (r *reader) readSegment() error {
	start := 0
	if r.ahead {
		r.buf[0], start = r.next, 1
	}
	n, err := io.ReadFull(r.src, r.buf[start:])
	n += start
	last := false
	switch {
	case err == nil:
		r.ahead, r.next = true, r.buf[sealedSegmentSize]
		n = sealedSegmentSize
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		r.ahead, last = false, true
	default:
		return fmt.Errorf("seal: read segment %d: %w", r.seq, err)
	}
	if n < gcmTagSize {
		return fmt.Errorf("%w: segment %d truncated to %d bytes", ErrAuth, r.seq, n)
	}
	if !last && r.seq == math.MaxUint32 {
		return fmt.Errorf("%w: more than %d segments", ErrAuth, uint64(math.MaxUint32)+1)
	}
	seg := r.buf[:n]
	plain, err := r.s.aead.Open(seg[:0], r.s.nonceFor(r.seq, last), seg, r.s.ad)
	if err != nil {
		return fmt.Errorf("%w: segment %d", ErrAuth, r.seq)
	}
	if last && len(plain) == 0 && r.seq > 0 {
		// Authentic, but NewWriter never ends a non-empty object so.
		return fmt.Errorf("%w: empty final segment %d", ErrFormat, r.seq)
	}
	r.plain = plain
	r.seq++
	if last {
		return io.EOF
	}
	return nil
}
