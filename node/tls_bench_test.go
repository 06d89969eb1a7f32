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
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/node/tlsutil"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
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
// per request (a TCP and, for HTTPS, a TLS 1.3 handshake each), and on a
// 3-voter cluster (nodetest, plain HTTP, kept alive) with a tenant's key,
// sent to the leader and to a follower: the follower forwards the write
// over ApplyProtocol with the caller's key, which the leader looks up and
// authorises (FSM.Authorize) before it commits, and answers once its own
// replica holds the job. Every iteration sends one request of each kind,
// in turn, so that the load of a shared machine weighs on all six alike.
// The jobs ask for a GPU the nodes lack, so they stay queued and no job
// competes for the CPUs.
//
// On a loaded machine the cluster's short Raft timings may elect a new
// leader during the run: an iteration in which leadership moved, or a
// cluster request met no leader (503, sent again), keeps no cluster figure
// (its "leader" request may have been forwarded); the "leader-changes" and
// "cluster-503s" metrics say how often that happened.
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
	fc := startForwardingCluster(b)
	type variant struct {
		name string
		url  func() string
		key  string // the API key; the dev nodes' admin token by default
		hc   *http.Client
		ds   []time.Duration
		last time.Duration // this iteration's figure
	}
	client := func(keepAlive bool) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: !keepAlive}
		b.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	at := func(u string) func() string { return func() string { return u } }
	vs := []*variant{
		{name: "http", url: at(plainURL), hc: client(true)},
		{name: "https", url: at(tlsURL), hc: client(true)},
		{name: "http-new-conn", url: at(plainURL), hc: client(false)},
		{name: "https-new-conn", url: at(tlsURL), hc: client(false)},
		{name: "cluster-leader", url: func() string { return fc.leader.URL }, key: fc.key, hc: client(true)},
		{name: "cluster-forwarded", url: func() string { return fc.follower.URL }, key: fc.key, hc: client(true)},
	}
	body := []byte(`{"type":"gpu_selftest","resources":{"gpus":1}}`)
	submit := func(v *variant) {
		for try := 0; ; try++ {
			req, err := http.NewRequest("POST", v.url()+"/jobs", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			secret := token
			if v.key != "" {
				secret = v.key
			}
			req.Header.Set("Authorization", "Bearer "+secret)
			req.Header.Set("Content-Type", "application/json")
			start := time.Now()
			resp, err := v.hc.Do(req)
			if err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			v.last = time.Since(start)
			switch {
			case resp.StatusCode == http.StatusAccepted:
				return
			case resp.StatusCode == http.StatusServiceUnavailable && v.key != "" && try < 10:
				// An election: sent again, and the iteration's cluster
				// figures are dropped.
				fc.unavailable++
				fc.roles(b)
			default:
				b.Fatalf("%s: POST /jobs: %d %s", v.name, resp.StatusCode, answer)
			}
		}
	}
	for _, v := range vs { // warm: the first connection of each kept-alive client
		submit(v)
	}
	i := 0
	for b.Loop() {
		moves, unavailable := fc.moves, fc.unavailable
		fc.roles(b)
		for k := range vs {
			submit(vs[(i+k)%len(vs)])
		}
		fc.roles(b)
		for _, v := range vs {
			if v.key == "" || (fc.moves == moves && fc.unavailable == unavailable) {
				v.ds = append(v.ds, v.last)
			}
		}
		i++
	}
	for _, v := range vs {
		reportPercentiles(b, v.ds, v.name)
	}
	b.ReportMetric(float64(fc.moves), "leader-changes")
	b.ReportMetric(float64(fc.unavailable), "cluster-503s")
}

// forwardingCluster is 3 voters (nodetest), a paid key of tenant "bench"
// that every replica accepts, and who leads and who follows now.
type forwardingCluster struct {
	c                *nodetest.Cluster
	key              string
	leader, follower *nodetest.Node
	moves            int // leader changes seen since the start
	unavailable      int // 503 answers (no leader for a moment)
}

func startForwardingCluster(b *testing.B) *forwardingCluster {
	b.Helper()
	fc := &forwardingCluster{c: nodetest.Start(b, nodetest.Voters(3)...)}
	fc.roles(b)
	for _, n := range fc.c.Nodes {
		fc.c.WaitReady(n, time.Minute)
	}
	k, err := fc.leader.Client.CreateKey(b.Context(), "bench", scheduler.PriorityPaid)
	if err != nil {
		b.Fatal(err)
	}
	fc.key = k.Key
	for _, n := range fc.c.Nodes {
		nc := client.New(n.URL, k.Key)
		nodetest.WaitFor(b, time.Minute, "node "+n.ID()+" to accept the new key", func() bool {
			_, _, err := nc.ListJobs(b.Context(), client.ListJobsOptions{Limit: 1})
			return err == nil
		})
	}
	return fc
}

// roles waits until every node agrees on a leader and, when it is not the
// one seen last, counts a move and picks a follower anew.
func (fc *forwardingCluster) roles(b *testing.B) {
	b.Helper()
	l := fc.c.WaitForLeader(time.Minute)
	if l == fc.leader {
		return
	}
	if fc.leader != nil {
		fc.moves++
	}
	fc.leader = l
	for _, n := range fc.c.Nodes {
		if n != l {
			fc.follower = n
		}
	}
}
