package node

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The sign-in settings come from the file, the environment and flags (in
// that order of precedence) under the names CONTRACT.md §2 gives them.
func TestConfigOIDCSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "pwmesh.json")
	if err := os.WriteFile(file, []byte(`{"dev": true, "oidc_issuer": "https://file.example", "oidc_client_id": "from-file",
		"oidc_client_secret_file": "`+secret+`", "oidc_tenant_claim": "org", "oidc_admin_group": "ops", "external_url": "https://mesh.example/"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	if err := c.LoadFile(file); err != nil {
		t.Fatal(err)
	}
	c.LoadEnv(func(k string) string {
		return map[string]string{EnvOIDCIssuer: "https://idp.example/realms/x", EnvExternalURL: "https://env.example"}[k]
	})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.OIDCIssuer != "https://idp.example/realms/x" || c.OIDCClientID != "from-file" || c.oidcClientSecret != "s3cret" ||
		c.OIDCTenantClaim != "org" || c.OIDCAdminGroup != "ops" || c.ExternalURL != "https://env.example" {
		t.Fatalf("%+v", c)
	}
	// Defaults: no sign-in, the pwmesh_tenant claim.
	d := Defaults()
	d.Dev = true
	if err := d.Validate(); err != nil || d.OIDCIssuer != "" || d.OIDCTenantClaim != "pwmesh_tenant" {
		t.Fatalf("defaults: %+v %v", d, err)
	}
}

func TestConfigRefusesBadOIDCSettings(t *testing.T) {
	t.Parallel()
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.OIDCClientID = "x" }, "need --oidc-issuer"},
		{func(c *Config) { c.OIDCAdminGroup = "ops" }, "need --oidc-issuer"},
		{func(c *Config) { c.OIDCIssuer = "idp.example" }, "--oidc-issuer"},
		{func(c *Config) { c.OIDCIssuer, c.OIDCClientID = "http://idp.example", "x" }, "want https"},
		{func(c *Config) { c.OIDCIssuer = "https://idp.example" }, "--oidc-client-id is required"},
		{func(c *Config) {
			c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecretFile = "https://idp.example", "x", filepath.Join(t.TempDir(), "none")
		}, "--oidc-client-secret-file"},
		{func(c *Config) {
			c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecretFile = "https://idp.example", "x", empty
		}, "is empty"},
		{func(c *Config) { c.ExternalURL = "mesh.example" }, "--external-url"},
		{func(c *Config) { c.ExternalURL = "https://mesh.example/?a=b" }, "--external-url"},
		{func(c *Config) { c.ExternalURL = "https://mesh.example/pwmesh" }, "want no path"},
	} {
		cfg := Defaults()
		cfg.Dev = true
		c.set(&cfg)
		err := cfg.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a ConfigError naming %q", cfg, err, c.want)
		}
	}
	// A provider on this machine may speak plain HTTP (tests, demos).
	cfg := Defaults()
	cfg.Dev = true
	cfg.OIDCIssuer, cfg.OIDCClientID = "http://127.0.0.1:5556/dex", "x"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestExternalURLDefaultsFromTheListenAddress(t *testing.T) {
	t.Parallel()
	n := &Node{}
	for listening, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		"0.0.0.0:8080":   "http://localhost:8080",
		"[::]:8443":      "http://localhost:8443",
		"[::1]:9000":     "http://[::1]:9000",
	} {
		if got := n.externalURL(listening); got != want {
			t.Errorf("%s: %s, want %s", listening, got, want)
		}
	}
	n.cfg.ExternalURL = "https://mesh.example"
	if got := n.externalURL("0.0.0.0:8080"); got != "https://mesh.example" {
		t.Fatal(got)
	}
	n = &Node{tls: &tls.Config{}}
	if got := n.externalURL("0.0.0.0:8443"); got != "https://localhost:8443" {
		t.Fatalf("under TLS: %s", got)
	}
}
