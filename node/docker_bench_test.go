package node_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/node/worker/docker"
	"github.com/pwmesh/pwmesh/scheduler"
)

// BenchmarkDockerSubmitToStart submits generate_dataset jobs of the
// built-in workload through the HTTP API to a one-node mesh whose executor
// is docker, one at a time, and measures from the request to the job's
// started_at (the lease committed) and to its container running (the
// engine's start event), as p50/p99/max. Each job must succeed before the
// next is sent. It builds the static pwmesh and a workload image of its
// own first (not timed; a cold static build takes minutes) and removes the
// image afterwards. Run it with -benchtime 30x or more.
func BenchmarkDockerSubmitToStart(b *testing.B) {
	eng := newEngine(b)
	image := buildWorkloadImage(b)
	c := nodetest.Start(b, nodetest.Spec{Voter: true, Executor: "docker", WorkloadImage: image})
	n := c.Nodes[0]
	c.WaitForLeader(time.Minute)
	c.WaitReady(n, time.Minute)
	if reg, ok := n.Registration(); !ok || len(reg.Executors) != 1 || reg.Executors[0] != "docker" || !reg.JobNetwork {
		b.Fatalf("the node registered as %+v, want the docker executor giving jobs network", reg)
	}
	starts := eng.containerStarts(b, n.ID())
	var toStarted, toRunning []time.Duration
	for b.Loop() {
		sent := time.Now()
		j := benchSubmit(b, n, scheduler.Resources{})
		var running time.Time
		select {
		case running = <-starts.of(j.ID):
		case <-time.After(time.Minute):
			b.Fatalf("job %s: no container started within a minute", j.ID)
		}
		var done scheduler.Job
		nodetest.WaitFor(b, time.Minute, "job end", func() bool {
			done, _ = n.Job(j.ID)
			return scheduler.Terminal(done.State)
		})
		if done.State != scheduler.StateSucceeded || done.StartedAt == nil {
			b.Fatalf("job %s: %s %+v", j.ID, done.State, done.Error)
		}
		toStarted = append(toStarted, done.StartedAt.Sub(sent))
		toRunning = append(toRunning, running.Sub(sent))
	}
	reportPercentiles(b, toStarted, "submit-to-started_at")
	reportPercentiles(b, toRunning, "submit-to-running")
}

// buildWorkloadImage builds the static pwmesh and, from it, a workload
// image under a tag of its own, removed at cleanup.
func buildWorkloadImage(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), docker.StaticBinaryName)
	cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", bin, "github.com/pwmesh/pwmesh/cmd/pwmesh")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build (static): %v\n%s", err, out)
	}
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	tag := "pwmesh-workload-bench-" + hex.EncodeToString(rnd[:]) + ":latest"
	e, err := docker.New(docker.Config{NodeID: "pwmesh-bench-image", WorkloadImage: tag})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.Cleanup(func() { newEngine(b).removeImage(b, tag) })
	if err := e.EnsureImage(ctx, bin); err != nil {
		b.Fatal(err)
	}
	return tag
}

// engine is a bare client of the Docker Engine API, for what the docker
// package does not offer: its event stream and image removal.
type engine struct {
	hc   *http.Client
	base string
}

// newEngine finds the engine as the docker executor does ($DOCKER_HOST,
// else the default socket) and skips tb where none answers.
func newEngine(tb testing.TB) *engine {
	tb.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = docker.DefaultHost
	}
	u, err := url.Parse(host)
	if err != nil {
		tb.Fatalf("DOCKER_HOST %q: %v", host, err)
	}
	e := &engine{hc: &http.Client{}}
	switch u.Scheme {
	case "unix":
		if _, err := os.Stat(u.Path); err != nil {
			tb.Skipf("no Docker engine socket at %s (%v): skipping what needs a real engine", u.Path, err)
		}
		e.hc.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", u.Path)
		}}
		e.base = "http://docker"
	case "tcp":
		e.base = "http://" + u.Host
	default:
		tb.Skipf("DOCKER_HOST %q: only unix:// and tcp:// are supported here", host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/_ping", nil)
	resp, err := e.hc.Do(req)
	if err != nil {
		tb.Fatalf("the Docker engine at %s does not answer: %v", host, err)
	}
	resp.Body.Close()
	return e
}

func (e *engine) removeImage(tb testing.TB, tag string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, e.base+"/images/"+url.PathEscape(tag)+"?force=1", nil)
	resp, err := e.hc.Do(req)
	if err != nil {
		tb.Errorf("remove image %s: %v", tag, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		tb.Errorf("remove image %s: %s", tag, resp.Status)
	}
}

// starts records when the engine started each job's container.
type starts struct {
	mu  sync.Mutex
	chs map[string]chan time.Time // by job ID
}

// of is the channel that receives the start time of job id's container.
func (s *starts) of(id string) chan time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.chs[id]
	if !ok {
		ch = make(chan time.Time, 4)
		s.chs[id] = ch
	}
	return ch
}

// containerStarts follows the engine's start events of containers labelled
// with node until tb's cleanup. The stream is open when it returns.
func (e *engine) containerStarts(tb testing.TB, node string) *starts {
	tb.Helper()
	filters, _ := json.Marshal(map[string][]string{
		"type": {"container"}, "event": {"start"}, "label": {docker.LabelNode + "=" + node},
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/events?filters="+url.QueryEscape(string(filters)), nil)
	resp, err := e.hc.Do(req)
	if err != nil {
		cancel()
		tb.Fatalf("follow engine events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		tb.Fatalf("follow engine events: %s", resp.Status)
	}
	s := &starts{chs: map[string]chan time.Time{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var ev struct {
				Actor struct {
					Attributes map[string]string `json:"Attributes"`
				} `json:"Actor"`
				TimeNano int64 `json:"timeNano"`
			}
			if err := dec.Decode(&ev); err != nil {
				return // the stream ends at cleanup
			}
			if id := ev.Actor.Attributes[docker.LabelJob]; id != "" {
				select {
				case s.of(id) <- time.Unix(0, ev.TimeNano):
				default:
				}
			}
		}
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}
