package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

// ApplyProtocol is the libp2p protocol on which a leader takes forwarded
// writes. Version 2 carries the caller's API key beside the command
// (applyRequest); the leader checks either against its state.
const ApplyProtocol = "/pwmesh/apply/2.0.0"

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

// authority is the leader's state as the apply server reads it:
// *scheduler.FSM.
type authority interface {
	Authorize(c scheduler.Command, p scheduler.Principal) error
	Key(hash string) (scheduler.APIKey, bool)
}

// applyRequest is a request of ApplyProtocol: the encoded command and, for
// an API write, the secret of the key that the forwarding node's web layer
// authenticated (the stream is encrypted by the mesh).
type applyRequest struct {
	Command []byte `json:"command"`
	Caller  string `json:"caller,omitempty"`
	// Proof is the ID token of a person's sign-in (web/oidc): the
	// authority of the key the command makes for them, which the leader
	// verifies itself (applyServer.proof).
	Proof string `json:"proof,omitempty"`
	// RequestID is the ID of the API request that made the write
	// (web.RequestID): the leader's log lines about it name it too.
	RequestID string `json:"request_id,omitempty"`
}

// applyReply is the answer of ApplyProtocol: the JSON of the value Apply
// returned (decoded by the forwarder into the registry's result type), or
// the error with its kind.
type applyReply struct {
	Value json.RawMessage `json:"value,omitempty"`
	Error *wireError      `json:"error,omitempty"`
}

// wireError carries a scheduler error across the wire: Kind names its
// sentinel (scheduler.ErrorKinds) so that errors.Is works on the
// forwarding side.
type wireError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func toWire(err error) *wireError {
	return &wireError{Kind: scheduler.KindOf(err), Message: err.Error()}
}

func (w *wireError) err() error { return scheduler.ErrorOfKind(w.Kind, w.Message) }

// decodeResult reads a forwarded answer into the Go type a local Apply of
// a command of type t returns.
func decodeResult(t scheduler.CommandType, raw json.RawMessage) (any, error) {
	p := scheduler.NewResult(t)
	if p == nil {
		return nil, fmt.Errorf("node: forward %s: %w", t, scheduler.ErrUnknownCmd)
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, p); err != nil {
			return nil, fmt.Errorf("node: forward %s: bad value: %w", t, err)
		}
	}
	return reflect.ValueOf(p).Elem().Interface(), nil
}

// errUnreachable is a forwarded write whose leader did not answer; it is a
// scheduler.ErrNoLeader to callers.
var errUnreachable = fmt.Errorf("leader unreachable: %w", scheduler.ErrNoLeader)

// leaderMoved reports an error that says the write met no leader.
func leaderMoved(err error) bool {
	return errors.Is(err, scheduler.ErrNotLeader) || errors.Is(err, scheduler.ErrNoLeader)
}

