package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// opencensus/go-log style package-level workers started by imports.
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
	)
}

// testLogger discards logs unless MESH_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("MESH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

var nodeSeq atomic.Int64

// testConfig returns a loopback configuration with Fast timings, labelled
// with the test's name so that meshes of parallel tests never merge.
func testConfig(t testing.TB) Config {
	id := fmt.Sprintf("node-%d", nodeSeq.Add(1))
	return Config{
		DataDir: t.TempDir(),
		NodeID:  id,
		Bind:    "127.0.0.1",
		Cluster: t.Name(),
		Timings: Fast(),
		Logger:  testLogger().With("test", t.Name()),
		NodeMeta: func() NodeMeta {
			return NodeMeta{HTTP: "127.0.0.1:8080", Region: "eu", GPUs: "1xT4-16GB", Slots: 2, Inc: id}
		},
	}
}

// startMesh builds a mesh from cfg, runs it, and closes it when the test
// ends.
func startMesh(t testing.TB, cfg Config) *Mesh {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := m.Close(); err != nil {
			t.Errorf("Close(%s): %v", cfg.NodeID, err)
		}
		if err := <-done; err != nil {
			t.Errorf("Run(%s): %v", cfg.NodeID, err)
		}
	})
	assertBoundTo(t, m, "127.0.0.1")
	return m
}

// startMeshes starts n meshes with testConfig, each changed by mutate.
func startMeshes(t testing.TB, n int, mutate func(*Config)) []*Mesh {
	out := make([]*Mesh, n)
	for i := range out {
		cfg := testConfig(t)
		if mutate != nil {
			mutate(&cfg)
		}
		out[i] = startMesh(t, cfg)
	}
	return out
}

// joinAll joins every mesh to the first one and waits until each sees all
// of them alive.
func joinAll(t testing.TB, ms []*Mesh) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range ms[1:] {
		if _, err := m.Join(ctx, []string{ms[0].GossipAddr()}); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	for _, m := range ms {
		waitFor(t, 10*time.Second, m.cfg.NodeID+" sees all alive", func() bool {
			return countState(m.Members(), StateAlive) == len(ms)
		})
	}
}

func countState(ms []Member, state string) int {
	n := 0
	for _, m := range ms {
		if m.State == state {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		case <-tick.C:
		}
	}
}

// waitEvent reads m.Events until one of type typ about nodeID arrives.
func waitEvent(t testing.TB, m *Mesh, typ, nodeID string, timeout time.Duration) MemberEvent {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-m.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s of %s", typ, nodeID)
			}
			if ev.Type == typ && ev.Member.NodeID == nodeID {
				return ev
			}
		case <-deadline.C:
			t.Fatalf("no %q event for %s within %v", typ, nodeID, timeout)
		}
	}
}

// assertBoundTo checks that the mesh's own listeners use ip only.
func assertBoundTo(t testing.TB, m *Mesh, ip string) {
	t.Helper()
	for _, a := range m.host.Network().ListenAddresses() {
		if !strings.HasPrefix(a.String(), "/ip4/"+ip+"/tcp/") {
			t.Errorf("libp2p listens on %s, want only %s over TCP", a, ip)
		}
	}
	for _, a := range m.P2PAddrs() {
		if !strings.HasPrefix(a, "/ip4/"+ip+"/tcp/") {
			t.Errorf("P2PAddrs has %s", a)
		}
	}
	if g := m.GossipAddr(); !strings.HasPrefix(g, ip+":") {
		t.Errorf("gossip bound to %s, want %s", g, ip)
	}
}
