package node_test

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

// meteringCluster is 3 voters, metered or not (--no-metering), with a paid
// key of tenant "bench" and one queued job to read.
type meteringCluster struct {
	c      *nodetest.Cluster
	key    string
	job    string
	hc     *http.Client
	follow *nodetest.Node
}

func startMeteringCluster(b *testing.B, metered bool) *meteringCluster {
	b.Helper()
	specs := nodetest.Voters(3)
	for i := range specs {
		specs[i].NoMetering = !metered
	}
	mc := &meteringCluster{c: nodetest.Start(b, specs...), hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	leader := mc.c.WaitForLeader(time.Minute)
	for _, n := range mc.c.Nodes {
		mc.c.WaitReady(n, time.Minute)
	}
	mc.roles()
	k, err := leader.Client.CreateKey(b.Context(), "bench", scheduler.PriorityPaid)
	if err != nil {
		b.Fatal(err)
	}
	mc.key = k.Key
	for _, n := range mc.c.Nodes {
		nc := client.New(n.URL, k.Key)
		nodetest.WaitFor(b, time.Minute, "node "+n.ID()+" to accept the new key", func() bool {
			_, _, err := nc.ListJobs(b.Context(), client.ListJobsOptions{Limit: 1})
			return err == nil
		})
	}
	st, body := mc.call(b, mc.follow, "POST", "/jobs", queuedJob)
	if st != http.StatusAccepted {
		b.Fatalf("submit: %d %s", st, body)
	}
	mc.job = string(bytes.Split(bytes.Split(body, []byte(`"id":"`))[1], []byte(`"`))[0])
	return mc
}

// roles picks a follower of the current leader.
func (mc *meteringCluster) roles() {
	leader := mc.c.WaitForLeader(time.Minute)
	for _, n := range mc.c.Nodes {
		if n != leader {
			mc.follow = n
		}
	}
}

// queuedJob stays queued: no node is in its region.
var queuedJob = []byte(`{"type":"generate_dataset","region":"nowhere"}`)

func (mc *meteringCluster) call(b *testing.B, n *nodetest.Node, method, path string, body []byte) (int, []byte) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, n.URL+path, r)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+mc.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := mc.hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, answer
}

// BenchmarkMetering: what counting every call in the replicated ledger
// costs. GET /jobs/{id} and POST /jobs through a follower of 3 voters,
// metered and unmetered (--no-metering), interleaved in one run; then
// metered calls a second with 32 clients spread over the 3 nodes.
func BenchmarkMetering(b *testing.B) {
	clusters := map[string]*meteringCluster{"metered": startMeteringCluster(b, true), "unmetered": startMeteringCluster(b, false)}
	type variant struct {
		name   string
		mc     *meteringCluster
		method string
		body   []byte
		ds     []time.Duration
	}
	var vs []*variant
	for _, mode := range []string{"metered", "unmetered"} {
		vs = append(vs,
			&variant{name: "get-" + mode, mc: clusters[mode], method: "GET"},
			&variant{name: "post-" + mode, mc: clusters[mode], method: "POST", body: queuedJob})
	}
	b.Run("latency", func(b *testing.B) {
		i, elections := 0, 0
		for b.Loop() {
			for k := range vs {
				v := vs[(i+k)%len(vs)]
				path, want := "/jobs/"+v.mc.job, http.StatusOK
				if v.method == "POST" {
					path, want = "/jobs", http.StatusAccepted
				}
				for try := 0; ; try++ {
					start := time.Now()
					st, body := v.mc.call(b, v.mc.follow, v.method, path, v.body)
					d := time.Since(start)
					if st == want {
						v.ds = append(v.ds, d)
						break
					}
					if st != http.StatusServiceUnavailable || try == 10 {
						b.Fatalf("%s: %d %s", v.name, st, body)
					}
					// An election on a loaded machine: sent again, the
					// figure dropped, and the follower picked anew.
					elections++
					v.mc.roles()
				}
			}
			i++
		}
		for _, v := range vs {
			reportPercentiles(b, v.ds, v.name)
		}
		b.ReportMetric(float64(elections), "cluster-503s")
	})
	b.Run("throughput", func(b *testing.B) {
		mc := clusters["metered"]
		var next, failed atomic.Int64
		b.SetParallelism(16) // 32 clients on 2 cores
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			n := mc.c.Nodes[next.Add(1)%3]
			for pb.Next() {
				if st, _ := mc.call(b, n, "GET", "/jobs/"+mc.job, nil); st != http.StatusOK {
					failed.Add(1)
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
		if failed.Load() > 0 {
			b.Fatalf("%d calls failed", failed.Load())
		}
	})
}
