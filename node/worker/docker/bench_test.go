package docker

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/worker"
)

// readyWriter closes ready when the container has printed "ready".
type readyWriter struct {
	once  sync.Once
	ready chan struct{}
}

func (w *readyWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("ready")) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

// BenchmarkStartToRunning measures, with the image cached, the time from
// Run's call until the container's process has printed its first line
// (image inspected, container created and started, its log followed):
// reported as start-ms p50/p99. ns/op is the whole cycle, with the kill
// and the removal.
func BenchmarkStartToRunning(b *testing.B) {
	needEngine(b)
	image := probeImage(b)
	e := newExec(b, Config{})
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := jobDir(b, map[string]any{"mode": "sleep"})
		w := &readyWriter{ready: make(chan struct{})}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() {
			done <- e.Run(ctx, worker.Task{JobID: "bench", Root: root, Timeout: time.Minute, Log: w, Image: image})
		}()
		select {
		case <-w.ready:
			lat = append(lat, time.Since(start))
		case err := <-done:
			b.Fatalf("the container stopped before it was ready: %v", err)
		}
		cancel()
		<-done
	}
	b.StopTimer()
	reportLatency(b, "start", lat)
	assertNoContainers(b, e)
}

// BenchmarkRunToExit is one whole Run of a container that exits at once:
// create, start, logs, wait, remove.
func BenchmarkRunToExit(b *testing.B) {
	needEngine(b)
	image := probeImage(b)
	e := newExec(b, Config{})
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := jobDir(b, map[string]any{"mode": "exit", "code": 0})
		b.StartTimer()
		start := time.Now()
		if err := e.Run(b.Context(), worker.Task{JobID: "bench", Root: root, Timeout: time.Minute, Image: image}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, "run", lat)
	assertNoContainers(b, e)
}

func reportLatency(b *testing.B, name string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), name+"-ms-p50")
	b.ReportMetric(ms(lat[(len(lat)*99)/100]), name+"-ms-p99")
}
