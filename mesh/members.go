package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Timings tunes failure detection and redials. A zero field takes its LAN()
// value.
type Timings struct {
	ProbeInterval           time.Duration // how often each node probes one random peer
	ProbeTimeout            time.Duration // wait for an ack before indirect probes (< ProbeInterval)
	SuspicionMult           int           // suspicion timeout = SuspicionMult × max(1, log10 n) × ProbeInterval
	SuspicionMaxTimeoutMult int           // upper bound of the suspicion timeout, as a multiple of it
	GossipInterval          time.Duration // how often gossip is sent
	PushPullInterval        time.Duration // full state exchange with a random peer
	TCPTimeout              time.Duration // push-pull and join connections
	GossipToTheDeadTime     time.Duration // keep gossiping to a dead node this long
	DeadNodeReclaimTime     time.Duration // a dead node's name may come back at another address after this
	RedialInterval          time.Duration // first redial delay and poll period of Run (backoff doubles to 30 s)
	RetainDeparted          time.Duration // Members keeps "dead"/"left" members this long
	ReconnectInterval       time.Duration // how often Run tries to rejoin members that failed
	EventBuffer             int           // capacity of the Events channel
}

// LAN returns the default timings: a crashed node is declared "fail" about
// 2–3 s after it stops answering (memberlist's own LAN defaults take 5–9 s).
func LAN() Timings {
	return Timings{
		ProbeInterval:           500 * time.Millisecond,
		ProbeTimeout:            250 * time.Millisecond,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 2,
		GossipInterval:          100 * time.Millisecond,
		PushPullInterval:        15 * time.Second,
		TCPTimeout:              5 * time.Second,
		GossipToTheDeadTime:     15 * time.Second,
		DeadNodeReclaimTime:     5 * time.Second,
		RedialInterval:          500 * time.Millisecond,
		RetainDeparted:          10 * time.Minute,
		ReconnectInterval:       10 * time.Second,
		EventBuffer:             1024,
	}
}

// Fast returns timings for in-process tests on loopback: ~50 ms probes,
// failure declared within about half a second.
func Fast() Timings {
	return Timings{
		ProbeInterval:           50 * time.Millisecond,
		ProbeTimeout:            40 * time.Millisecond,
		SuspicionMult:           6,
		SuspicionMaxTimeoutMult: 2,
		GossipInterval:          20 * time.Millisecond,
		PushPullInterval:        500 * time.Millisecond,
		TCPTimeout:              2 * time.Second,
		GossipToTheDeadTime:     2 * time.Second,
		DeadNodeReclaimTime:     100 * time.Millisecond,
		RedialInterval:          50 * time.Millisecond,
		RetainDeparted:          time.Minute,
		ReconnectInterval:       500 * time.Millisecond,
		EventBuffer:             1024,
	}
}

func (t Timings) withDefaults() Timings {
	d := LAN()
	dur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	dur(&t.ProbeInterval, d.ProbeInterval)
	dur(&t.ProbeTimeout, d.ProbeTimeout)
	dur(&t.GossipInterval, d.GossipInterval)
	dur(&t.PushPullInterval, d.PushPullInterval)
	dur(&t.TCPTimeout, d.TCPTimeout)
	dur(&t.GossipToTheDeadTime, d.GossipToTheDeadTime)
	dur(&t.DeadNodeReclaimTime, d.DeadNodeReclaimTime)
	dur(&t.RedialInterval, d.RedialInterval)
	dur(&t.RetainDeparted, d.RetainDeparted)
	dur(&t.ReconnectInterval, d.ReconnectInterval)
	if t.SuspicionMult <= 0 {
		t.SuspicionMult = d.SuspicionMult
	}
	if t.SuspicionMaxTimeoutMult <= 0 {
		t.SuspicionMaxTimeoutMult = d.SuspicionMaxTimeoutMult
	}
	if t.EventBuffer <= 0 {
		t.EventBuffer = d.EventBuffer
	}
	if t.ProbeTimeout >= t.ProbeInterval {
		t.ProbeTimeout = t.ProbeInterval * 4 / 5
	}
	return t
}

// Member is one node as memberlist sees it.
type Member struct {
	NodeID string
	Addr   string // gossip "ip:port"
	Meta   []byte
	State  string // "alive", "dead" or "left" ("suspect" is not observable, see StateSuspect)
}

// MemberEvent is a change of membership.
type MemberEvent struct {
	Type   string // "join", "update", "leave" (graceful) or "fail" (declared dead)
	Member Member
}

// Member states and event types.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect" // not reported: memberlist v0.7.0 does not expose suspicion
	StateDead    = "dead"
	StateLeft    = "left"

	EventJoin   = "join"
	EventUpdate = "update"
	EventLeave  = "leave"
	EventFail   = "fail"
)

