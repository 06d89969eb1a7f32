package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
)

// verified is the Store that Storage.Store returns: local reads are
// re-hashed (at most once per VerifyAfter) and a corrupt copy is replaced
// from another; misses are fetched and verified before they are kept.
type verified struct {
	cas.Store // the local disk: writes, listing and deletes go straight there
	s         *Storage
}

func (v *verified) Open(ctx context.Context, c cid.Cid) (cas.File, error) {
	if err := v.s.ensureLocal(ctx, c); err != nil {
		return nil, err
	}
	return v.Store.Open(ctx, c)
}

func (v *verified) Stat(ctx context.Context, c cid.Cid) (cas.Ref, error) {
	if err := v.s.ensureLocal(ctx, c); err != nil {
		return cas.Ref{}, err
	}
	return v.Store.Stat(ctx, c)
}

// ensureLocal makes sure a verified copy of c is on the local disk: it
// re-hashes a copy not checked lately, drops a corrupt one, and fetches a
// missing one from elsewhere.
func (s *Storage) ensureLocal(ctx context.Context, c cid.Cid) error {
	if err := cas.ValidateCID(c); err != nil {
		return err
	}
	err := s.verifyLocal(ctx, c)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cas.ErrCorrupt):
		if derr := s.dropCorrupt(ctx, c, err); derr != nil {
			return derr
		}
	case !errors.Is(err, cas.ErrNotFound):
		return err
	}
	return s.fill(ctx, c)
}

// verifyLocal re-hashes the local copy unless it passed lately.
func (s *Storage) verifyLocal(ctx context.Context, c cid.Cid) error {
	key := c.String()
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	at, ok := s.verified[key]
	s.mu.Unlock()
	if ok && s.cfg.VerifyAfter > 0 && now.Sub(at) < s.cfg.VerifyAfter {
		if has, err := s.cfg.Local.Has(ctx, c); err != nil || has {
			return err
		}
	}
	if err := s.cfg.Local.Verify(ctx, c); err != nil {
		s.mu.Lock()
		delete(s.verified, key)
		s.mu.Unlock()
		return err
	}
	s.markVerified(c)
	return nil
}

func (s *Storage) markVerified(c cid.Cid) {
	s.mu.Lock()
	s.verified[c.String()] = s.cfg.Clock.Now()
	s.mu.Unlock()
}

// fill copies c from the first source that has it into the local store;
// bytes that do not hash to c are refused (and logged) and the next source
// is tried. A node that takes a copy records it in the index when the
// index knows the object, so the copy counts and is repaired like others.
func (s *Storage) fill(ctx context.Context, c cid.Cid) error {
	if err := s.fillFrom(ctx, c, nil); err != nil {
		return err
	}
	// The copy counts (and is kept) only when the object is short of
	// copies; otherwise it is a cache that CollectOnce evicts later.
	if b, ok := s.state.Blob(c.String()); ok && !holds(b, s.cfg.NodeID) && s.missing(b) > 0 {
		ref, err := s.cfg.Local.Stat(ctx, c)
		if err == nil {
			_, err = s.w.Apply(context.WithoutCancel(ctx), blobStored(s, ref, b.Kind))
		}
		if err != nil {
			s.log.Debug("storage: copy not recorded", "cid", c.String(), "err", err)
		}
	}
	return nil
}

// source is one place content can come from.
type source struct {
	name string
	open func(ctx context.Context) (io.ReadCloser, error)
}

// sources lists where c may be, best first: the given nodes, the holders
// the index names, the other live nodes, then the mirror.
func (s *Storage) sources(c cid.Cid, prefer []string) []source {
	var order []string
	seen := map[string]bool{s.cfg.NodeID: true}
	add := func(ids ...string) {
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				order = append(order, id)
			}
		}
	}
	live := s.peers.Live()
	add(prefer...)
	if b, ok := s.state.Blob(c.String()); ok {
		for _, h := range b.Holders {
			if slices.Contains(live, h) {
				add(h)
			}
		}
	}
	add(live...)
	out := make([]source, 0, len(order)+1)
	for _, id := range order {
		out = append(out, source{name: "node " + id, open: func(ctx context.Context) (io.ReadCloser, error) {
			return s.openPeer(ctx, id, c)
		}})
	}
	if s.cfg.Mirror != nil {
		out = append(out, source{name: "mirror", open: func(ctx context.Context) (io.ReadCloser, error) {
			return s.cfg.Mirror.Open(ctx, c)
		}})
	}
	return out
}

// openPeer streams c from node.
func (s *Storage) openPeer(ctx context.Context, node string, c cid.Cid) (io.ReadCloser, error) {
	return s.peers.OpenStream(ctx, node, BlobProtocol, []byte(c.String()))
}

// ServeBlob answers BlobProtocol from this node's own disk only (a request
// never fans out). The copy is re-hashed as it is sent, not before (the
// receiver re-hashes too): a copy found damaged at the end is removed and
// its record dropped, and the stream ends in an error instead of a clean
// close, so the receiver never takes it for whole.
func (s *Storage) ServeBlob(ctx context.Context, _ string, req []byte) (io.ReadCloser, error) {
	c, err := cas.ParseCID(string(req))
	if err != nil {
		return nil, err
	}
	f, err := s.cfg.Local.Open(ctx, c)
	if err != nil {
		return nil, err
	}
	return &verifyingReader{f: f, h: cas.NewHasher(), want: c, onCorrupt: func(err error) {
		_ = s.dropCorrupt(ctx, c, err)
	}}, nil
}

// dropCorrupt removes a local copy found damaged (why) and its record in
// the index, so that reads and repair fetch a good copy.
func (s *Storage) dropCorrupt(ctx context.Context, c cid.Cid, why error) error {
	s.log.Error("storage: corrupt copy on disk; removing it", "cid", c.String(), "err", why)
	bg := context.WithoutCancel(ctx)
	if err := s.cfg.Local.Delete(bg, c); err != nil && !errors.Is(err, cas.ErrNotFound) {
		return fmt.Errorf("storage: remove corrupt %s: %w", c, err)
	}
	s.dropHeld(bg, c, "corrupt copy on disk")
	return nil
}

// verifyingReader hashes what it reads and, at the end, refuses content
// that does not match want.
type verifyingReader struct {
	f         cas.File
	h         *cas.Hasher
	want      cid.Cid
	onCorrupt func(error)
	done      bool
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF && !v.done {
		v.done = true
		if got := v.h.Ref(); !got.CID.Equals(v.want) {
			cerr := fmt.Errorf("storage: %s hashes to %s: %w", v.want, got.CID, cas.ErrCorrupt)
			v.onCorrupt(cerr)
			return n, cerr
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }
