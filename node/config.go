package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/node/tlsutil"
	"github.com/pwmesh/pwmesh/node/worker"
	"github.com/pwmesh/pwmesh/scheduler"
)

// Config is everything a node is started with (CONTRACT.md §2). The zero
// value is not valid; start from Defaults.
type Config struct {
	Dev             bool     `json:"dev"`
	DataDir         string   `json:"data_dir"`
	HTTPAddr        string   `json:"http"`
	Bind            string   `json:"bind"`
	GossipPort      int      `json:"gossip_port"`
	P2PPort         int      `json:"p2p_port"`
	Join            []string `json:"join"`
	BootstrapExpect int      `json:"bootstrap_expect"`
	Voter           string   `json:"voter"` // auto | never
	Region          string   `json:"region"`
	// Pool is the node's GPU pool: "shared", or a dedicated pool that runs
	// only the jobs of tenants assigned to it (PATCH /tenants/{t}).
	Pool           string `json:"pool"`
	GPUs           string `json:"gpus"`     // auto | none | fake:SPEC
	Executor       string `json:"executor"` // "" (auto) | process | docker
	ObjectStore    string `json:"object_store"`
	ClusterKeyFile string `json:"cluster_key"`
	// MasterKeyFile holds the master keys that wrap tenants' data keys
	// ("ID HEX" lines, the first active); without it they derive from
	// the cluster key.
	MasterKeyFile string `json:"master_key_file"`
	// Replicas is the cluster's replication factor, set when the cluster
	// is first bootstrapped (default 2).
	Replicas       int    `json:"replicas"`
	BootstrapToken string `json:"bootstrap_token"`
	// Slots is how many CPU jobs run at once here (default: number of CPUs).
	Slots int `json:"slots"`
	// LeaseTTL is the job lease length (default 9 s).
	LeaseTTL Duration `json:"lease_ttl"`
	// MaxUploadBytes bounds one dataset upload (default 1 GiB).
	MaxUploadBytes int64 `json:"max_upload_bytes"`
	// FastTimings tunes gossip for tests on one machine (failure detection
	// in well under a second).
	FastTimings bool `json:"fast_timings"`
	// WorkloadImage is the docker executor's image for jobs that name
	// none (default pwmesh-workload:latest, built from bin/pwmesh-static).
	WorkloadImage string `json:"workload_image"`
	// NoJobNetwork forbids network to every job here, whatever the job
	// and its tier ask (--no-job-network). By default the docker executor
	// puts a job that asks for network ("network": "bridge", paid tiers
	// only) on the node's job network, behind a firewall that keeps it off
	// the host, link-local and loopback addresses and the mesh's ports
	// (docs/executors.md); the node advertises which, and placement sends
	// such jobs only to nodes that give it.
	NoJobNetwork bool `json:"no_job_network"`
	// NoMetering serves API calls without counting them (a mesh that
	// bills nobody): no call quota is enforced and usage shows no calls.
	// Every node of a mesh should agree on it.
	NoMetering bool `json:"no_metering"`
	// AllowedImages are the images that paid and sprint jobs may name
	// (patterns: "registry/org/solver:1", "registry/org/solver" for any of
	// its tags, "registry/org/*"); free-tier jobs, and every job when the
	// list is empty (the default), run only the built-in workload
	// (--allowed-images, docs/executors.md).
	AllowedImages []string `json:"allowed_images"`
	// MaxOutputBytes bounds what one job may leave for the store (its
	// output/ and side outputs), in bytes (default 4 GiB): more fails it
	// with "output_too_large" (--max-output-bytes).
	MaxOutputBytes int64 `json:"max_output_bytes"`
	// TLSCert and TLSKey are PEM files of the API's certificate and key
	// (both or neither): with them the API and UI are served over HTTPS
	// only, the pair read again when the files change.
	TLSCert string `json:"tls_cert"`
	TLSKey  string `json:"tls_key"`
	// OpenID Connect sign-in for the web UI and `pwmesh login`, off
	// without an issuer (docs/oidc.md): the provider, the client
	// registered with it (its secret read from a file), the ID-token
	// claim that names the tenant (default pwmesh_tenant) and the group
	// whose members are admins (none by default).
	OIDCIssuer           string `json:"oidc_issuer"`
	OIDCClientID         string `json:"oidc_client_id"`
	OIDCClientSecretFile string `json:"oidc_client_secret_file"`
	OIDCTenantClaim      string `json:"oidc_tenant_claim"`
	OIDCAdminGroup       string `json:"oidc_admin_group"`
	// ExternalURL is the URL people reach this node at, for sign-in
	// redirects and links (default: from --http and the address it
	// listens on, https with --tls-cert).
	ExternalURL string `json:"external_url"`
	// The autoscaler (CONTRACT.md §6, docs/scaling.md): how the leader
	// adds and removes GPU workers (none, exec:CMD or docker), the bounds
	// of the managed workers, how long one may sit idle before it goes,
	// and the least time between two actions. ScalerManaged marks a
	// worker that a scaler started (only such workers are removed).
	Scaler         string   `json:"scaler"`
	ScalerMin      int      `json:"scaler_min"`
	ScalerMax      int      `json:"scaler_max"`
	ScalerIdle     Duration `json:"scaler_idle"`
	ScalerCooldown Duration `json:"scaler_cooldown"`
	ScalerManaged  bool     `json:"scaler_managed"`
	// ScalerImage is the docker scaler's node image (default
	// pwmesh-node:latest, built from bin/pwmesh-static when missing).
	ScalerImage string `json:"scaler_image"`
	// ScalerInterval (default 10 s) and ScalerTimeout (default 5 min)
	// are the longest time between two evaluations and a provider call's
	// bound; tests shorten them.
	ScalerInterval time.Duration `json:"-"`
	ScalerTimeout  time.Duration `json:"-"`
	// ScalerWorkerArgs are added to the command line of the workers the
	// docker scaler starts (tests give them fast timings).
	ScalerWorkerArgs []string `json:"-"`
	// oidcClientSecret is the secret Validate read from its file.
	oidcClientSecret string

	// Set by the binary, not by users.
	Version   string          `json:"-"`
	Commit    string          `json:"-"`
	Logger    *slog.Logger    `json:"-"`
	LogLevel  string          `json:"-"` // Raft's least level (debug, info, warn, error); Raft logs through Logger
	Clock     scheduler.Clock `json:"-"`
	Binary    string          `json:"-"` // the pwmesh executable for child processes
	Ready     func(Info)      `json:"-"` // called once the node serves
	ChildArgs []string        `json:"-"` // tests re-enter a test binary
	// Raft timings (zero: scheduler.RaftConfig's defaults, 1 s/1 s/500 ms;
	// 200/200/100 ms with Dev, whose node is its group's only voter).
	// Tests set their own (node/nodetest).
	RaftHeartbeat, RaftElection, RaftLeaderLease time.Duration `json:"-"`
	ChildEnv                                     []string      `json:"-"` // added to child processes' environment
}