// toMember converts a memberlist node. memberlist v0.7.0 never updates
// Node.State (its nodeState shadows the field), so the state comes from the
// caller: NotifyLeave cannot tell a leave from a failure by itself.
func toMember(n *memberlist.Node, state string) Member {
	return Member{
		NodeID: n.Name,
		Addr:   net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		Meta:   bytes.Clone(n.Meta),
		State:  state,
	}
}

// membership is the mesh's own copy of the member list, kept from
// memberlist's events. (memberlist.Members returns pointers into state that
// memberlist keeps mutating under its own lock, which races, and it omits
// departed members.)
type membership struct {
	mu      sync.Mutex
	known   map[string]known
	leaving map[string]time.Time // members that announced a graceful leave
	// Leave acknowledgements this node waits for, while it leaves.
	pendingAcks map[string]bool
	acksDone    chan struct{}
	events      chan MemberEvent
	closed      bool
	dropped     uint64
}

type known struct {
	m     Member
	since time.Time // of the last state change
}

func (s *membership) init(buffer int) {
	s.known = make(map[string]known)
	s.leaving = make(map[string]time.Time)
	s.events = make(chan MemberEvent, buffer)
}

// record notes ev and queues it without ever blocking: when the channel is
// full the oldest queued event is dropped to make room. It reports whether
// an event was dropped.
func (s *membership) record(ev MemberEvent) (dropped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.known[ev.Member.NodeID] = known{m: ev.Member, since: time.Now()}
	switch ev.Type {
	case EventJoin, EventLeave, EventFail:
		delete(s.leaving, ev.Member.NodeID)
	}
	if s.closed {
		return false
	}
	for {
		select {
		case s.events <- ev:
			return dropped
		default:
		}
		select {
		case <-s.events:
			s.dropped++
			dropped = true
		default:
		}
	}
}

func (s *membership) prune(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, k := range s.known {
		if k.m.State != StateAlive && k.since.Before(before) {
			delete(s.known, id)
		}
	}
	for id, at := range s.leaving {
		if at.Before(before) {
			delete(s.leaving, id)
		}
	}
}

// markLeaving records that nodeID announced a graceful leave.
func (s *membership) markLeaving(nodeID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaving[nodeID] = time.Now()
}

func (s *membership) list() []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Member, 0, len(s.known))
	for _, k := range s.known {
		k.m.Meta = bytes.Clone(k.m.Meta)
		out = append(out, k.m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out
}

func (s *membership) get(nodeID string) (Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.known[nodeID]
	return k.m, ok
}

// expectAcks starts waiting for leave acknowledgements from peers; the
// channel closes when all have arrived.
func (s *membership) expectAcks(peers []string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acksDone = make(chan struct{})
	s.pendingAcks = make(map[string]bool, len(peers))
	for _, p := range peers {
		s.pendingAcks[p] = true
	}
	if len(peers) == 0 {
		close(s.acksDone)
	}
	return s.acksDone
}

func (s *membership) acked(nodeID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pendingAcks[nodeID] {
		return
	}
	delete(s.pendingAcks, nodeID)
	if len(s.pendingAcks) == 0 {
		close(s.acksDone)
	}
}

func (s *membership) isLeaving(nodeID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.leaving[nodeID]
	return ok
}

func (s *membership) closeEvents() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.events)
	}
}

// eventDelegate receives memberlist's callbacks. memberlist calls it with
// its node lock held, so it must neither block nor call back into
// memberlist.
type eventDelegate struct{ m *Mesh }

func (d eventDelegate) NotifyJoin(n *memberlist.Node) {
	d.m.onMember(EventJoin, toMember(n, StateAlive))
}

func (d eventDelegate) NotifyUpdate(n *memberlist.Node) {
	d.m.onMember(EventUpdate, toMember(n, StateAlive))
}

// NotifyLeave reports "leave" for a member that announced its leave (see
// Leave) and "fail" otherwise.
func (d eventDelegate) NotifyLeave(n *memberlist.Node) {
	if d.m.members.isLeaving(n.Name) {
		d.m.onMember(EventLeave, toMember(n, StateLeft))
	} else {
		d.m.onMember(EventFail, toMember(n, StateDead))
	}
}

func (m *Mesh) onMember(typ string, mem Member) {
	// memberlist hands the callbacks a Node whose own State field is not
	// kept current: the event says what the member is now.
	switch typ {
	case EventFail:
		mem.State = StateDead
	case EventLeave:
		mem.State = StateLeft
	default:
		mem.State = StateAlive
	}
	if mem.NodeID != m.cfg.NodeID {
		m.learnPeer(typ, mem)
	}
	level := slog.LevelInfo
	if typ == EventUpdate {
		level = slog.LevelDebug
	}
	m.log.Log(context.Background(), level, "mesh: member "+typ, "member", mem.NodeID, "addr", mem.Addr)
	if m.members.record(MemberEvent{Type: typ, Member: mem}) {
		m.log.Warn("mesh: events channel full; dropped the oldest event")
	}
}

// learnPeer keeps the libp2p side in step with membership: a member whose
// metadata decodes as NodeMeta is dialled, one that departed is not.
func (m *Mesh) learnPeer(typ string, mem Member) {
	nm, err := DecodeMeta(mem.Meta)
	if err != nil || nm.PeerID == "" {
		return
	}
	switch typ {
	case EventLeave, EventFail:
		m.ForgetPeer(nm.PeerID)
	default:
		if err := m.AddPeer(nm.PeerID, nm.P2P); err != nil {
			m.log.Debug("mesh: member metadata has unusable p2p addresses", "member", mem.NodeID, "err", err)
		}
	}
}

// metaDelegate hands memberlist this node's metadata; it never returns more
// than memberlist's limit (New and UpdateMeta refuse larger metadata, so
// the trim below is only a guard against memberlist's panic).
type metaDelegate struct{ m *Mesh }

func (d metaDelegate) NodeMeta(limit int) []byte {
	d.m.metaMu.Lock()
	defer d.m.metaMu.Unlock()
	b := d.m.meta
	if len(b) > limit {
		b = nil
	}
	return b
}

// NotifyMsg receives the mesh's own memberlist user messages.
func (d metaDelegate) NotifyMsg(b []byte) {
	if len(b) < 2 {
		return
	}
	from := string(b[1:])
	switch b[0] {
	case msgLeaveIntent:
		d.m.members.markLeaving(from)
		// Acknowledge from an owned goroutine: NotifyMsg must not block.
		d.m.tasks.goOwned(func() { d.m.sendUserMsg(from, msgLeaveAck) })
	case msgLeaveAck:
		d.m.members.acked(from)
	}
}
func (metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (metaDelegate) LocalState(join bool) []byte                { return nil }
func (metaDelegate) MergeRemoteState(buf []byte, join bool)     {}

func (m *Mesh) readMeta() ([]byte, error) {
	switch {
	case m.cfg.NodeMeta != nil:
		nm := m.cfg.NodeMeta()
		nm.V = MetaVersion
		nm.PeerID = m.PeerID()
		nm.P2P = m.P2PAddrs()
		return EncodeMeta(nm)
	case m.cfg.Meta != nil:
		b := m.cfg.Meta()
		if len(b) > MaxMetaBytes {
			return nil, fmt.Errorf("%w: Meta returned %d bytes", ErrMetaTooLarge, len(b))
		}
		return bytes.Clone(b), nil
	}
	return nil, nil
}

func (m *Mesh) memberlistConfig(secrets clusterSecrets) *memberlist.Config {
	t := m.cfg.Timings
	c := memberlist.DefaultLANConfig()
	c.Name = m.cfg.NodeID
	c.BindAddr = m.cfg.Bind
	c.BindPort = m.cfg.GossipPort
	c.AdvertisePort = m.cfg.GossipPort
	c.Label = m.cfg.Cluster
	c.ProbeInterval = t.ProbeInterval
	c.ProbeTimeout = t.ProbeTimeout
	c.SuspicionMult = t.SuspicionMult
	c.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult
	c.GossipInterval = t.GossipInterval
	c.PushPullInterval = t.PushPullInterval
	c.TCPTimeout = t.TCPTimeout
	c.GossipToTheDeadTime = t.GossipToTheDeadTime
	c.DeadNodeReclaimTime = t.DeadNodeReclaimTime
	if secrets.gossipKey != nil {
		c.SecretKey = secrets.gossipKey
		c.GossipVerifyIncoming = true
		c.GossipVerifyOutgoing = true
	}
	c.Delegate = metaDelegate{m}
	c.Events = eventDelegate{m}
	c.Alive = aliveFilter{m.block}
	c.LogOutput = nil
	c.Logger = log.New(memberlistLog{m.log.With("logger", "memberlist")}, "", 0)
	return c
}

var memberlistLevels = []struct {
	prefix string
	level  slog.Level
}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}}

// memberlistLog turns memberlist's "[LEVEL] memberlist: ..." lines into
// slog records.
type memberlistLog struct{ l *slog.Logger }

func (w memberlistLog) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for _, p := range memberlistLevels {
		if rest, ok := strings.CutPrefix(s, p.prefix); ok {
			s, level = strings.TrimSpace(rest), p.level
			break
		}
	}
	// memberlist's warnings are mostly transient probe failures.
	if level == slog.LevelWarn {
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, s)
	return len(p), nil
}

