package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pair writes a CA and a certificate for 127.0.0.1 signed by it into dir.
func pair(t *testing.T, dir, name string, ca PEM, notAfterDays int, now time.Time) (certFile, keyFile string) {
	t.Helper()
	p, err := NewCert(ca, CertRequest{Name: name, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Days: notAfterDays, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := WriteFiles(p, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func newCA(t *testing.T) (PEM, *x509.CertPool) {
	t.Helper()
	ca, err := NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.Cert)
	return ca, pool
}

// serverCN starts an HTTPS server with cfg and returns a function that
// connects and returns the common name of the certificate served.
func serverCN(t *testing.T, cfg *tls.Config, pool *x509.CertPool) func() string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	// Served through cfg alone (StartTLS would add a certificate of its own).
	srv.Listener = tls.NewListener(srv.Listener, cfg)
	srv.Start()
	t.Cleanup(srv.Close)
	url := "https://" + srv.Listener.Addr().String()
	return func() string {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
}

func TestServerConfigReloadsOnChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, pool := newCA(t)
	now := time.Now()
	cert, key := pair(t, dir, "first", ca, 30, now)
	cfg, err := ServerConfig(cert, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", cfg.MinVersion)
	}
	cn := serverCN(t, cfg, pool)
	if got := cn(); got != "first" {
		t.Fatalf("served %q, want first", got)
	}

	// A rotation: the new pair is renamed over the old files.
	c2, k2 := pair(t, dir, "second", ca, 30, now)
	if err := os.Rename(k2, key); err != nil {
		t.Fatal(err)
	}
	// Half done (the key is new, the certificate old): the old pair stays.
	if got := cn(); got != "first" {
		t.Fatalf("mid-rotation served %q, want the previous certificate", got)
	}
	if err := os.Rename(c2, cert); err != nil {
		t.Fatal(err)
	}
	// Modification times may tie with the first pair's on coarse file
	// systems; the size differs by the common name, so the stamp moves.
	if got := cn(); got != "second" {
		t.Fatalf("after rotation served %q, want second", got)
	}
}

func TestServerConfigRefusesBadPairs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _ := newCA(t)
	now := time.Now()
	c1, _ := pair(t, dir, "one", ca, 30, now)
	_, k2 := pair(t, dir, "two", ca, 30, now)
	if _, err := ServerConfig(c1, k2, nil); err == nil {
		t.Error("a certificate with another's key was accepted")
	}
	if _, err := ServerConfig(c1, filepath.Join(dir, "missing.pem"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing key: %v", err)
	}
	old, oldKey := pair(t, dir, "old", ca, 1, now.Add(-48*time.Hour))
	if _, err := ServerConfig(old, oldKey, nil); !errors.Is(err, ErrExpired) {
		t.Errorf("expired certificate: %v, want ErrExpired", err)
	}
}

func TestCertPool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _ := newCA(t)
	f := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(f, ca.Cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CertPool(f); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CertPool(f); !errors.Is(err, ErrNoCertificates) {
		t.Errorf("garbage CA file: %v", err)
	}
}
