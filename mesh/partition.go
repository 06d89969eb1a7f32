package mesh

// Fault injection: Block cuts this node off from chosen members, as a
// network partition would, so that tests can partition a mesh that runs in
// one process on one loopback address. Nothing here costs more than one
// atomic load of a nil pointer while nothing is blocked.

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// ErrUnknownMember is returned by Block for a node ID this mesh does not
// know (or whose metadata carries no peer ID).
var ErrUnknownMember = errors.New("mesh: unknown member")

// Block cuts this node off from the given members until Unblock:
//
//   - libp2p: existing connections to them are closed (their streams reset:
//     Raft, RPC, blob streams, pubsub), and the connection gater refuses
//     every new connection to or from their peer IDs.
//   - memberlist: every packet and stream this node would send them is
//     dropped or refused, every packet from their gossip address is dropped,
//     and alive claims about them (from anyone) are ignored, so this node
//     declares them dead after the suspicion timeout and nothing refutes it.
//
// One limit: a memberlist TCP stream a blocked member opens to this node
// comes from an ephemeral port and cannot be told apart from others, so a
// member that does not block this node in turn may still reach it over TCP
// (memberlist's fallback ping, push-pull) and keep seeing it alive. A full
// partition blocks on both sides (nodetest's Partition does).
//
// Members are named by node ID and resolved through the member list (peer
// ID from the metadata, gossip address); the whole call fails, blocking
// nothing, when one of them is unknown. Block is for tests.
func (m *Mesh) Block(nodeIDs ...string) error {
	m.block.mu.Lock()
	defer m.block.mu.Unlock()
	next := m.block.set.Load().clone()
	var pids []peer.ID
	for _, id := range nodeIDs {
		if id == m.cfg.NodeID {
			return fmt.Errorf("mesh: block %s: this node itself", id)
		}
		mem, ok := m.members.get(id)
		if !ok {
			return fmt.Errorf("mesh: block %s: %w", id, ErrUnknownMember)
		}
		meta, err := DecodeMeta(mem.Meta)
		if err != nil || meta.PeerID == "" {
			return fmt.Errorf("mesh: block %s: no peer ID in its metadata: %w", id, ErrUnknownMember)
		}
		pid, err := peer.Decode(meta.PeerID)
		if err != nil {
			return fmt.Errorf("mesh: block %s: bad peer ID %q: %w", id, meta.PeerID, err)
		}
		next.add(id, blockedPeer{peer: pid, addr: mem.Addr})
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		return nil
	}
	// The set goes in first: a connection that passed the gater before it
	// is closed below, or by the Connected notification after it.
	m.block.set.Store(next)
	for _, pid := range pids {
		_ = m.host.Network().ClosePeer(pid)
	}
	m.log.Info("mesh: blocked", "members", strings.Join(nodeIDs, ","))
	return nil
}

// Unblock lifts Block for the given members, or for every blocked member
// when called without arguments. The members come back as they would
// after a real partition: Run's reconnect loop re-joins members declared
// failed (memberlist itself never probes them again); libp2p redials at
// once, without the backoff its refused dials built up.
func (m *Mesh) Unblock(nodeIDs ...string) {
	m.block.mu.Lock()
	defer m.block.mu.Unlock()
	cur := m.block.set.Load()
	if cur == nil {
		return
	}
	if len(nodeIDs) == 0 {
		nodeIDs = slices.Sorted(func(yield func(string) bool) {
			for id := range cur.nodes {
				if !yield(id) {
					return
				}
			}
		})
	}
	next := cur.clone()
	var (
		ids  []string
		pids []peer.ID
	)
	for _, id := range nodeIDs {
		if bp, ok := next.nodes[id]; ok {
			next.remove(id)
			ids, pids = append(ids, id), append(pids, bp.peer)
		}
	}
	if len(ids) == 0 {
		return
	}
	if len(next.nodes) == 0 {
		next = nil
	}
	m.block.set.Store(next)
	// Redials refused while blocked backed off (up to 30 s): start afresh.
	m.peersMu.Lock()
	for _, pid := range pids {
		if st := m.wanted[pid]; st != nil {
			st.backoff, st.next = 0, time.Time{}
		}
	}
	m.peersMu.Unlock()
	m.pokeDialer()
	m.log.Info("mesh: unblocked", "members", strings.Join(ids, ","))
	// memberlist brings them back through Run's reconnect loop, as after
	// a real partition.
}

