// Package fetch is a read-through content store: it serves from a local
// store and, on a miss, fetches the content from elsewhere (peers of the
// mesh), verifying every byte against the CID before keeping it.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
)

// Source finds content that the local store lacks. Fetch returns a reader
// of the content (the caller verifies it) or cas.ErrNotFound.
type Source interface {
	Fetch(ctx context.Context, c cid.Cid) (io.ReadCloser, error)
}

// Store is a cas.Store that fills misses from a Source.
type Store struct {
	cas.Store // the local store; writes and listing go straight to it
	src       Source
	log       *slog.Logger
}

// New wraps local with src.
func New(local cas.Store, src Source, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{Store: local, src: src, log: log}
}

// Open returns local content, fetching and storing it first when missing.
func (s *Store) Open(ctx context.Context, c cid.Cid) (cas.File, error) {
	f, err := s.Store.Open(ctx, c)
	if !errors.Is(err, cas.ErrNotFound) {
		return f, err
	}
	if err := s.fill(ctx, c); err != nil {
		return nil, err
	}
	return s.Store.Open(ctx, c)
}

// Stat answers for local content, fetching it when missing.
func (s *Store) Stat(ctx context.Context, c cid.Cid) (cas.Ref, error) {
	r, err := s.Store.Stat(ctx, c)
	if !errors.Is(err, cas.ErrNotFound) {
		return r, err
	}
	if err := s.fill(ctx, c); err != nil {
		return cas.Ref{}, err
	}
	return s.Store.Stat(ctx, c)
}

// fill copies c from the source into the local store; content that does
// not hash to c is refused and nothing is kept.
func (s *Store) fill(ctx context.Context, c cid.Cid) error {
	if err := cas.ValidateCID(c); err != nil {
		return err
	}
	rc, err := s.src.Fetch(ctx, c)
	if err != nil {
		if errors.Is(err, cas.ErrNotFound) {
			return fmt.Errorf("fetch %s: %w", c, cas.ErrNotFound)
		}
		return fmt.Errorf("fetch %s: %w", c, err)
	}
	defer rc.Close()
	ref, err := s.Store.PutExpected(ctx, rc, c)
	if err != nil {
		s.log.Warn("cas: fetched content refused", "cid", c.String(), "err", err)
		return fmt.Errorf("fetch %s: %w", c, err)
	}
	s.log.Info("cas: fetched from a peer", "cid", c.String(), "size", ref.Size)
	return nil
}
