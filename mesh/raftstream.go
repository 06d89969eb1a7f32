package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// RaftProtocol is the libp2p protocol Raft RPCs travel on.
const RaftProtocol = "/pwmesh/raft/1.0.0"

// RaftTransport returns a Raft transport over libp2p streams. Raft server
// addresses are libp2p peer IDs: LocalAddr() is raft.ServerAddress(PeerID()),
// and a peer is dialled through the addresses the peerstore holds for it
// (taught by AddPeer, by members' metadata, or learnt by identify when the
// peer connected to us). Streams are authenticated by libp2p (noise, and
// the private network with a cluster key), so only holders of the key
// reach this node at all.
//
// With RaftAllow, only some of them may speak Raft to this node; without
// it, all of them may.
//
// One transport is live at a time: a second call takes the protocol over
// from the first. Raft closes the transport on Shutdown; Close closes it
// too.
func (m *Mesh) RaftTransport(timeout time.Duration, logger hclog.Logger, opts ...RaftOption) raft.Transport {
	var o raftOptions
	for _, f := range opts {
		f(&o)
	}
	l := m.newStreamLayer(o.allow)
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  l,
		MaxPool: 3,
		Timeout: timeout,
		Logger:  logger,
	})
}

// RaftOption tunes RaftTransport.
type RaftOption func(*raftOptions)

type raftOptions struct {
	allow func(peerID string) bool
}

// RaftAllow makes the transport take inbound Raft streams only from the
// peers allow says yes to. allow is asked about the remote peer ID of
// every inbound stream when the stream opens, and again before each read
// from it, so that a peer that stops being allowed loses the streams it
// holds as well. A refused stream is reset at once and logged at warn with
// the peer ID, at most one line per refusalLogEvery (carrying the count of
// the refusals not logged). allow runs on libp2p's goroutines and on
// Raft's readers: it must be cheap and safe for concurrent use. Outbound
// streams (this node's own RPCs and the answers to them) are not filtered.
func RaftAllow(allow func(peerID string) bool) RaftOption {
	return func(o *raftOptions) { o.allow = allow }
}

// ErrRaftPeerRefused is what a read from an inbound Raft stream returns
// once the transport's allow function refuses its peer.
var ErrRaftPeerRefused = errors.New("mesh: raft stream refused: peer not allowed")

// refusalLogEvery is the least time between two warnings about refused
// Raft streams: a peer that opens streams in a loop costs one log line per
// period, not one per stream.
const refusalLogEvery = 10 * time.Second

// streamLayer is a raft.StreamLayer whose connections are libp2p streams.
type streamLayer struct {
	m        *Mesh
	allow    func(peerID string) bool // nil: every peer
	refusals refusalLog
	accept   chan *streamConn
	done     chan struct{}
	doneOnce sync.Once
}

func (m *Mesh) newStreamLayer(allow func(peerID string) bool) *streamLayer {
	l := &streamLayer{m: m, allow: allow, accept: make(chan *streamConn), done: make(chan struct{})}
	m.life.RLock() // Close sets closed under life, then closes the current layer
	defer m.life.RUnlock()
	m.raftMu.Lock()
	defer m.raftMu.Unlock()
	if m.raftLayer != nil {
		m.raftLayer.shut()
	}
	m.raftLayer = l
	if m.closed {
		l.shut()
		return l
	}
	m.host.SetStreamHandler(RaftProtocol, l.handle)
	return l
}

func (l *streamLayer) handle(s network.Stream) {
	from := s.Conn().RemotePeer().String()
	if !l.admits(from) {
		l.refuse(s, from, "open")
		return
	}
	select {
	case l.accept <- &streamConn{Stream: s, layer: l, remote: from}:
	case <-l.done:
		_ = s.Reset()
	}
}

// admits asks the allow function about peerID.
func (l *streamLayer) admits(peerID string) bool { return l.allow == nil || l.allow(peerID) }

// refuse resets s and logs it, rate-limited; at says when it was refused
// ("open", or "read" for a stream the peer held already).
func (l *streamLayer) refuse(s network.Stream, peerID, at string) {
	_ = s.Reset()
	if ok, others := l.refusals.take(time.Now()); ok {
		l.m.log.Warn("mesh: raft stream refused: the peer is not allowed to speak Raft to this node",
			"peer_id", peerID, "at", at, "refusals_not_logged", others)
	}
}

// refusalLog rate-limits the warning about refused streams.
type refusalLog struct {
	mu      sync.Mutex
	next    time.Time // no line before this
	skipped int       // refusals not logged since the last line
}

// take reports whether a refusal at now gets a log line, and how many
// refusals went unlogged before it.
func (r *refusalLog) take(now time.Time) (ok bool, skipped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.next) {
		r.skipped++
		return false, 0
	}
	skipped, r.skipped = r.skipped, 0
	r.next = now.Add(refusalLogEvery)
	return true, skipped
}

// Accept implements net.Listener.
func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener. The protocol handler is removed only if
// this layer is still the current one.
func (l *streamLayer) Close() error {
	l.m.raftMu.Lock()
	defer l.m.raftMu.Unlock()
	if l.m.raftLayer == l {
		l.m.host.RemoveStreamHandler(RaftProtocol)
		l.m.raftLayer = nil
	}
	l.shut()
	return nil
}

func (l *streamLayer) shut() { l.doneOnce.Do(func() { close(l.done) }) }

// Addr implements net.Listener: this node's peer ID.
func (l *streamLayer) Addr() net.Addr { return peerAddr(l.m.host.ID()) }

// Dial implements raft.StreamLayer; address is a peer ID.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	pid, err := peer.Decode(string(address))
	if err != nil {
		return nil, fmt.Errorf("mesh: raft dial: address %q is not a peer ID: %w", address, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stop := context.AfterFunc(l.m.ctx, cancel) // Close aborts dials in flight
	defer stop()
	s, err := l.m.host.NewStream(ctx, pid, protocol.ID(RaftProtocol))
	if err != nil {
		return nil, fmt.Errorf("mesh: raft dial %s: %w", pid, err)
	}
	return &streamConn{Stream: s}, nil
}

// streamConn is a libp2p stream seen as a net.Conn. An inbound one (layer
// set) asks the layer's allow function about its peer before each read.
type streamConn struct {
	network.Stream
	layer  *streamLayer // nil for a stream this node opened
	remote string       // the peer ID, for layer's checks
}

// Read implements net.Conn.
func (c *streamConn) Read(p []byte) (int, error) {
	if c.layer != nil && !c.layer.admits(c.remote) {
		c.layer.refuse(c.Stream, c.remote, "read")
		return 0, ErrRaftPeerRefused
	}
	return c.Stream.Read(p)
}

func (c *streamConn) LocalAddr() net.Addr  { return peerAddr(c.Conn().LocalPeer()) }
func (c *streamConn) RemoteAddr() net.Addr { return peerAddr(c.Conn().RemotePeer()) }

// peerAddr is a peer ID as a net.Addr.
type peerAddr peer.ID

func (a peerAddr) Network() string { return "libp2p" }
func (a peerAddr) String() string  { return peer.ID(a).String() }
