package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

// Config tunes a Server. Zero values get the documented defaults, except
// Registry, which is required.
type Config struct {
	// NodeID names this node in the X-Pwmesh-Node header.
	NodeID string
	// MaxJSONBytes bounds a JSON request body in bytes (default 1 MiB).
	MaxJSONBytes int64
	// MaxUploadBytes bounds a dataset upload in bytes (default 1 GiB).
	MaxUploadBytes int64
	// Clock stamps commands and computes usage (default: UTC wall clock).
	Clock interface{ Now() time.Time }
	// Logger gets one line per request (Requests), refused requests at
	// debug and server errors at error, each naming the request's ID
	// (default: discard).
	Logger *slog.Logger
	// Timeouts bound connections (zero fields: their defaults).
	Timeouts Timeouts
	// KeyUseInterval is how often Run records the key uses this node saw
	// in the replicated state (default 1m).
	KeyUseInterval time.Duration
	// RateLimits are the per-key request rates by tier on this node (nil:
	// DefaultRateLimits; a tier absent: no limit).
	RateLimits map[string]RateLimit
	// Registry is the node's own Prometheus registry; the Server registers
	// its metrics on it and serves it at GET /metrics. Required.
	Registry *prometheus.Registry
}

// Defaults of Config.
const (
	DefaultMaxJSONBytes   = 1 << 20
	DefaultMaxUploadBytes = 1 << 30
	DefaultKeyUseInterval = time.Minute
)

// State is the replicated state as the web layer reads it; *scheduler.FSM
// satisfies it.
type State interface {
	Job(id string) (scheduler.Job, bool)
	Jobs(q scheduler.JobFilter) ([]scheduler.Job, uint64)
	Key(hash string) (scheduler.APIKey, bool)
	// KeyByID looks a key up by its ID.
	KeyByID(id string) (scheduler.APIKey, bool)
	// Keys lists tenant's keys ("" for every tenant's).
	Keys(tenant string) []scheduler.APIKey
	Tenant(name string) (scheduler.Tenant, bool)
	Dataset(id string) (scheduler.Dataset, bool)
	Datasets(tenant string) []scheduler.Dataset
	Nodes() []scheduler.Node
	// Node returns one node.
	Node(id string) (scheduler.Node, bool)
	// Tenants lists every tenant, sorted by name.
	Tenants() []scheduler.Tenant
	// StoredBytes is a tenant's stored content, each object counted once.
	StoredBytes(tenant string) int64
	// Usage is a tenant's month (any time in it) from the usage ledger,
	// running attempts counted up to now.
	Usage(tenant string, month, now time.Time) scheduler.TenantUsage
	// UsageTenants lists the tenants with a record or usage in the month
	// of month, sorted.
	UsageTenants(month time.Time) []string
	// Scaler is the autoscaler's replicated state.
	Scaler() scheduler.ScalerState
	// Watch returns a channel closed at the next change of the state.
	Watch() <-chan struct{}
}

// Writer commits a command through Raft, forwarding it to the leader.
type Writer interface {
	Apply(ctx context.Context, c scheduler.Command) (any, error)
}

// Health is what this node knows of the cluster.
type Health struct {
	Node    string
	Leader  string
	Role    string // "leader", "follower" or "worker"
	Members int
	// Ready is true once the node serves and knows a leader; false makes
	// GET /health answer 503.
	Ready bool
}

// Cluster reports the node's view of the cluster.
type Cluster interface{ Health() Health }

// KeyRotator rotates dataset keys (node/storage).
type KeyRotator interface {
	// RotateTenantKey adds a data key version for new datasets of tenant.
	RotateTenantKey(ctx context.Context, tenant string) (uint32, error)
	// RewrapAll wraps every tenant's data keys with the active master key.
	RewrapAll(ctx context.Context) (tenants int, master string, err error)
}

// Datasets seals, stores and opens tenants' datasets (node/storage).
type Datasets interface {
	// PutDataset stores r for tenant once it is durable and returns the
	// dataset's content fields (CID, SHA256 and Size of the plaintext and
	// its stored form); the caller sets ID, Name and CreatedAt.
	PutDataset(ctx context.Context, tenant string, r io.Reader) (scheduler.Dataset, error)
	// OpenDataset returns a dataset's plaintext, which seeks: a seek in
	// a sealed dataset costs at most one 64 KiB segment's decryption.
	OpenDataset(ctx context.Context, d scheduler.Dataset) (io.ReadSeekCloser, error)
}

// Bundles opens tenants' RunBundles (node/storage).
type Bundles interface {
	// OpenBundle returns the plain tar of tenant's RunBundle b, whether it
	// is stored sealed or, stored before bundles were sealed, in clear. A
	// seek costs at most one 64 KiB segment's decryption.
	OpenBundle(ctx context.Context, tenant string, b scheduler.BundleRef) (io.ReadSeekCloser, error)
}

