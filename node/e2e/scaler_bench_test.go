package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// BenchmarkScaler measures, on a dev node without GPUs, five times in a
// row from zero managed workers: the queue-to-first-start time of a
// one-GPU job (its started_at minus its submitted_at: the scaler's
// decision, the worker's start and join, the assignment) and the
// scale-down time (from the moment the idle worker passed --scaler-idle
// to the node showing it left), with the exec hook starting real worker
// processes and with the docker scaler starting containers. It reports
// the medians (docs/benchmarks.md).
func BenchmarkScaler(b *testing.B) {
	b.Run("exec", func(b *testing.B) {
		state := b.TempDir()
		b.Cleanup(func() { killWorkers(state) })
		self, err := os.Executable()
		if err != nil {
			b.Fatal(err)
		}
		benchScaler(b, func(key string) []string {
			return []string{"--scaler", fmt.Sprintf("exec:%s scaler-hook %s %s %s", self, state, pwmeshBin, key)}
		})
	})
	b.Run("docker", func(b *testing.B) {
		needDocker(b)
		image := "pwmesh-bench-node:bench"
		b.Cleanup(func() { _ = exec.Command("docker", "image", "rm", "-f", image).Run() })
		benchScaler(b, func(string) []string { return []string{"--scaler", "docker", "--scaler-image", image} })
	})
}

const benchIdle = time.Second

func benchScaler(b *testing.B, scalerArgs func(key string) []string) {
	for range b.N {
		key := writeClusterKey(b)
		args := append([]string{"agent", "--dev", "--data-dir", b.TempDir(), "--http", "127.0.0.1:0", "--p2p-port", "0", "--gossip-port", "0",
			"--gpus", "none", "--executor", "process", "--lease-ttl", "3s", "--cluster-key", key,
			"--scaler-max", "1", "--scaler-idle", benchIdle.String(), "--scaler-cooldown", "0s"}, scalerArgs(key)...)
		a := launch(b, args)
		a.waitReady(time.Minute)
		// A first run builds the docker scaler's image: not measured.
		runScaleOnce(b, a)
		var up, down []time.Duration
		for range 5 {
			u, d := runScaleOnce(b, a)
			up, down = append(up, u), append(down, d)
		}
		a.stop()
		b.ReportMetric(median(up).Seconds(), "s-to-first-start-p50")
		b.ReportMetric(median(down).Seconds(), "s-idle-to-removed-p50")
		b.Logf("queue to first start: %v; idle to removed: %v", up, down)
	}
}

// runScaleOnce submits a one-GPU job to a mesh with no worker and waits
// until it succeeded and its worker is gone.
func runScaleOnce(b *testing.B, a *agent) (up, down time.Duration) {
	j := a.submit(a.token, map[string]any{"type": "generate_dataset", "params": map[string]any{"size": 8, "seed": 1},
		"resources": map[string]any{"gpus": 1}})
	j = a.waitJob(a.token, j.ID, 3*time.Minute, terminal)
	if j.State != "succeeded" || j.StartedAt == nil || j.FinishedAt == nil {
		b.Fatalf("job %+v\n%s", j, a.logs)
	}
	sub, _ := time.Parse(time.RFC3339Nano, j.SubmittedAt)
	start, _ := time.Parse(time.RFC3339Nano, *j.StartedAt)
	end, _ := time.Parse(time.RFC3339Nano, *j.FinishedAt)
	deadline := time.Now().Add(3 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		gone := false
		for _, n := range a.nodes(a.token) {
			if n.ID == j.Node {
				gone = n.State == "left"
			}
		}
		if gone {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("worker %s not removed\n%s", j.Node, a.logs)
		}
		<-tick.C
	}
	return start.Sub(sub), time.Since(end.Add(benchIdle))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
