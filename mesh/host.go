package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("mesh: closed")

// Config configures a Mesh. DataDir and NodeID are required; every other
// field has a working default.
type Config struct {
	// DataDir holds the libp2p identity (DataDir/p2p.key, Ed25519, mode
	// 0600), created on first start and reused after.
	DataDir string
	// NodeID is this node's name in memberlist (e.g. "node-3fa2c1").
	NodeID string
	// Bind is the one IP that gossip and libp2p listen on (default
	// "127.0.0.1"). Nothing listens on any other interface.
	Bind string
	// GossipPort is the memberlist TCP+UDP port; 0 picks a free one.
	GossipPort int
	// P2PPort is the libp2p TCP port; 0 picks a free one.
	P2PPort int
	// ClusterKey is nil for an open mesh, else the contents of the cluster
	// key file (see GenerateClusterKey) or the 32 bytes ParseClusterKey
	// returns from them. Two independent keys are derived
	// from it with HKDF-SHA256: a libp2p private-network PSK and a
	// memberlist AES-256 key with incoming and outgoing verification.
	ClusterKey []byte
	// Cluster, if set, labels every memberlist packet and stream; nodes
	// with another label ignore them (at most 255 bytes). It keeps two
	// meshes on one network apart; it is not a secret (see ClusterKey).
	Cluster string
	// Meta returns this node's raw memberlist metadata (at most
	// MaxMetaBytes). It is read by New and again by UpdateMeta.
	Meta func() []byte
	// NodeMeta, an alternative to Meta, returns typed metadata; the mesh
	// fills in V, PeerID and P2P from its own host and encodes it with
	// EncodeMeta. Set at most one of Meta and NodeMeta.
	NodeMeta func() NodeMeta
	// Timings tunes memberlist and redials; zero fields take LAN() values.
	Timings Timings
	// Logger receives the mesh's and memberlist's logs (default: discard);
	// it is expected to carry the node_id already.
	Logger *slog.Logger
	// Metrics, when set, receives libp2p's own Prometheus metrics (swarm,
	// identify, event bus, resource manager: libp2p_*); nil turns them
	// off. libp2p keeps their values in package variables: several meshes
	// in one process (tests) share them, and registering them on several
	// registries is fine.
	Metrics prometheus.Registerer
}

