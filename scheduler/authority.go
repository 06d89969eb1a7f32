package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// Peer authority: the leader applies a write another node forwarded only
// when the registry's Authority of its command allows it to whoever sent
// it. A forwarded API write carries its caller's key secret and is checked
// against that key (re-read from the leader's state); any other forward is
// a node's own write, checked against the libp2p peer ID it came from
// (authenticated by the transport) and the peer ID the node registered
// with. The leader's own writes are not checked.

type callerKey struct{}

// WithCaller returns ctx carrying the API key secret of the request it
// serves: a write forwarded under ctx is checked against that key.
func WithCaller(ctx context.Context, secret string) context.Context {
	return context.WithValue(ctx, callerKey{}, secret)
}

// CallerSecret is the API key secret WithCaller put in ctx, "" for none.
func CallerSecret(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// Principal is who forwarded a command.
type Principal struct {
	// Peer is the sending node's libp2p peer ID.
	Peer string
	// KeyHash is the hex SHA-256 of the caller's API key secret, "" when
	// the command is the node's own.
	KeyHash string
	// Now is the leader's clock, for key expiry.
	Now time.Time
}

// principal is a Principal resolved against the state.
type principal struct {
	peer string
	key  *APIKey // nil: the node's own write
}

func forbidden(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrForbidden, fmt.Sprintf(format, a...))
}

