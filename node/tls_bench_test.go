package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node"
	"github.com/pwmesh/pwmesh/node/tlsutil"
)

// startDevNode starts a one-node dev mesh (with the TLS pair in tlsFiles
// when given) and returns its API URL once it is ready.
func startDevNode(b *testing.B, token string, tlsFiles ...string) string {
	b.Helper()
	cfg := node.Defaults()
	cfg.Dev = true
	cfg.DataDir = b.TempDir()
	cfg.HTTPAddr, cfg.GossipPort, cfg.P2PPort = "127.0.0.1:0", 0, 0
	cfg.GPUs, cfg.Executor = "none", "process"
	cfg.BootstrapToken = token
	if len(tlsFiles) == 2 {
		cfg.TLSCert, cfg.TLSKey = tlsFiles[0], tlsFiles[1]
	}
	ready := make(chan node.Info, 1)
	cfg.Ready = func(i node.Info) { ready <- i }
	n, err := node.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("node run: %v", err)
		}
	})
	select {
	case i := <-ready:
		return i.APIURL
	case err := <-done:
		b.Fatalf("node stopped before it was ready: %v", err)
	case <-time.After(time.Minute):
		b.Fatal("node not ready within a minute")
	}
	return ""
}

// BenchmarkSubmitTLS measures POST /jobs, answered (202) once the job is
// committed, on two dev nodes side by side, one over plain HTTP and one
// over HTTPS, each with a kept-alive connection and with a new connection
// per request (a TCP and, for HTTPS, a TLS 1.3 handshake each). Every
// iteration sends one request of each kind, in turn, so that the load of a
// shared machine weighs on all four alike. The jobs ask for a GPU the nodes
// lack, so they stay queued and no job competes for the CPUs.
func BenchmarkSubmitTLS(b *testing.B) {
	dir := b.TempDir()
	ca, err := tlsutil.NewCA(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	p, err := tlsutil.NewCert(ca, tlsutil.CertRequest{Name: "bench", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Days: 1, Now: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	cert, key := filepath.Join(dir, "bench.pem"), filepath.Join(dir, "bench-key.pem")
	if err := tlsutil.WriteFiles(p, cert, key); err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.Cert)

	const token = "bench-admin-token"
	plainURL, tlsURL := startDevNode(b, token), startDevNode(b, token, cert, key)
	type variant struct {
		name string
		url  string
		hc   *http.Client
		ds   []time.Duration
	}
	client := func(keepAlive bool) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: !keepAlive}
		b.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	vs := []*variant{
		{name: "http", url: plainURL, hc: client(true)},
		{name: "https", url: tlsURL, hc: client(true)},
		{name: "http-new-conn", url: plainURL, hc: client(false)},
		{name: "https-new-conn", url: tlsURL, hc: client(false)},
	}
	body := []byte(`{"type":"gpu_selftest","resources":{"gpus":1}}`)
	submit := func(v *variant) {
		req, err := http.NewRequest("POST", v.url+"/jobs", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := v.hc.Do(req)
		if err != nil {
			b.Fatalf("%s: %v", v.name, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		v.ds = append(v.ds, time.Since(start))
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("%s: POST /jobs: %d", v.name, resp.StatusCode)
		}
	}
	for _, v := range vs { // warm: the first connection of each kept-alive client
		submit(v)
		v.ds = v.ds[:0]
	}
	i := 0
	for b.Loop() {
		for k := range vs {
			submit(vs[(i+k)%len(vs)])
		}
		i++
	}
	for _, v := range vs {
		reportPercentiles(b, v.ds, v.name)
	}
}
