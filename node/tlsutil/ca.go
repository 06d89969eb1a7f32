package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// File names `pwmesh tls ca create` writes and `tls cert create` reads by
// default.
const (
	CAFile    = "pwmesh-agent-ca.pem"
	CAKeyFile = "pwmesh-agent-ca-key.pem"
)

// CAValidity is how long a CA made by NewCA is valid.
const CAValidity = 5 * 365 * 24 * time.Hour

// backdate is how far NotBefore lies before now, for clocks a little behind.
const backdate = 5 * time.Minute

// ErrNoNames is returned for a node certificate that would name no address.
var ErrNoNames = errors.New("tlsutil: a certificate needs at least one IP or DNS name")

// PEM is a certificate and its private key, PEM-encoded.
type PEM struct {
	Cert, Key []byte
}

// NewCA makes a self-signed CA certificate and key (ECDSA P-256), valid
// from now for CAValidity, that may sign only end-entity certificates.
func NewCA(now time.Time) (PEM, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PEM{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return PEM{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pwmesh agent CA " + serial.Text(16)[:8], Organization: []string{"pwmesh"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return PEM{}, fmt.Errorf("tlsutil: create CA: %w", err)
	}
	return encode(der, key)
}

// CertRequest describes a node certificate.
type CertRequest struct {
	Name string    // the subject's common name, e.g. node1
	IPs  []net.IP  // IP addresses clients reach the node at
	DNS  []string  // DNS names clients reach the node at
	Days int       // validity in days from now
	Now  time.Time // the time of issue
}

// NewCert makes a certificate for a node's API (server and client
// authentication, ECDSA P-256) signed by the CA in ca. It names exactly
// req.IPs and req.DNS, at least one of them, and may not outlive the CA.
func NewCert(ca PEM, req CertRequest) (PEM, error) {
	if len(req.IPs) == 0 && len(req.DNS) == 0 {
		return PEM{}, ErrNoNames
	}
	if req.Days < 1 {
		return PEM{}, fmt.Errorf("tlsutil: validity of %d days: want at least 1", req.Days)
	}
	caCert, caKey, err := parsePair(ca)
	if err != nil {
		return PEM{}, err
	}
	if !caCert.IsCA {
		return PEM{}, fmt.Errorf("tlsutil: the CA certificate %q is not a CA", caCert.Subject.CommonName)
	}
	notAfter := req.Now.Add(time.Duration(req.Days) * 24 * time.Hour)
	if notAfter.After(caCert.NotAfter) {
		return PEM{}, fmt.Errorf("tlsutil: a certificate valid %d days would outlive its CA (valid until %s): ask for fewer --days", req.Days, caCert.NotAfter.UTC().Format(time.DateOnly))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PEM{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return PEM{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.Name, Organization: []string{"pwmesh"}},
		NotBefore:             req.Now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IPAddresses:           req.IPs,
		DNSNames:              req.DNS,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return PEM{}, fmt.Errorf("tlsutil: create certificate: %w", err)
	}
	return encode(der, key)
}

// parsePair reads a PEM certificate and its ECDSA (or any crypto.Signer)
// key and checks that they belong together.
func parsePair(p PEM) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(p.Cert)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("tlsutil: CA certificate: %w", ErrNoCertificates)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: CA certificate: %w", err)
	}
	kb, _ := pem.Decode(p.Key)
	if kb == nil {
		return nil, nil, errors.New("tlsutil: CA key: no PEM block")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("tlsutil: CA key of type %T cannot sign", key)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("tlsutil: the CA key does not belong to the CA certificate")
	}
	return cert, signer, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (PEM, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return PEM{}, err
	}
	return PEM{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	}, nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// WriteFiles writes a certificate (mode 0644) and its key (mode 0600) to
// new files; it refuses, writing nothing, when either exists already.
func WriteFiles(p PEM, certPath, keyPath string) error {
	for _, f := range []string{certPath, keyPath} {
		if _, err := os.Lstat(f); err == nil {
			return fmt.Errorf("%w: %s (it is never overwritten; move it away to make a new one)", os.ErrExist, f)
		}
	}
	if err := writeNew(keyPath, p.Key, 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, p.Cert, 0o644); err != nil {
		_ = os.Remove(keyPath)
		return err
	}
	return nil
}

// writeNew creates path with mode (never replacing a file) and syncs it.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil { // whatever the umask
		f.Close()
		_ = os.Remove(path)
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}
