package scheduler

import (
	"encoding/json"
	"time"
)

// Job states.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
	StateCancelled = "cancelled"
	StateTimedOut  = "timed_out"
)

// ValidState reports whether s names a job state.
func ValidState(s string) bool {
	switch s {
	case StateQueued, StateRunning, StateSucceeded, StateFailed, StateCancelled, StateTimedOut:
		return true
	}
	return false
}

// Terminal reports whether a job in state s will never change again.
func Terminal(s string) bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled, StateTimedOut:
		return true
	}
	return false
}

// Priorities, lowest first. A tier is also named by a priority: a key of
// tier "free" may submit only free jobs, a key of tier "paid" any class.
const (
	PriorityFree   = "free"
	PriorityPaid   = "paid"
	PrioritySprint = "sprint"
)

// PriorityRank orders priorities: higher runs first. Unknown is -1.
func PriorityRank(p string) int {
	switch p {
	case PriorityFree:
		return 0
	case PriorityPaid:
		return 1
	case PrioritySprint:
		return 2
	}
	return -1
}

// Timeouts of CONTRACT.md §3.
const (
	DefaultTimeout = time.Hour
	SprintTimeout  = 4 * time.Hour
	MaxTimeout     = 4 * time.Hour
)

// Job networks: what a job's container may reach. A job without network
// (the default) has only loopback; NetworkBridge puts its container on the
// Docker engine's default bridge, where it reaches the host and whatever
// the host routes to. Only paid tiers may ask for it, and only for a job
// with an image (CONTRACT.md §3 extension).
const (
	NetworkNone   = "none"
	NetworkBridge = "bridge"
)

// Resources is what a job asks for.
type Resources struct {
	GPUs        int    `json:"gpus"`
	GPUModel    string `json:"gpu_model,omitempty"`
	GPUMemoryMB int    `json:"gpu_memory_mb,omitempty"`
}

// JobRequest is the body of POST /jobs.
type JobRequest struct {
	Type      string          `json:"type"`
	Dataset   string          `json:"dataset,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Priority  string          `json:"priority,omitempty"`
	Resources Resources       `json:"resources"`
	Timeout   string          `json:"timeout,omitempty"`
	Image     string          `json:"image,omitempty"`
	Region    string          `json:"region,omitempty"`
	// Network is "none" (or empty) or "bridge".
	Network string `json:"network,omitempty"`
}

// BundleRef names a stored RunBundle.
type BundleRef struct {
	CID    string `json:"cid"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// JobError says why a job did not succeed.
type JobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Lease is a runner's right to run a job. Token is the fencing token: a
// completion or renewal carrying any other token is refused.
type Lease struct {
	Node      string    `json:"node"`
	Token     uint64    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	GPUs      []int     `json:"gpus,omitempty"` // indices on Node
	// Incarnation is the runner process's identity at assignment: a node that
	// restarts has a new one and hands back leases of its old self.
	Incarnation string `json:"incarnation,omitempty"`
	// Limit, when set, is how long this attempt may run (a tenant's GPU
	// minutes are reserved for it); LimitQuota names the quota when that
	// cut the job's timeout.
	Limit      Duration `json:"limit,omitempty"`
	LimitQuota string   `json:"limit_quota,omitempty"`
}

// Job is the replicated record of one job. The JSON shape is CONTRACT.md's.
type Job struct {
	ID            string            `json:"id"`
	Tenant        string            `json:"tenant"`
	Type          string            `json:"type"`
	State         string            `json:"state"`
	Priority      string            `json:"priority"`
	Dataset       string            `json:"dataset,omitempty"`
	Params        json.RawMessage   `json:"params,omitempty"`
	Resources     Resources         `json:"resources"`
	Timeout       Duration          `json:"timeout"`
	Image         string            `json:"image,omitempty"`
	Region        string            `json:"region,omitempty"`
	Network       string            `json:"network,omitempty"` // NetworkBridge, or empty: no network
	Node          string            `json:"node,omitempty"`
	Attempts      int               `json:"attempts"`
	QueuePosition int               `json:"queue_position,omitempty"`
	Reason        string            `json:"reason,omitempty"`
	SubmittedAt   time.Time         `json:"submitted_at"`
	StartedAt     *time.Time        `json:"started_at,omitempty"`
	FinishedAt    *time.Time        `json:"finished_at,omitempty"`
	Metrics       map[string]any    `json:"metrics,omitempty"`
	RunBundle     *BundleRef        `json:"runbundle,omitempty"`
	Outputs       map[string]string `json:"outputs,omitempty"`
	Error         *JobError         `json:"error,omitempty"`
	Lease         *Lease            `json:"lease,omitempty"`
	// Seq orders jobs by submission (the Raft index of the submit).
	Seq uint64 `json:"seq,omitempty"`
	// Voluntary counts the runs that ended in a hand-back or a preemption;
	// they do not count toward MaxAttempts.
	Voluntary int `json:"voluntary_requeues,omitempty"`
	// CancelRequested is set when a running job is asked to stop; the
	// runner's completion turns it into cancelled.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// BundleExpired is set when retention removed the RunBundle.
	BundleExpired bool `json:"runbundle_expired,omitempty"`
}

// Dataset is a tenant's stored measurement data.
type Dataset struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Name      string    `json:"name"`
	CID       string    `json:"cid"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
	// Job is the generate_dataset job that produced it, if any.
	Job string `json:"job,omitempty"`
	// StoredCID and StoredSize name what the store holds when that differs
	// from the plaintext (a sealed dataset); KeyVersion is the tenant data
	// key that sealed it.
	StoredCID  string `json:"stored_cid,omitempty"`
	StoredSize int64  `json:"stored_size,omitempty"`
	KeyVersion uint32 `json:"key_version,omitempty"`
}

// Stored is the CID of the dataset's stored form.
func (d Dataset) Stored() string {
	if d.StoredCID != "" {
		return d.StoredCID
	}
	return d.CID
}

// StoredBytes is the size of the dataset's stored form.
func (d Dataset) StoredBytes() int64 {
	if d.StoredCID != "" {
		return d.StoredSize
	}
	return d.Size
}

// Tenant owns keys, datasets and jobs.
type Tenant struct {
	Name      string    `json:"name"`
	Tier      string    `json:"tier"`
	CreatedAt time.Time `json:"created_at"`
	// Keys are the tenant's data keys, wrapped, oldest version first; the
	// newest seals new content.
	Keys []SealedKey `json:"keys,omitempty"`
	// KeysGen counts changes of Keys: a change names the generation it
	// read, so two nodes cannot both add a version 1.
	KeysGen uint64 `json:"keys_gen,omitempty"`
	// Pool is the dedicated GPU pool the tenant is assigned to ("": none);
	// PoolOnly pins its jobs there (else they may use the shared pool too).
	Pool     string `json:"pool,omitempty"`
	PoolOnly bool   `json:"pool_only,omitempty"`
	// QuotaOverrides are the operator's quotas, over the tier's defaults.
	QuotaOverrides map[string]float64 `json:"quota_overrides,omitempty"`
}

// APIKey is a stored key: only the SHA-256 of the secret is kept.
type APIKey struct {
	// ID names the key in listings and revocation (opaque, chosen by the
	// proposer; keys stored before IDs existed get KeyIDOf(Hash)).
	ID        string    `json:"id"`
	Hash      string    `json:"hash"`
	Prefix    string    `json:"prefix"` // first characters, for humans
	Tenant    string    `json:"tenant"`
	Tier      string    `json:"tier"`
	Admin     bool      `json:"admin"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt, when set, ends the key's validity. The FSM only stores
	// it: whoever reads a key checks it against its own clock (Expired).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// LastUsedAt is the latest use any node reported (TouchKeys); zero
	// when never reported.
	LastUsedAt time.Time `json:"last_used_at"`
}

