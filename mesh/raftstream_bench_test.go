package mesh

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	metrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/raft"
)

// raftSink is a go-metrics sink that keeps what hashicorp/raft reports
// (through go-metrics' global sink, the only way it reports them):
// counters summed, timer samples kept.
type raftSink struct {
	mu       sync.Mutex
	counters map[string]float64
	samples  map[string][]float64
}

func (s *raftSink) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters, s.samples = map[string]float64{}, map[string][]float64{}
}

func (s *raftSink) counter(key string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters[key]
}

func (s *raftSink) sampled(key string) []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples[key])
}

func (s *raftSink) IncrCounter(k []string, v float32) { s.IncrCounterWithLabels(k, v, nil) }
func (s *raftSink) IncrCounterWithLabels(k []string, v float32, _ []metrics.Label) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters[strings.Join(k, ".")] += float64(v)
}
func (s *raftSink) AddSample(k []string, v float32) { s.AddSampleWithLabels(k, v, nil) }
func (s *raftSink) AddSampleWithLabels(k []string, v float32, _ []metrics.Label) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.Join(k, ".")
	s.samples[key] = append(s.samples[key], float64(v))
}
func (s *raftSink) SetGauge([]string, float32)                            {}
func (s *raftSink) SetGaugeWithLabels([]string, float32, []metrics.Label) {}
func (s *raftSink) EmitKey([]string, float32)                             {}

// quantile of xs (sorted in place), 0 when empty.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[int(q*float64(len(xs)-1)+0.5)]
}

const bulkProtocol = "/pwmesh-bench/bulk/1.0.0"

// bulkWindow is how long each iteration of BenchmarkRaftUnderBulk watches.
const bulkWindow = 10 * time.Second

// BenchmarkRaftUnderBulk isolates the transport: three meshes run a
// hashicorp/raft group (in-memory log, empty FSM) over RaftTransport for
// 10 s per iteration under each load:
//
//   - idle;
//   - bulk: each mesh pulls a never-ending stream from the next (a ring, so
//     every connection carries bulk bytes one way, SHA-256'd on arrival as
//     a replica is) on the libp2p connection that carries Raft;
//   - apart: the same streams between three other meshes of this process,
//     so the CPU work is the same but Raft's connections carry none of it:
//     what is left of bulk's effect is not head-of-line blocking;
//   - bulk+cpu, apart+cpu: the same with 3 busy processes beside.
//
// Each load runs with and without a cluster key (the pnet layer) and with
// 200/200/100 ms and 1 s/1 s/500 ms Raft timings. It reports what raft
// counts and times through go-metrics: elections/min (raft.state.leader),
// hb-timeouts/min, lease-stepdowns/min, the heartbeat RPC round trip
// (hb-p50-ms, hb-p99-ms, hb-max-ms), and the bulk throughput (bulk-MB/s).
//
//	go test -run '^$' -bench RaftUnderBulk -benchtime 2x -timeout 30m ./mesh/
func BenchmarkRaftUnderBulk(b *testing.B) {
	sink := &raftSink{}
	sink.reset()
	conf := metrics.DefaultConfig("")
	conf.EnableHostname, conf.EnableRuntimeMetrics = false, false
	if _, err := metrics.NewGlobal(conf, sink); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = metrics.NewGlobal(conf, &metrics.BlackholeSink{}) })
	timings := []struct {
		name                   string
		heartbeat, elec, lease time.Duration
	}{
		{"200ms", 200 * time.Millisecond, 200 * time.Millisecond, 100 * time.Millisecond},
		{"1s", time.Second, time.Second, 500 * time.Millisecond},
	}
	for _, tm := range timings {
		for _, load := range []string{"idle", "bulk", "apart", "bulk+cpu", "apart+cpu"} {
			for _, key := range []bool{false, true} {
				keyName := "none"
				if key {
					keyName = "pnet"
				}
				b.Run(fmt.Sprintf("timings=%s/load=%s/key=%s", tm.name, load, keyName), func(b *testing.B) {
					benchRaftUnderBulk(b, sink, key, load, tm.heartbeat, tm.elec, tm.lease)
				})
			}
		}
	}
}

