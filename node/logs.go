package node

import (
	"context"
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

// OpenLog implements web.LogSource for the whole mesh: the log of the job's
// latest run, from the node it ran on.
func (n *Node) OpenLog(jobID string) (io.ReadCloser, error) {
	// The log of the job's latest run is on the node it ran on; an earlier
	// attempt here left an older log behind.
	j, ok := n.fsm.Job(jobID)
	if !ok || j.Node == "" || j.Node == n.id {
		return n.worker.OpenLog(jobID)
	}
	peer := ""
	for _, m := range n.liveMembers() {
		if m.NodeID == j.Node {
			peer = m.meta.PeerID
		}
	}
	if peer == "" {
		if rc, err := n.worker.OpenLog(jobID); err == nil {
			return rc, nil // an earlier attempt's log is better than none
		}
		return nil, fmt.Errorf("node: log of %s is on node %s, which is not reachable: %w", jobID, j.Node, fs.ErrNotExist)
	}
	rc, err := n.mesh.OpenStreamFirstByte(context.Background(), peer, LogProtocol, []byte(jobID), 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("node: log of %s from %s: %v: %w", jobID, j.Node, err, fs.ErrNotExist)
	}
	return rc, nil
}
