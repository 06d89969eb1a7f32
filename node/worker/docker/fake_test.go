package docker

import (
	"encoding/json"
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
)

// TestCreateRequest checks, against a fake of the Engine API (CI has no
// GPU, so the real engine cannot take a device request), the container a
// task asks for: exactly its GPUs in an NVIDIA device request, none and
// every GPU hidden without GPUs, and the lock-down every container gets.
func TestCreateRequest(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		created []containerConfig
		calls   []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		path := r.URL.Path
		if path != "/version" {
			path = strings.TrimPrefix(path, "/v1.41")
		}
		calls = append(calls, r.Method+" "+path)
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
			created = append(created, c)
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
	defer srv.Close()
	e, err := New(Config{NodeID: "n1", Host: "tcp://" + srv.Listener.Addr().String(), Memory: 1 << 30, CPUs: 2, Pids: 100, TmpfsBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		gpus    []string
		devices []deviceRequest
		env     string
	}{
		{"no GPUs", nil, nil, "NVIDIA_VISIBLE_DEVICES=void"},
		{"two GPUs", []string{"1", "3"}, []deviceRequest{{Driver: "nvidia", DeviceIDs: []string{"1", "3"}, Capabilities: [][]string{{"gpu"}}}}, "NVIDIA_VISIBLE_DEVICES=1,3"},
	} {
		mu.Lock()
		created = nil
		mu.Unlock()
		root := jobDir(t, nil)
		var log syncBuffer
		if err := e.Run(t.Context(), worker.Task{JobID: "j1", Root: root, Timeout: time.Minute, Log: &log, GPUs: tc.gpus}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		mu.Lock()
		if len(created) != 1 {
			t.Fatalf("%s: %d containers created", tc.name, len(created))
		}
		c := created[0]
		mu.Unlock()
		if !reflect.DeepEqual(c.HostConfig.DeviceRequests, tc.devices) {
			t.Errorf("%s: device requests %+v, want %+v", tc.name, c.HostConfig.DeviceRequests, tc.devices)
		}
		var gpuEnv []string
		for _, kv := range c.Env {
			if strings.HasPrefix(kv, "NVIDIA_") || strings.HasPrefix(kv, "CUDA_") {
				gpuEnv = append(gpuEnv, kv)
			}
		}
		if !slices.Equal(gpuEnv, []string{tc.env}) {
			t.Errorf("%s: GPU environment %v, want [%s]", tc.name, gpuEnv, tc.env)
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
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(calls, "DELETE /containers/c0ffee") {
		t.Errorf("the container was not removed: %v", calls)
	}
}
