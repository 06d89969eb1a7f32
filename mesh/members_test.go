package mesh

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestThreeMeshesJoin(t *testing.T) {
	t.Parallel()
	ms := startMeshes(t, 3, nil)
	joinAll(t, ms)
	for _, m := range ms {
		members := m.Members()
		if len(members) != 3 {
			t.Fatalf("%s sees %d members", m.cfg.NodeID, len(members))
		}
		for i, mem := range members {
			if i > 0 && members[i-1].NodeID >= mem.NodeID {
				t.Errorf("members not sorted: %v", members)
			}
			nm, err := DecodeMeta(mem.Meta)
			if err != nil {
				t.Fatalf("%s: meta of %s: %v", m.cfg.NodeID, mem.NodeID, err)
			}
			var owner *Mesh
			for _, o := range ms {
				if o.cfg.NodeID == mem.NodeID {
					owner = o
				}
			}
			if owner == nil || nm.PeerID != owner.PeerID() || mem.Addr != owner.GossipAddr() || nm.GPUs != "1xT4-16GB" || len(nm.P2P) != 1 {
				t.Errorf("%s sees %s as %+v (addr %s)", m.cfg.NodeID, mem.NodeID, nm, mem.Addr)
			}
		}
	}
	// Members' metadata taught every host every other: all connected.
	for _, m := range ms {
		waitFor(t, 10*time.Second, m.cfg.NodeID+" connected to both others", func() bool {
			return len(m.ConnectedPeers()) == 2
		})
	}
}

func TestUpdateMetaPropagates(t *testing.T) {
	t.Parallel()
	slots := 1
	ms := startMeshes(t, 3, nil)
	ms[0].cfg.NodeMeta = func() NodeMeta { return NodeMeta{GPUs: "2xA100-80GB", Slots: slots} }
	joinAll(t, ms)
	slots = 7
	if err := ms[0].UpdateMeta(); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, ms[2], EventUpdate, ms[0].cfg.NodeID, 10*time.Second)
	if nm, err := DecodeMeta(ev.Member.Meta); err != nil || nm.Slots != 7 || nm.PeerID != ms[0].PeerID() {
		t.Errorf("update event meta = %+v, %v", nm, err)
	}
	for _, m := range ms[1:] {
		waitFor(t, 10*time.Second, "meta update seen by "+m.cfg.NodeID, func() bool {
			for _, mem := range m.Members() {
				if nm, err := DecodeMeta(mem.Meta); err == nil && mem.NodeID == ms[0].cfg.NodeID && nm.Slots == 7 {
					return true
				}
			}
			return false
		})
	}
}

func TestCloseIsSeenAsFail(t *testing.T) {
	t.Parallel()
	ms := startMeshes(t, 3, nil)
	joinAll(t, ms)
	victim := ms[2].cfg.NodeID
	start := time.Now()
	if err := ms[2].Close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		ev := waitEvent(t, m, EventFail, victim, 10*time.Second)
		if ev.Member.State != StateDead {
			t.Errorf("fail event state %q", ev.Member.State)
		}
	}
	t.Logf("failure detected in %v", time.Since(start))
	for _, mem := range ms[0].Members() {
		if mem.NodeID == victim && mem.State != StateDead {
			t.Errorf("Members lists the crashed node as %q", mem.State)
		}
	}
	if len(ms[0].Members()) != 3 {
		t.Errorf("Members should still list the dead node: %v", ms[0].Members())
	}
	drained := time.NewTimer(5 * time.Second)
	defer drained.Stop()
drain: // the closed mesh's Events channel is closed
	for {
		select {
		case _, ok := <-ms[2].Events():
			if !ok {
				break drain
			}
		case <-drained.C:
			t.Fatal("Events not closed after Close")
		}
	}
	if err := ms[2].Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Close = %v, want ErrClosed (and no memberlist panic)", err)
	}
}

func TestLeaveIsSeenAsLeft(t *testing.T) {
	t.Parallel()
	ms := startMeshes(t, 3, nil)
	joinAll(t, ms)
	leaver := ms[1].cfg.NodeID
	if err := ms[1].Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Mesh{ms[0], ms[2]} {
		ev := waitEvent(t, m, EventLeave, leaver, 10*time.Second)
		if ev.Member.State != StateLeft {
			t.Errorf("leave event state %q", ev.Member.State)
		}
		waitFor(t, 5*time.Second, "Members shows left", func() bool {
			for _, mem := range m.Members() {
				if mem.NodeID == leaver {
					return mem.State == StateLeft
				}
			}
			return false
		})
	}
	_ = ms[1].Close()
	// A graceful leave never turns into a failure afterwards.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for {
		select {
		case ev := <-ms[0].Events():
			if ev.Member.NodeID == leaver && ev.Type == EventFail {
				t.Fatalf("left node reported as failed: %+v", ev)
			}
			continue
		case <-ctx.Done():
		}
		break
	}
}

func TestJoinRetriesUntilContextEnds(t *testing.T) {
	t.Parallel()
	m := startMesh(t, testConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// A closed mesh's gossip port answers nothing.
	dead := startMesh(t, testConfig(t))
	addr := dead.GossipAddr()
	_ = dead.Close()
	n, err := m.Join(ctx, []string{addr})
	if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Join to nowhere = %d, %v", n, err)
	}
	if _, err := m.Join(context.Background(), nil); err == nil {
		t.Error("Join with no addresses succeeded")
	}
}

func TestEventsDropOldestWhenFull(t *testing.T) {
	t.Parallel()
	var s membership
	s.init(2)
	for i, id := range []string{"a", "b", "c"} {
		if dropped := s.record(MemberEvent{Type: EventJoin, Member: Member{NodeID: id}}); dropped != (i == 2) {
			t.Errorf("event %d: dropped = %v", i, dropped)
		}
	}
	if ev := <-s.events; ev.Member.NodeID != "b" {
		t.Errorf("oldest kept event is %q, want b", ev.Member.NodeID)
	}
	s.closeEvents()
	s.record(MemberEvent{Type: EventFail, Member: Member{NodeID: "d"}}) // after close: no panic
	if l := s.list(); len(l) != 4 || l[3].NodeID != "d" {
		t.Error("departed member not recorded")
	}
}