// Mesh is this node's view of, and connection to, its peers.
type Mesh struct {
	cfg     Config
	log     *slog.Logger
	host    host.Host
	ps      *pubsub.PubSub
	ml      *memberlist.Memberlist
	gossip  string // "ip:port" memberlist is bound to
	private bool

	ctx    context.Context // lives until Close; parent of handler and subscription contexts
	cancel context.CancelFunc
	done   chan struct{} // closed by Close
	tasks  tracker       // goroutines the mesh owns (handlers, subscriptions)

	// life guards memberlist against use after Shutdown (memberlist panics
	// on Leave after Shutdown).
	life    sync.RWMutex
	closed  bool
	running atomic.Bool

	metaMu sync.Mutex
	meta   []byte // validated metadata handed to memberlist

	members membership

	peersMu sync.Mutex
	wanted  map[peer.ID]*dialState
	poke    chan struct{}

	topicsMu sync.Mutex
	topics   map[string]*pubsub.Topic

	raftMu    sync.Mutex
	raftLayer *streamLayer

	block *blocker // members cut off by Block (tests)

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and builds the libp2p host (TCP only, noise, no relay,
// no NAT service or port mapping, no mDNS; a pnet PSK with a cluster key),
// gossipsub and memberlist. Both listen as soon as New returns; no join is
// attempted.
func New(cfg Config) (*Mesh, error) {
	if cfg.DataDir == "" || cfg.NodeID == "" {
		return nil, errors.New("mesh: config: DataDir and NodeID are required")
	}
	if cfg.Meta != nil && cfg.NodeMeta != nil {
		return nil, errors.New("mesh: config: set Meta or NodeMeta, not both")
	}
	if cfg.Bind == "" {
		cfg.Bind = "127.0.0.1"
	}
	ip := net.ParseIP(cfg.Bind)
	if ip == nil {
		return nil, fmt.Errorf("mesh: config: Bind %q is not an IP address", cfg.Bind)
	}
	if len(cfg.Cluster) > 255 {
		return nil, errors.New("mesh: config: Cluster label longer than 255 bytes")
	}
	for _, p := range []int{cfg.GossipPort, cfg.P2PPort} {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("mesh: config: port %d out of range", p)
		}
	}
	cfg.Timings = cfg.Timings.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var secrets clusterSecrets
	private := len(cfg.ClusterKey) > 0
	if private {
		var err error
		if secrets, err = deriveClusterSecrets(cfg.ClusterKey); err != nil {
			return nil, err
		}
	}
	sk, err := LoadIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}

	ipProto := "ip4"
	if ip.To4() == nil {
		ipProto = "ip6"
	}
	block := &blocker{}
	opts := []libp2p.Option{
		libp2p.Identity(sk),
		libp2p.ConnectionGater(gater{block}),
		libp2p.ListenAddrStrings(fmt.Sprintf("/%s/%s/tcp/%d", ipProto, ip, cfg.P2PPort)),
		// TCP only: pnet works over TCP only; no QUIC/WebRTC/WebTransport.
		// No SO_REUSEPORT: with it, outgoing dials leave from the listen
		// port, so two peers dialling each other at once (members learn of
		// each other at the same moment) make one TCP simultaneous-open
		// connection where both sides act as initiator and the noise
		// handshake fails ("noise: message is too short").
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Security(noise.ID, noise.New),
		libp2p.DisableRelay(),
		libp2p.ForceReachabilityPrivate(), // no AutoNAT probing: this is a private mesh
		libp2p.ConnectionManager(connmgr.NullConnMgr{}),
	}
	var rm network.ResourceManager
	if cfg.Metrics != nil {
		// libp2p's default resource manager, with the reporter that feeds
		// its libp2p_rcmgr_* metrics (without one they stay empty).
		if rm, err = newResourceManager(); err != nil {
			return nil, err
		}
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Metrics), libp2p.ResourceManager(rm))
	} else {
		opts = append(opts, libp2p.DisableMetrics()) // never the global registry
	}
	if private {
		opts = append(opts, libp2p.PrivateNetwork(secrets.psk))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		if rm != nil {
			_ = rm.Close() // its own goroutine; closing twice is harmless
		}
		return nil, fmt.Errorf("mesh: libp2p host: %w", err)
	}

	m := &Mesh{
		cfg:     cfg,
		log:     cfg.Logger, // the caller's logger already names the node
		host:    h,
		private: private,
		done:    make(chan struct{}),
		wanted:  make(map[peer.ID]*dialState),
		poke:    make(chan struct{}, 1),
		topics:  make(map[string]*pubsub.Topic),
		block:   block,
	}
	h.Network().Notify(&network.NotifyBundle{ConnectedF: block.closeBlocked})
	m.members.init(cfg.Timings.EventBuffer)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*Mesh, error) {
		m.cancel()
		_ = h.Close()
		return nil, err
	}

	m.ps, err = pubsub.NewGossipSub(m.ctx, h,
		// The wire limit covers the whole RPC (envelope, signature, topic),
		// so leave room above the payload limit that Publish enforces.
		pubsub.WithMaxMessageSize(MaxMessageBytes+64<<10),
		// go-libp2p-pubsub v0.19.0 no longer flood-publishes by default: a
		// node subscribed to its own topic would publish only to its
		// gossipsub mesh, which is empty until the first heartbeat grafts.
		// Announcements go to every known subscriber at once.
		pubsub.WithFloodPublish(true),
		// Its lines go to this node's logger (one JSON shape, node_id).
		pubsub.WithLogger(m.log.With("logger", "libp2p.pubsub")),
	)
	if err != nil {
		return fail(fmt.Errorf("mesh: pubsub: %w", err))
	}

	meta, err := m.readMeta()
	if err != nil {
		return fail(err)
	}
	m.meta = meta

	mlc := m.memberlistConfig(secrets)
	tr, err := newGossipTransport(mlc, block)
	if err != nil {
		return fail(fmt.Errorf("mesh: memberlist on %s:%d: %w", cfg.Bind, cfg.GossipPort, err))
	}
	mlc.Transport = tr
	if m.ml, err = memberlist.Create(mlc); err != nil {
		_ = tr.Shutdown()
		return fail(fmt.Errorf("mesh: memberlist on %s:%d: %w", cfg.Bind, cfg.GossipPort, err))
	}
	local := m.ml.LocalNode()
	m.gossip = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	m.log.Debug("mesh started", "peer_id", h.ID().String(), "gossip", m.GossipAddr(), "p2p", m.P2PAddrs(), "private", private)
	return m, nil
}

