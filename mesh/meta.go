package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MaxMetaBytes is memberlist's cap on a node's metadata. memberlist panics
// above it, so the mesh refuses larger metadata before memberlist sees it.
const MaxMetaBytes = 512

// MetaVersion is the NodeMeta encoding EncodeMeta writes.
const MetaVersion = 1

// maxMetaP2PAddrs is how many libp2p addresses EncodeMeta keeps.
const maxMetaP2PAddrs = 2

// ErrMetaTooLarge reports metadata above MaxMetaBytes.
var ErrMetaTooLarge = errors.New("mesh: node metadata exceeds 512 bytes")

// NodeMeta is what a pwmesh node advertises in memberlist. It is a typed,
// versioned hint: anything that must be agreed goes through Raft.
type NodeMeta struct {
	V      int      `json:"v"`             // encoding version (EncodeMeta sets MetaVersion when 0)
	PeerID string   `json:"id,omitempty"`  // libp2p peer ID
	P2P    []string `json:"p,omitempty"`   // libp2p multiaddrs (at most 2 kept; a trailing /p2p/<PeerID> is dropped)
	HTTP   string   `json:"h,omitempty"`   // HTTP API address
	Region string   `json:"r,omitempty"`   // region name
	Voter  bool     `json:"vt,omitempty"`  // eligible as a Raft voter
	GPUs   string   `json:"g,omitempty"`   // compact summary, e.g. "2xA100-80GB,1xT4-16GB"
	Slots  int      `json:"s,omitempty"`   // free job slots
	Inc    string   `json:"inc,omitempty"` // incarnation of the process
	// Raft is set once the node belongs to a bootstrapped Raft group (it
	// has Raft state or knows a leader): nobody bootstraps another group
	// while a member says so.
	Raft bool `json:"rf,omitempty"`
}

// EncodeMeta encodes m as compact JSON. It keeps the first two P2P
// addresses, drops a trailing /p2p/<PeerID> from each (the peer ID is
// carried once), and fails with ErrMetaTooLarge when the result is still
// above MaxMetaBytes.
func EncodeMeta(m NodeMeta) ([]byte, error) {
	if m.V == 0 {
		m.V = MetaVersion
	}
	if m.PeerID != "" {
		suffix := "/p2p/" + m.PeerID
		addrs := make([]string, 0, len(m.P2P))
		for _, a := range m.P2P {
			addrs = append(addrs, strings.TrimSuffix(a, suffix))
		}
		m.P2P = addrs
	}
	if len(m.P2P) > maxMetaP2PAddrs {
		m.P2P = m.P2P[:maxMetaP2PAddrs]
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("mesh: encode meta: %w", err)
	}
	if len(b) > MaxMetaBytes {
		return nil, fmt.Errorf("%w: encoded node metadata is %d bytes (GPUs %q, %d P2P addresses); shorten the GPU summary", ErrMetaTooLarge, len(b), m.GPUs, len(m.P2P))
	}
	return b, nil
}

// DecodeMeta decodes metadata written by EncodeMeta. Unknown fields are
// ignored so that newer nodes can add some.
func DecodeMeta(b []byte) (NodeMeta, error) {
	var m NodeMeta
	if len(b) == 0 {
		return m, errors.New("mesh: decode meta: empty")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return NodeMeta{}, fmt.Errorf("mesh: decode meta: %w", err)
	}
	if m.V < 1 {
		return NodeMeta{}, fmt.Errorf("mesh: decode meta: version %d", m.V)
	}
	return m, nil
}
