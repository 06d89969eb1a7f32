package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// IgnorableFlag is the high bit of a command type: a replica that does not
// know a command type carrying it skips the entry (with a log) instead of
// stopping, as Nomad's IgnoreUnknownTypeFlag. Only a command whose absence
// leaves every other command's outcome unchanged may carry it; a new
// command that changes agreed state must not.
const IgnorableFlag CommandType = 0x80

// Ignorable reports whether t carries IgnorableFlag.
func (t CommandType) Ignorable() bool { return t&IgnorableFlag != 0 }

// Authority says who may propose a command from another node (Authorize).
// A command the leader proposes itself is never checked.
type Authority uint8

const (
	// AuthLeader: only the leader's own loops propose it; no peer may.
	AuthLeader Authority = iota + 1
	// AuthAdmin: an API write of an admin key.
	AuthAdmin
	// AuthTenant: an API write of a key of the tenant the command acts
	// for (an admin key acts for any tenant).
	AuthTenant
	// AuthNode: a node's own write about itself, checked against the
	// libp2p peer ID the node registered with.
	AuthNode
	// AuthKeyOrNode: either of the two, each with its own limits.
	AuthKeyOrNode
)

func (a Authority) String() string {
	switch a {
	case AuthLeader:
		return "leader"
	case AuthAdmin:
		return "admin"
	case AuthTenant:
		return "tenant"
	case AuthNode:
		return "node"
	case AuthKeyOrNode:
		return "key_or_node"
	}
	return fmt.Sprintf("authority(%d)", uint8(a))
}

// spec is one command type's entry in the registry: everything the FSM,
// the forwarder and the leader's authority check need to know of it.
type spec struct {
	name string
	// new returns a pointer to a zero command, to decode into.
	new func() Command
	// apply changes the state; it returns no value with an error.
	apply func(s *state, idx uint64, c Command) (any, error)
	// result returns a pointer to a zero value of what apply returns, so
	// that a forwarded answer decodes into the same Go type.
	result func() any
	// placement: applying it can change what placement reads.
	placement bool
	// repeatable: applying it twice gives what applying it once gives, so
	// a write whose fate is unknown may be sent again (nil: never).
	repeatable func(Command) bool
	// restamp puts the leader's clock (now) on the times the command's
	// durations are measured from (nil: nothing to restamp).
	restamp func(c Command, now time.Time)
	auth    Authority
	// allow is the check of AuthTenant, AuthNode and AuthKeyOrNode
	// commands, against the leader's state (read-locked).
	allow func(s *state, c Command, p principal) error
}

// entry builds a spec from a typed apply function.
func entry[C any, P interface {
	*C
	Command
}, R any](name string, auth Authority, apply func(s *state, idx uint64, c P) (R, error)) *spec {
	return &spec{
		name: name,
		new:  func() Command { return P(new(C)) },
		apply: func(s *state, idx uint64, c Command) (any, error) {
			v, err := apply(s, idx, c.(P))
			if err != nil {
				return nil, err
			}
			return v, nil
		},
		result: func() any { return new(R) },
		auth:   auth,
	}
}

func (e *spec) affectsPlacement() *spec { e.placement = true; return e }

func (e *spec) always() *spec {
	e.repeatable = func(Command) bool { return true }
	return e
}

func (e *spec) repeatableWhen(f func(Command) bool) *spec { e.repeatable = f; return e }

func (e *spec) restamps(f func(c Command, now time.Time)) *spec { e.restamp = f; return e }

func (e *spec) allows(f func(s *state, c Command, p principal) error) *spec { e.allow = f; return e }