// Duration is a time.Duration read from a string such as "15s" in files.
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"15s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Info is what Ready reports.
type Info struct {
	NodeID    string
	APIURL    string
	UIURL     string
	TokenFile string // where the bootstrap admin token is, if this node wrote or read it
}

// Defaults returns the documented defaults (CONTRACT.md §2).
func Defaults() Config {
	return Config{
		DataDir:         "./pwmesh-data",
		HTTPAddr:        "127.0.0.1:8080",
		GossipPort:      7946,
		P2PPort:         4001,
		BootstrapExpect: 3,
		Voter:           "auto",
		Region:          "local",
		Pool:            scheduler.PoolShared,
		GPUs:            "auto",
		LeaseTTL:        Duration(9 * time.Second),
		MaxUploadBytes:  1 << 30,
		Scaler:          scheduler.ScalerNone,
		ScalerMax:       4,
		ScalerIdle:      Duration(5 * time.Minute),
		ScalerCooldown:  Duration(time.Minute),
	}
}

// LoadFile merges a JSON config file into c: keys present in the file
// override c, unknown keys are refused.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Env names of CONTRACT.md §2.
const (
	EnvDataDir        = "PWMESH_DATA_DIR"
	EnvHTTP           = "PWMESH_HTTP"
	EnvBind           = "PWMESH_BIND"
	EnvJoin           = "PWMESH_JOIN"
	EnvRegion         = "PWMESH_REGION"
	EnvPool           = "PWMESH_POOL"
	EnvGPUs           = "PWMESH_GPUS"
	EnvObjectStore    = "PWMESH_OBJECT_STORE"
	EnvClusterKey     = "PWMESH_CLUSTER_KEY"
	EnvBootstrapToken = "PWMESH_BOOTSTRAP_TOKEN"
	EnvMasterKeyFile  = "PWMESH_MASTER_KEY_FILE"
	EnvTLSCert        = "PWMESH_TLS_CERT"
	EnvTLSKey         = "PWMESH_TLS_KEY"
	// OpenID Connect sign-in (docs/oidc.md).
	EnvOIDCIssuer           = "PWMESH_OIDC_ISSUER"
	EnvOIDCClientID         = "PWMESH_OIDC_CLIENT_ID"
	EnvOIDCClientSecretFile = "PWMESH_OIDC_CLIENT_SECRET_FILE"
	EnvOIDCTenantClaim      = "PWMESH_OIDC_TENANT_CLAIM"
	EnvOIDCAdminGroup       = "PWMESH_OIDC_ADMIN_GROUP"
	EnvExternalURL          = "PWMESH_EXTERNAL_URL"
	EnvScaler               = "PWMESH_SCALER"
)

