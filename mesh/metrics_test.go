package mesh

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// libp2pFamilies lists the libp2p_* metric families a registry gathers.
func libp2pFamilies(t *testing.T, g prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "libp2p_") {
			out[mf.GetName()] = true
		}
	}
	return out
}

// TestLibp2pMetrics: each mesh's libp2p metrics go to the registry it is
// given (two meshes in one process, each with its own, do not panic on
// registering the same collectors twice), not to the global registry. Once connected, the swarm and the resource
// manager report.
func TestLibp2pMetrics(t *testing.T) {
	t.Parallel()
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	i := 0
	ms := startMeshes(t, 2, func(c *Config) {
		c.Metrics = regs[i]
		i++
	})
	bare := startMesh(t, testConfig(t))
	joinAll(t, ms)
	waitFor(t, 10*time.Second, "a libp2p connection", func() bool { return len(ms[0].ConnectedPeers()) > 0 })
	for i, reg := range regs {
		var got map[string]bool
		waitFor(t, 10*time.Second, "swarm and resource manager metrics", func() bool {
			got = libp2pFamilies(t, reg)
			return got["libp2p_swarm_connections_opened_total"] && got["libp2p_rcmgr_connections"]
		})
		if len(got) == 0 {
			t.Errorf("mesh %d: no libp2p metrics", i)
		}
	}
	// libp2p v0.51.0 registers its event bus's metrics on the global
	// registry even with DisableMetrics (the bare mesh): nothing serves
	// that registry. Nothing else may land there.
	for name := range libp2pFamilies(t, prometheus.DefaultGatherer) {
		if !strings.HasPrefix(name, "libp2p_eventbus_") {
			t.Errorf("libp2p registered %s on the global registry", name)
		}
	}
	if s := bare.HealthScore(); s < 0 {
		t.Errorf("HealthScore = %d", s)
	}
}
