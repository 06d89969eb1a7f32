package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// The job network: a bridge network of this node's own, where the
// containers of jobs that ask for network run, behind the firewall
// (firewall.go).
const (
	optBridgeName = "com.docker.network.bridge.name"
	optICC        = "com.docker.network.bridge.enable_icc"
)

// jobNetNames are the names of a node's job network, its bridge interface
// (at most 15 bytes) and its firewall chain (at most 28), all derived from
// the node ID, so that nodes sharing an engine never share one and a
// restarted node finds its own again.
type jobNetNames struct {
	Network, Bridge, Chain string
}

func namesFor(nodeID string) jobNetNames {
	sum := sha256.Sum256([]byte(nodeID))
	h := hex.EncodeToString(sum[:])[:10]
	return jobNetNames{Network: "pwmesh-jobs-" + h, Bridge: "pwmj-" + h, Chain: "PWMESH-JOBS-" + h}
}

type networkInfo struct {
	ID         string `json:"Id"`
	Name       string
	Driver     string
	EnableIPv6 bool
	Internal   bool
	Options    map[string]string
	Labels     map[string]string
	Containers map[string]struct{}
}

func (c *client) networkInspect(ctx context.Context, name string) (networkInfo, error) {
	var n networkInfo
	err := c.call(ctx, http.MethodGet, "/networks/"+url.PathEscape(name), nil, nil, &n)
	return n, err
}

func (c *client) networkCreate(ctx context.Context, names jobNetNames, nodeID string) error {
	body := map[string]any{
		"Name":           names.Network,
		"Driver":         "bridge",
		"CheckDuplicate": true,
		"EnableIPv6":     false,
		"Options": map[string]string{
			optBridgeName: names.Bridge,
			// Jobs on it do not reach each other.
			optICC: "false",
		},
		"Labels": map[string]string{LabelNode: nodeID},
	}
	if err := c.call(ctx, http.MethodPost, "/networks/create", nil, body, nil); err != nil {
		return fmt.Errorf("docker: create network %s: %w", names.Network, err)
	}
	return nil
}

func (c *client) networkRemove(ctx context.Context, name string) error {
	err := c.call(ctx, http.MethodDelete, "/networks/"+url.PathEscape(name), nil, nil, nil)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// ensureNetwork creates the job network, or keeps the one an earlier life
// of the node made when it is as wanted (else it is made again).
func (c *client) ensureNetwork(ctx context.Context, names jobNetNames, nodeID string) error {
	n, err := c.networkInspect(ctx, names.Network)
	switch {
	case errors.Is(err, ErrNotFound):
		return c.networkCreate(ctx, names, nodeID)
	case err != nil:
		return err
	}
	if n.Driver == "bridge" && !n.EnableIPv6 && n.Options[optBridgeName] == names.Bridge && n.Options[optICC] == "false" {
		return nil
	}
	if err := c.networkRemove(ctx, names.Network); err != nil {
		return fmt.Errorf("docker: network %s is not as wanted and cannot be replaced: %w", names.Network, err)
	}
	return c.networkCreate(ctx, names, nodeID)
}
