package mesh

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkRPCRoundTrip: one 1 KiB request and its 1 KiB echo over a new
// libp2p stream between two hosts on loopback.
//
//	go test -run '^$' -bench RPCRoundTrip ./mesh/
func BenchmarkRPCRoundTrip(b *testing.B) {
	ms := startMeshes(b, 2, nil)
	client, server := ms[0], ms[1]
	server.Handle("/bench/echo", echo)
	if err := client.AddPeer(server.PeerID(), server.P2PAddrs()); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	req := bytes.Repeat([]byte("x"), 1024)
	if _, err := client.Call(ctx, server.PeerID(), "/bench/echo", req); err != nil {
		b.Fatal(err) // connects
	}
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.Call(ctx, server.PeerID(), "/bench/echo", req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishDelivery: one publisher announces a 256-byte message to 10
// subscribers (11 hosts joined through memberlist, connected through their
// metadata); reports the p50 and p99 of publish-to-receive latency over
// every delivery.
//
//	go test -run '^$' -bench PublishDelivery -benchtime 2000x ./mesh/
func BenchmarkPublishDelivery(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) { benchPublishDelivery(b, n) })
	}
}

// benchPublishDelivery publishes from one host to subscribers others and
// reports delivery latency percentiles over every (message, subscriber).
func benchPublishDelivery(b *testing.B, subscribers int) {
	ms := startMeshes(b, subscribers+1, nil)
	joinAll(b, ms)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		got       = make(map[uint64]int)
		arrived   = make(chan uint64, 1024)
		wg        sync.WaitGroup
	)
	for _, m := range ms[1:] {
		ch, err := m.Subscribe(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range ch {
				now := time.Now()
				seq := binary.BigEndian.Uint64(msg.Data[0:8])
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(msg.Data[8:16])))
				mu.Lock()
				latencies = append(latencies, now.Sub(sent))
				got[seq]++
				done := got[seq] == subscribers
				mu.Unlock()
				if done {
					arrived <- seq
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	waitFor(b, 30*time.Second, "publisher sees all subscribers", func() bool {
		return len(ms[0].TopicPeers("bench")) == subscribers
	})
	msg := make([]byte, 256)
	var seq uint64
	b.ResetTimer()
	for b.Loop() {
		seq++
		binary.BigEndian.PutUint64(msg[0:8], seq)
		binary.BigEndian.PutUint64(msg[8:16], uint64(time.Now().UnixNano()))
		if err := ms[0].Publish(ctx, "bench", msg); err != nil {
			b.Fatal(err)
		}
		select {
		case s := <-arrived:
			if s != seq {
				b.Fatalf("seq %d completed while waiting for %d", s, seq)
			}
		case <-time.After(10 * time.Second):
			b.Fatalf("message %d not delivered to all %d subscribers", seq, subscribers)
		}
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		b.ReportMetric(float64(latencies[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(latencies[(n*99)/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(latencies[n-1].Microseconds())/1000, "max-ms")
	}
}
