package mirror

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/ipfs/go-cid"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/pwmesh/pwmesh/cas"
)

const (
	blocksDir = "blocks/"
	tmpDir    = "tmp/"
	copyBuf   = 256 << 10
	// abortTimeout bounds the clean-up S3 does after an upload fails or is
	// cancelled (AbortMultipartUpload, on a context of its own).
	abortTimeout = 30 * time.Second
)

// Store is a cas.Store in an object-storage bucket. It is safe for
// concurrent use; several Stores (on several nodes) may share a bucket and
// prefix.
type Store struct {
	b    *blob.Bucket
	url  string // without credentials
	opts Options
	// copyLimit is the largest object the bucket copies server-side; a
	// larger one is streamed through. 0: no limit.
	copyLimit int64

	s3         *s3.Client // set for s3://
	s3Checksum aws.RequestChecksumCalculation
	gcs        *storage.Client // set when Open built the client; closed by Close
}

var _ cas.Store = (*Store)(nil)

// String returns the bucket URL without credentials.
func (s *Store) String() string { return s.url }

// Close releases the bucket. Files already opened fail afterwards.
func (s *Store) Close() error {
	err := s.b.Close()
	if s.gcs != nil {
		err = errors.Join(err, s.gcs.Close())
	}
	if err != nil {
		return fmt.Errorf("mirror: close %s: %w", s.url, err)
	}
	return nil
}

func (s *Store) key(c cid.Cid) string { return s.opts.Prefix + blocksDir + c.String() }

// Put implements cas.Store: it uploads to a temporary key while hashing, then
// copies to the CID's key and deletes the temporary one.
func (s *Store) Put(ctx context.Context, r io.Reader) (cas.Ref, error) {
	if err := ctx.Err(); err != nil {
		return cas.Ref{}, fmt.Errorf("mirror: put: %w", err)
	}
	tmp := s.opts.Prefix + tmpDir + rand.Text()
	ref, err := s.write(ctx, tmp, r, nil)
	if err != nil {
		return cas.Ref{}, fmt.Errorf("mirror: put: %w", err)
	}
	defer s.deleteTemp(ctx, tmp)
	if err := s.publish(ctx, tmp, ref); err != nil {
		return cas.Ref{}, fmt.Errorf("mirror: put %s: %w", ref.CID, err)
	}
	return ref, nil
}

// PutExpected implements cas.Store: it uploads straight to want's key while
// hashing and aborts the upload unless the content hashes to want.
func (s *Store) PutExpected(ctx context.Context, r io.Reader, want cid.Cid) (cas.Ref, error) {
	if err := cas.ValidateCID(want); err != nil {
		return cas.Ref{}, fmt.Errorf("mirror: put: %w", err)
	}
	ref, err := s.putExpected(ctx, r, want)
	if err != nil {
		return cas.Ref{}, fmt.Errorf("mirror: put %s: %w", want, err)
	}
	return ref, nil
}

func (s *Store) putExpected(ctx context.Context, r io.Reader, want cid.Cid) (cas.Ref, error) {
	if err := ctx.Err(); err != nil {
		return cas.Ref{}, err
	}
	check := func(got cas.Ref) error {
		if !got.CID.Equals(want) {
			return fmt.Errorf("%w: content hashes to %s", cas.ErrCorrupt, got.CID)
		}
		return nil
	}
	ok, err := s.b.Exists(ctx, s.key(want))
	if err != nil {
		return cas.Ref{}, err
	}
	if !ok {
		return s.write(ctx, s.key(want), r, check)
	}
	// Already stored: the content must still hash to want, but need not
	// travel again.
	h := cas.NewHasher()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, r}, make([]byte, copyBuf)); err != nil {
		return cas.Ref{}, err
	}
	return h.Ref(), check(h.Ref())
}

// write streams r to key while hashing it. When reading fails, ctx ends or
// check refuses the hash, it cancels the upload's context before closing the
// writer, which gocloud documents as aborting the write: nothing appears
// under key (and S3 aborts the multipart upload).
func (s *Store) write(ctx context.Context, key string, r io.Reader, check func(cas.Ref) error) (cas.Ref, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.b.NewWriter(wctx, key, &blob.WriterOptions{
		BufferSize:     s.opts.PartSize,
		MaxConcurrency: s.opts.Concurrency,
		ContentType:    "application/octet-stream",
		BeforeWrite:    s.beforeWrite,
	})
	if err != nil {
		return cas.Ref{}, err
	}
	h := cas.NewHasher()
	_, err = io.CopyBuffer(io.MultiWriter(w, h), ctxReader{ctx, r}, make([]byte, copyBuf))
	ref := h.Ref()
	if err == nil && check != nil {
		err = check(ref)
	}
	if err != nil {
		cancel()
		_ = w.Close() // aborted: reports the cancellation
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return cas.Ref{}, err
	}
	if err := w.Close(); err != nil {
		return cas.Ref{}, err
	}
	return ref, nil
}