// Expired reports whether the key is past its expiry at now.
func (k APIKey) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)
}

// GPU is one device a node advertises.
type GPU struct {
	Index       int     `json:"index"`
	UUID        string  `json:"uuid"`
	Model       string  `json:"model"`
	MemoryMB    int     `json:"memory_mb"`
	Utilization float64 `json:"utilization"`
	// Telemetry, refreshed by the node when it moves (not on every sample).
	MemoryUsedMB int `json:"memory_used_mb,omitempty"`
	TemperatureC int `json:"temperature_c,omitempty"`
	// Unhealthy says why the GPU is out of service (an XID error, double-bit
	// ECC errors); empty for a healthy GPU. Placement never uses one.
	Unhealthy string `json:"unhealthy,omitempty"`
}

// Node roles and states.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
	RoleWorker   = "worker"

	NodeReady = "ready"
	NodeDown  = "down"
	NodeLeft  = "left"
)

// Node is a registered member able to run jobs.
type Node struct {
	ID        string   `json:"id"`
	Region    string   `json:"region"`
	State     string   `json:"state"`
	Voter     bool     `json:"voter"`
	GPUs      []GPU    `json:"gpus"`
	Slots     int      `json:"slots"` // concurrent CPU jobs
	Executors []string `json:"executors,omitempty"`
	// JobNetwork: the node's executor puts a job that asks for network
	// on a network (docker, not forbidden by --no-job-network).
	JobNetwork bool `json:"job_network,omitempty"`
	// PeerID is the libp2p peer ID the node registered from: the leader
	// takes a node's own writes (leases, copies, GPUs) only from it.
	PeerID string `json:"peer_id,omitempty"`
	// Pool is the node's GPU pool ("" or PoolShared: the shared pool).
	Pool string `json:"pool,omitempty"`
	// Draining: an operator drained the node (POST /nodes/{id}/drain);
	// it takes no new job and finishes what it runs. It stays drained
	// across restarts of the node.
	Draining bool `json:"draining,omitempty"`
	// Managed: a scaler started the node (--scaler-managed); only such
	// nodes are ever removed by one.
	Managed bool `json:"managed,omitempty"`
	// Since is when the node's current incarnation registered.
	Since time.Time `json:"since,omitzero"`
	// Incarnation changes on every start of the node's process.
	Incarnation string    `json:"incarnation"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Duration is a time.Duration that reads and writes Go duration strings.
type Duration time.Duration

// MarshalJSON writes "1h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts a duration string or nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*d = Duration(n)
	return nil
}
