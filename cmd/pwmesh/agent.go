package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/node"
)

// newAgentCmd returns `pwmesh agent`: start a node (CONTRACT.md §2).
func newAgentCmd() *cobra.Command {
	var (
		f          = node.Defaults()
		configFile string
		join       []string
		// allowedImages is --allowed-images.
		allowedImages              []string
		leaseTTL                   time.Duration
		scalerIdle, scalerCooldown time.Duration
		logLevel                   string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Start a pwmesh node",
		Long: `Start a pwmesh node. With --dev it is a one-node mesh with everything
embedded that bootstraps itself. Settings come from defaults, then --config,
then PWMESH_* environment variables, then flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := node.Defaults()
			if configFile != "" {
				if err := cfg.LoadFile(configFile); err != nil {
					return err
				}
			}
			cfg.LoadEnv(os.Getenv)
			fl := cmd.Flags()
			changed := fl.Changed
			if changed("dev") {
				cfg.Dev = f.Dev
			}
			setIf := func(name string, dst *string, v string) {
				if changed(name) {
					*dst = v
				}
			}
			setIf("data-dir", &cfg.DataDir, f.DataDir)
			setIf("http", &cfg.HTTPAddr, f.HTTPAddr)
			setIf("bind", &cfg.Bind, f.Bind)
			setIf("voter", &cfg.Voter, f.Voter)
			setIf("region", &cfg.Region, f.Region)
			setIf("pool", &cfg.Pool, f.Pool)
			setIf("gpus", &cfg.GPUs, f.GPUs)
			setIf("executor", &cfg.Executor, f.Executor)
			setIf("workload-image", &cfg.WorkloadImage, f.WorkloadImage)
			setIf("object-store", &cfg.ObjectStore, f.ObjectStore)
			setIf("cluster-key", &cfg.ClusterKeyFile, f.ClusterKeyFile)
			setIf("bootstrap-token", &cfg.BootstrapToken, f.BootstrapToken)
			setIf("master-key-file", &cfg.MasterKeyFile, f.MasterKeyFile)
			setIf("tls-cert", &cfg.TLSCert, f.TLSCert)
			setIf("tls-key", &cfg.TLSKey, f.TLSKey)
			setIf("oidc-issuer", &cfg.OIDCIssuer, f.OIDCIssuer)
			setIf("oidc-client-id", &cfg.OIDCClientID, f.OIDCClientID)
			setIf("oidc-client-secret-file", &cfg.OIDCClientSecretFile, f.OIDCClientSecretFile)
			setIf("oidc-tenant-claim", &cfg.OIDCTenantClaim, f.OIDCTenantClaim)
			setIf("oidc-admin-group", &cfg.OIDCAdminGroup, f.OIDCAdminGroup)
			setIf("external-url", &cfg.ExternalURL, f.ExternalURL)
			if changed("replicas") {
				cfg.Replicas = f.Replicas
			}
			if changed("gossip-port") {
				cfg.GossipPort = f.GossipPort
			}
			if changed("p2p-port") {
				cfg.P2PPort = f.P2PPort
			}
			if changed("bootstrap-expect") {
				cfg.BootstrapExpect = f.BootstrapExpect
			}
			if changed("no-job-network") {
				cfg.NoJobNetwork = f.NoJobNetwork
			}
			if changed("no-metering") {
				cfg.NoMetering = f.NoMetering
			}
			if changed("allowed-images") {
				cfg.AllowedImages = allowedImages
			}
			if changed("max-output-bytes") {
				cfg.MaxOutputBytes = f.MaxOutputBytes
			}
			if changed("slots") {
				cfg.Slots = f.Slots
			}
			if changed("join") {
				cfg.Join = join
			}
			if changed("lease-ttl") {
				cfg.LeaseTTL = node.Duration(leaseTTL)
			}
			setIf("scaler", &cfg.Scaler, f.Scaler)
			setIf("scaler-image", &cfg.ScalerImage, f.ScalerImage)
			if changed("scaler-min") {
				cfg.ScalerMin = f.ScalerMin
			}
			if changed("scaler-max") {
				cfg.ScalerMax = f.ScalerMax
			}
			if changed("scaler-idle") {
				cfg.ScalerIdle = node.Duration(scalerIdle)
			}
			if changed("scaler-cooldown") {
				cfg.ScalerCooldown = node.Duration(scalerCooldown)
			}
			if changed("scaler-managed") {
				cfg.ScalerManaged = f.ScalerManaged
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			return runAgent(cmd.Context(), cfg, level, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.Dev, "dev", false, "one node, everything embedded, bootstraps itself")
	fl.StringVar(&f.DataDir, "data-dir", f.DataDir, "all state of this node ($PWMESH_DATA_DIR)")
	fl.StringVar(&f.HTTPAddr, "http", f.HTTPAddr, "HOST:PORT of the API ($PWMESH_HTTP)")
	fl.StringVar(&f.Bind, "bind", "", "address for gossip, p2p and raft; 127.0.0.1 with --dev, else 0.0.0.0 ($PWMESH_BIND)")
	fl.IntVar(&f.GossipPort, "gossip-port", f.GossipPort, "memberlist port")
	fl.IntVar(&f.P2PPort, "p2p-port", f.P2PPort, "p2p port (raft rides on it)")
	fl.StringSliceVar(&join, "join", nil, "gossip addresses HOST:PORT of nodes already in the mesh ($PWMESH_JOIN)")
	fl.IntVar(&f.BootstrapExpect, "bootstrap-expect", f.BootstrapExpect, "voter-eligible nodes to wait for before bootstrapping Raft (1 with --dev)")
	fl.StringVar(&f.Voter, "voter", f.Voter, "auto or never (never makes a pure worker)")
	fl.StringVar(&f.Region, "region", f.Region, "region label ($PWMESH_REGION)")
	fl.StringVar(&f.Pool, "pool", f.Pool, "GPU pool: shared, or a dedicated pool that runs only the jobs of tenants assigned to it ($PWMESH_POOL)")
	fl.StringVar(&f.GPUs, "gpus", f.GPUs, "auto, none or fake:SPEC such as fake:2xA100-80GB ($PWMESH_GPUS)")
	fl.StringVar(&f.Executor, "executor", "", "process or docker (default: docker when available, else process)")
	fl.StringVar(&f.WorkloadImage, "workload-image", "", "docker executor: image of jobs that name none (default pwmesh-workload:latest)")
	fl.BoolVar(&f.NoMetering, "no-metering", false, "serve API calls without counting them: no daily call quota, no calls in usage and invoices (a mesh that bills nobody)")
	fl.BoolVar(&f.NoJobNetwork, "no-job-network", false, "docker executor: run every job without network, even one that asks for it (by default a paid job with an image may ask for \"network\": \"bridge\")")
	fl.StringSliceVar(&allowedImages, "allowed-images", nil, "docker executor: images that paid jobs may name, comma-separated patterns such as registry.example/org/* (default: none, only the built-in workload)")
	fl.Int64Var(&f.MaxOutputBytes, "max-output-bytes", 0, "largest output one job may leave for the store, in bytes; more fails it with output_too_large (default 4 GiB)")
	fl.StringVar(&f.ObjectStore, "object-store", "", "s3://bucket?endpoint=...&region=..., gs://bucket or file:///path ($PWMESH_OBJECT_STORE)")
	fl.StringVar(&f.ClusterKeyFile, "cluster-key", "", "file with the shared cluster secret ($PWMESH_CLUSTER_KEY)")
	fl.StringVar(&f.BootstrapToken, "bootstrap-token", "", "admin API key on first bootstrap; generated into <data-dir>/bootstrap-token when empty ($PWMESH_BOOTSTRAP_TOKEN)")
	fl.StringVar(&f.MasterKeyFile, "master-key-file", "", "file of master keys (\"ID HEX\" lines, the first active) that wrap tenants' data keys; default: derived from --cluster-key ($PWMESH_MASTER_KEY_FILE)")
	fl.StringVar(&f.TLSCert, "tls-cert", "", "the API's PEM certificate `FILE`; with --tls-key, the API and UI are served over HTTPS only; read again when the file changes (pwmesh tls cert create makes one) ($PWMESH_TLS_CERT)")
	fl.StringVar(&f.TLSKey, "tls-key", "", "the PEM private key `FILE` of --tls-cert ($PWMESH_TLS_KEY)")
	fl.StringVar(&f.OIDCIssuer, "oidc-issuer", "", "issuer `URL` of the OpenID Connect provider people sign in to the web UI and `pwmesh login` through (docs/oidc.md) ($PWMESH_OIDC_ISSUER)")
	fl.StringVar(&f.OIDCClientID, "oidc-client-id", "", "the client `ID` this mesh is registered under at the provider ($PWMESH_OIDC_CLIENT_ID)")
	fl.StringVar(&f.OIDCClientSecretFile, "oidc-client-secret-file", "", "`FILE` holding the client's secret (none: a public client, PKCE alone) ($PWMESH_OIDC_CLIENT_SECRET_FILE)")
	fl.StringVar(&f.OIDCTenantClaim, "oidc-tenant-claim", "", "the ID-token claim `NAME` whose value is the user's tenant (default pwmesh_tenant) ($PWMESH_OIDC_TENANT_CLAIM)")
	fl.StringVar(&f.OIDCAdminGroup, "oidc-admin-group", "", "members of the group `NAME` (the ID token's groups claim) are admins (default: none) ($PWMESH_OIDC_ADMIN_GROUP)")
	fl.StringVar(&f.ExternalURL, "external-url", "", "the `URL` people reach this node at, for sign-in redirects and links (default: from --http, https with --tls-cert) ($PWMESH_EXTERNAL_URL)")
	fl.IntVar(&f.Replicas, "replicas", 0, "copies of every bundle and dataset on distinct nodes, set when the cluster is first bootstrapped (default 2)")
	fl.StringVar(&configFile, "config", "", "JSON file with the same settings (keys as in the flags, with _ for -)")
	fl.IntVar(&f.Slots, "slots", 0, "CPU jobs run at once on this node (default: number of CPUs)")
	fl.DurationVar(&leaseTTL, "lease-ttl", time.Duration(f.LeaseTTL), "job lease length; a runner silent this long loses its job")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.Scaler, "scaler", f.Scaler, "how the leader adds and removes GPU workers: none, docker (worker containers of pwmesh-node:latest on this machine) or exec:CMD (CMD reads one JSON request on stdin; docs/scaling.md) ($PWMESH_SCALER)")
	fl.IntVar(&f.ScalerMin, "scaler-min", f.ScalerMin, "fewest managed workers the scaler keeps")
	fl.IntVar(&f.ScalerMax, "scaler-max", f.ScalerMax, "most managed workers the scaler starts")
	fl.DurationVar(&scalerIdle, "scaler-idle", time.Duration(f.ScalerIdle), "how long a managed worker may sit idle before the scaler drains and removes it")
	fl.DurationVar(&scalerCooldown, "scaler-cooldown", time.Duration(f.ScalerCooldown), "least time between two scaling actions of one kind of worker, and before a removal after an addition")
	fl.StringVar(&f.ScalerImage, "scaler-image", "", "--scaler docker: the node image workers run (default pwmesh-node:latest, built from bin/pwmesh-static when missing)")
	fl.BoolVar(&f.ScalerManaged, "scaler-managed", false, "this worker was started by a scaler: only such workers are ever removed by one")
	return cmd
}

// runAgent runs a node until ctx ends. Everything it writes to stderr is
// one JSON object a line (logs.go), the node's own logs, Raft's and
// libp2p's among them; only settings refused before the node starts are a
// "pwmesh: ..." message (exit 2). A failure once it started is logged
// ("agent failed") and exits 1.
func runAgent(ctx context.Context, cfg node.Config, level slog.Level, stdout, stderr io.Writer) error {
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	logs := routeProcessLogs(logger, level)
	defer logs.Close()
	cfg.Logger = logger
	cfg.LogLevel = level.String() // Raft's, through logger
	cfg.Version, cfg.Commit = version, commit
	cfg.Ready = func(info node.Info) {
		fmt.Fprintf(stdout, "pwmesh node %s is ready\n", info.NodeID)
		fmt.Fprintf(stdout, "  API:         %s\n", info.APIURL)
		fmt.Fprintf(stdout, "  Web UI:      %s\n", info.UIURL)
		if info.TokenFile != "" {
			abs, err := filepath.Abs(info.TokenFile)
			if err != nil {
				abs = info.TokenFile
			}
			fmt.Fprintf(stdout, "  Admin token: %s\n", abs)
			fmt.Fprintf(stdout, "  Try:         export PWMESH_ADDR=%s PWMESH_TOKEN=$(cat %s); pwmesh nodes\n", info.APIURL, abs)
		} else {
			fmt.Fprintf(stdout, "  Admin token: the --bootstrap-token you gave\n")
		}
	}
	n, err := node.New(cfg)
	var bad *node.ConfigError
	if errors.As(err, &bad) {
		return usageError{bad} // exit 2: the settings must change
	}
	if err == nil {
		// libp2p's lines, too, name the node from now on.
		logger = logger.With("node_id", n.ID())
		logs.Use(logger)
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = n.Run(ctx)
	}
	if err != nil {
		logger.Error("agent failed", "err", err)
		return &exitError{code: 1}
	}
	return nil
}
