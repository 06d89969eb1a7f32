package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func parseCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewCA(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, err := NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, ca.Cert)
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA %v valid %v maxpath %d zero %v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("key usage %v lacks cert sign", c.KeyUsage)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if !c.NotAfter.Equal(now.Add(CAValidity)) || c.NotBefore.After(now) {
		t.Errorf("validity %s..%s, want from before %s for 5 years", c.NotBefore, c.NotAfter, now)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
}

func TestNewCert(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca, err := NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewCert(ca, CertRequest{Name: "node1", IPs: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("::1")}, DNS: []string{"node1.example.com"}, Days: 30, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, p.Cert)
	if c.IsCA || c.Subject.CommonName != "node1" {
		t.Errorf("leaf: IsCA %v CN %q", c.IsCA, c.Subject.CommonName)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) || !c.IPAddresses[1].Equal(net.ParseIP("::1")) {
		t.Errorf("IP SANs %v", c.IPAddresses)
	}
	if !slices.Equal(c.DNSNames, []string{"node1.example.com"}) {
		t.Errorf("DNS SANs %v: want exactly what was asked (no localhost added)", c.DNSNames)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("key usage %v ext %v", c.KeyUsage, c.ExtKeyUsage)
	}
	if got := c.NotAfter.Sub(now); got < 30*24*time.Hour-time.Second || got > 30*24*time.Hour+time.Second {
		t.Errorf("valid for %s, want 30 days", got)
	}
	pool := x509.NewCertPool()
	pool.AddCert(parseCert(t, ca.Cert))
	for _, host := range []string{"10.0.0.1", "::1", "node1.example.com"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err == nil {
		t.Error("verified for localhost, which was not asked")
	}
}

func TestNewCertRefuses(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca, err := NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	ip := []net.IP{net.ParseIP("127.0.0.1")}
	if _, err := NewCert(ca, CertRequest{Name: "n", Days: 1, Now: now}); !errors.Is(err, ErrNoNames) {
		t.Errorf("no names: %v", err)
	}
	if _, err := NewCert(ca, CertRequest{Name: "n", IPs: ip, Days: 6 * 365, Now: now}); err == nil {
		t.Error("a certificate outliving its CA was made")
	}
	if _, err := NewCert(PEM{Cert: ca.Cert, Key: other.Key}, CertRequest{Name: "n", IPs: ip, Days: 1, Now: now}); err == nil {
		t.Error("signed with a key that is not the CA's")
	}
	leaf, err := NewCert(ca, CertRequest{Name: "n", IPs: ip, Days: 1, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCert(leaf, CertRequest{Name: "m", IPs: ip, Days: 1, Now: now}); err == nil {
		t.Error("a leaf certificate signed another")
	}
}

func TestWriteFilesModesAndNoOverwrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "a.pem"), filepath.Join(dir, "a-key.pem")
	if err := WriteFiles(PEM{Cert: []byte("C"), Key: []byte("K")}, cert, key); err != nil {
		t.Fatal(err)
	}
	for f, mode := range map[string]os.FileMode{cert: 0o644, key: 0o600} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v mode %v, want %v", f, err, st.Mode().Perm(), mode)
		}
	}
	// Either file existing refuses both, and leaves them as they were.
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(PEM{Cert: []byte("C2"), Key: []byte("K2")}, cert, key); !errors.Is(err, os.ErrExist) {
		t.Fatalf("overwrite: %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(cert); string(b) != "C" {
		t.Errorf("certificate changed to %q", b)
	}
	if _, err := os.Stat(key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key written although the certificate existed: %v", err)
	}
}