// LoadEnv merges the PWMESH_* environment into c.
func (c *Config) LoadEnv(getenv func(string) string) {
	set := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	set(&c.DataDir, EnvDataDir)
	set(&c.HTTPAddr, EnvHTTP)
	set(&c.Bind, EnvBind)
	set(&c.Region, EnvRegion)
	set(&c.Pool, EnvPool)
	set(&c.GPUs, EnvGPUs)
	set(&c.ObjectStore, EnvObjectStore)
	set(&c.ClusterKeyFile, EnvClusterKey)
	set(&c.BootstrapToken, EnvBootstrapToken)
	set(&c.MasterKeyFile, EnvMasterKeyFile)
	set(&c.TLSCert, EnvTLSCert)
	set(&c.TLSKey, EnvTLSKey)
	set(&c.OIDCIssuer, EnvOIDCIssuer)
	set(&c.OIDCClientID, EnvOIDCClientID)
	set(&c.OIDCClientSecretFile, EnvOIDCClientSecretFile)
	set(&c.OIDCTenantClaim, EnvOIDCTenantClaim)
	set(&c.OIDCAdminGroup, EnvOIDCAdminGroup)
	set(&c.ExternalURL, EnvExternalURL)
	set(&c.Scaler, EnvScaler)
	if v := getenv(EnvJoin); v != "" {
		c.Join = splitList(v)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate checks c and fills the defaults that depend on other settings.
func (c *Config) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.DataDir == "" {
		bad("--data-dir must not be empty")
	} else if abs, err := filepath.Abs(c.DataDir); err != nil {
		bad("--data-dir %q: %v", c.DataDir, err)
	} else {
		// Child processes run in their job's folder: every path they are
		// given must be absolute.
		c.DataDir = abs
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("--http %q: want HOST:PORT", c.HTTPAddr)
	}
	if c.Bind == "" {
		c.Bind = "0.0.0.0"
		if c.Dev {
			c.Bind = "127.0.0.1"
		}
	}
	if net.ParseIP(c.Bind) == nil {
		bad("--bind %q: want an IP address", c.Bind)
	}
	for name, p := range map[string]int{"--gossip-port": c.GossipPort, "--p2p-port": c.P2PPort} {
		if p < 0 || p > 65535 {
			bad("%s %d: want 0-65535", name, p)
		}
	}
	if c.Dev && c.BootstrapExpect == Defaults().BootstrapExpect {
		c.BootstrapExpect = 1
	}
	if c.Dev && c.RaftHeartbeat == 0 && c.RaftElection == 0 && c.RaftLeaderLease == 0 {
		// A lone voter has no follower to miss its heartbeats, so tight
		// timings cost it nothing, and it elects itself 0.2-0.4 s after
		// it starts instead of 1-2 s (docs/consensus.md, "Raft timings").
		c.RaftHeartbeat, c.RaftElection, c.RaftLeaderLease = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	}
	if c.BootstrapExpect < 1 || c.BootstrapExpect > 7 {
		bad("--bootstrap-expect %d: want 1 to 7", c.BootstrapExpect)
	}
	if c.Voter != "auto" && c.Voter != "never" {
		bad("--voter %q: want auto or never", c.Voter)
	}
	if c.Region == "" || strings.ContainsAny(c.Region, " \t\r\n/") {
		bad("--region %q: want a label without spaces or slashes", c.Region)
	}
	if !scheduler.ValidPool(c.Pool) {
		bad("--pool %q: want shared or a name of lower-case letters, digits and '-'", c.Pool)
	}
	if c.GPUs != "auto" && c.GPUs != "none" && !strings.HasPrefix(c.GPUs, "fake:") {
		bad("--gpus %q: want auto, none or fake:SPEC (e.g. fake:2xA100-80GB)", c.GPUs)
	}
	switch c.Executor {
	case "", "process", "docker":
	default:
		bad("--executor %q: want process or docker", c.Executor)
	}
	if c.ObjectStore != "" {
		u, err := url.Parse(c.ObjectStore)
		if err != nil || (u.Scheme != "s3" && u.Scheme != "gs" && u.Scheme != "file") {
			bad("--object-store %q: want s3://bucket?..., gs://bucket or file:///path", c.ObjectStore)
		}
	}
	if !c.Dev && c.ClusterKeyFile == "" {
		// An open mesh would let anyone who reaches its ports act as a
		// node (join gossip, learn the leader, send it commands).
		bad("--cluster-key FILE is required outside --dev: without it anyone who reaches this node's ports could join the mesh and act as a node; make one with `pwmesh keygen -o cluster.key`, copy it to every node, and pass --cluster-key cluster.key (or use --dev for a lone node)")
	}
	if c.MaxOutputBytes < 0 {
		bad("--max-output-bytes %d: want a number of bytes above 0 (0: the default, 4 GiB)", c.MaxOutputBytes)
	}
	if _, err := worker.NewImagePolicy("", c.AllowedImages); err != nil {
		bad("--allowed-images: %v (want patterns such as registry.example/org/* or registry.example/org/solver:1)", err)
	}
	if c.Replicas < 0 || c.Replicas > 16 {
		bad("--replicas %d: want 1 to 16", c.Replicas)
	}
	if c.Slots < 0 {
		bad("--slots %d: must not be negative", c.Slots)
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = Defaults().LeaseTTL
	}
	if c.MaxUploadBytes <= 0 {
		c.MaxUploadBytes = Defaults().MaxUploadBytes
	}
	if c.Dev && len(c.Join) > 0 {
		bad("--dev starts a mesh of its own: drop --join, or drop --dev to join a mesh")
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		bad("--tls-cert and --tls-key go together: give both (a certificate and its key, e.g. from `pwmesh tls cert create`) or neither")
	case c.TLSCert != "":
		// The pair must load now, not at the first handshake.
		if _, err := tlsutil.NewReloader(c.TLSCert, c.TLSKey, nil); err != nil {
			bad("--tls-cert/--tls-key: %v", err)
		}
	}
	c.validateOIDC(bad)
	c.validateScaler(bad)
	if err := errors.Join(errs...); err != nil {
		return &ConfigError{err}
	}
	return nil
}

// ConfigError is a setting that Validate refused: the command line or the
// config file must change (the binary exits 2 for it).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }
