package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/cas/bundle"
	"github.com/pwmesh/pwmesh/mesh"
)

func TestNodesTable(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /nodes": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"nodes":[
				{"id":"n1","region":"eu","role":"leader","state":"ready","gpus":[
					{"index":0,"model":"A100-80GB","memory_mb":81920,"utilization":0,"uuid":"G0"},
					{"index":1,"model":"A100-80GB","memory_mb":81920,"utilization":0,"uuid":"G1"},
					{"index":2,"model":"T4-16GB","memory_mb":16384,"utilization":0,"uuid":"G2"},
					{"index":3,"model":"T4-16GB","memory_mb":16384,"utilization":0,"uuid":"G3","healthy":false,"problem":"XID 79"}]},
				{"id":"n2","region":"us","role":"worker","state":"down","gpus":[]}]}`)
		},
	})
	r := cli(t, addr, nil, "nodes")
	r.wantCode(t, 0)
	want := []string{
		"ID REGION ROLE STATE GPUS",
		"n1 eu leader ready 2xA100-80GB, 1xT4-16GB, 1xT4-16GB (out of service)",
		"n2 us worker down -",
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("nodes:\n%s", r.stdout)
	}
	for i, l := range lines {
		if got := strings.Join(strings.Fields(l), " "); got != want[i] {
			t.Errorf("line %d = %q, want %q", i, got, want[i])
		}
	}
	r = cli(t, addr, nil, "nodes", "--json")
	r.wantCode(t, 0)
	var nodes []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &nodes); err != nil || len(nodes) != 2 || nodes[0]["role"] != "leader" {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /usage": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{
				"month":    r.URL.Query().Get("month"),
				"gpu_s":    7200,
				"cost_usd": 1.25,
				"quota":    map[string]any{"gpu_s": 36000},
			})
		},
	})
	r := cli(t, addr, nil, "usage", "--month", "2025-02")
	r.wantCode(t, 0)
	for _, want := range []string{"month     2025-02", "cost_usd  1.25", "gpu_s     7200", "quota.gpu_s  36000"} {
		if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("usage lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cli(t, addr, nil, "usage", "--json")
	r.wantCode(t, 0)
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["cost_usd"] != 1.25 {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}
}

func TestKeyCreate(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"POST /keys": func(w http.ResponseWriter, r *http.Request) {
			var body map[string]string
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body["tenant"] != "acme" || body["tier"] != "paid" {
				apiError(w, 400, "bad_request", "bad body")
				return
			}
			writeJSON(w, http.StatusCreated, map[string]string{"key": "pwk_s3cret", "tenant": "acme", "tier": "paid"})
		},
	})
	r := cli(t, addr, nil, "key", "create", "--tenant", "acme", "--tier", "paid")
	r.wantCode(t, 0)
	if r.stdout != "pwk_s3cret\n" || !strings.Contains(r.stderr, "Store it now") {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
	r = cli(t, addr, nil, "key", "create", "--tenant", "acme", "--tier", "paid", "--json")
	r.wantCode(t, 0)
	var k map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &k); err != nil || k["key"] != "pwk_s3cret" {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}
}

// writeBundle writes a valid RunBundle to a temp file and returns its path
// and bytes.
func writeBundle(t *testing.T) (string, bundle.Built) {
	t.Helper()
	b, err := bundle.Build(bundle.Manifest{
		SpecID:    "spec-1",
		Timestamp: "2025-03-01T12:00:00Z",
		Metrics:   map[string]any{"psnr_db": 30.0},
		Artifacts: map[string]string{"x_hat": "x_hat.npy"},
	}, map[string][]byte{
		"x_hat.npy":       []byte("\x93NUMPY fake"),
		"logs/stdout.txt": []byte("hello from the workload\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "b.runbundle.tar")
	if err := os.WriteFile(path, b.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

func TestBundleVerify(t *testing.T) {
	t.Parallel()
	path, b := writeBundle(t)
	r := cli(t, "", nil, "bundle", "verify", path)
	r.wantCode(t, 0)
	if want := "ok " + b.Ref.CID.String() + " sha256:" + b.Ref.SHA256 + " 2 files\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	r = cli(t, "", nil, "bundle", "verify", path, "--json")
	r.wantCode(t, 0)
	var v struct {
		OK    bool
		CID   string
		Files int
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || !v.OK || v.CID != b.Ref.CID.String() || v.Files != 2 {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}
}

func TestBundleVerifyTampered(t *testing.T) {
	t.Parallel()
	path, b := writeBundle(t)
	data := bytes.Clone(b.Data)
	i := bytes.Index(data, []byte("hello from the workload"))
	data[i] ^= 0x20
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := cli(t, "", nil, "bundle", "verify", path)
	r.wantCode(t, 1)
	if r.stdout != "" || !strings.HasPrefix(r.stderr, "pwmesh: "+path+": ") || !strings.Contains(r.stderr, "logs/stdout.txt") {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

func TestKeygen(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"keygen"}, nil, &out, &errb, func(string) string { return "" }); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, errb.String())
	}
	if _, err := mesh.ParseClusterKey(out.Bytes()); err != nil {
		t.Fatalf("keygen printed an invalid key: %v", err)
	}
	file := filepath.Join(t.TempDir(), "cluster.key")
	if code := run(context.Background(), []string{"keygen", "-o", file}, nil, &out, &errb, func(string) string { return "" }); code != 0 {
		t.Fatalf("keygen -o exit %d: %s", code, errb.String())
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	if code := run(context.Background(), []string{"keygen", "-o", file}, nil, &out, &errb, func(string) string { return "" }); code == 0 {
		t.Fatal("keygen overwrote an existing key file")
	}
}