// beforeWrite configures S3 uploads beyond what blob.WriterOptions can say:
// multipart from PartSize on (s3blob's transfer manager would otherwise read
// up to 16 MiB into memory before choosing), and a fresh context for
// aborting the multipart upload after our context was cancelled.
func (s *Store) beforeWrite(as func(any) bool) error {
	var tm *transfermanager.Client
	if s.s3 == nil || !as(&tm) {
		return nil
	}
	*tm = *transfermanager.New(s.s3, func(o *transfermanager.Options) {
		o.PartSizeBytes = int64(s.opts.PartSize)
		o.MultipartUploadThreshold = int64(s.opts.PartSize)
		o.Concurrency = s.opts.Concurrency
		o.FailTimeout = abortTimeout
		o.RequestChecksumCalculation = s.s3Checksum
	})
	return nil
}

// publish makes the verified temporary object tmp visible under ref's CID.
func (s *Store) publish(ctx context.Context, tmp string, ref cas.Ref) error {
	final := s.key(ref.CID)
	ok, err := s.b.Exists(ctx, final)
	if err != nil || ok {
		return err // ok: already stored, Put is idempotent
	}
	if s.copyLimit > 0 && ref.Size > s.copyLimit {
		// Too large to copy server-side: stream it through, hashing again.
		r, err := s.b.NewReader(ctx, tmp, nil)
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = s.write(ctx, final, r, func(got cas.Ref) error {
			if !got.CID.Equals(ref.CID) {
				return fmt.Errorf("%w: temporary object %s changed", cas.ErrCorrupt, tmp)
			}
			return nil
		})
		return err
	}
	return s.b.Copy(ctx, final, tmp, nil)
}

// deleteTemp removes a temporary object, even when ctx has ended.
func (s *Store) deleteTemp(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if err := s.b.Delete(ctx, key); err != nil {
		s.opts.Logger.Warn("mirror: delete temporary object", "key", key, "err", err)
	}
}

// Open implements cas.Store. The File reads ranges as it is read and
// sought, on ctx.
func (s *Store) Open(ctx context.Context, c cid.Cid) (cas.File, error) {
	if err := check(ctx, c); err != nil {
		return nil, fmt.Errorf("mirror: open: %w", err)
	}
	a, err := s.b.Attributes(ctx, s.key(c))
	if err != nil {
		return nil, fmt.Errorf("mirror: open %s: %w", c, notFound(err))
	}
	return &file{ctx: ctx, b: s.b, key: s.key(c), size: a.Size}, nil
}

// Stat implements cas.Store.
func (s *Store) Stat(ctx context.Context, c cid.Cid) (cas.Ref, error) {
	if err := check(ctx, c); err != nil {
		return cas.Ref{}, fmt.Errorf("mirror: stat: %w", err)
	}
	a, err := s.b.Attributes(ctx, s.key(c))
	if err != nil {
		return cas.Ref{}, fmt.Errorf("mirror: stat %s: %w", c, notFound(err))
	}
	return refOf(c, a.Size), nil
}

// Has implements cas.Store.
func (s *Store) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if err := check(ctx, c); err != nil {
		return false, fmt.Errorf("mirror: has: %w", err)
	}
	ok, err := s.b.Exists(ctx, s.key(c))
	if err != nil {
		return false, fmt.Errorf("mirror: has %s: %w", c, err)
	}
	return ok, nil
}

// Delete implements cas.Store.
func (s *Store) Delete(ctx context.Context, c cid.Cid) error {
	if err := check(ctx, c); err != nil {
		return fmt.Errorf("mirror: delete: %w", err)
	}
	if err := s.b.Delete(ctx, s.key(c)); err != nil {
		return fmt.Errorf("mirror: delete %s: %w", c, notFound(err))
	}
	return nil
}

// List implements cas.Store. It pages through <prefix>blocks/ and ignores
// keys that are not a CID in its canonical form.
func (s *Store) List(ctx context.Context, fn func(cas.Ref) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mirror: list: %w", err)
	}
	dir := s.opts.Prefix + blocksDir
	it := s.b.List(&blob.ListOptions{Prefix: dir, Delimiter: "/"})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mirror: list: %w", err)
		}
		name := obj.Key[len(dir):]
		c, err := cas.ParseCID(name)
		if obj.IsDir || err != nil || c.String() != name {
			continue
		}
		if err := fn(refOf(c, obj.Size)); err != nil {
			return fmt.Errorf("mirror: list: %w", err)
		}
	}
}

// Verify implements cas.Store: it reads the object back and re-hashes it.
func (s *Store) Verify(ctx context.Context, c cid.Cid) error {
	f, err := s.Open(ctx, c)
	if err != nil {
		return fmt.Errorf("mirror: verify: %w", err)
	}
	defer f.Close()
	h := cas.NewHasher()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, copyBuf)); err != nil {
		return fmt.Errorf("mirror: verify %s: %w", c, err)
	}
	if got := h.Ref(); !got.CID.Equals(c) {
		return fmt.Errorf("mirror: verify %s: %w: content hashes to %s", c, cas.ErrCorrupt, got.CID)
	}
	return nil
}

func check(ctx context.Context, c cid.Cid) error {
	if err := cas.ValidateCID(c); err != nil {
		return err
	}
	return ctx.Err()
}

func refOf(c cid.Cid, size int64) cas.Ref {
	sum, _ := cas.SHA256Hex(c) // c is valid: checked by the caller
	return cas.Ref{CID: c, SHA256: sum, Size: size}
}

// notFound marks gocloud's NotFound errors with cas.ErrNotFound.
func notFound(err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("%w: %w", cas.ErrNotFound, err)
	}
	return err
}

// ctxReader stops a stream once its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