// Join contacts the given gossip addresses ("ip:port") and merges their
// view of the cluster. It retries with backoff (50 ms doubling to 2 s) until
// at least one address answered or ctx ends, and returns how many answered.
func (m *Mesh) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("mesh: join: no addresses")
	}
	backoff := 50 * time.Millisecond
	for {
		n, err := m.joinOnce(addrs)
		if n > 0 {
			if err != nil {
				m.log.Debug("mesh: join partly failed", "joined", n, "err", err)
			}
			return n, nil
		}
		if errors.Is(err, ErrClosed) {
			return 0, err
		}
		m.log.Debug("mesh: join failed; retrying", "addrs", addrs, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("mesh: join %s: %w (last error: %w)", strings.Join(addrs, ","), ctx.Err(), err)
		case <-m.done:
			t.Stop()
			return 0, ErrClosed
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (m *Mesh) joinOnce(addrs []string) (int, error) {
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	return m.ml.Join(addrs)
}

// Members returns every member this node knows, itself included, sorted by
// NodeID: alive ones, and those that left or failed within
// Timings.RetainDeparted (and have not come back).
func (m *Mesh) Members() []Member { return m.members.list() }

// Events returns membership changes, this node's own join included. The
// channel is buffered (Timings.EventBuffer) and never blocks memberlist:
// when it is full the oldest event is dropped (and a warning logged), so a
// consumer that must not miss a state should reconcile with Members. It is
// closed by Close. All callers share one channel.
func (m *Mesh) Events() <-chan MemberEvent { return m.members.events }

// UpdateMeta re-reads Meta (or NodeMeta) and gossips it. Metadata above
// MaxMetaBytes is refused with ErrMetaTooLarge and the previous metadata
// stays in effect.
func (m *Mesh) UpdateMeta() error {
	b, err := m.readMeta()
	if err != nil {
		return err
	}
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return ErrClosed
	}
	m.metaMu.Lock()
	m.meta = b
	m.metaMu.Unlock()
	timeout := max(10*m.cfg.Timings.GossipInterval, time.Second)
	if err := m.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("mesh: update meta: %w", err)
	}
	return nil
}

// The mesh's memberlist user messages: one type byte, then the sender's
// NodeID. A leaving node sends msgLeaveIntent to every alive member, and
// each answers msgLeaveAck once it has noted the intent.
const (
	msgLeaveIntent = 'L'
	msgLeaveAck    = 'A'
)

// sendUserMsg sends a user message of type typ to member nodeID over TCP.
func (m *Mesh) sendUserMsg(nodeID string, typ byte) {
	mem, ok := m.members.get(nodeID)
	if !ok {
		return
	}
	host, port, err := net.SplitHostPort(mem.Addr)
	if err != nil {
		return
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return
	}
	n := &memberlist.Node{Name: nodeID, Addr: net.ParseIP(host), Port: uint16(p)}
	msg := append([]byte{typ}, m.cfg.NodeID...)
	if err := m.ml.SendReliable(n, msg); err != nil {
		m.log.Debug("mesh: user message not delivered", "member", nodeID, "type", string(typ), "err", err)
	}
}

// Leave departs gracefully, so that others see "leave"/"left" rather than
// "fail": it first tells every alive member directly and waits for their
// acknowledgements (memberlist's own leave message is not visible to its
// event delegate), using up to half of timeout, then broadcasts
// memberlist's leave and waits up to the rest for it to go out. A member
// that did not acknowledge in time may report "fail". The mesh keeps
// running until Close.
func (m *Mesh) Leave(timeout time.Duration) error {
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return ErrClosed
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	deadline := time.Now().Add(timeout)
	m.members.markLeaving(m.cfg.NodeID)
	m.announceLeave(timeout / 2)
	if err := m.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("mesh: leave: %w", err)
	}
	return nil
}

// announceLeave sends the leave intent to every other alive member over
// TCP, 16 at a time, and waits up to wait for all of them to acknowledge.
func (m *Mesh) announceLeave(wait time.Duration) {
	var peers []string
	for _, mem := range m.members.list() {
		if mem.NodeID != m.cfg.NodeID && mem.State == StateAlive {
			peers = append(peers, mem.NodeID)
		}
	}
	acked := m.members.expectAcks(peers)
	sem := make(chan struct{}, 16)
	for _, id := range peers {
		m.tasks.goOwned(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			m.sendUserMsg(id, msgLeaveIntent)
		})
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-acked:
	case <-t.C:
		m.log.Debug("mesh: not every member acknowledged the leave", "waited", wait)
	}
}

// HealthScore is memberlist's view of how well this node keeps up with
// the gossip protocol's soft real-time demands: 0 is healthy, and each
// missed probe or refuted suspicion raises it (up to
// memberlist.Config.AwarenessMaxMultiplier - 1), which stretches this
// node's probe intervals and timeouts.
func (m *Mesh) HealthScore() int { return m.ml.GetHealthScore() }
