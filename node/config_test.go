package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsAndDev(t *testing.T) {
	t.Parallel()
	c := Defaults()
	c.Dev = true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(c.DataDir) || filepath.Base(c.DataDir) != "pwmesh-data" {
		t.Fatalf("data dir %q, want the default made absolute", c.DataDir)
	}
	if c.Bind != "127.0.0.1" || c.BootstrapExpect != 1 || c.HTTPAddr != "127.0.0.1:8080" || time.Duration(c.LeaseTTL) != 9*time.Second {
		t.Fatalf("dev defaults: %+v", c)
	}
	// A dev node, its group's only voter, keeps fast Raft timings; any
	// other node leaves them to scheduler.RaftConfig's defaults.
	if c.RaftHeartbeat != 200*time.Millisecond || c.RaftElection != 200*time.Millisecond || c.RaftLeaderLease != 100*time.Millisecond {
		t.Fatalf("dev Raft timings %v/%v/%v, want 200/200/100 ms", c.RaftHeartbeat, c.RaftElection, c.RaftLeaderLease)
	}
	p := Defaults()
	p.ClusterKeyFile = "cluster.key"
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.RaftHeartbeat != 0 || p.RaftElection != 0 || p.RaftLeaderLease != 0 {
		t.Fatalf("Raft timings %v/%v/%v outside --dev, want zero (the defaults)", p.RaftHeartbeat, p.RaftElection, p.RaftLeaderLease)
	}
}

func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "pwmesh.json")
	if err := os.WriteFile(file, []byte(`{"data_dir":"/from/file","region":"eu","http":"127.0.0.1:9000","lease_ttl":"5s"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	if err := c.LoadFile(file); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvRegion: "us", EnvJoin: "a:1, b:2"}
	c.LoadEnv(func(k string) string { return env[k] })
	if c.DataDir != "/from/file" || c.Region != "us" || c.HTTPAddr != "127.0.0.1:9000" || time.Duration(c.LeaseTTL) != 5*time.Second {
		t.Fatalf("file then env: %+v", c)
	}
	if len(c.Join) != 2 || c.Join[1] != "b:2" {
		t.Fatalf("join from env: %q", c.Join)
	}
}

func TestConfigRefusesBadValues(t *testing.T) {
	t.Parallel()
	for name, mutate := range map[string]func(*Config){
		"http":     func(c *Config) { c.HTTPAddr = "nonsense" },
		"bind":     func(c *Config) { c.Bind = "not-an-ip" },
		"port":     func(c *Config) { c.P2PPort = 70000 },
		"voter":    func(c *Config) { c.Voter = "sometimes" },
		"region":   func(c *Config) { c.Region = "a b" },
		"gpus":     func(c *Config) { c.GPUs = "lots" },
		"executor": func(c *Config) { c.Executor = "vm" },
		"objects":  func(c *Config) { c.ObjectStore = "ftp://x" },
		"expect":   func(c *Config) { c.BootstrapExpect = 0 },
		"dev-join": func(c *Config) { c.Join = []string{"127.0.0.1:7946"} },
		// The scaler: a known mode, sane bounds, a cluster key for the
		// workers it starts, and a node that can lead.
		"scaler":          func(c *Config) { c.Scaler, c.ClusterKeyFile = "kubernetes", "k" },
		"scaler-exec":     func(c *Config) { c.Scaler, c.ClusterKeyFile = "exec:  ", "k" },
		"scaler-key":      func(c *Config) { c.Scaler = "docker" },
		"scaler-bounds":   func(c *Config) { c.ScalerMin, c.ScalerMax = 3, 2 },
		"scaler-negative": func(c *Config) { c.ScalerMin = -1 },
		"scaler-idle":     func(c *Config) { c.ScalerIdle = 0 },
		"scaler-cooldown": func(c *Config) { c.ScalerCooldown = Duration(-time.Second) },
		"scaler-worker":   func(c *Config) { c.Scaler, c.ClusterKeyFile, c.Voter = "exec:/bin/true", "k", "never" },
		"managed-voter":   func(c *Config) { c.ScalerManaged = true },
	} {
		c := Defaults()
		c.Dev = true
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: bad value accepted", name)
		}
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"dat_dir":"x"}`), 0o644)
	c := Defaults()
	if err := c.LoadFile(bad); err == nil || !strings.Contains(err.Error(), "dat_dir") {
		t.Errorf("unknown key in config file: %v", err)
	}
}

func TestLoadOrCreateKeepsSecret(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "bootstrap-token")
	a, err := loadOrCreate(p, func() string { return "first" })
	if err != nil || a != "first" {
		t.Fatal(a, err)
	}
	b, _ := loadOrCreate(p, func() string { return "second" })
	if b != "first" {
		t.Fatalf("secret regenerated: %q", b)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
}

func TestConfigRequiresClusterKeyOutsideDev(t *testing.T) {
	t.Parallel()
	c := Defaults()
	c.MasterKeyFile = "master.keys" // a master key alone does not close the mesh
	err := c.Validate()
	var bad *ConfigError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), "--cluster-key") || !strings.Contains(err.Error(), "pwmesh keygen") {
		t.Fatalf("no cluster key outside --dev: %v, want a ConfigError naming --cluster-key and pwmesh keygen", err)
	}
	c = Defaults()
	c.ClusterKeyFile = "cluster.key"
	if err := c.Validate(); err != nil {
		t.Fatalf("with a cluster key: %v", err)
	}
}

// TestConfigScaler: the scaler's defaults are the contract's, and a
// well-formed setting passes.
func TestConfigScaler(t *testing.T) {
	t.Parallel()
	c := Defaults()
	if c.Scaler != "none" || c.ScalerMin != 0 || c.ScalerMax != 4 || time.Duration(c.ScalerIdle) != 5*time.Minute || time.Duration(c.ScalerCooldown) != time.Minute || c.ScalerManaged {
		t.Fatalf("scaler defaults: %+v", c)
	}
	c.Dev, c.ClusterKeyFile = true, "cluster.key"
	c.LoadEnv(func(k string) string {
		if k == EnvScaler {
			return "exec:/usr/local/bin/gpu-workers --zone a"
		}
		return ""
	})
	if err := c.Validate(); err != nil || c.Scaler != "exec:/usr/local/bin/gpu-workers --zone a" {
		t.Fatalf("PWMESH_SCALER: %q, %v", c.Scaler, err)
	}
}
