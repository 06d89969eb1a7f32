package mesh

import (
	"context"
	"sync"
)

// memberlist never probes a member it has declared dead: after a real
// partition heals, nothing would bring the two sides together again. Run
// therefore tries, every Timings.ReconnectInterval, to join the gossip
// address of each member that failed (not those that left) while this mesh
// still remembers it (Timings.RetainDeparted). A member that is back answers
// and both sides see it alive; one that is gone costs one failed dial.

// deadAddrs lists the gossip addresses of members that failed and are not
// blocked.
func (m *Mesh) deadAddrs() []string {
	var out []string
	for _, mem := range m.members.list() {
		if mem.State == StateDead && mem.NodeID != m.cfg.NodeID && !m.block.nodeBlocked(mem.NodeID) {
			out = append(out, mem.Addr)
		}
	}
	return out
}

// reconnect joins the failed members' addresses once, in the background;
// a round still running is not started again.
func (m *Mesh) reconnect(ctx context.Context, wg *sync.WaitGroup, busy *sync.Mutex) {
	addrs := m.deadAddrs()
	if len(addrs) == 0 || !busy.TryLock() {
		return
	}
	wg.Go(func() {
		defer busy.Unlock()
		for _, a := range addrs {
			if ctx.Err() != nil {
				return
			}
			if n, err := m.joinOnce([]string{a}); err == nil && n > 0 {
				m.log.Info("mesh: reconnected to a member declared failed", "addr", a)
			}
		}
	})
}
