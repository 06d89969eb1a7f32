package storage

import (
	"context"
	"errors"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas/mirror"
	"github.com/pwmesh/pwmesh/scheduler"
)

// uploader copies this node's objects to the mirror in the background and,
// for a shared mirror, records each copy in the index. Jobs never wait for
// it unless the mirror is the only second copy there is.
type uploader struct {
	s *Storage
	q *mirror.Uploader // nil without a mirror
}

func newUploader(s *Storage) uploader {
	u := uploader{s: s}
	if s.cfg.Mirror == nil {
		return u
	}
	u.q = mirror.NewUploader(s.cfg.Local, s.cfg.Mirror, mirror.UploaderConfig{
		Logger: s.log,
		OnDone: s.mirrored,
	})
	return u
}

func (u uploader) enqueue(c cid.Cid) {
	if u.q != nil {
		u.q.Enqueue(c)
	}
}

// run uploads until ctx ends, starting with the indexed objects this node
// holds that the mirror lacks (a restart loses the queue).
func (u uploader) run(ctx context.Context) {
	if u.q == nil {
		return
	}
	if u.s.cfg.SharedMirror {
		for _, b := range u.s.state.Blobs() {
			if !b.Mirrored && holds(b, u.s.cfg.NodeID) {
				if c, err := cid.Decode(b.CID); err == nil {
					u.q.Enqueue(c)
				}
			}
		}
	}
	_ = u.q.Run(ctx)
}

// mirrored records an upload in the index (shared mirrors only).
func (s *Storage) mirrored(c cid.Cid, err error) {
	if err != nil {
		s.log.Warn("storage: mirror upload gave up", "cid", c.String(), "err", err)
		return
	}
	if !s.cfg.SharedMirror {
		return
	}
	b, ok := s.state.Blob(c.String())
	if !ok || b.Mirrored {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = s.applyPatiently(ctx, &scheduler.BlobMirrored{At: s.cfg.Clock.Now(), CID: c.String()})
	if err != nil && !errors.Is(err, scheduler.ErrConflict) && !errors.Is(err, scheduler.ErrNotFound) {
		s.log.Warn("storage: mirror copy not recorded", "cid", c.String(), "err", err)
	}
}
