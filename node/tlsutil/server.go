package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ErrNoCertificates is returned for a CA file holding no PEM certificate.
var ErrNoCertificates = errors.New("tlsutil: no PEM certificate")

// ErrExpired is returned for a certificate past its NotAfter.
var ErrExpired = errors.New("tlsutil: certificate expired")

// ServerConfig returns the API's TLS settings for the certificate and key
// in certFile and keyFile: TLS 1.2 or later with Go's modern cipher suites.
// The pair is loaded now, so that a bad pair fails at start; afterwards
// every handshake checks the files' modification times and reads them
// again when they changed (a pair that does not load yet, say a rotation
// half written, keeps the previous certificate and logs a warning).
func ServerConfig(certFile, keyFile string, log *slog.Logger) (*tls.Config, error) {
	r, err := NewReloader(certFile, keyFile, log)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
	}, nil
}

// Reloader serves a certificate read from files, read again when they
// change. It is safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	stamp    fileStamp // of the pair in cert
	failed   fileStamp // of the last pair that did not load (not retried)
	failedOK bool
}

// fileStamp identifies a version of the two files.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// NewReloader loads the pair and returns its Reloader; an error names the
// file at fault.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	st, err := r.statFiles()
	if err != nil {
		return nil, err
	}
	c, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp = c, st
	return r, nil
}

// loadPair reads a certificate and its key and checks that the
// certificate is in date.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	if c.Leaf != nil && time.Now().After(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("TLS certificate %s expired on %s: %w", certFile, c.Leaf.NotAfter.UTC().Format(time.RFC3339), ErrExpired)
	}
	return &c, nil
}

func (r *Reloader) statFiles() (fileStamp, error) {
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("TLS certificate: %w", err)
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("TLS key: %w", err)
	}
	return fileStamp{certMod: ci.ModTime(), keyMod: ki.ModTime(), certSize: ci.Size(), keySize: ki.Size()}, nil
}

// GetCertificate is tls.Config.GetCertificate: the current pair, read
// again first when the files changed since it was loaded.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.statFiles()
	if err != nil || st == r.stamp || (r.failedOK && st == r.failed) {
		return r.cert, nil // a file moved away mid-rotation: keep serving
	}
	c, err := loadPair(r.certFile, r.keyFile)
	if err != nil {
		r.failed, r.failedOK = st, true
		r.log.Warn("TLS certificate changed but does not load; serving the previous one", "err", err)
		return r.cert, nil
	}
	r.cert, r.stamp, r.failedOK = c, st, false
	r.log.Info("TLS certificate reloaded", "cert", r.certFile)
	return r.cert, nil
}

// CertPool reads a PEM file of CA certificates (PWMESH_CACERT) into a pool.
func CertPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: %w", caFile, ErrNoCertificates)
	}
	return pool, nil
}