// Blocked lists the node IDs Block cut this node off from, sorted.
func (m *Mesh) Blocked() []string {
	s := m.block.set.Load()
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.nodes))
	for id := range s.nodes {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// blocker holds the blocked members. set is nil while nothing is blocked;
// it is replaced, never changed, so readers need no lock.
type blocker struct {
	mu  sync.Mutex // serialises Block and Unblock
	set atomic.Pointer[blockSet]
}

type blockedPeer struct {
	peer peer.ID
	addr string // gossip "ip:port"
}

type blockSet struct {
	nodes map[string]blockedPeer
	peers map[peer.ID]int // node IDs per peer ID
	addrs map[string]int  // node IDs per gossip address
}

func (s *blockSet) clone() *blockSet {
	c := &blockSet{nodes: map[string]blockedPeer{}, peers: map[peer.ID]int{}, addrs: map[string]int{}}
	if s != nil {
		for id, bp := range s.nodes {
			c.add(id, bp)
		}
	}
	return c
}

func (s *blockSet) add(id string, bp blockedPeer) {
	if _, ok := s.nodes[id]; ok {
		s.remove(id)
	}
	s.nodes[id] = bp
	s.peers[bp.peer]++
	s.addrs[bp.addr]++
}

func (s *blockSet) remove(id string) {
	bp, ok := s.nodes[id]
	if !ok {
		return
	}
	delete(s.nodes, id)
	if s.peers[bp.peer]--; s.peers[bp.peer] <= 0 {
		delete(s.peers, bp.peer)
	}
	if s.addrs[bp.addr]--; s.addrs[bp.addr] <= 0 {
		delete(s.addrs, bp.addr)
	}
}

func (b *blocker) peerBlocked(p peer.ID) bool {
	s := b.set.Load()
	return s != nil && s.peers[p] > 0
}

func (b *blocker) addrBlocked(addr string) bool {
	s := b.set.Load()
	return s != nil && s.addrs[addr] > 0
}

func (b *blocker) nodeBlocked(id string) bool {
	s := b.set.Load()
	if s == nil {
		return false
	}
	_, ok := s.nodes[id]
	return ok
}

// gater is the libp2p connection gater: it refuses blocked peers, in both
// directions.
type gater struct{ b *blocker }

func (g gater) InterceptPeerDial(p peer.ID) bool                 { return !g.b.peerBlocked(p) }
func (g gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !g.b.peerBlocked(p) }
func (g gater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.b.peerBlocked(p)
}
func (g gater) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	return !g.b.peerBlocked(c.RemotePeer()), 0
}

// closeBlocked is a libp2p notification that closes a connection to a
// blocked peer that passed the gater just before Block.
func (b *blocker) closeBlocked(_ network.Network, c network.Conn) {
	if b.peerBlocked(c.RemotePeer()) {
		_ = c.Close()
	}
}

// aliveFilter is memberlist's alive delegate: alive claims about a blocked
// member are ignored, so that nobody refutes its death here.
type aliveFilter struct{ b *blocker }

func (f aliveFilter) NotifyAlive(n *memberlist.Node) error {
	if f.b.nodeBlocked(n.Name) {
		return errors.New("member blocked")
	}
	return nil
}

// gossipTransport is memberlist's network transport with blocked members'
// traffic dropped. Incoming packets pass through one goroutine that drops
// those from blocked addresses.
type gossipTransport struct {
	*memberlist.NetTransport
	b       *blocker
	packets chan *memberlist.Packet
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

// newGossipTransport binds memberlist's TCP and UDP listeners as memberlist
// would (retrying a port picked by the kernel that is taken for the other
// protocol) and sets c's bind and advertise ports to the port bound.
func newGossipTransport(c *memberlist.Config, b *blocker) (*gossipTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{c.BindAddr}, BindPort: c.BindPort, Logger: c.Logger}
	tries := 1
	if c.BindPort == 0 {
		tries = 10
	}
	var (
		nt  *memberlist.NetTransport
		err error
	)
	for range tries {
		if nt, err = memberlist.NewNetTransport(nc); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if c.BindPort == 0 {
		c.BindPort = nt.GetAutoBindPort()
		c.AdvertisePort = c.BindPort
	}
	t := &gossipTransport{NetTransport: nt, b: b, packets: make(chan *memberlist.Packet), done: make(chan struct{})}
	t.wg.Go(t.forward)
	return t, nil
}

func (t *gossipTransport) forward() {
	in := t.NetTransport.PacketCh()
	for {
		select {
		case p := <-in:
			if p.From != nil && t.b.addrBlocked(p.From.String()) {
				continue
			}
			select {
			case t.packets <- p:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

// PacketCh implements memberlist.Transport.
func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// WriteTo implements memberlist.Transport: a packet to a blocked address is
// lost.
func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.b.addrBlocked(addr) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteTo(b, addr)
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.b.addrBlocked(a.Addr) || (a.Name != "" && t.b.nodeBlocked(a.Name)) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

// DialTimeout implements memberlist.Transport.
func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.b.addrBlocked(addr) {
		return nil, fmt.Errorf("mesh: dial %s: blocked", addr)
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.b.addrBlocked(a.Addr) || (a.Name != "" && t.b.nodeBlocked(a.Name)) {
		return nil, fmt.Errorf("mesh: dial %s (%s): blocked", a.Name, a.Addr)
	}
	return t.NetTransport.DialAddressTimeout(a, timeout)
}

// Shutdown implements memberlist.Transport. The listeners go first, while
// the forwarder still drains their packets.
func (t *gossipTransport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
