package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CommandType is the first byte of every Raft log entry. Values are never
// reused; an FSM that meets an unknown type refuses to apply it.
type CommandType uint8

// Command types.
const (
	CmdCreateKey        CommandType = 1
	CmdRegisterDataset  CommandType = 2
	CmdDeleteDataset    CommandType = 3
	CmdSubmitJob        CommandType = 4
	CmdAssignJob        CommandType = 5
	CmdRenewLease       CommandType = 6
	CmdCompleteJob      CommandType = 7
	CmdCancelJob        CommandType = 8
	CmdRequeueJob       CommandType = 9
	CmdRegisterNode     CommandType = 10
	CmdSetNodeState     CommandType = 11
	CmdPutOperator      CommandType = 12
	CmdAssignBatch      CommandType = 13
	CmdBlobStored       CommandType = 14
	CmdBlobDropped      CommandType = 15
	CmdBlobMirrored     CommandType = 16
	CmdExpireBundles    CommandType = 17
	CmdForgetBlobs      CommandType = 18
	CmdPutTenantKeys    CommandType = 19
	CmdSetClusterConfig CommandType = 20
	CmdUpdateGPUs       CommandType = 21
	CmdRevokeKey        CommandType = 22
	CmdTouchKeys        CommandType = 23
	CmdPruneJobs        CommandType = 24
	CmdSetTenant        CommandType = 25
	CmdMeterCalls       CommandType = 26
	CmdDrainNode        CommandType = 27
	CmdScaleStatus      CommandType = 28
	CmdScaleBegin       CommandType = 29
	CmdScaleEnd         CommandType = 30
)

func (t CommandType) String() string {
	if e, ok := commands[t]; ok {
		return e.name
	}
	return fmt.Sprintf("command(%d)", uint8(t))
}

// Sentinel errors returned by Apply (wrapped with context).
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrInvalid      = errors.New("invalid")
	ErrStaleToken   = errors.New("stale fencing token")
	ErrUnknownCmd   = errors.New("unknown command type")
	ErrNotLeader    = errors.New("not the leader")
	ErrNoLeader     = errors.New("no leader")
	ErrPayloadBytes = errors.New("malformed command payload")
	// ErrNotDurable: content is not yet stored where the durability rule
	// wants it (see Blob); the proposer stores more copies and retries.
	ErrNotDurable = errors.New("not durable")
	// ErrIdempotencyMismatch: an idempotency key was used again with a
	// different request (the web layer answers 422).
	ErrIdempotencyMismatch = errors.New("idempotency key reused with another request")
	// ErrForbidden: the proposer may not make this change (a forwarded
	// write its key or its node has no authority for).
	ErrForbidden = errors.New("forbidden")
	// ErrQuota: a tenant's quota forbids it (the web layer answers 429
	// quota_exceeded); QuotaOf names the quota.
	ErrQuota = errors.New("quota exceeded")
)

// Command is one typed write. The proposer stamps every time and ID into it
// so that Apply reads nothing but the entry.
type Command interface {
	Type() CommandType
}

// CreateKey stores a hashed API key, creating its tenant if needed.
type CreateKey struct {
	At  time.Time `json:"at"`
	Key APIKey    `json:"key"`
}

// RegisterDataset records a dataset already stored in the CAS.
type RegisterDataset struct {
	At      time.Time `json:"at"`
	Dataset Dataset   `json:"dataset"`
}

// DeleteDataset removes a tenant's dataset record.
type DeleteDataset struct {
	At     time.Time `json:"at"`
	Tenant string    `json:"tenant"`
	ID     string    `json:"id"`
}

