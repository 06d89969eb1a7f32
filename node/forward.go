package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// ApplyProtocol is the libp2p protocol on which a leader takes forwarded writes.
const ApplyProtocol = "/pwmesh/apply/1.0.0"

// caller sends one request to a peer and returns its answer; *mesh.Mesh is one.
type caller interface {
	Call(ctx context.Context, peerID, protocol string, req []byte) ([]byte, error)
}

// leaderView is what forwarding needs to know of Raft.
type leaderView interface {
	IsLeader() bool
	// LeaderAddr is the leader's Raft address (its peer ID), "" when none.
	LeaderAddr() string
	Apply(ctx context.Context, c scheduler.Command) (any, error)
}

// applyReply is the answer of ApplyProtocol.
type applyReply struct {
	Value json.RawMessage `json:"value,omitempty"`
	Error *wireError      `json:"error,omitempty"`
}

// wireError carries a scheduler error across the wire: Kind names its
// sentinel so that errors.Is works on the forwarding side.
type wireError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

var wireKinds = []struct {
	kind string
	err  error
}{
	{"not_found", scheduler.ErrNotFound},
	{"conflict", scheduler.ErrConflict},
	{"invalid", scheduler.ErrInvalid},
	{"stale_token", scheduler.ErrStaleToken},
	{"not_leader", scheduler.ErrNotLeader},
	{"no_leader", scheduler.ErrNoLeader},
}

func toWire(err error) *wireError {
	for _, k := range wireKinds {
		if errors.Is(err, k.err) {
			return &wireError{Kind: k.kind, Message: err.Error()}
		}
	}
	return &wireError{Kind: "internal", Message: err.Error()}
}

// remoteError is a scheduler error that happened on the leader.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func (w *wireError) err() error {
	for _, k := range wireKinds {
		if k.kind == w.Kind {
			return &remoteError{msg: w.Message, sentinel: k.err}
		}
	}
	return &remoteError{msg: w.Message}
}

// errUnreachable is a forwarded write whose leader did not answer; it is a
// scheduler.ErrNoLeader to callers.
var errUnreachable = fmt.Errorf("leader unreachable: %w", scheduler.ErrNoLeader)

// leaderMoved reports an error that says the write met no leader.
func leaderMoved(err error) bool {
	return errors.Is(err, scheduler.ErrNotLeader) || errors.Is(err, scheduler.ErrNoLeader)
}

// repeatable says whether c may be sent again after an attempt whose fate is
// unknown: applying it twice gives what applying it once gives.
func repeatable(c scheduler.Command) bool {
	switch c := c.(type) {
	case *scheduler.RenewLease, *scheduler.RegisterNode, *scheduler.SetNodeState,
		// The blob index's records are idempotent, and a repeated guarded
		// change is refused as a conflict the proposer expects.
		*scheduler.BlobStored, *scheduler.BlobDropped, *scheduler.BlobMirrored,
		*scheduler.ExpireBundles, *scheduler.ForgetBlobs, *scheduler.PutTenantKeys:
		return true
	case *scheduler.SubmitJob:
		return c.IdempotencyKey != ""
	}
	return false
}

// forwarder commits commands through the leader: locally when this node
// leads, else over ApplyProtocol to the leader. It waits a little for a
// leader to be elected, and retries once when leadership moved meanwhile.
type forwarder struct {
	raft  leaderView
	net   caller
	clock scheduler.Clock // the leader's clock re-stamps lease times
	// wait bounds how long a write waits for a leader (default 5 s).
	wait time.Duration
}

func (f *forwarder) Apply(ctx context.Context, c scheduler.Command) (any, error) {
	wait := f.wait
	if wait <= 0 {
		wait = 5 * time.Second
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for attempt := 0; ; {
		if f.raft.IsLeader() {
			v, err := f.raft.Apply(ctx, restamp(c, f.clock))
			if !(repeatable(c) && leaderMoved(err)) {
				return v, err
			}
			// Leadership was lost under this write: a command that may
			// safely be applied twice waits for the next leader.
			last = err
		} else if addr := f.raft.LeaderAddr(); addr != "" && f.net != nil {
			v, err := f.remote(ctx, addr, c)
			switch {
			case repeatable(c) && (errors.Is(err, errUnreachable) || leaderMoved(err)):
				// The leader fell silent or moved (a failover): a command
				// that may safely be sent twice waits for the next leader.
				last = err
			case !errors.Is(err, scheduler.ErrNotLeader) || attempt > 0:
				return v, err
			default:
				attempt++
				last = err
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			if last != nil {
				return nil, last
			}
			return nil, fmt.Errorf("node: %s: %w", c.Type(), scheduler.ErrNoLeader)
		case <-tick.C:
		}
	}
}

func (f *forwarder) remote(ctx context.Context, leader string, c scheduler.Command) (any, error) {
	b, err := scheduler.Encode(c)
	if err != nil {
		return nil, err
	}
	resp, err := f.net.Call(ctx, leader, ApplyProtocol, b)
	if err != nil {
		// The leader is unreachable: to the client that is "no leader now".
		return nil, fmt.Errorf("node: forward %s to the leader: %v: %w", c.Type(), err, errUnreachable)
	}
	var r applyReply
	if err := json.Unmarshal(resp, &r); err != nil {
		return nil, fmt.Errorf("node: forward %s: bad reply: %w", c.Type(), err)
	}
	if r.Error != nil {
		return nil, r.Error.err()
	}
	return r.Value, nil
}

// restamp puts the leader's clock on the times that leases and the claim
// hold are measured by, keeping the durations the proposer asked for: a
// runner whose clock is off cannot stretch or shorten a lease.
func restamp(c scheduler.Command, clock scheduler.Clock) scheduler.Command {
	if clock == nil {
		return c
	}
	now := clock.Now()
	switch c := c.(type) {
	case *scheduler.RenewLease:
		c.ExpiresAt, c.At = now.Add(c.ExpiresAt.Sub(c.At)), now
	case *scheduler.AssignJob:
		c.ExpiresAt, c.At = now.Add(c.ExpiresAt.Sub(c.At)), now
	case *scheduler.SubmitJob:
		c.At = now
	}
	return c
}

// serveApply is the leader's side of ApplyProtocol.
func serveApply(r leaderView, clock scheduler.Clock) func(ctx context.Context, from string, req []byte) ([]byte, error) {
	return func(ctx context.Context, _ string, req []byte) ([]byte, error) {
		var reply applyReply
		c, err := scheduler.Decode(req)
		switch {
		case err != nil:
			reply.Error = &wireError{Kind: "invalid", Message: err.Error()}
		case !r.IsLeader():
			reply.Error = &wireError{Kind: "not_leader", Message: "this node is not the leader"}
		default:
			v, err := r.Apply(ctx, restamp(c, clock))
			if err != nil {
				reply.Error = toWire(err)
			} else if reply.Value, err = json.Marshal(v); err != nil {
				reply.Error = &wireError{Kind: "internal", Message: err.Error()}
			}
		}
		return json.Marshal(reply)
	}
}
