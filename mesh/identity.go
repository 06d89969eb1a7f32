package mesh

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// IdentityFile is the name of the libp2p private key inside Config.DataDir.
const IdentityFile = "p2p.key"

// LoadIdentity returns the Ed25519 libp2p key stored at dataDir/p2p.key,
// creating it (mode 0600) on first use. A key file readable by group or
// others, or holding another key type, is refused.
func LoadIdentity(dataDir string) (crypto.PrivKey, error) {
	if dataDir == "" {
		return nil, errors.New("mesh: identity: data dir is empty")
	}
	path := filepath.Join(dataDir, IdentityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseIdentity(path, b)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("mesh: identity: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("mesh: identity: %w", err)
	}
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mesh: identity: generate: %w", err)
	}
	raw, err := crypto.MarshalPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("mesh: identity: marshal: %w", err)
	}
	// Write to a temporary file and link it into place so that a crash never
	// leaves a half-written key, and two racing starts agree on one key.
	tmp, err := os.CreateTemp(dataDir, ".p2p.key-*")
	if err != nil {
		return nil, fmt.Errorf("mesh: identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("mesh: identity: %w", err)
	}
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("mesh: identity: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("mesh: identity: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("mesh: identity: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race: use its key
			return LoadIdentity(dataDir)
		}
		return nil, fmt.Errorf("mesh: identity: %w", err)
	}
	return sk, nil
}

func parseIdentity(path string, b []byte) (crypto.PrivKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("mesh: identity: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("mesh: identity: %s has mode %#o; it must not be readable by group or others (chmod 600)", path, st.Mode().Perm())
	}
	sk, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("mesh: identity: %s is not a libp2p private key: %w", path, err)
	}
	if sk.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("mesh: identity: %s holds a %v key, want Ed25519", path, sk.Type())
	}
	return sk, nil
}

// PeerIDOf returns the libp2p peer ID stored in dataDir, creating the
// identity if there is none yet.
func PeerIDOf(dataDir string) (string, error) {
	sk, err := LoadIdentity(dataDir)
	if err != nil {
		return "", err
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return "", fmt.Errorf("mesh: identity: %w", err)
	}
	return id.String(), nil
}
