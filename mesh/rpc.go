package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// MaxRPCBytes caps an RPC request and an RPC response.
const MaxRPCBytes = 8 << 20

// rpcIdleTimeout bounds how long a handler waits for a request that does
// not arrive, and a response write when the caller set no deadline.
const rpcIdleTimeout = 30 * time.Second

// ErrTooLarge reports a request, response or message above its limit
// (MaxRPCBytes for RPC, MaxMessageBytes for Publish).
var ErrTooLarge = errors.New("mesh: message too large")

// RemoteError is an error returned by the remote handler.
type RemoteError struct{ Message string }

func (e *RemoteError) Error() string { return "mesh: remote: " + e.Message }

// Handler serves one RPC protocol. ctx ends at the caller's deadline (sent
// along with the request, rounded up to the millisecond) or when the mesh
// closes. A handler that ignores ctx keeps its goroutine until it returns.
type Handler func(ctx context.Context, fromPeer string, req []byte) ([]byte, error)

// Wire format, one request and one response per stream:
//
//	request:  u32 length | u32 caller's remaining time in ms (0 = none) | payload
//	response: u8 status (0 ok, 1 error) | u32 length | payload (the error text when status is 1)
const (
	statusOK  = 0
	statusErr = 1
)

// Handle serves protocol with h, replacing any previous handler; a nil h
// removes it. An error from h reaches the caller as *RemoteError.
func (m *Mesh) Handle(proto string, h Handler) {
	if h == nil {
		m.setHandler(proto, nil)
		return
	}
	m.setHandler(proto, func(s network.Stream) { m.serve(s, h) })
}

// setHandler serves proto with serve, each stream as a task the mesh waits
// for when it closes (a stream arriving after Close is reset); a nil serve
// removes the handler.
func (m *Mesh) setHandler(proto string, serve func(network.Stream)) {
	if serve == nil {
		m.host.RemoveStreamHandler(protocol.ID(proto))
		return
	}
	m.host.SetStreamHandler(protocol.ID(proto), func(s network.Stream) {
		if !m.tasks.enter() {
			_ = s.Reset()
			return
		}
		defer m.tasks.leave()
		serve(s)
	})
}

func (m *Mesh) serve(s network.Stream, h Handler) {
	from := s.Conn().RemotePeer().String()
	_ = s.SetReadDeadline(time.Now().Add(rpcIdleTimeout))
	var hdr [8]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		_ = s.Reset()
		return
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	budget := time.Duration(binary.BigEndian.Uint32(hdr[4:8])) * time.Millisecond
	if n > MaxRPCBytes {
		m.log.Debug("mesh: rpc request too large", "protocol", s.Protocol(), "peer_id", from, "bytes", n)
		_ = writeResponse(s, statusErr, []byte(fmt.Sprintf("request of %d bytes exceeds %d", n, MaxRPCBytes)))
		_ = s.Reset()
		return
	}
	req := make([]byte, n)
	if _, err := io.ReadFull(s, req); err != nil {
		_ = s.Reset()
		return
	}
	ctx, cancel := m.ctx, context.CancelFunc(func() {})
	if budget > 0 {
		ctx, cancel = context.WithTimeout(ctx, budget)
	}
	defer cancel()
	resp, err := h(ctx, from, req)
	status := byte(statusOK)
	switch {
	case err != nil:
		status, resp = statusErr, []byte(err.Error())
	case len(resp) > MaxRPCBytes:
		status, resp = statusErr, []byte(fmt.Sprintf("response of %d bytes exceeds %d", len(resp), MaxRPCBytes))
	}
	// The caller resets the stream when its own deadline passes; this only
	// bounds a write to a caller that stopped reading.
	_ = s.SetWriteDeadline(time.Now().Add(rpcIdleTimeout))
	if err := writeResponse(s, status, resp); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

func writeResponse(w io.Writer, status byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = status
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// Call sends req to peerID's handler for protocol and returns its response.
// ctx bounds the whole call (dial, send, handler, receive) and its deadline
// is passed on to the handler. A request above MaxRPCBytes is refused with
// ErrTooLarge before anything is sent; an error from the handler is a
// *RemoteError.
func (m *Mesh) Call(ctx context.Context, peerID, proto string, req []byte) ([]byte, error) {
	if len(req) > MaxRPCBytes {
		return nil, fmt.Errorf("%w: request of %d bytes exceeds %d", ErrTooLarge, len(req), MaxRPCBytes)
	}
	pid, err := peer.Decode(peerID)
	if err != nil {
		return nil, fmt.Errorf("mesh: call: bad peer ID %q: %w", peerID, err)
	}
	resp, err := m.call(ctx, pid, protocol.ID(proto), req)
	if err != nil {
		// Our deadline or cancellation explains any failure, even when the
		// handler's end (which is never earlier) was seen first.
		if ctx.Err() != nil {
			err = ctx.Err()
		} else if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			err = context.DeadlineExceeded
		}
		var re *RemoteError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("mesh: call %s %s: %w", proto, peerID, err)
	}
	return resp, nil
}

func (m *Mesh) call(ctx context.Context, pid peer.ID, proto protocol.ID, req []byte) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopClose := context.AfterFunc(m.ctx, cancel)
	defer stopClose()
	s, err := m.host.NewStream(ctx, pid, proto)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	var budget uint32
	if d, ok := ctx.Deadline(); ok { // ctx resets the stream; no socket deadline racing it
		// Round up, so that the handler's deadline never precedes ours.
		ms := (time.Until(d) + time.Millisecond - 1) / time.Millisecond
		budget = uint32(min(max(int64(ms), 1), math.MaxUint32))
	}
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(len(req)))
	binary.BigEndian.PutUint32(hdr[4:8], budget)
	if _, err := s.Write(hdr[:]); err != nil {
		_ = s.Reset()
		return nil, err
	}
	if _, err := s.Write(req); err != nil {
		_ = s.Reset()
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return nil, err
	}
	var rh [5]byte
	if _, err := io.ReadFull(s, rh[:]); err != nil {
		_ = s.Reset()
		return nil, err
	}
	n := binary.BigEndian.Uint32(rh[1:])
	if n > MaxRPCBytes {
		_ = s.Reset()
		return nil, fmt.Errorf("%w: response of %d bytes exceeds %d", ErrTooLarge, n, MaxRPCBytes)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(s, body); err != nil {
		_ = s.Reset()
		return nil, err
	}
	_ = s.Close()
	if rh[0] != statusOK {
		return nil, &RemoteError{Message: string(body)}
	}
	return body, nil
}