// newResourceManager is libp2p's default resource manager (the limits of
// libp2p.DefaultResourceManager) that reports to libp2p's Prometheus
// metrics.
func newResourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	str, err := rcmgr.NewStatsTraceReporter()
	if err != nil {
		return nil, fmt.Errorf("mesh: libp2p resource manager: %w", err)
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), rcmgr.WithTraceReporter(str))
	if err != nil {
		return nil, fmt.Errorf("mesh: libp2p resource manager: %w", err)
	}
	return rm, nil
}

// PeerID returns this node's libp2p peer ID.
func (m *Mesh) PeerID() string { return m.host.ID().String() }

// P2PAddrs returns the multiaddrs this node's libp2p host listens on, each
// ending in /p2p/<PeerID>.
func (m *Mesh) P2PAddrs() []string {
	addrs := m.host.Network().ListenAddresses()
	if ip := net.ParseIP(m.cfg.Bind); ip != nil && ip.IsUnspecified() {
		addrs = m.host.Addrs() // the interface addresses behind 0.0.0.0
	}
	suffix := "/p2p/" + m.host.ID().String()
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String()+suffix)
	}
	slices.Sort(out)
	return out
}

// GossipAddr returns the "ip:port" memberlist is bound to.
func (m *Mesh) GossipAddr() string { return m.gossip }

// dialState is what the redial loop knows about a wanted peer.
type dialState struct {
	addrs   []ma.Multiaddr
	dialing bool
	backoff time.Duration
	next    time.Time
}

// AddPeer teaches the peerstore the addresses of peerID (multiaddrs, with
// or without a trailing /p2p/<peerID>), replacing those it taught before,
// and marks the peer as wanted: Run keeps a connection to it (with backoff)
// until the peer leaves or fails in memberlist, or ForgetPeer is called.
// The mesh already does this by itself for members whose metadata decodes
// with DecodeMeta.
func (m *Mesh) AddPeer(peerID string, addrs []string) error {
	pid, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("mesh: add peer: bad peer ID %q: %w", peerID, err)
	}
	if pid == m.host.ID() {
		return nil
	}
	mas := make([]ma.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("mesh: add peer %s: bad address %q: %w", peerID, s, err)
		}
		tr, id := peer.SplitAddr(a)
		if id != "" && id != pid {
			return fmt.Errorf("mesh: add peer %s: address %q names another peer", peerID, s)
		}
		mas = append(mas, tr)
	}
	m.peersMu.Lock()
	st := m.wanted[pid]
	if st == nil {
		st = &dialState{}
		m.wanted[pid] = st
	}
	var stale []ma.Multiaddr
	for _, old := range st.addrs {
		if !slices.ContainsFunc(mas, old.Equal) {
			stale = append(stale, old)
		}
	}
	st.addrs = mas
	st.next = time.Time{}
	m.peersMu.Unlock()
	ps := m.host.Peerstore()
	if len(stale) > 0 {
		ps.SetAddrs(pid, stale, 0) // TTL 0 removes them
	}
	ps.AddAddrs(pid, mas, peerstore.PermanentAddrTTL)
	m.pokeDialer()
	return nil
}

// ForgetPeer stops keeping a connection to peerID. Known addresses stay in
// the peerstore, so Call and Raft can still dial it.
func (m *Mesh) ForgetPeer(peerID string) {
	pid, err := peer.Decode(peerID)
	if err != nil {
		return
	}
	m.peersMu.Lock()
	delete(m.wanted, pid)
	m.peersMu.Unlock()
}