// Authorize decides on the leader, against its state, whether p may
// propose c. It returns nil or an error that wraps ErrForbidden. A caller
// key that is unknown (never made, or revoked) or expired is refused
// whatever the command.
func (f *FSM) Authorize(c Command, p Principal) error {
	e, ok := commands[c.Type()]
	if !ok {
		return fmt.Errorf("authorize %s: %w", c.Type(), ErrUnknownCmd)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	pr := principal{peer: p.Peer}
	if p.KeyHash != "" {
		k, ok := f.s.keys[p.KeyHash]
		if !ok {
			return forbidden("%s: the caller's API key is unknown or revoked", c.Type())
		}
		if k.Expired(p.Now) {
			return forbidden("%s: the caller's API key expired", c.Type())
		}
		kc := cloneKey(k)
		pr.key = &kc
	}
	var err error
	switch e.auth {
	case AuthLeader:
		err = forbidden("only the leader proposes it")
	case AuthAdmin:
		if pr.key == nil || !pr.key.Admin {
			err = forbidden("an admin key is required")
		}
	case AuthTenant:
		if pr.key == nil {
			err = forbidden("an API key is required")
		} else {
			err = e.allow(f.s, c, pr)
		}
	case AuthNode, AuthKeyOrNode:
		err = e.allow(f.s, c, pr)
	default:
		err = forbidden("no authority is defined")
	}
	if err != nil {
		return fmt.Errorf("%s from peer %s: %w", c.Type(), p.Peer, err)
	}
	return nil
}

// forTenant allows a key of the tenant the command names, or an admin key.
func forTenant(tenantOf func(Command) string) func(*state, Command, principal) error {
	return func(_ *state, c Command, p principal) error {
		if t := tenantOf(c); !p.key.Admin && t != p.key.Tenant {
			return forbidden("a key of tenant %q may not act for tenant %q", p.key.Tenant, t)
		}
		return nil
	}
}

func allowSubmit(s *state, c Command, p principal) error {
	sj := c.(*SubmitJob)
	if err := forTenant(func(Command) string { return sj.Job.Tenant })(s, c, p); err != nil {
		return err
	}
	tier := p.key.Tier
	if tier == "" {
		tier = PriorityFree
	}
	// A paid key may ask for any class; a free key only for free.
	if tier == PriorityFree && PriorityRank(sj.Job.Priority) > PriorityRank(PriorityFree) {
		return forbidden("a free key may not submit %s jobs", sj.Job.Priority)
	}
	return nil
}

// allowRevokeKey: an admin key revokes any key; another key only its own
// tenant's (RevokeKey.Tenant, checked by the FSM against the key).
func allowRevokeKey(_ *state, c Command, p principal) error {
	r := c.(*RevokeKey)
	if p.key.Admin {
		return nil
	}
	if r.Tenant == "" || r.Tenant != p.key.Tenant {
		return forbidden("a key of tenant %q may revoke only its own tenant's keys", p.key.Tenant)
	}
	return nil
}

// nodeOfPeer is the registered node whose peer ID is peer, "" when none.
func (s *state) nodeOfPeer(peer string) string {
	if peer == "" {
		return ""
	}
	for id, n := range s.nodes {
		if n.PeerID == peer {
			return id
		}
	}
	return ""
}

// allowSelf allows a command about node id only from the peer it
// registered with.
func (s *state) allowSelf(id string, p principal) error {
	n, ok := s.nodes[id]
	if !ok || n.PeerID == "" || n.PeerID != p.peer {
		return forbidden("node %s is not the sending peer", id)
	}
	return nil
}

// allowAnyNode allows any registered node.
func allowAnyNode(s *state, _ Command, p principal) error {
	if s.nodeOfPeer(p.peer) == "" {
		return forbidden("the sending peer is not a registered node")
	}
	return nil
}

// allowRegister: a node registers itself, naming its own peer ID, and may
// not take over a node ID another peer registered while that node is
// ready or holds a lease (a node whose identity key was lost may register
// again from a new one once the leader marked it down or it left). A node
// registered before peer IDs were recorded is bound to the first peer
// that registers it again (every node re-registers when it starts).
func allowRegister(s *state, c Command, p principal) error {
	n := c.(*RegisterNode).Node
	if n.PeerID == "" || n.PeerID != p.peer {
		return forbidden("a node registers only itself, from its own peer ID")
	}
	old, ok := s.nodes[n.ID]
	if !ok || old.PeerID == "" || old.PeerID == p.peer {
		return nil
	}
	if old.State == NodeReady {
		return forbidden("node %s is registered from another peer", n.ID)
	}
	for _, j := range s.live {
		if j.State == StateRunning && j.Lease != nil && j.Lease.Node == n.ID {
			return forbidden("node %s, registered from another peer, still holds job %s", n.ID, j.ID)
		}
	}
	return nil
}

// allowClaim: a node claims a job only for itself.
func allowClaim(s *state, c Command, p principal) error {
	a := c.(*AssignJob)
	if !a.Claim {
		return forbidden("only the leader assigns jobs; a node may only claim one")
	}
	return s.allowSelf(a.Node, p)
}

// allowLease: a lease's token is used only by the node holding the lease.
// A token that is not the job's current lease goes through: the FSM
// refuses it (ErrStaleToken), which is what its sender needs to hear.
func (s *state) allowLease(jobID string, token uint64, p principal) error {
	j, ok := s.jobs[jobID]
	if !ok || j.State != StateRunning || j.Lease == nil || j.Lease.Token != token {
		return nil
	}
	return s.allowSelf(j.Lease.Node, p)
}

// allowPutTenantKeys: an admin key changes a tenant's data keys at will
// (rotation, rewrapping); a key of the tenant, or a registered node (a
// job sealing its output), may only add versions, every existing one
// kept byte for byte, so that nothing sealed is lost to it.
func allowPutTenantKeys(s *state, c Command, p principal) error {
	pk := c.(*PutTenantKeys)
	switch {
	case p.key != nil && p.key.Admin:
		return nil
	case p.key != nil && p.key.Tenant != pk.Tenant:
		return forbidden("a key of tenant %q may not change the data keys of %q", p.key.Tenant, pk.Tenant)
	case p.key == nil:
		if err := allowAnyNode(s, c, p); err != nil {
			return err
		}
	}
	t, ok := s.tenants[pk.Tenant]
	if !ok {
		return nil // the FSM answers ErrNotFound
	}
	if pk.PrevGen != t.KeysGen {
		// Read before another change (two nodes making a tenant's first
		// key at once): the FSM answers ErrConflict, which tells the
		// proposer to read again. The generation only grows, so a
		// proposal that passes the FSM's check was judged here against
		// the keys it will replace.
		return nil
	}
	for _, old := range t.Keys {
		kept := false
		for _, k := range pk.Keys {
			if k.Version == old.Version && k.Master == old.Master && bytes.Equal(k.Sealed, old.Sealed) {
				kept = true
				break
			}
		}
		if !kept {
			return forbidden("data key version %d of %s would change; only an admin key may rewrap", old.Version, pk.Tenant)
		}
	}
	return nil
}
