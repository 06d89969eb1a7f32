package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/tlsutil"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: want exactly one PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantMode(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), mode)
	}
}

func TestTLSCACreateAndCertCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, caKey := filepath.Join(dir, tlsutil.CAFile), filepath.Join(dir, tlsutil.CAKeyFile)
	cli(t, "", nil, "tls", "ca", "create", "--dir", dir).wantCode(t, 0)
	wantMode(t, caFile, 0o644)
	wantMode(t, caKey, 0o600)
	ca := readCert(t, caFile)
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA %v key usage %v", ca.IsCA, ca.KeyUsage)
	}
	if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", ca.PublicKey)
	}
	if years := ca.NotAfter.Sub(ca.NotBefore).Hours() / 24 / 365; years < 4.99 || years > 5.01 {
		t.Errorf("CA valid %.2f years, want 5", years)
	}
	keyBefore, _ := os.ReadFile(caKey)

	// A second ca create refuses and leaves both files alone.
	r := cli(t, "", nil, "tls", "ca", "create", "--dir", dir)
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "never overwritten") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if keyAfter, _ := os.ReadFile(caKey); !bytes.Equal(keyBefore, keyAfter) {
		t.Error("the CA key was overwritten")
	}

	r = cli(t, "", nil, "tls", "cert", "create", "--ca", caFile, "--ca-key", caKey, "--name", "node1",
		"--ip", "10.0.0.1", "--ip", "127.0.0.1", "--dns", "node1.example.com", "--days", "10", "--dir", dir)
	r.wantCode(t, 0)
	certFile, keyFile := filepath.Join(dir, "node1.pem"), filepath.Join(dir, "node1-key.pem")
	if !strings.Contains(r.stdout, "--tls-cert "+certFile+" --tls-key "+keyFile) {
		t.Errorf("stdout does not say how to start the node: %q", r.stdout)
	}
	wantMode(t, certFile, 0o644)
	wantMode(t, keyFile, 0o600)
	c := readCert(t, certFile)
	if c.IsCA || c.Subject.CommonName != "node1" {
		t.Errorf("node cert: IsCA %v CN %q", c.IsCA, c.Subject.CommonName)
	}
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"10.0.0.1", "127.0.0.1"}) || !slices.Equal(c.DNSNames, []string{"node1.example.com"}) {
		t.Errorf("SANs: IPs %v DNS %v, want exactly those asked", ips, c.DNSNames)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("key usage %v ext %v", c.KeyUsage, c.ExtKeyUsage)
	}
	if d := c.NotAfter.Sub(time.Now()); d < 9*24*time.Hour || d > 10*24*time.Hour {
		t.Errorf("valid for %s more, want 10 days", d)
	}
	if err := c.CheckSignatureFrom(ca); err != nil {
		t.Errorf("node cert not signed by the CA: %v", err)
	}
	if _, err := tlsutil.ServerConfig(certFile, keyFile, nil); err != nil {
		t.Errorf("the pair does not load as --tls-cert/--tls-key: %v", err)
	}

	r = cli(t, "", nil, "tls", "cert", "create", "--ca", caFile, "--ca-key", caKey, "--name", "node1", "--ip", "10.0.0.2", "--dir", dir)
	r.wantCode(t, 1)
	if c2 := readCert(t, certFile); !c2.Equal(c) {
		t.Error("node1.pem was overwritten")
	}
}

func TestTLSCertCreateUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cli(t, "", nil, "tls", "ca", "create", "--dir", dir).wantCode(t, 0)
	base := []string{"tls", "cert", "create", "--dir", dir, "--ca", filepath.Join(dir, tlsutil.CAFile), "--ca-key", filepath.Join(dir, tlsutil.CAKeyFile)}
	for _, extra := range [][]string{
		{"--ip", "127.0.0.1"},                    // no --name
		{"--name", "n1"},                         // no address
		{"--name", "n1", "--ip", "not-an-ip"},    // bad IP
		{"--name", "../n1", "--ip", "127.0.0.1"}, // a path, not a name
		{"--name", "n1", "--dns", "a b"},         // bad DNS name
		{"--name", "n1", "--ip", "::1", "--days", "0"},
	} {
		r := cli(t, "", nil, append(slices.Clone(base), extra...)...)
		if r.code != 2 {
			t.Errorf("%q: exit %d, want 2\nstderr: %s", extra, r.code, r.stderr)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("refused commands left files: %v", ents)
	}
	r := cli(t, "", nil, "tls", "cert", "create", "--dir", dir, "--ca", filepath.Join(dir, "nope.pem"), "--name", "n1", "--ip", "::1")
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "pwmesh tls ca create") {
		t.Errorf("a missing CA does not say how to make one: %q", r.stderr)
	}
}

// tlsAPI is fakeAPI over HTTPS; it returns the URL and a CA file that
// trusts the server's certificate (for 127.0.0.1).
func tlsAPI(t *testing.T, routes map[string]http.HandlerFunc) (url, caFile string) {
	t.Helper()
	srv := httptest.NewTLSServer(apiMux(routes))
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL, caFile
}

func TestCACertTrust(t *testing.T) {
	t.Parallel()
	nodes := map[string]http.HandlerFunc{"GET /nodes": func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"nodes": []map[string]any{{"id": "node-a", "region": "local", "role": "leader", "state": "ready"}}})
	}}
	addr, caFile := tlsAPI(t, nodes)

	cli(t, addr, map[string]string{envCACert: caFile}, "nodes").wantCode(t, 0)
	cli(t, addr, nil, "nodes", "--cacert", caFile).wantCode(t, 0)

	r := cli(t, addr, nil, "nodes") // the system's CAs do not know this one
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "set PWMESH_CACERT to the CA that signed the node's certificate") {
		t.Errorf("untrusted certificate: stderr = %q", r.stderr)
	}
	otherCA := t.TempDir() // a CA that did not sign the node's certificate
	cli(t, "", nil, "tls", "ca", "create", "--dir", otherCA).wantCode(t, 0)
	r = cli(t, addr, map[string]string{envCACert: filepath.Join(otherCA, tlsutil.CAFile)}, "nodes")
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "set PWMESH_CACERT to the CA that signed the node's certificate") {
		t.Errorf("wrong CA: stderr = %q", r.stderr)
	}

	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = cli(t, addr, map[string]string{envCACert: bad}, "nodes")
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "PWMESH_CACERT") || !strings.Contains(r.stderr, bad) {
		t.Errorf("unreadable CA file: stderr = %q", r.stderr)
	}

	// https:// to a plain HTTP node says to use http://.
	plain := fakeAPI(t, nodes)
	r = cli(t, "https://"+strings.TrimPrefix(plain, "http://"), map[string]string{envCACert: caFile}, "nodes")
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "the node serves plain HTTP") {
		t.Errorf("https to plain HTTP: stderr = %q", r.stderr)
	}
}
