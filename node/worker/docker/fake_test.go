package docker

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/worker"
	"github.com/pwmesh/pwmesh/scheduler"
)

// TestCreateRequest checks, against a fake of the Engine API (CI has no
// GPU, so the real engine cannot take a device request), the container a
// task asks for: exactly its GPUs in an NVIDIA device request, none and
// every GPU hidden without GPUs, and the lock-down every container gets.
func TestCreateRequest(t *testing.T) {
	t.Parallel()
	f := newFakeEngine(t)
	cfg := Config{NodeID: "n1", Host: f.host(), Memory: 1 << 30, CPUs: 2, Pids: 100, TmpfsBytes: 8 << 20}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.FakeGPUs = true
	fake, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	uuids := []string{"GPU-fake-n1-1", "GPU-fake-n1-3"}
	for _, tc := range []struct {
		name    string
		e       *Executor
		gpus    []string
		devices []deviceRequest
		env     []string
	}{
		{"no GPUs", e, nil, nil, []string{"NVIDIA_VISIBLE_DEVICES=void"}},
		{"two GPUs", e, []string{"1", "3"}, []deviceRequest{{Driver: "nvidia", DeviceIDs: []string{"1", "3"}, Capabilities: [][]string{{"gpu"}}}},
			[]string{"NVIDIA_VISIBLE_DEVICES=1,3", "CUDA_VISIBLE_DEVICES=1,3"}},
		// Simulated GPUs: the same environment, no device request.
		{"two fake GPUs", fake, uuids, nil,
			[]string{"NVIDIA_VISIBLE_DEVICES=GPU-fake-n1-1,GPU-fake-n1-3", "CUDA_VISIBLE_DEVICES=GPU-fake-n1-1,GPU-fake-n1-3"}},
		{"no fake GPUs", fake, nil, nil, []string{"NVIDIA_VISIBLE_DEVICES=void"}},
	} {
		e := tc.e
		f.reset()
		root := jobDir(t, nil)
		var log syncBuffer
		if err := e.Run(t.Context(), worker.Task{JobID: "j1", Root: root, Timeout: time.Minute, Log: &log, GPUs: tc.gpus}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		created := f.created()
		if len(created) != 1 {
			t.Fatalf("%s: %d containers created", tc.name, len(created))
		}
		c := created[0]
		if !reflect.DeepEqual(c.HostConfig.DeviceRequests, tc.devices) {
			t.Errorf("%s: device requests %+v, want %+v", tc.name, c.HostConfig.DeviceRequests, tc.devices)
		}
		var gpuEnv []string
		for _, kv := range c.Env {
			if strings.HasPrefix(kv, "NVIDIA_") || strings.HasPrefix(kv, "CUDA_") {
				gpuEnv = append(gpuEnv, kv)
			}
		}
		if !slices.Equal(gpuEnv, tc.env) {
			t.Errorf("%s: GPU environment %v, want %v", tc.name, gpuEnv, tc.env)
		}
		h := c.HostConfig
		if c.Image != DefaultWorkloadImage || c.User != "65534:65534" || c.Labels[LabelNode] != "n1" || c.Labels[LabelJob] != "j1" ||
			h.NetworkMode != "none" || !h.ReadonlyRootfs || !slices.Equal(h.CapDrop, []string{"ALL"}) || !slices.Equal(h.SecurityOpt, []string{"no-new-privileges"}) ||
			h.Memory != 1<<30 || h.MemorySwap != 1<<30 || h.NanoCPUs != 2e9 || h.PidsLimit != 100 || h.Tmpfs["/tmp"] != "rw,nosuid,nodev,size=8388608,mode=1777" {
			t.Errorf("%s: container %+v", tc.name, c)
		}
		var targets []string
		for _, m := range h.Mounts {
			targets = append(targets, m.Target+map[bool]string{true: ":ro", false: ":rw"}[m.ReadOnly])
		}
		want := []string{"/pwm/input:ro", "/pwm/output:rw", "/pwm/job.json:ro", "/pwm/export:rw", "/pwm/error.json:rw"}
		if !slices.Equal(targets, want) {
			t.Errorf("%s: mounts %v, want %v", tc.name, targets, want)
		}
		if log.String() != "hi\n" {
			t.Errorf("%s: log %q, want the demultiplexed stream", tc.name, log.String())
		}
	}
	if calls := f.calls(); !slices.Contains(calls, "DELETE /containers/c0ffee") {
		t.Errorf("the container was not removed: %v", calls)
	}
}

// TestNetworkRequest checks, against the fake engine, the network a task
// gets: none unless it asks for the bridge, for an image, on a node that
// does not forbid it; every refusal comes before any container exists.
func TestNetworkRequest(t *testing.T) {
	t.Parallel()
	f := newFakeEngine(t)
	allow, err := New(Config{NodeID: "n1", Host: f.host()})
	if err != nil {
		t.Fatal(err)
	}
	veto, err := New(Config{NodeID: "n1", Host: f.host(), NoNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		e       *Executor
		image   string
		network string
		mode    string // NetworkMode of the container; "" = refused
	}{
		{"not asked", allow, "job:1", "", "none"},
		{"asked none", allow, "job:1", scheduler.NetworkNone, "none"},
		// No job network set up (the real engine's tests set one up).
		{"asked bridge, no job network", allow, "job:1", scheduler.NetworkBridge, ""},
		{"built-in workload", allow, "", scheduler.NetworkBridge, ""},
		{"node forbids", veto, "job:1", scheduler.NetworkBridge, ""},
		{"node forbids, not asked", veto, "job:1", "", "none"},
		{"unknown network", allow, "job:1", "host", ""},
	} {
		f.reset()
		err := tc.e.Run(t.Context(), worker.Task{JobID: "j1", Root: jobDir(t, nil), Timeout: time.Minute, Image: tc.image, Network: tc.network})
		created := f.created()
		if tc.mode == "" {
			if err == nil || len(created) != 0 {
				t.Errorf("%s: err %v, %d containers created; want it refused before any", tc.name, err, len(created))
			}
			if tc.network == scheduler.NetworkBridge && !errors.Is(err, worker.ErrNoNetwork) {
				t.Errorf("%s: err %v, want worker.ErrNoNetwork", tc.name, err)
			}
			continue
		}
		if err != nil || len(created) != 1 {
			t.Fatalf("%s: err %v, %d containers created", tc.name, err, len(created))
		}
		if got := created[0].HostConfig.NetworkMode; got != tc.mode {
			t.Errorf("%s: NetworkMode %q, want %q", tc.name, got, tc.mode)
		}
	}
	if allow.GrantsNetwork() || veto.GrantsNetwork() {
		t.Errorf("GrantsNetwork: %v without a job network, %v with NoNetwork", allow.GrantsNetwork(), veto.GrantsNetwork())
	}
}

// fakeEngine answers the Engine API calls one Run makes and records the
// containers created.
type fakeEngine struct {
	srv *httptest.Server
	mu  sync.Mutex
	cs  []containerConfig
	log []string
}

func newFakeEngine(t *testing.T) *fakeEngine {
	f := &fakeEngine{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		path := r.URL.Path
		if path != "/version" {
			path = strings.TrimPrefix(path, "/v1.41")
		}
		f.log = append(f.log, r.Method+" "+path)
		switch {
		case path == "/version":
			_, _ = io.WriteString(w, `{"ApiVersion":"1.41"}`)
		case strings.HasPrefix(path, "/images/"):
			_, _ = io.WriteString(w, `{"Id":"sha256:fake","Config":{"Labels":{}}}`)
		case path == "/containers/create":
			var c containerConfig
			if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			f.cs = append(f.cs, c)
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"Id":"c0ffee","Warnings":[]}`)
		case strings.HasSuffix(path, "/start"), r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(path, "/logs"):
			// One stdout frame.
			_, _ = w.Write(append([]byte{1, 0, 0, 0, 0, 0, 0, 3}, "hi\n"...))
		case strings.HasSuffix(path, "/wait"):
			_, _ = io.WriteString(w, `{"StatusCode":0}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEngine) host() string { return "tcp://" + f.srv.Listener.Addr().String() }

func (f *fakeEngine) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cs = nil
}

func (f *fakeEngine) created() []containerConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cs)
}

