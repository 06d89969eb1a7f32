package node

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/tlsutil"
)

func TestConfigTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := tlsutil.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := tlsutil.NewCert(ca, tlsutil.CertRequest{Name: "n", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Days: 1, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "n.pem"), filepath.Join(dir, "n-key.pem")
	if err := tlsutil.WriteFiles(p, cert, key); err != nil {
		t.Fatal(err)
	}
	caCert, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := tlsutil.WriteFiles(ca, caCert, caKey); err != nil {
		t.Fatal(err)
	}

	// From the config file, then the environment.
	file := filepath.Join(dir, "pwmesh.json")
	if err := os.WriteFile(file, []byte(`{"tls_cert":"`+cert+`","tls_key":"`+key+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.Dev = true
	if err := c.LoadFile(file); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.TLSCert != cert || c.TLSKey != key {
		t.Fatalf("pair from the config file: %v (%q, %q)", err, c.TLSCert, c.TLSKey)
	}
	env := map[string]string{EnvTLSCert: caCert, EnvTLSKey: caKey}
	c.LoadEnv(func(k string) string { return env[k] })
	if c.TLSCert != caCert || c.TLSKey != caKey {
		t.Fatalf("the environment did not override the file: %q %q", c.TLSCert, c.TLSKey)
	}

	for name, tc := range map[string]struct{ cert, key, want string }{
		"cert only":  {cert, "", "--tls-cert and --tls-key go together"},
		"key only":   {"", key, "--tls-cert and --tls-key go together"},
		"mismatch":   {cert, caKey, "--tls-cert/--tls-key"},
		"no such":    {filepath.Join(dir, "none.pem"), key, "--tls-cert/--tls-key"},
		"key as crt": {key, key, "--tls-cert/--tls-key"},
	} {
		c := Defaults()
		c.Dev = true
		c.TLSCert, c.TLSKey = tc.cert, tc.key
		err := c.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a ConfigError saying %q", name, err, tc.want)
		}
	}
}