// commands is the registry: one entry per command type. A type missing
// here fails TestRegistryCoversEveryCommand, not every replica at apply.
var commands = map[CommandType]*spec{
	CmdCreateKey: entry("create_key", AuthAdmin, func(s *state, _ uint64, c *CreateKey) (APIKey, error) { return s.createKey(c) }),
	CmdRevokeKey: entry("revoke_key", AuthTenant, func(s *state, _ uint64, c *RevokeKey) (APIKey, error) { return s.revokeKey(c) }).
		allows(allowRevokeKey),
	CmdTouchKeys: entry("touch_keys", AuthNode, func(s *state, _ uint64, c *TouchKeys) (int, error) { return s.touchKeys(c) }).
		always().allows(allowAnyNode),
	CmdPutTenantKeys: entry("put_tenant_keys", AuthKeyOrNode, func(s *state, _ uint64, c *PutTenantKeys) (Tenant, error) { return s.putTenantKeys(c) }).
		always().allows(allowPutTenantKeys),

	CmdRegisterDataset: entry("register_dataset", AuthTenant, func(s *state, _ uint64, c *RegisterDataset) (Dataset, error) {
		d := c.Dataset
		if d.CreatedAt.IsZero() {
			d.CreatedAt = c.At
		}
		return s.registerDataset(d)
	}).allows(forTenant(func(c Command) string { return c.(*RegisterDataset).Dataset.Tenant })),
	CmdDeleteDataset: entry("delete_dataset", AuthTenant, func(s *state, _ uint64, c *DeleteDataset) (Dataset, error) { return s.deleteDataset(c) }).
		allows(forTenant(func(c Command) string { return c.(*DeleteDataset).Tenant })),

	CmdSubmitJob: entry("submit_job", AuthTenant, (*state).submitJob).affectsPlacement().
		repeatableWhen(func(c Command) bool { return c.(*SubmitJob).IdempotencyKey != "" }).
		restamps(func(c Command, now time.Time) { c.(*SubmitJob).At = now }).
		allows(allowSubmit),
	CmdCancelJob: entry("cancel_job", AuthTenant, func(s *state, _ uint64, c *CancelJob) (Job, error) { return s.cancelJob(c) }).affectsPlacement().
		allows(forTenant(func(c Command) string { return c.(*CancelJob).Tenant })),

	CmdAssignJob: entry("assign_job", AuthNode, (*state).assignJob).affectsPlacement().
		restamps(func(c Command, now time.Time) {
			a := c.(*AssignJob)
			a.ExpiresAt, a.At = now.Add(a.ExpiresAt.Sub(a.At)), now
		}).allows(allowClaim),
	CmdAssignBatch: entry("assign_batch", AuthLeader, (*state).assignBatch).affectsPlacement(),
	CmdRenewLease: entry("renew_lease", AuthNode, func(s *state, _ uint64, c *RenewLease) (Job, error) { return s.renewLease(c) }).
		always().
		restamps(func(c Command, now time.Time) {
			r := c.(*RenewLease)
			r.ExpiresAt, r.At = now.Add(r.ExpiresAt.Sub(r.At)), now
		}).allows(func(s *state, c Command, p principal) error {
		r := c.(*RenewLease)
		return s.allowLease(r.JobID, r.Token, p)
	}),
	CmdCompleteJob: entry("complete_job", AuthNode, func(s *state, _ uint64, c *CompleteJob) (Job, error) { return s.completeJob(c) }).affectsPlacement().
		allows(func(s *state, c Command, p principal) error {
			r := c.(*CompleteJob)
			return s.allowLease(r.JobID, r.Token, p)
		}),
	CmdRequeueJob: entry("requeue_job", AuthNode, func(s *state, _ uint64, c *RequeueJob) (Job, error) { return s.requeueJob(c) }).affectsPlacement().
		allows(func(s *state, c Command, p principal) error {
			r := c.(*RequeueJob)
			if !r.Voluntary {
				return forbidden("only the leader requeues a job a node did not hand back")
			}
			return s.allowLease(r.JobID, r.Token, p)
		}),

	CmdRegisterNode: entry("register_node", AuthNode, func(s *state, _ uint64, c *RegisterNode) (Node, error) { return s.registerNode(c) }).
		affectsPlacement().always().allows(allowRegister),
	CmdSetNodeState: entry("set_node_state", AuthNode, func(s *state, _ uint64, c *SetNodeState) (Node, error) { return s.setNodeState(c) }).
		affectsPlacement().always().allows(func(s *state, c Command, p principal) error {
		n := c.(*SetNodeState)
		if n.State != NodeLeft {
			return forbidden("a node may only say that it leaves; the leader decides ready and down")
		}
		return s.allowSelf(n.ID, p)
	}),
	CmdUpdateGPUs: entry("update_gpus", AuthNode, func(s *state, _ uint64, c *UpdateGPUs) (Node, error) { return s.updateGPUs(c) }).
		affectsPlacement().always().allows(func(s *state, c Command, p principal) error { return s.allowSelf(c.(*UpdateGPUs).Node, p) }),

	// PutOperator: no node proposes it (a job's completion records its
	// operator), so no peer may: it would let one node poison the cache
	// every node's jobs read.
	CmdPutOperator: entry("put_operator", AuthLeader, func(s *state, _ uint64, c *PutOperator) (OperatorEntry, error) {
		s.operators[c.Entry.Key] = c.Entry.Ref
		return c.Entry, nil
	}),

	// The blob index's records are idempotent, and a repeated guarded
	// change is refused as a conflict the proposer expects.
	CmdBlobStored: entry("blob_stored", AuthNode, func(s *state, _ uint64, c *BlobStored) (Blob, error) { return s.blobStored(c) }).
		always().allows(func(s *state, c Command, p principal) error { return s.allowSelf(c.(*BlobStored).Node, p) }),
	CmdBlobDropped: entry("blob_dropped", AuthNode, func(s *state, _ uint64, c *BlobDropped) (Blob, error) { return s.blobDropped(c) }).
		always().allows(func(s *state, c Command, p principal) error { return s.allowSelf(c.(*BlobDropped).Node, p) }),
	// BlobMirrored: the object store is shared, not any one node's, and
	// whichever node uploaded a copy records it; any registered node may.
	CmdBlobMirrored: entry("blob_mirrored", AuthNode, func(s *state, _ uint64, c *BlobMirrored) (Blob, error) { return s.blobMirrored(c) }).
		always().allows(allowAnyNode),
	CmdExpireBundles: entry("expire_bundles", AuthLeader, func(s *state, _ uint64, c *ExpireBundles) (int, error) { return s.expireBundles(c) }).always(),
	CmdForgetBlobs:   entry("forget_blobs", AuthLeader, func(s *state, _ uint64, c *ForgetBlobs) ([]string, error) { return s.forgetBlobs(c) }).always(),
	CmdPruneJobs:     entry("prune_jobs", AuthLeader, func(s *state, _ uint64, c *PruneJobs) (PruneResult, error) { return s.pruneJobs(c) }).always(),
	CmdSetTenant: entry("set_tenant", AuthAdmin, func(s *state, _ uint64, c *SetTenant) (Tenant, error) { return s.setTenant(c) }).
		affectsPlacement().always(),
	// MeterCalls is repeatable by its (node, incarnation, seq): a batch
	// sent again gets its first answer.
	CmdMeterCalls: entry("meter_calls", AuthNode, func(s *state, _ uint64, c *MeterCalls) (MeterResult, error) { return s.meterCalls(c) }).
		always().
		restamps(func(c Command, now time.Time) { c.(*MeterCalls).At = now }).
		allows(func(s *state, c Command, p principal) error { return s.allowSelf(c.(*MeterCalls).Node, p) }),
	CmdDrainNode: entry("drain_node", AuthAdmin, func(s *state, _ uint64, c *DrainNode) (Node, error) { return s.drainNode(c) }).
		affectsPlacement().always(),
	// The autoscaler's decisions (scale.go): the leader's alone.
	CmdScaleStatus: entry("scale_status", AuthLeader, func(s *state, _ uint64, c *ScaleStatus) (ScalerState, error) { return s.scaleStatus(c) }).always(),
	CmdScaleBegin:  entry("scale_begin", AuthLeader, (*state).scaleBegin).affectsPlacement(),
	CmdScaleEnd:    entry("scale_end", AuthLeader, func(s *state, _ uint64, c *ScaleEnd) (ScaleAction, error) { return s.scaleEnd(c) }).affectsPlacement(),
	CmdSetClusterConfig: entry("set_cluster_config", AuthLeader, func(s *state, _ uint64, c *SetClusterConfig) (ClusterConfig, error) {
		return s.setClusterConfig(c)
	}),
}

