package storage

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

// adoptEvery is how often a node looks for referenced local copies the
// index does not list for it.
const adoptEvery = 5 * time.Minute

// retentionInterval is how often the leader applies retention and forgets
// garbage.
const retentionInterval = time.Minute

// retentionLoop expires free-tier RunBundles past BundleRetention and
// forgets objects nothing refers to (after Grace), deleting the mirror's
// copies; every node then deletes its own (collectLoop).
func (s *Storage) retentionLoop(ctx context.Context) {
	for {
		s.RetainOnce(ctx)
		t := time.NewTimer(retentionInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// RetainOnce runs one retention pass at the clock's now.
func (s *Storage) RetainOnce(ctx context.Context) {
	now := s.cfg.Clock.Now()
	if jobs := s.state.ExpiredBundles(now); len(jobs) > 0 {
		if _, err := s.w.Apply(ctx, &scheduler.ExpireBundles{At: now, Jobs: jobs}); err != nil && !errors.Is(err, scheduler.ErrConflict) {
			s.log.Warn("storage: retention: could not expire bundles", "err", err)
		} else if err == nil {
			s.log.Info("storage: retention expired free-tier RunBundles", "jobs", len(jobs))
		}
	}
	garbage := s.state.Garbage(now.Add(-s.cfg.Grace))
	if len(garbage) == 0 {
		return
	}
	res, err := s.w.Apply(ctx, &scheduler.ForgetBlobs{At: now, CIDs: garbage})
	if err != nil {
		if !errors.Is(err, scheduler.ErrConflict) {
			s.log.Warn("storage: could not forget unreferenced content", "err", err)
		}
		return
	}
	// ForgetBlobs answers the CIDs it forgot, as a []string whether the
	// write was applied here or forwarded (the scheduler's registry names
	// the type of every command's answer).
	gone, _ := res.([]string)
	s.log.Info("storage: forgot unreferenced content", "objects", len(gone))
	if s.cfg.Mirror == nil || !s.cfg.SharedMirror {
		return
	}
	for _, id := range gone {
		c, err := cid.Decode(id)
		if err != nil {
			continue
		}
		if err := s.cfg.Mirror.Delete(ctx, c); err != nil && !errors.Is(err, cas.ErrNotFound) {
			s.log.Warn("storage: could not delete from the mirror", "cid", id, "err", err)
		}
	}
}

// collectLoop deletes local copies of forgotten objects and indexes older
// copies (adopt), on every change of the state (at most once a second) and
// once a minute.
func (s *Storage) collectLoop(ctx context.Context) {
	var adopted time.Time
	for {
		changed := s.state.Watch()
		s.CollectOnce(ctx)
		// Adopting stats every referenced object: at start, a minute
		// later (the replica may have been catching up), then rarely.
		if adopted.IsZero() || time.Since(adopted) >= adoptEvery {
			first := adopted.IsZero()
			s.adopt(ctx)
			adopted = time.Now()
			if first {
				adopted = adopted.Add(time.Minute - adoptEvery)
			}
		}
		t := time.NewTimer(time.Minute)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
			// Deleting is never urgent: batch the changes of a second.
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		case <-t.C:
		}
		t.Stop()
	}
}

// cacheGrace is how long an unlisted local copy of an object that has
// enough copies elsewhere is kept (a read-through cache) before it is
// evicted; it also covers a copy being recorded right now.
const cacheGrace = 10 * time.Minute

// pather is a store that can say where an object lives (fsstore).
type pather interface{ Path(cid.Cid) string }

// CollectOnce deletes the local copies of tombstoned objects, and a
// node-local mirror's copies with them, and evicts cached copies: local
// copies the index does not list here of objects that have all the copies
// they want elsewhere, untouched for cacheGrace.
func (s *Storage) CollectOnce(ctx context.Context) {
	var doomed, cached []cid.Cid
	live, want := s.peers.Live(), s.state.WantCopies()
	err := s.cfg.Local.List(ctx, func(r cas.Ref) error {
		id := r.CID.String()
		if s.state.Tombstoned(id) {
			doomed = append(doomed, r.CID)
			return nil
		}
		if b, ok := s.state.Blob(id); ok && !holds(b, s.cfg.NodeID) && s.missingAmong(b, live, want) <= 0 && s.idle(r.CID) {
			cached = append(cached, r.CID)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("storage: list for collection", "err", err)
		}
		return
	}
	for _, c := range doomed {
		if err := s.cfg.Local.Delete(ctx, c); err != nil && !errors.Is(err, cas.ErrNotFound) {
			s.log.Warn("storage: delete forgotten content", "cid", c.String(), "err", err)
			continue
		}
		if s.cfg.Mirror != nil && !s.cfg.SharedMirror {
			_ = s.cfg.Mirror.Delete(ctx, c)
		}
		s.log.Info("storage: deleted forgotten content", "cid", c.String())
	}
	for _, c := range cached {
		if err := s.cfg.Local.Delete(ctx, c); err == nil {
			s.log.Debug("storage: evicted a cached copy", "cid", c.String())
		}
	}
}

// idle reports whether the local copy of c was last written cacheGrace ago
// or more (stores that cannot say are never evicted from).
func (s *Storage) idle(c cid.Cid) bool {
	p, ok := s.cfg.Local.(pather)
	if !ok {
		return false
	}
	st, err := os.Stat(p.Path(c))
	return err == nil && time.Since(st.ModTime()) >= cacheGrace
}
