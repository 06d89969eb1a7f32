package seal

import (
	"errors"
	"fmt"
	"io"
)

// PlainSize returns the plaintext length of a sealed object of sealed bytes,
// the inverse of SealedSize. It fails with ErrFormat for a length no
// plaintext seals to.
func PlainSize(sealed int64) (int64, error) {
	body := sealed - HeaderSize
	if body < gcmTagSize {
		return 0, fmt.Errorf("%w: %d bytes is too short for a sealed object", ErrFormat, sealed)
	}
	full, rem := body/sealedSegmentSize, body%sealedSegmentSize
	switch {
	case rem == 0:
		return full * segmentSize, nil
	case rem < gcmTagSize || (rem == gcmTagSize && full > 0):
		// A final segment holds 1 to 64 KiB, or 0 only as the sole one.
		return 0, fmt.Errorf("%w: %d bytes is not the length of a sealed object", ErrFormat, sealed)
	}
	return full*segmentSize + rem - gcmTagSize, nil
}

// NewSeekReader is NewReader over a source that seeks: the Reader it returns
// also seeks, to any plaintext offset, by reading and authenticating only the
// segment that holds it, so a range at the end of a large object costs one
// segment instead of the whole object before it. The plaintext size is taken
// from src's length (PlainSize): SeekEnd is relative to it and Read at or past
// it returns io.EOF. Every byte returned comes from a segment authenticated at
// its position, final flag included, so tampering, reordering and truncation
// fail as with NewReader (ErrAuth) when the segment they touch is read; after
// an authentication error every Read fails.
func NewSeekReader(src io.ReadSeeker, keys func(version uint32) ([KeySize]byte, error), aad []byte) (io.ReadSeeker, error) {
	if src == nil {
		return nil, errors.New("seal: new seek reader: nil source")
	}
	end, err := src.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("seal: size of the sealed object: %w", err)
	}
	size, err := PlainSize(end)
	if err != nil {
		return nil, err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seal: seek to the header: %w", err)
	}
	r, err := NewReader(src, keys, aad)
	if err != nil {
		return nil, err
	}
	return &seekReader{r: r.(*reader), src: src, size: size}, nil
}

// seekReader moves a reader between segments.
type seekReader struct {
	r    *reader
	src  io.ReadSeeker
	size int64 // of the plaintext
	pos  int64 // where the next Read reads
	at   int64 // where r's next byte is
	bad  error // sticky: a failure other than the end
}

func (s *seekReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.size
	default:
		return 0, errors.New("seal: seek: invalid whence")
	}
	if off < 0 {
		return 0, errors.New("seal: seek before the start")
	}
	s.pos = off
	return off, nil
}

func (s *seekReader) Read(p []byte) (int, error) {
	if s.bad != nil {
		return 0, s.bad
	}
	if s.pos >= s.size {
		return 0, io.EOF
	}
	if s.pos != s.at {
		if err := s.moveTo(s.pos); err != nil {
			s.bad = err
			return 0, err
		}
	}
	n, err := s.r.Read(p)
	s.pos += int64(n)
	s.at += int64(n)
	if err != nil && err != io.EOF {
		s.bad = err
	}
	return n, err
}

// moveTo makes off the offset of r's next byte: within the segment r holds
// it drops what lies before off; otherwise it reads and authenticates the
// segment that holds off, which must be below the size.
func (s *seekReader) moveTo(off int64) error {
	r := s.r
	if off > s.at && off-s.at <= int64(len(r.plain)) {
		r.plain = r.plain[off-s.at:]
		s.at = off
		return nil
	}
	seq := off / segmentSize
	if _, err := s.src.Seek(HeaderSize+seq*sealedSegmentSize, io.SeekStart); err != nil {
		return fmt.Errorf("seal: seek to segment %d: %w", seq, err)
	}
	r.seq, r.ahead, r.plain = uint32(seq), false, nil
	r.err = r.readSegment()
	if r.err != nil && r.err != io.EOF {
		return r.err
	}
	skip := off - seq*segmentSize
	if skip >= int64(len(r.plain)) {
		// The source is shorter than its length said, or changed.
		return fmt.Errorf("%w: segment %d holds %d bytes, want more than %d", ErrAuth, seq, len(r.plain), skip)
	}
	r.plain = r.plain[skip:]
	s.at = off
	return nil
}
