package fsstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
)

const (
	blocksDir = "blocks"
	tmpDir    = "tmp"
	// objectMode is the permission of stored objects: they never change.
	objectMode  fs.FileMode = 0o444
	dirMode     fs.FileMode = 0o755
	copyBuf                 = 256 << 10
	lockStripes             = 64
)

// Option configures a Store.
type Option func(*config)

type config struct {
	fsync bool
}

// WithFsync sets whether Put fsyncs objects and directories before reporting
// success (default true). Turning it off trades crash durability for speed;
// a crash still never leaves a partial object under its CID name.
func WithFsync(on bool) Option { return func(c *config) { c.fsync = on } }

// Store is a cas.Store on the local file system. It is safe for concurrent use.
type Store struct {
	dir  string
	cfg  config
	seed maphash.Seed
	// locks serialise the publish step of Put against Delete per CID, so a
	// Put that found its object already present cannot race a Delete.
	locks [lockStripes]sync.Mutex
}

var _ cas.Store = (*Store)(nil)

// New opens (creating it if need be) the store in dir and removes temp files
// left behind by an earlier crash.
func New(dir string, opts ...Option) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fsstore: empty directory")
	}
	cfg := config{fsync: true}
	for _, o := range opts {
		o(&cfg)
	}
	for _, d := range []string{dir, filepath.Join(dir, blocksDir), filepath.Join(dir, tmpDir)} {
		if err := os.MkdirAll(d, dirMode); err != nil {
			return nil, fmt.Errorf("fsstore: new: %w", err)
		}
	}
	tmp := filepath.Join(dir, tmpDir)
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("fsstore: new: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return nil, fmt.Errorf("fsstore: new: clean temp: %w", err)
		}
	}
	return &Store{dir: dir, cfg: cfg, seed: maphash.MakeSeed()}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Path is where c's object lives (or would live) on disk: for tools and
// tests that inspect or damage it.
func (s *Store) Path(c cid.Cid) string { return s.path(c) }

func (s *Store) path(c cid.Cid) string {
	str := c.String()
	return filepath.Join(s.dir, blocksDir, str[len(str)-2:], str)
}

func (s *Store) lock(c cid.Cid) *sync.Mutex {
	return &s.locks[maphash.String(s.seed, c.KeyString())%lockStripes]
}

// Put implements cas.Store.
func (s *Store) Put(ctx context.Context, r io.Reader) (cas.Ref, error) {
	ref, err := s.put(ctx, r, cid.Undef)
	if err != nil {
		return cas.Ref{}, fmt.Errorf("fsstore: put: %w", err)
	}
	return ref, nil
}

// PutExpected implements cas.Store.
func (s *Store) PutExpected(ctx context.Context, r io.Reader, want cid.Cid) (cas.Ref, error) {
	if err := cas.ValidateCID(want); err != nil {
		return cas.Ref{}, fmt.Errorf("fsstore: put: %w", err)
	}
	ref, err := s.put(ctx, r, want)
	if err != nil {
		return cas.Ref{}, fmt.Errorf("fsstore: put %s: %w", want, err)
	}
	return ref, nil
}

func (s *Store) put(ctx context.Context, r io.Reader, want cid.Cid) (ref cas.Ref, err error) {
	if err := ctx.Err(); err != nil {
		return cas.Ref{}, err
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "put-*")
	if err != nil {
		return cas.Ref{}, err
	}
	tmpName := f.Name()
	published := false
	defer func() {
		if f != nil {
			f.Close()
		}
		if !published {
			os.Remove(tmpName)
		}
	}()

	h := cas.NewHasher()
	buf := make([]byte, copyBuf)
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), ctxReader{ctx, r}, buf); err != nil {
		return cas.Ref{}, err
	}
	ref = h.Ref()
	if want.Defined() && !want.Equals(ref.CID) {
		return cas.Ref{}, fmt.Errorf("%w: content hashes to %s", cas.ErrCorrupt, ref.CID)
	}
	final := s.path(ref.CID)

	mu := s.lock(ref.CID)
	mu.Lock()
	defer mu.Unlock()
	if _, err := os.Lstat(final); err == nil {
		return ref, nil // already stored: Put is idempotent
	}
	if err := f.Chmod(objectMode); err != nil {
		return cas.Ref{}, err
	}
	if s.cfg.fsync {
		if err := f.Sync(); err != nil {
			return cas.Ref{}, err
		}
	}
	err = f.Close()
	f = nil
	if err != nil {
		return cas.Ref{}, err
	}
	shard := filepath.Dir(final)
	if err := os.Mkdir(shard, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return cas.Ref{}, err
	}
	if err := os.Rename(tmpName, final); err != nil {
		return cas.Ref{}, err
	}
	published = true
	if s.cfg.fsync {
		if err := syncDir(shard); err != nil {
			return cas.Ref{}, err
		}
		if err := syncDir(filepath.Dir(shard)); err != nil {
			return cas.Ref{}, err
		}
	}
	return ref, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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

