package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// StreamHandler serves one streaming protocol: given a small request (at
// most MaxRPCBytes), it returns the content to send, which the mesh copies
// to the caller and closes. An error reaches the caller as *RemoteError.
type StreamHandler func(ctx context.Context, fromPeer string, req []byte) (io.ReadCloser, error)

// Streaming wire format, one request per stream:
//
//	request:  u32 length | payload
//	response: u8 status; then, when 0, the content until the stream ends;
//	          when 1, u32 length | the error text
//
// An answer that ends early is cut off by a reset, never a clean close, so
// a caller never mistakes a truncated body for a whole one.

// HandleStream serves proto with h; a nil h removes it.
func (m *Mesh) HandleStream(proto string, h StreamHandler) {
	if h == nil {
		m.setHandler(proto, nil)
		return
	}
	m.setHandler(proto, func(s network.Stream) { m.serveStream(s, h) })
}

func (m *Mesh) serveStream(s network.Stream, h StreamHandler) {
	from := s.Conn().RemotePeer().String()
	_ = s.SetReadDeadline(time.Now().Add(rpcIdleTimeout))
	var hdr [4]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		_ = s.Reset()
		return
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxRPCBytes {
		_ = s.Reset()
		return
	}
	req := make([]byte, n)
	if _, err := io.ReadFull(s, req); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.SetReadDeadline(time.Time{})
	rc, err := h(m.ctx, from, req)
	if err != nil {
		msg := []byte(err.Error())
		var eh [5]byte
		eh[0] = statusErr
		binary.BigEndian.PutUint32(eh[1:], uint32(len(msg)))
		_ = s.SetWriteDeadline(time.Now().Add(rpcIdleTimeout))
		if _, err := s.Write(append(eh[:], msg...)); err != nil {
			_ = s.Reset()
			return
		}
		_ = s.Close()
		return
	}
	defer rc.Close()
	// A caller that stops reading is cut off when the mesh closes.
	stop := context.AfterFunc(m.ctx, func() { _ = s.Reset() })
	defer stop()
	if _, err := s.Write([]byte{statusOK}); err != nil {
		_ = s.Reset()
		return
	}
	if _, err := io.Copy(s, rc); err != nil {
		m.log.Debug("mesh: stream send", "protocol", s.Protocol(), "peer_id", from, "err", err)
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// OpenStreamFirstByte is OpenStream with the wait for the answer bounded
// by firstByte: a peer that does not answer in time is given up, while a
// transfer that has begun runs as long as ctx lasts. Close ends it.
func (m *Mesh) OpenStreamFirstByte(ctx context.Context, peerID, proto string, req []byte, firstByte time.Duration) (io.ReadCloser, error) {
	octx, cancel := context.WithCancel(ctx)
	t := time.AfterFunc(firstByte, cancel)
	rc, err := m.OpenStream(octx, peerID, proto, req)
	t.Stop()
	if err != nil {
		cancel()
		return nil, err
	}
	return &cancelOnClose{ReadCloser: rc, cancel: cancel}, nil
}

// cancelOnClose ends a stream's context when its reader is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// OpenStream sends req to peerID's stream handler for proto and returns
// the content it answers with. ctx bounds the dial and the wait for the
// first byte, and while it lasts, reading; Close ends the stream early.
func (m *Mesh) OpenStream(ctx context.Context, peerID, proto string, req []byte) (io.ReadCloser, error) {
	if len(req) > MaxRPCBytes {
		return nil, fmt.Errorf("%w: request of %d bytes exceeds %d", ErrTooLarge, len(req), MaxRPCBytes)
	}
	pid, err := peer.Decode(peerID)
	if err != nil {
		return nil, fmt.Errorf("mesh: stream: bad peer ID %q: %w", peerID, err)
	}
	s, err := m.host.NewStream(ctx, pid, protocol.ID(proto))
	if err != nil {
		return nil, fmt.Errorf("mesh: stream %s %s: %w", proto, peerID, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	fail := func(err error) (io.ReadCloser, error) {
		stop()
		_ = s.Reset()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("mesh: stream %s %s: %w", proto, peerID, err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(req)))
	if _, err := s.Write(append(hdr[:], req...)); err != nil {
		return fail(err)
	}
	if err := s.CloseWrite(); err != nil {
		return fail(err)
	}
	var status [1]byte
	if _, err := io.ReadFull(s, status[:]); err != nil {
		return fail(err)
	}
	if status[0] != statusOK {
		var lh [4]byte
		if _, err := io.ReadFull(s, lh[:]); err != nil {
			return fail(err)
		}
		msg := make([]byte, min(binary.BigEndian.Uint32(lh[:]), 64<<10))
		if _, err := io.ReadFull(s, msg); err != nil {
			return fail(err)
		}
		stop()
		_ = s.Close()
		return nil, &RemoteError{Message: string(msg)}
	}
	return &streamBody{s: s, stop: stop}, nil
}

// streamBody is the content of an answered stream.
type streamBody struct {
	s    network.Stream
	stop func() bool
	eof  bool
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.s.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *streamBody) Close() error {
	b.stop()
	if !b.eof {
		return b.s.Reset()
	}
	return b.s.Close()
}