// SubmitJob queues a job. A repeated IdempotencyKey of the same tenant
// returns the job it first created, or ErrIdempotencyMismatch when both
// submissions carry a RequestHash and the hashes differ.
type SubmitJob struct {
	At             time.Time `json:"at"`
	Job            Job       `json:"job"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	// RequestHash is the hex SHA-256 of the canonical request (set by the
	// web layer).
	RequestHash string `json:"request_hash,omitempty"`
}

// AssignJob starts a queued job on a node under a lease. The fencing token
// is the Raft index of this entry.
type AssignJob struct {
	// Claim marks an assignment proposed by the node itself, answering an
	// announcement; the FSM checks it exactly like the leader's.
	Claim       bool      `json:"claim,omitempty"`
	At          time.Time `json:"at"`
	JobID       string    `json:"job_id"`
	Node        string    `json:"node"`
	Incarnation string    `json:"incarnation"`
	GPUs        []int     `json:"gpus,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// AssignBatch commits many assignments in one entry: each is checked and
// applied on its own, in order, exactly as an AssignJob, and shares the
// entry's index as fencing token (tokens are compared per job).
type AssignBatch struct {
	Assignments []AssignJob `json:"assignments"`
}

// BatchResult is AssignBatch's answer: one error text per assignment ("" for
// success), in order.
type BatchResult struct {
	Errors []string `json:"errors"`
}

// RenewLease extends a running job's lease.
type RenewLease struct {
	At        time.Time `json:"at"`
	JobID     string    `json:"job_id"`
	Token     uint64    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CompleteJob ends a running job. It is refused unless Token is the job's
// current fencing token.
type CompleteJob struct {
	At        time.Time         `json:"at"`
	JobID     string            `json:"job_id"`
	Token     uint64            `json:"token"`
	State     string            `json:"state"`
	Metrics   map[string]any    `json:"metrics,omitempty"`
	RunBundle *BundleRef        `json:"runbundle,omitempty"`
	Outputs   map[string]string `json:"outputs,omitempty"`
	Error     *JobError         `json:"error,omitempty"`
	// Dataset is registered with the completion (generate_dataset).
	Dataset *Dataset `json:"dataset,omitempty"`
	// Operator, when set, records a compiled operator built by this job.
	Operator *OperatorEntry `json:"operator,omitempty"`
}

// CancelJob cancels a queued job at once and asks a running one to stop.
type CancelJob struct {
	At     time.Time `json:"at"`
	Tenant string    `json:"tenant"`
	JobID  string    `json:"job_id"`
}

// RequeueJob hands a running job back to the queue (its node died, left, or
// it was preempted). Token must be the current fencing token.
type RequeueJob struct {
	At     time.Time `json:"at"`
	JobID  string    `json:"job_id"`
	Token  uint64    `json:"token"`
	Reason string    `json:"reason"`
	// Voluntary marks a hand-back by a node shutting down or a preemption:
	// it does not count toward MaxAttempts.
	Voluntary bool `json:"voluntary,omitempty"`
}

// RegisterNode adds or updates a node able to run jobs.
type RegisterNode struct {
	At   time.Time `json:"at"`
	Node Node      `json:"node"`
}

// UpdateGPUs refreshes a node's GPU telemetry and health. It names the
// same GPUs (by index) the node registered; the static fields (UUID, model,
// memory size) are kept from the registration.
type UpdateGPUs struct {
	At   time.Time `json:"at"`
	Node string    `json:"node"`
	GPUs []GPU     `json:"gpus"`
}

func (UpdateGPUs) Type() CommandType { return CmdUpdateGPUs }

// SetNodeState marks a node ready, down or left.
type SetNodeState struct {
	At    time.Time `json:"at"`
	ID    string    `json:"id"`
	State string    `json:"state"`
}

// OperatorEntry maps a compiled-operator cache key to stored content.
type OperatorEntry struct {
	Key string    `json:"key"`
	Ref BundleRef `json:"ref"`
	// Tenant whose job compiled it (in snapshots; its storage counts it).
	Tenant string `json:"tenant,omitempty"`
}

// PutOperator records a compiled operator in the shared cache index.
type PutOperator struct {
	At    time.Time     `json:"at"`
	Entry OperatorEntry `json:"entry"`
}

func (CreateKey) Type() CommandType       { return CmdCreateKey }
func (RegisterDataset) Type() CommandType { return CmdRegisterDataset }
func (DeleteDataset) Type() CommandType   { return CmdDeleteDataset }
func (SubmitJob) Type() CommandType       { return CmdSubmitJob }
func (AssignJob) Type() CommandType       { return CmdAssignJob }
func (RenewLease) Type() CommandType      { return CmdRenewLease }
func (CompleteJob) Type() CommandType     { return CmdCompleteJob }
func (CancelJob) Type() CommandType       { return CmdCancelJob }
func (RequeueJob) Type() CommandType      { return CmdRequeueJob }
func (RegisterNode) Type() CommandType    { return CmdRegisterNode }
func (SetNodeState) Type() CommandType    { return CmdSetNodeState }
func (PutOperator) Type() CommandType     { return CmdPutOperator }
func (AssignBatch) Type() CommandType     { return CmdAssignBatch }

// Encode writes a command as one type byte followed by its JSON body.
func Encode(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("scheduler: encode %s: %w", c.Type(), err)
	}
	return append([]byte{byte(c.Type())}, body...), nil
}

// Decode reads what Encode wrote. An unknown type is ErrUnknownCmd (the
// FSM skips it when it is Ignorable).
func Decode(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("scheduler: decode: empty entry: %w", ErrPayloadBytes)
	}
	t := CommandType(b[0])
	e, ok := commands[t]
	if !ok {
		return nil, fmt.Errorf("scheduler: decode: %w %d", ErrUnknownCmd, b[0])
	}
	c := e.new()
	if err := json.Unmarshal(b[1:], c); err != nil {
		return nil, fmt.Errorf("scheduler: decode %s: %w: %v", t, ErrPayloadBytes, err)
	}
	return c, nil
}