// Connect dials peerID now (using the addresses in the peerstore) and
// returns once connected or when ctx ends.
func (m *Mesh) Connect(ctx context.Context, peerID string) error {
	pid, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("mesh: connect: bad peer ID %q: %w", peerID, err)
	}
	if err := m.host.Connect(ctx, peer.AddrInfo{ID: pid}); err != nil {
		return fmt.Errorf("mesh: connect %s: %w", peerID, err)
	}
	return nil
}

// ConnectedPeers returns the peer IDs this host has a live connection to.
func (m *Mesh) ConnectedPeers() []string {
	var out []string
	for _, p := range m.host.Network().Peers() {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

func (m *Mesh) pokeDialer() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// Run keeps connections to wanted peers (see AddPeer) with exponential
// backoff and drops departed members from Members after
// Timings.RetainDeparted. It returns nil when ctx ends or the mesh is
// closed. The libp2p host, gossipsub and memberlist run from New until
// Close whether or not Run is running; Run is called at most once.
func (m *Mesh) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("mesh: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()
	var dials sync.WaitGroup
	defer dials.Wait()
	t := time.NewTicker(m.cfg.Timings.RedialInterval)
	defer t.Stop()
	rt := time.NewTicker(m.cfg.Timings.ReconnectInterval)
	defer rt.Stop()
	var reconnecting sync.Mutex
	for {
		m.dialDue(ctx, &dials)
		m.members.prune(time.Now().Add(-m.cfg.Timings.RetainDeparted))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-rt.C:
			m.reconnect(ctx, &dials, &reconnecting)
		case <-m.poke:
		}
	}
}

const (
	redialMax   = 30 * time.Second
	dialTimeout = 5 * time.Second
)

func (m *Mesh) dialDue(ctx context.Context, wg *sync.WaitGroup) {
	now := time.Now()
	m.peersMu.Lock()
	defer m.peersMu.Unlock()
	for pid, st := range m.wanted {
		if st.dialing || now.Before(st.next) {
			continue
		}
		if m.host.Network().Connectedness(pid) == network.Connected {
			st.backoff = 0
			continue
		}
		st.dialing = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, dialTimeout)
			err := m.host.Connect(dctx, peer.AddrInfo{ID: pid})
			cancel()
			m.peersMu.Lock()
			defer m.peersMu.Unlock()
			st.dialing = false
			if err == nil {
				st.backoff = 0
				return
			}
			st.backoff = min(max(2*st.backoff, m.cfg.Timings.RedialInterval), redialMax)
			st.next = time.Now().Add(st.backoff)
			m.log.Debug("mesh: redial failed", "peer_id", pid.String(), "retry_in", st.backoff, "err", err)
		}()
	}
}

// Close stops everything at once: memberlist shuts down without leaving
// (others see "fail"; call Leave first for a graceful exit), the libp2p host
// closes its connections, subscriptions close, handlers are waited for and
// Events is closed. It is safe to call more than once.
func (m *Mesh) Close() error {
	m.closeOnce.Do(func() {
		m.life.Lock()
		m.closed = true
		m.life.Unlock()
		close(m.done)
		m.raftMu.Lock()
		l := m.raftLayer
		m.raftMu.Unlock()
		if l != nil {
			_ = l.Close()
		}
		errML := m.ml.Shutdown()
		m.cancel()
		errHost := m.host.Close()
		m.tasks.closeAndWait()
		m.members.closeEvents()
		m.closeErr = errors.Join(errML, errHost)
		if m.closeErr != nil {
			m.closeErr = fmt.Errorf("mesh: close: %w", m.closeErr)
		}
	})
	return m.closeErr
}

// tracker runs goroutines owned by the mesh and waits for them on Close.
type tracker struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// enter registers one goroutine, or reports false once closed.
func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *tracker) leave() { t.wg.Done() }

// goOwned starts f as an owned goroutine, or reports false once closed.
func (t *tracker) goOwned(f func()) bool {
	if !t.enter() {
		return false
	}
	go func() {
		defer t.leave()
		f()
	}()
	return true
}

func (t *tracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}