// forwarder commits commands through the leader: locally when this node
// leads, else over ApplyProtocol to the leader. It waits a little for a
// leader to be elected, and retries once when leadership moved meanwhile.
type forwarder struct {
	raft  leaderView
	net   caller
	clock scheduler.Clock // the leader's clock re-stamps lease times
	// state and log, when set, make the audit log of key changes this
	// node commits as the leader.
	state authority
	log   *slog.Logger
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
			if err == nil {
				audit(ctx, f.log, c, v, f.who(ctx))
			}
			if !(scheduler.Repeatable(c) && leaderMoved(err)) {
				return v, err
			}
			// Leadership was lost under this write: a command that may
			// safely be applied twice waits for the next leader.
			last = err
		} else if addr := f.raft.LeaderAddr(); addr != "" && f.net != nil {
			v, err := f.remote(ctx, addr, c)
			switch {
			case scheduler.Repeatable(c) && (errors.Is(err, errUnreachable) || leaderMoved(err)):
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

// who names the proposer of a write this node commits as the leader.
func (f *forwarder) who(ctx context.Context) string {
	if s := scheduler.CallerSecret(ctx); s != "" && f.state != nil {
		if k, ok := f.state.Key(web.HashKey(s)); ok {
			return k.ID
		}
		return "unknown key"
	}
	return "leader"
}

func (f *forwarder) remote(ctx context.Context, leader string, c scheduler.Command) (any, error) {
	b, err := scheduler.Encode(c)
	if err != nil {
		return nil, err
	}
	req, err := json.Marshal(applyRequest{Command: b, Caller: scheduler.CallerSecret(ctx), Proof: signInProof(ctx), RequestID: web.RequestID(ctx)})
	if err != nil {
		return nil, fmt.Errorf("node: forward %s: %w", c.Type(), err)
	}
	resp, err := f.net.Call(ctx, leader, ApplyProtocol, req)
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
	return decodeResult(c.Type(), r.Value)
}

// restamp puts the leader's clock on the times that leases and the claim
// hold are measured by (scheduler.Restamp); no clock leaves c as it is.
func restamp(c scheduler.Command, clock scheduler.Clock) scheduler.Command {
	if clock == nil {
		return c
	}
	return scheduler.Restamp(c, clock.Now())
}

// audit logs a change of API keys the leader committed.
func audit(ctx context.Context, log *slog.Logger, c scheduler.Command, v any, who string) {
	if log == nil {
		return
	}
	k, ok := v.(scheduler.APIKey)
	if !ok {
		return
	}
	switch c.(type) {
	case *scheduler.CreateKey:
		log.InfoContext(ctx, "API key created", "audit", "key_created", "who", who, "tenant", k.Tenant, "key_id", k.ID, "admin", k.Admin)
	case *scheduler.RevokeKey:
		log.InfoContext(ctx, "API key revoked", "audit", "key_revoked", "who", who, "tenant", k.Tenant, "key_id", k.ID)
	}
}

// applyServer is the leader's side of ApplyProtocol.
type applyServer struct {
	raft  leaderView
	state authority
	clock scheduler.Clock
	log   *slog.Logger
	// proof checks that a sign-in's ID token proves the command (nil:
	// every proof is refused).
	proof func(ctx context.Context, c scheduler.Command, idToken string) error
}

// applyOption adjusts the apply server.
type applyOption func(*applyServer)

// withProof lets a person's sign-in authorize the command it asks for, as
// check decides (node: a key of their own).
func withProof(check func(ctx context.Context, c scheduler.Command, idToken string) error) applyOption {
	return func(s *applyServer) { s.proof = check }
}

// serveApply returns the handler of ApplyProtocol. Every forwarded write
// is checked (scheduler.FSM.Authorize) against the sending peer and the
// caller's key before it is applied; a refusal answers ErrForbidden and is
// logged.
func serveApply(r leaderView, state authority, clock scheduler.Clock, log *slog.Logger, opts ...applyOption) func(ctx context.Context, from string, req []byte) ([]byte, error) {
	if clock == nil {
		clock = scheduler.SystemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &applyServer{raft: r, state: state, clock: clock, log: log}
	for _, o := range opts {
		o(s)
	}
	return func(ctx context.Context, from string, req []byte) ([]byte, error) {
		return json.Marshal(s.serve(ctx, from, req))
	}
}

func (s *applyServer) serve(ctx context.Context, from string, req []byte) applyReply {
	var in applyRequest
	if err := json.Unmarshal(req, &in); err != nil {
		return applyReply{Error: toWire(fmt.Errorf("node: apply request: %w: %v", scheduler.ErrPayloadBytes, err))}
	}
	if web.ValidRequestID(in.RequestID) {
		ctx = web.WithRequestID(ctx, in.RequestID)
	}
	c, err := scheduler.Decode(in.Command)
	if err != nil {
		return applyReply{Error: toWire(err)}
	}
	if !s.raft.IsLeader() {
		return applyReply{Error: toWire(fmt.Errorf("node: %s: this node is not the leader: %w", c.Type(), scheduler.ErrNotLeader))}
	}
	if in.Proof != "" {
		// A person's sign-in, verified again here, stands for the key it
		// makes them; nothing else.
		err := fmt.Errorf("node: %s from peer %s: %w: this leader takes no sign-in", c.Type(), from, scheduler.ErrForbidden)
		if s.proof != nil {
			err = s.proof(ctx, c, in.Proof)
		}
		if err != nil {
			s.log.WarnContext(ctx, "refused a forwarded write", "peer_id", from, "cmd", c.Type().String(), "with_sign_in", true, "err", err)
			return applyReply{Error: toWire(err)}
		}
		return s.answer(ctx, c, "sign-in via peer "+from)
	}
	p := scheduler.Principal{Peer: from, Now: s.clock.Now()}
	if in.Caller != "" {
		p.KeyHash = web.HashKey(in.Caller)
	}
	if err := s.state.Authorize(c, p); err != nil {
		s.log.WarnContext(ctx, "refused a forwarded write", "peer_id", from, "cmd", c.Type().String(), "with_key", in.Caller != "", "err", err)
		return applyReply{Error: toWire(err)}
	}
	who := "peer " + from
	if in.Caller != "" {
		if k, ok := s.state.Key(p.KeyHash); ok {
			who = k.ID
		}
	}
	return s.answer(ctx, c, who)
}

// answer applies an authorized command and encodes what Apply returned.
func (s *applyServer) answer(ctx context.Context, c scheduler.Command, who string) applyReply {
	v, err := s.raft.Apply(ctx, restamp(c, s.clock))
	if err != nil {
		return applyReply{Error: toWire(err)}
	}
	audit(ctx, s.log, c, v, who)
	b, err := json.Marshal(v)
	if err != nil {
		return applyReply{Error: &wireError{Kind: scheduler.KindInternal, Message: err.Error()}}
	}
	return applyReply{Value: b}
}
