package mesh

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// memberState is nodeID's state as m sees it ("" when unknown).
func memberState(m *Mesh, nodeID string) string {
	mem, ok := m.members.get(nodeID)
	if !ok {
		return ""
	}
	return mem.State
}

func callOK(from, to *Mesh) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := from.Call(ctx, to.PeerID(), "/test/echo", []byte("ping"))
	return err
}

// TestBlockAndUnblock: a one-sided Block cuts libp2p both ways and makes the
// blocking side declare the other dead; blocking on both sides partitions
// memberlist fully; Unblock brings both back, alive and callable.
func TestBlockAndUnblock(t *testing.T) {
	t.Parallel()
	ms := startMeshes(t, 2, nil)
	joinAll(t, ms)
	a, b := ms[0], ms[1]
	for _, m := range ms {
		m.Handle("/test/echo", echo)
	}
	waitFor(t, 10*time.Second, "RPC both ways", func() bool { return callOK(a, b) == nil && callOK(b, a) == nil })

	if err := a.Block("node-nobody"); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("Block(unknown) = %v, want ErrUnknownMember", err)
	}
	if err := a.Block(b.cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	if got := a.Blocked(); !slices.Equal(got, []string{b.cfg.NodeID}) {
		t.Fatalf("Blocked() = %v", got)
	}
	if err := callOK(a, b); err == nil {
		t.Error("a called b through the block")
	}
	if err := callOK(b, a); err == nil {
		t.Error("b called a through a's block")
	}
	waitFor(t, 10*time.Second, "a declares b dead", func() bool { return memberState(a, b.cfg.NodeID) == StateDead })
	// (b may hold a connection for an instant while its redials are refused:
	// with early muxer negotiation its side completes before a's gater
	// closes it.)
	if slices.Contains(a.ConnectedPeers(), b.PeerID()) {
		t.Error("a libp2p connection survived the block")
	}

	if err := b.Block(a.cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b declares a dead", func() bool { return memberState(b, a.cfg.NodeID) == StateDead })

	start := time.Now()
	a.Unblock()
	b.Unblock(a.cfg.NodeID)
	if a.Blocked() != nil || b.Blocked() != nil {
		t.Fatalf("still blocked: %v %v", a.Blocked(), b.Blocked())
	}
	waitFor(t, 15*time.Second, "both alive again", func() bool {
		return memberState(a, b.cfg.NodeID) == StateAlive && memberState(b, a.cfg.NodeID) == StateAlive
	})
	waitFor(t, 10*time.Second, "RPC both ways again", func() bool { return callOK(a, b) == nil && callOK(b, a) == nil })
	t.Logf("healed in %v", time.Since(start))
}