func (f *fakeEngine) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// TestFirewallRules checks the job network's rules without iptables: the
// DNS exception for the host's resolvers comes before the drops, which
// cover link-local, loopback, the host's addresses, published ports and
// each mesh port over TCP and UDP, and the chain ends in RETURN.
func TestFirewallRules(t *testing.T) {
	t.Parallel()
	got := parseResolvers("# comment\nnameserver 127.0.0.53\nnameserver 169.254.169.254\nnameserver ::1\nnameserver 10.0.0.2\nnameserver 10.0.0.2\nsearch x\n")
	if !slices.Equal(got, []string{"169.254.169.254", "10.0.0.2"}) {
		t.Fatalf("resolvers %v", got)
	}
	names := namesFor("node-1")
	if len(names.Bridge) > 15 || len(names.Chain) > 28 || names != namesFor("node-1") || names == namesFor("node-2") {
		t.Fatalf("names %+v", names)
	}
	f := &firewall{ipt: "iptables", names: names, ports: []int{7946}, resolvers: []string{"169.254.169.254"}}
	var rules []string
	for _, r := range f.chainRules() {
		rules = append(rules, strings.Join(r[1:], " "))
	}
	want := []string{
		"-d 169.254.169.254/32 -p udp -m udp --dport 53 -j RETURN",
		"-d 169.254.169.254/32 -p tcp -m tcp --dport 53 -j RETURN",
		"-d 169.254.0.0/16 -j DROP",
		"-d 127.0.0.0/8 -j DROP",
		"-m addrtype --dst-type LOCAL -j DROP",
		"-m conntrack --ctstate DNAT -j DROP",
		"-p tcp -m tcp --dport 7946 -j DROP",
		"-p udp -m udp --dport 7946 -j DROP",
		"-j RETURN",
	}
	if !slices.Equal(rules, want) {
		t.Errorf("chain rules:\n%s\nwant:\n%s", strings.Join(rules, "\n"), strings.Join(want, "\n"))
	}
}
