package mesh

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// ClusterKeySize is the number of random bytes in a cluster key.
const ClusterKeySize = 32

// HKDF labels: one per use, so that the libp2p PSK and the memberlist key
// are independent even though both come from one cluster key.
const (
	labelPSK       = "pwmesh/v1 libp2p pnet psk"
	labelGossipKey = "pwmesh/v1 memberlist gossip key"
)

// GenerateClusterKey returns the contents of a new cluster key file: the
// standard base64 encoding of 32 random bytes and a newline.
func GenerateClusterKey() []byte {
	raw := make([]byte, ClusterKeySize)
	if _, err := rand.Read(raw); err != nil {
		panic("mesh: crypto/rand failed: " + err.Error()) // never happens on supported systems
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(raw)), base64.StdEncoding.EncodedLen(len(raw))+1)
	base64.StdEncoding.Encode(out, raw)
	return append(out, '\n')
}

// ParseClusterKey validates the contents of a cluster key file and returns
// its 32 raw bytes. Surrounding white space is ignored.
func ParseClusterKey(b []byte) ([]byte, error) {
	s := bytes.TrimSpace(b)
	if len(s) == 0 {
		return nil, errors.New("mesh: cluster key: file is empty (generate one with GenerateClusterKey)")
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(raw, s)
	if err != nil {
		return nil, fmt.Errorf("mesh: cluster key: not standard base64 (%v)", err)
	}
	if n != ClusterKeySize {
		return nil, fmt.Errorf("mesh: cluster key: decodes to %d bytes, want %d", n, ClusterKeySize)
	}
	return raw[:n], nil
}

// clusterSecrets are the keys derived from one cluster key.
type clusterSecrets struct {
	psk       []byte // libp2p private network pre-shared key (32 bytes)
	gossipKey []byte // memberlist AES-256 key (32 bytes)
}

// deriveClusterSecrets accepts the contents of a key file or the 32 raw
// bytes ParseClusterKey returns (a key file is never 32 bytes long: its
// base64 text is 44).
func deriveClusterSecrets(key []byte) (clusterSecrets, error) {
	raw := key
	if len(key) != ClusterKeySize {
		var err error
		if raw, err = ParseClusterKey(key); err != nil {
			return clusterSecrets{}, err
		}
	}
	psk, err := hkdf.Key(sha256.New, raw, nil, labelPSK, 32)
	if err != nil {
		return clusterSecrets{}, fmt.Errorf("mesh: cluster key: derive: %w", err)
	}
	gk, err := hkdf.Key(sha256.New, raw, nil, labelGossipKey, 32)
	if err != nil {
		return clusterSecrets{}, fmt.Errorf("mesh: cluster key: derive: %w", err)
	}
	return clusterSecrets{psk: psk, gossipKey: gk}, nil
}
