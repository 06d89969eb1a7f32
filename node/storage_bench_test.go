package node_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// benchObject stores size fresh pseudo-random bytes (never seen before in
// this process: a random seed) in n's own disk store, streaming.
func benchObject(b *testing.B, n *nodetest.Node, size int64) cas.Ref {
	b.Helper()
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		b.Fatal(err)
	}
	ref, err := n.LocalStore().Put(b.Context(), io.LimitReader(mrand.NewChaCha8(seed), size))
	if err != nil {
		b.Fatal(err)
	}
	return ref
}

// readOnly hides a reader's WriteTo and a writer's ReadFrom, so that
// io.CopyBuffer uses the buffer it is given.
type readOnly struct{ io.Reader }

type writeOnly struct{ io.Writer }

// copyBuf is the receive buffer of the loopback baselines: the size the
// disk store copies with.
const copyBuf = 256 << 10

// loopbackTCP sends size bytes over a fresh 127.0.0.1 TCP connection and
// returns how long it took until the receiver had read them all, passing
// them to h when it is not nil.
func loopbackTCP(b *testing.B, size int64, h hash.Hash) time.Duration {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer conn.Close()
		var dst io.Writer = writeOnly{io.Discard}
		if h != nil {
			dst = h
		}
		n, err := io.CopyBuffer(dst, readOnly{conn}, make([]byte, copyBuf))
		if err == nil && n != size {
			err = fmt.Errorf("received %d bytes, want %d", n, size)
		}
		got <- err
	}()
	chunk := make([]byte, 1<<20)
	_, _ = rand.Read(chunk)
	start := time.Now()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	for left := size; left > 0; {
		k := min(left, int64(len(chunk)))
		if _, err := conn.Write(chunk[:k]); err != nil {
			b.Fatal(err)
		}
		left -= k
	}
	if err := conn.Close(); err != nil {
		b.Fatal(err)
	}
	if err := <-got; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// benchStreamProtocol serves size bytes of a repeated buffer (a request
// holds the size), to time a libp2p stream between two nodes without the
// stores.
const benchStreamProtocol = "/pwmesh-bench/stream/1.0.0"

// repeated yields n bytes cycling over buf; it has only Read.
type repeated struct {
	buf []byte
	off int
	n   int64
}

func (r *repeated) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	total := 0
	for len(p) > 0 {
		k := copy(p, r.buf[r.off:])
		r.off = (r.off + k) % len(r.buf)
		p, total = p[k:], total+k
	}
	r.n -= int64(total)
	return total, nil
}

func (r *repeated) Close() error { return nil }

// BenchmarkReplication times Storage.Keep on node A of two voters (the
// default replication factor, 2) for a fresh 256 MiB object already in A's
// disk store, until the second copy is committed on B: the MB/s column is
// that throughput. Each iteration also times, with the clock stopped, the
// same byte count over loopback TCP (with and without SHA-256 on the
// receiver) and over a bare libp2p stream between the two nodes, and
// reports them and the ratio of replication to hashed TCP (ratio_pct).
func BenchmarkReplication(b *testing.B) {
	const size = 256 << 20
	c := nodetest.Start(b, nodetest.Voters(2)...)
	// A is the follower, as a worker keeping its result usually is: its
	// index writes go through the leader, B.
	bn := c.WaitForLeader(time.Minute)
	a := c.Nodes[0]
	if a == bn {
		a = c.Nodes[1]
	}
	c.WaitReady(a, time.Minute)
	c.WaitReady(bn, time.Minute)

	pattern := make([]byte, 1<<20)
	_, _ = rand.Read(pattern)
	a.Mesh().HandleStream(benchStreamProtocol, func(_ context.Context, _ string, req []byte) (io.ReadCloser, error) {
		return &repeated{buf: pattern, n: int64(binary.BigEndian.Uint64(req))}, nil
	})
	p2p := func() time.Duration {
		req := binary.BigEndian.AppendUint64(nil, size)
		start := time.Now()
		rc, err := bn.Mesh().OpenStream(b.Context(), a.Mesh().PeerID(), benchStreamProtocol, req)
		if err != nil {
			b.Fatal(err)
		}
		defer rc.Close()
		n, err := io.CopyBuffer(sha256.New(), readOnly{rc}, make([]byte, copyBuf))
		if err != nil || n != size {
			b.Fatalf("libp2p stream: %d bytes, %v", n, err)
		}
		return time.Since(start)
	}

	var repl, tcp, tcpHash, stream time.Duration
	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		ref := benchObject(b, a, size)
		b.StartTimer()
		start := time.Now()
		if err := a.Storage().Keep(b.Context(), ref, scheduler.BlobBundle); err != nil {
			b.Fatal(err)
		}
		repl += time.Since(start)
		b.StopTimer()
		if has, err := bn.LocalStore().Has(b.Context(), ref.CID); err != nil || !has {
			b.Fatalf("node B lacks the copy after Keep: %v, %v", has, err)
		}
		// Let both nodes' background uploads to their file mirrors end, so
		// that the baselines run on an idle machine.
		for _, n := range c.Nodes {
			waitMirrored(b, n, ref)
		}
		tcp += loopbackTCP(b, size, nil)
		tcpHash += loopbackTCP(b, size, sha256.New())
		stream += p2p()
		b.StartTimer() // b.Loop wants it running
	}
	mbs := func(d time.Duration) float64 {
		return float64(b.N) * size / 1e6 / d.Seconds()
	}
	b.ReportMetric(mbs(repl), "repl-MB/s")
	b.ReportMetric(mbs(tcp), "tcp-MB/s")
	b.ReportMetric(mbs(tcpHash), "tcp+sha256-MB/s")
	b.ReportMetric(mbs(stream), "libp2p+sha256-MB/s")
	b.ReportMetric(100*mbs(repl)/mbs(tcpHash), "ratio_pct")
	b.ReportMetric(100*mbs(repl)/mbs(tcp), "ratio-nohash_pct")
}