// CommandTypes lists every registered command type, ascending.
func CommandTypes() []CommandType { return slices.Sorted(maps.Keys(commands)) }

// NewResult returns a pointer to a zero value of what applying a command
// of type t returns (what a forwarded answer decodes into), or nil for an
// unknown type.
func NewResult(t CommandType) any {
	if e, ok := commands[t]; ok {
		return e.result()
	}
	return nil
}

// Repeatable reports whether c may be sent again after an attempt whose
// fate is unknown: applying it twice gives what applying it once gives.
func Repeatable(c Command) bool {
	e, ok := commands[c.Type()]
	return ok && e.repeatable != nil && e.repeatable(c)
}

// Restamp puts now (the leader's clock) on the times that leases and
// submissions are measured from, keeping the durations the proposer asked
// for: a runner whose clock is off cannot stretch or shorten a lease.
func Restamp(c Command, now time.Time) Command {
	if e, ok := commands[c.Type()]; ok && e.restamp != nil {
		e.restamp(c, now)
	}
	return c
}

// AuthorityOf is the authority class of command type t (0 when unknown).
func AuthorityOf(t CommandType) Authority {
	if e, ok := commands[t]; ok {
		return e.auth
	}
	return 0
}

// affectsPlacement says whether a command can change the queue, the running
// jobs or the nodes that placement reads.
func affectsPlacement(t CommandType) bool {
	e, ok := commands[t]
	return ok && e.placement
}

// apply runs one decoded command at Raft index idx.
func (s *state) apply(idx uint64, c Command) (any, error) {
	e, ok := commands[c.Type()]
	if !ok {
		return nil, fmt.Errorf("scheduler: apply %T: %w", c, ErrUnknownCmd)
	}
	return e.apply(s, idx, c)
}
