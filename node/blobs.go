package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
)

// BlobProtocol streams stored content (datasets, RunBundles, operators) to
// a peer that lacks it. The request is the CID; the reader re-hashes every
// byte against it before keeping anything.
const BlobProtocol = "/pwmesh/blob/1.0.0"

// serveBlob answers BlobProtocol from this node's own store only, so that a
// request never fans out further.
func serveBlob(local cas.Store) func(ctx context.Context, from string, req []byte) (io.ReadCloser, error) {
	return func(ctx context.Context, _ string, req []byte) (io.ReadCloser, error) {
		c, err := cas.ParseCID(string(req))
		if err != nil {
			return nil, err
		}
		f, err := local.Open(ctx, c)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
}

// blobPeerTimeout bounds the wait for one peer's first byte.
const blobPeerTimeout = 10 * time.Second

// Fetch implements fetch.Source: it asks the live members one after the
// other for c and returns the first answer.
func (n *Node) Fetch(ctx context.Context, c cid.Cid) (io.ReadCloser, error) {
	var errs []error
	for _, m := range n.liveMembers() {
		if m.NodeID == n.id || m.meta.PeerID == "" {
			continue
		}
		// The timeout bounds the wait for the answer, not the transfer.
		octx, cancel := context.WithCancel(ctx)
		firstByte := time.AfterFunc(blobPeerTimeout, cancel)
		rc, err := n.mesh.OpenStream(octx, m.meta.PeerID, BlobProtocol, []byte(c.String()))
		firstByte.Stop()
		if err != nil {
			cancel()
			errs = append(errs, fmt.Errorf("%s: %w", m.NodeID, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		return &cancelOnClose{ReadCloser: rc, cancel: cancel}, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	n.log.Debug("blob not found on any peer", "cid", c.String(), "err", errors.Join(errs...))
	return nil, cas.ErrNotFound
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