// waitMirrored waits, for at most a minute, until n's default mirror (a
// folder in its data directory) holds ref: a file named by its CID, of its
// size. It only logs when it does not.
func waitMirrored(b *testing.B, n *nodetest.Node, ref cas.Ref) {
	root, name := filepath.Join(n.DataDir, "mirror"), ref.CID.String()
	found := func() bool {
		ok := false
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != name {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.Size() == ref.Size {
				ok = true
				return fs.SkipAll
			}
			return nil
		})
		return ok
	}
	if !nodetest.Poll(time.Minute, found) {
		b.Logf("%s: no mirror copy of %s under %s after a minute; the baselines may share the CPU with its upload", n.ID(), name, root)
	}
}

// BenchmarkRestoreAfterNodeLoss keeps a fresh 1 MiB object on two of three
// voters, kills the holder that wrote it (never the leader), and times the
// kill until the node that held no copy has one (restore), and until the
// leader's GET /nodes shows the killed node down (detect: gossip failure
// detection with nodetest's fast timings, then the leader's commit). The
// rest is the leader's repair: it waits storage.Config.RepairDelay (default
// 10 s, which nodetest keeps) before it copies an object that is short of
// copies, then one copy. The killed node is restarted between iterations.
func BenchmarkRestoreAfterNodeLoss(b *testing.B) {
	const size = 1 << 20
	c := nodetest.Start(b, nodetest.Voters(3)...)
	var restore, detect []time.Duration
	for b.Loop() {
		leader := c.WaitForLeader(time.Minute)
		for _, n := range c.Nodes {
			c.WaitReady(n, time.Minute)
		}
		var writer *nodetest.Node
		for _, n := range c.Nodes {
			if n != leader {
				writer = n
				break
			}
		}
		ref := benchObject(b, writer, size)
		if err := writer.Storage().Keep(b.Context(), ref, scheduler.BlobBundle); err != nil {
			b.Fatal(err)
		}
		var third *nodetest.Node
		holders := 0
		for _, n := range c.Nodes {
			has, err := n.LocalStore().Has(b.Context(), ref.CID)
			if err != nil {
				b.Fatal(err)
			}
			if has {
				holders++
			} else {
				third = n
			}
		}
		if holders != 2 || third == nil {
			b.Fatalf("after Keep %d nodes hold the object, want 2", holders)
		}
		start := time.Now()
		c.Kill(writer)
		var detected time.Duration
		nodetest.WaitFor(b, 2*time.Minute, "a second live copy", func() bool {
			if detected == 0 && nodeDown(b, leader, writer.ID()) {
				detected = time.Since(start)
			}
			has, err := third.LocalStore().Has(b.Context(), ref.CID)
			return err == nil && has
		})
		restore = append(restore, time.Since(start))
		detect = append(detect, detected)
		c.Restart(writer)
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return ds[(len(ds)-1)/2].Seconds()
	}
	b.ReportMetric(median(detect), "p50-s-detect")
	b.ReportMetric(median(restore), "p50-s-restore")
	b.ReportMetric(restore[len(restore)-1].Seconds(), "max-s-restore")
}

// nodeDown says whether n's GET /nodes shows node id down.
func nodeDown(b *testing.B, n *nodetest.Node, id string) bool {
	nodes, err := n.Client.Nodes(b.Context())
	if err != nil {
		return false
	}
	for _, nd := range nodes {
		if nd.ID == id {
			return nd.State == scheduler.NodeDown
		}
	}
	return false
}