// LogSource opens a job's log.
type LogSource interface {
	// OpenLog returns the job's log so far, or an error wrapping
	// fs.ErrNotExist when there is none yet.
	OpenLog(jobID string) (io.ReadCloser, error)
}

// Deps are the Server's collaborators. State, Writer, Store and Cluster are
// required.
type Deps struct {
	State  State
	Writer Writer
	Store  cas.Store
	// Datasets seals and stores uploads and opens them again.
	Datasets Datasets
	// Bundles opens RunBundles (nil: a bundle is served as Store holds
	// it, which only suits bundles stored in clear).
	Bundles Bundles
	// Keys rotates the keys that seal datasets (nil: the admin endpoints
	// answer 501).
	Keys    KeyRotator
	Cluster Cluster
	// Logs serves GET /jobs/{id}/logs; nil answers every job's log as empty.
	Logs LogSource
	// ValidateParams checks a job's params for its type; nil accepts any
	// JSON object. An error wrapping ErrUnknownJobType answers 400
	// "unknown_job_type", any other 400 "invalid_params" with its text.
	ValidateParams func(jobType string, params json.RawMessage) error
	// JobTypes are the job types this node runs, by name (node: from the
	// workload registry); a type not in it answers 400 unknown_job_type.
	JobTypes map[string]JobType
	// ValidateImage checks that a job of the given priority may name
	// image (asked only of jobs that name one); an error answers 403
	// "image_not_allowed" with its text. nil accepts any image.
	ValidateImage func(priority, image string) error
	// Meter counts every authenticated call exactly before it is served
	// (nil: calls are not metered, e.g. in tests of other things).
	Meter Meter
	// NewID returns a fresh opaque ID with the given prefix (default:
	// prefix + 20 random hex characters).
	NewID func(prefix string) string
}

// Server is the HTTP API of one node.
type Server struct {
	cfg     Config
	deps    Deps
	metrics *httpMetrics
	handler http.Handler
	uses    keyUses
	limits  limiters
}

// New validates cfg and deps, registers the metrics on cfg.Registry and
// builds the route table. It starts nothing: the node serves Handler (or
// NewHTTPServer) and runs Run.
func New(cfg Config, deps Deps) (*Server, error) {
	switch {
	case cfg.Registry == nil:
		return nil, errors.New("web: Config.Registry is required")
	case deps.State == nil, deps.Writer == nil, deps.Store == nil, deps.Datasets == nil, deps.Cluster == nil:
		return nil, errors.New("web: Deps.State, Writer, Store, Datasets and Cluster are required")
	case cfg.MaxJSONBytes < 0, cfg.MaxUploadBytes < 0:
		return nil, errors.New("web: negative body limit")
	}
	if cfg.MaxJSONBytes == 0 {
		cfg.MaxJSONBytes = DefaultMaxJSONBytes
	}
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	cfg.Timeouts = cfg.Timeouts.withDefaults()
	if cfg.KeyUseInterval <= 0 {
		cfg.KeyUseInterval = DefaultKeyUseInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = utcClock{}
	}
	if cfg.RateLimits == nil {
		cfg.RateLimits = DefaultRateLimits
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Lines logged while serving a request name its ID (Requests).
	cfg.Logger = slog.New(ContextHandler(cfg.Logger.Handler()))
	if deps.NewID == nil {
		deps.NewID = randomID
	}
	s := &Server{cfg: cfg, deps: deps}
	m, err := newHTTPMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.handler = Requests(cfg.Logger, s.routes())
	return s, nil
}

// Handler returns the API's http.Handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) now() time.Time { return s.cfg.Clock.Now().UTC() }

type utcClock struct{}

func (utcClock) Now() time.Time { return time.Now().UTC() }

// randomID is the default Deps.NewID: prefix + 20 random hex characters.
func randomID(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("web: crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return prefix + hex.EncodeToString(b[:])
}

// awaitLimit bounds how long a write's answer waits for the local replica
// to catch up with the leader before answering from the write's own result.
const awaitLimit = 2 * time.Second

// await waits until ok holds on the local state, ctx ends or awaitLimit
// passes. A write forwarded to the leader is committed before Apply returns,
// but this node's replica may apply it a moment later.
func (s *Server) await(ctx context.Context, ok func() bool) bool {
	return s.awaitFor(ctx, awaitLimit, ok)
}

// awaitFor waits until ok holds on the local state, ctx ends or limit
// passes.
func (s *Server) awaitFor(ctx context.Context, limit time.Duration, ok func() bool) bool {
	var timer *time.Timer
	for {
		changed := s.deps.State.Watch()
		if ok() {
			return true
		}
		if timer == nil {
			timer = time.NewTimer(limit)
			defer timer.Stop()
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		case <-timer.C:
			return false
		}
	}
}