// file is what Open returns.
type file struct {
	*os.File
	size int64
}

func (f *file) Size() int64 { return f.size }

// Open implements cas.Store.
func (s *Store) Open(ctx context.Context, c cid.Cid) (cas.File, error) {
	if err := s.check(ctx, c); err != nil {
		return nil, fmt.Errorf("fsstore: open: %w", err)
	}
	f, err := os.Open(s.path(c))
	if err != nil {
		return nil, fmt.Errorf("fsstore: open %s: %w", c, notFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fsstore: open %s: %w", c, err)
	}
	return &file{File: f, size: fi.Size()}, nil
}

// Stat implements cas.Store.
func (s *Store) Stat(ctx context.Context, c cid.Cid) (cas.Ref, error) {
	if err := s.check(ctx, c); err != nil {
		return cas.Ref{}, fmt.Errorf("fsstore: stat: %w", err)
	}
	fi, err := os.Lstat(s.path(c))
	if err != nil {
		return cas.Ref{}, fmt.Errorf("fsstore: stat %s: %w", c, notFound(err))
	}
	return refOf(c, fi.Size()), nil
}

// Has implements cas.Store.
func (s *Store) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if err := s.check(ctx, c); err != nil {
		return false, fmt.Errorf("fsstore: has: %w", err)
	}
	_, err := os.Lstat(s.path(c))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("fsstore: has %s: %w", c, err)
	}
}

// Delete implements cas.Store.
func (s *Store) Delete(ctx context.Context, c cid.Cid) error {
	if err := s.check(ctx, c); err != nil {
		return fmt.Errorf("fsstore: delete: %w", err)
	}
	mu := s.lock(c)
	mu.Lock()
	defer mu.Unlock()
	if err := os.Remove(s.path(c)); err != nil {
		return fmt.Errorf("fsstore: delete %s: %w", c, notFound(err))
	}
	return nil
}

// List implements cas.Store. Files under blocks/ whose names are not valid
// CIDs in their right shard are ignored.
func (s *Store) List(ctx context.Context, fn func(cas.Ref) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fsstore: list: %w", err)
	}
	root := filepath.Join(s.dir, blocksDir)
	shards, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("fsstore: list: %w", err)
	}
	for _, sh := range shards {
		if !sh.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(root, sh.Name()))
		if err != nil {
			return fmt.Errorf("fsstore: list: %w", err)
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("fsstore: list: %w", err)
			}
			name := e.Name()
			if !e.Type().IsRegular() || len(name) < 2 || name[len(name)-2:] != sh.Name() {
				continue
			}
			c, err := cas.ParseCID(name)
			if err != nil || c.String() != name {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while listing
			}
			if err != nil {
				return fmt.Errorf("fsstore: list: %w", err)
			}
			if err := fn(refOf(c, fi.Size())); err != nil {
				return fmt.Errorf("fsstore: list: %w", err)
			}
		}
	}
	return nil
}

// Verify implements cas.Store.
func (s *Store) Verify(ctx context.Context, c cid.Cid) error {
	f, err := s.Open(ctx, c)
	if err != nil {
		return fmt.Errorf("fsstore: verify: %w", err)
	}
	defer f.Close()
	h := cas.NewHasher()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, copyBuf)); err != nil {
		return fmt.Errorf("fsstore: verify %s: %w", c, err)
	}
	if got := h.Ref(); !got.CID.Equals(c) {
		return fmt.Errorf("fsstore: verify %s: %w: content hashes to %s", c, cas.ErrCorrupt, got.CID)
	}
	return nil
}

func (s *Store) check(ctx context.Context, c cid.Cid) error {
	if err := cas.ValidateCID(c); err != nil {
		return err
	}
	return ctx.Err()
}

func refOf(c cid.Cid, size int64) cas.Ref {
	sum, _ := cas.SHA256Hex(c) // c is valid: checked by the caller
	return cas.Ref{CID: c, SHA256: sum, Size: size}
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", cas.ErrNotFound, err)
	}
	return err
}