func benchRaftUnderBulk(b *testing.B, sink *raftSink, key bool, load string, heartbeat, elec, lease time.Duration) {
	var psk []byte
	if key {
		psk = GenerateClusterKey()
	}
	ms := startMeshes(b, 3, func(c *Config) { c.ClusterKey = psk })
	joinAll(b, ms)
	// With load=apart the bulk bytes flow between three other meshes of
	// this process: the same CPU work, but not on Raft's connections.
	bulkMs := ms
	if strings.HasPrefix(load, "apart") {
		bulkMs = startMeshes(b, 3, func(c *Config) { c.ClusterKey = psk; c.Cluster += "/bulk" })
		joinAll(b, bulkMs)
	}
	pattern := make([]byte, 1<<20)
	_, _ = rand.Read(pattern)
	for _, m := range bulkMs {
		m.HandleStream(bulkProtocol, func(context.Context, string, []byte) (io.ReadCloser, error) {
			return &endless{buf: pattern}, nil
		})
	}

	var servers []raft.Server
	for _, m := range ms {
		servers = append(servers, raft.Server{ID: raft.ServerID(m.cfg.NodeID), Address: raft.ServerAddress(m.PeerID())})
	}
	rafts := make([]*raft.Raft, len(ms))
	for i, m := range ms {
		c := raft.DefaultConfig()
		c.LocalID = raft.ServerID(m.cfg.NodeID)
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = heartbeat, elec, lease
		c.CommitTimeout = 20 * time.Millisecond
		c.Logger = hclog.NewNullLogger()
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(c, &logFSM{}, store, store, raft.NewInmemSnapshotStore(), m.RaftTransport(10*time.Second, hclog.NewNullLogger()))
		if err != nil {
			b.Fatal(err)
		}
		rafts[i] = r
		b.Cleanup(func() { _ = r.Shutdown().Error() })
	}
	if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		b.Fatal(err)
	}
	waitLeader := func() {
		waitFor(b, time.Minute, "a raft leader", func() bool {
			for _, r := range rafts {
				if r.State() == raft.Leader {
					return true
				}
			}
			return false
		})
	}
	waitLeader()

	var (
		watched                          time.Duration
		bulk                             atomic.Int64
		hb                               []float64
		elections, hbTimeouts, stepdowns float64
	)
	for b.Loop() {
		ctx, cancel := context.WithTimeout(b.Context(), bulkWindow)
		var wg sync.WaitGroup
		if load != "idle" {
			for i, m := range bulkMs {
				from := bulkMs[(i+1)%len(bulkMs)]
				wg.Go(func() { pull(ctx, m, from, &bulk) })
			}
		}
		var burners []*exec.Cmd
		if strings.HasSuffix(load, "+cpu") {
			for range 3 {
				cmd := exec.Command("sh", "-c", "while :; do :; done")
				if err := cmd.Start(); err != nil {
					b.Skipf("cannot start a busy process: %v", err)
				}
				burners = append(burners, cmd)
			}
		}
		sink.reset()
		start := time.Now()
		<-ctx.Done()
		watched += time.Since(start)
		elections += sink.counter("raft.state.leader")
		hbTimeouts += sink.counter("raft.transition.heartbeat_timeout")
		stepdowns += sink.counter("raft.transition.leader_lease_timeout")
		hb = append(hb, sink.sampled("raft.replication.heartbeat")...)
		cancel()
		for _, cmd := range burners {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		wg.Wait()
		waitLeader()
	}
	perMin := func(x float64) float64 { return x / watched.Minutes() }
	b.ReportMetric(perMin(elections), "elections/min")
	b.ReportMetric(perMin(hbTimeouts), "hb-timeouts/min")
	b.ReportMetric(perMin(stepdowns), "lease-stepdowns/min")
	b.ReportMetric(quantile(hb, 0.5), "hb-p50-ms")
	b.ReportMetric(quantile(hb, 0.99), "hb-p99-ms")
	b.ReportMetric(quantile(hb, 1), "hb-max-ms")
	if load != "idle" {
		b.ReportMetric(float64(bulk.Load())/1e6/watched.Seconds(), "bulk-MB/s")
	}
}

// pull reads bulkProtocol streams from 'from' into SHA-256 until ctx ends,
// counting the bytes.
func pull(ctx context.Context, m, from *Mesh, n *atomic.Int64) {
	buf := make([]byte, 256<<10)
	for ctx.Err() == nil {
		rc, err := m.OpenStream(ctx, from.PeerID(), bulkProtocol, nil)
		if err != nil {
			continue
		}
		h := sha256.New()
		for ctx.Err() == nil {
			k, err := rc.Read(buf)
			h.Write(buf[:k])
			n.Add(int64(k))
			if err != nil {
				break
			}
		}
		rc.Close()
	}
}

// endless yields buf over and over; it has only Read.
type endless struct {
	buf []byte
	off int
}

func (r *endless) Read(p []byte) (int, error) {
	k := copy(p, r.buf[r.off:])
	r.off = (r.off + k) % len(r.buf)
	return k, nil
}

func (r *endless) Close() error { return nil }
