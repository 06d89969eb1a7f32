package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// LogProtocol streams a job's log from the node that ran it.
const LogProtocol = "/pwmesh/log/1.0.0"

// logOpener opens a job's log on this node.
type logOpener interface {
	OpenLog(jobID string) (io.ReadCloser, error)
}

// serveLog answers LogProtocol from this node's own job logs.
func serveLog(local logOpener) func(ctx context.Context, from string, req []byte) (io.ReadCloser, error) {
	return func(_ context.Context, _ string, req []byte) (io.ReadCloser, error) {
		return local.OpenLog(string(req))
	}
}

// OpenLog implements web.LogSource for the whole mesh: the log on this node
// if there is one, else the log on the node the job ran on.
func (n *Node) OpenLog(jobID string) (io.ReadCloser, error) {
	rc, err := n.worker.OpenLog(jobID)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return rc, err
	}
	j, ok := n.fsm.Job(jobID)
	if !ok || j.Node == "" || j.Node == n.id {
		return nil, err
	}
	peer := ""
	for _, m := range n.liveMembers() {
		if m.NodeID == j.Node {
			peer = m.meta.PeerID
		}
	}
	if peer == "" {
		return nil, fmt.Errorf("node: log of %s is on node %s, which is not reachable: %w", jobID, j.Node, fs.ErrNotExist)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	rc, err = n.mesh.OpenStream(ctx, peer, LogProtocol, []byte(jobID))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("node: log of %s from %s: %v: %w", jobID, j.Node, err, fs.ErrNotExist)
	}
	return &cancelOnClose{ReadCloser: rc, cancel: cancel}, nil
}
