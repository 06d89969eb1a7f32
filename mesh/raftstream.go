package mesh

import (
	"context"
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
// the private network with a cluster key), so only mesh members can speak
// Raft to this node.
//
// One transport is live at a time: a second call takes the protocol over
// from the first. Raft closes the transport on Shutdown; Close closes it
// too.
func (m *Mesh) RaftTransport(timeout time.Duration, logger hclog.Logger) raft.Transport {
	l := m.newStreamLayer()
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  l,
		MaxPool: 3,
		Timeout: timeout,
		Logger:  logger,
	})
}

// streamLayer is a raft.StreamLayer whose connections are libp2p streams.
type streamLayer struct {
	m        *Mesh
	accept   chan network.Stream
	done     chan struct{}
	doneOnce sync.Once
}

func (m *Mesh) newStreamLayer() *streamLayer {
	l := &streamLayer{m: m, accept: make(chan network.Stream), done: make(chan struct{})}
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
	select {
	case l.accept <- s:
	case <-l.done:
		_ = s.Reset()
	}
}

// Accept implements net.Listener.
func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case s := <-l.accept:
		return &streamConn{Stream: s}, nil
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

// streamConn is a libp2p stream seen as a net.Conn.
type streamConn struct{ network.Stream }

func (c *streamConn) LocalAddr() net.Addr  { return peerAddr(c.Conn().LocalPeer()) }
func (c *streamConn) RemoteAddr() net.Addr { return peerAddr(c.Conn().RemotePeer()) }

// peerAddr is a peer ID as a net.Addr.
type peerAddr peer.ID

func (a peerAddr) Network() string { return "libp2p" }
func (a peerAddr) String() string  { return peer.ID(a).String() }
