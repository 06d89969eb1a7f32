package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/fsstore"
	"github.com/pwmesh/pwmesh/cas/mirror"
	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/gpu"
	"github.com/pwmesh/pwmesh/mesh"
	"github.com/pwmesh/pwmesh/node/storage"
	"github.com/pwmesh/pwmesh/scheduler"
)

// openStorage opens the node's disk store, its mirror and its master
// keyring, and builds the replicated store over them.
func (n *Node) openStorage(clusterKey []byte) error {
	local, err := fsstore.New(filepath.Join(n.cfg.DataDir, "cas"))
	if err != nil {
		return fmt.Errorf("node: store: %w", err)
	}
	keys, err := n.keyring(clusterKey)
	if err != nil {
		return err
	}
	mirrorURL, shared := n.cfg.ObjectStore, true
	if mirrorURL == "" {
		// The contract's default: a folder of the node's own, which keeps
		// a second local copy but is no copy for another node.
		mirrorURL = (&url.URL{Scheme: "file", Path: filepath.Join(n.cfg.DataDir, "mirror")}).String()
		shared = false
	}
	m, err := mirror.Open(context.Background(), mirrorURL, mirror.Options{Logger: n.log})
	if err != nil {
		return fmt.Errorf("node: --object-store: %w", err)
	}
	n.mirror = m
	n.storage, err = storage.New(storage.Config{
		NodeID:       n.id,
		Local:        local,
		Mirror:       m,
		SharedMirror: shared,
		Keys:         keys,
		Clock:        n.cfg.Clock,
		Logger:       n.log,
	}, n.fsm, n, peers{n})
	if err != nil {
		return err
	}
	n.store = n.storage.Store()
	n.mesh.HandleStream(storage.BlobProtocol, n.storage.ServeBlob)
	n.mesh.Handle(storage.ReplicateProtocol, n.storage.ServeReplicate)
	return nil
}

// keyring is the master keyring: --master-key-file when given, else a key
// derived from the cluster key, else (a lone --dev node) one kept in the
// data directory.
func (n *Node) keyring(clusterKey []byte) (*seal.Keyring, error) {
	if n.cfg.MasterKeyFile != "" {
		b, err := os.ReadFile(n.cfg.MasterKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--master-key-file: %w", err)
		}
		k, err := seal.ParseKeyringFile(b)
		if err != nil {
			return nil, fmt.Errorf("--master-key-file %s: %w", n.cfg.MasterKeyFile, err)
		}
		return k, nil
	}
	if len(clusterKey) > 0 {
		return seal.NewKeyring(seal.DeriveMasterKey("cluster", clusterKey))
	}
	secret, err := loadOrCreate(filepath.Join(n.cfg.DataDir, "master-secret"), func() string { return randHex(32) })
	if err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(strings.TrimSpace(secret))
	if err != nil {
		return nil, fmt.Errorf("node: %s is damaged: %w", filepath.Join(n.cfg.DataDir, "master-secret"), err)
	}
	return seal.NewKeyring(seal.DeriveMasterKey("local", b))
}

// Storage is the node's replicated store (for tests and tools).
func (n *Node) Storage() *storage.Storage { return n.storage }

// LocalStore is the node's own disk store.
func (n *Node) LocalStore() cas.Store { return n.storage.Local() }

// peerFirstByte bounds the wait for a peer's answer to a stream request.
const peerFirstByte = 10 * time.Second

// peers reaches other nodes by node ID through the mesh.
type peers struct{ n *Node }

func (p peers) Live() []string {
	var out []string
	for _, m := range p.n.liveMembers() {
		if m.NodeID != p.n.id && m.meta.PeerID != "" {
			out = append(out, m.NodeID)
		}
	}
	return out
}

func (p peers) peerID(node string) (string, error) {
	for _, m := range p.n.liveMembers() {
		if m.NodeID == node && m.meta.PeerID != "" {
			return m.meta.PeerID, nil
		}
	}
	return "", fmt.Errorf("node %s is not a live member: %w", node, cas.ErrNotFound)
}

func (p peers) OpenStream(ctx context.Context, node, proto string, req []byte) (io.ReadCloser, error) {
	pid, err := p.peerID(node)
	if err != nil {
		return nil, err
	}
	return p.n.mesh.OpenStreamFirstByte(ctx, pid, proto, req, peerFirstByte)
}

func (p peers) Call(ctx context.Context, node, proto string, req []byte) ([]byte, error) {
	pid, err := p.peerID(node)
	if err != nil {
		return nil, err
	}
	resp, err := p.n.mesh.Call(ctx, pid, proto, req)
	var re *mesh.RemoteError
	if errors.As(err, &re) {
		return nil, fmt.Errorf("node %s: %s", node, re.Message)
	}
	return resp, err
}

// Blob is the index entry of a stored object, as this node's replica has it.
func (n *Node) Blob(cid string) (scheduler.Blob, bool) { return n.fsm.Blob(cid) }

// Dataset is a dataset's record, as this node's replica has it.
func (n *Node) Dataset(id string) (scheduler.Dataset, bool) { return n.fsm.Dataset(id) }

// GPUs is the node's GPU inventory (tests inject faults into a fake one).
func (n *Node) GPUs() gpu.Inventory { return n.gpus }
