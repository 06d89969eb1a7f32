package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"

	"gocloud.dev/blob"
)

// file is what Open returns: a seekable view of an object that reads it with
// range requests, opening one lazily at the current offset on the first
// Read after a Seek, so seeking costs nothing and only what is read travels.
// Like an *os.File it is not for concurrent use.
type file struct {
	ctx  context.Context // Open's: governs every read
	b    *blob.Bucket
	key  string
	size int64
	off  int64        // where the next Read starts
	r    *blob.Reader // open at off, or nil
}

func (f *file) Size() int64 { return f.size }

func (f *file) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	if f.r == nil {
		r, err := f.b.NewRangeReader(f.ctx, f.key, f.off, f.size-f.off, nil)
		if err != nil {
			return 0, fmt.Errorf("mirror: read %s at %d: %w", f.key, f.off, notFound(err))
		}
		f.r = r
	}
	n, err := f.r.Read(p)
	f.off += int64(n)
	if errors.Is(err, io.EOF) && f.off < f.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (f *file) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = f.off + offset
	case io.SeekEnd:
		abs = f.size + offset
	default:
		return f.off, fmt.Errorf("mirror: seek %s: invalid whence %d", f.key, whence)
	}
	if abs < 0 {
		return f.off, fmt.Errorf("mirror: seek %s: negative offset %d", f.key, abs)
	}
	if abs != f.off && f.r != nil {
		_ = f.r.Close() // a new range opens at the next Read
		f.r = nil
	}
	f.off = abs
	return abs, nil
}

func (f *file) Close() error {
	if f.r == nil {
		return nil
	}
	err := f.r.Close()
	f.r = nil
	return err
}
