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

func TestNodeDrain(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"POST /nodes/{id}/drain": func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("id") != "n1" {
				writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": "node not found"}})
				return
			}
			writeJSON(w, http.StatusAccepted, map[string]any{"id": "n1", "state": "draining"})
		},
		"DELETE /nodes/{id}/drain": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"id": r.PathValue("id"), "state": "ready"})
		},
	})
	if r := cli(t, addr, nil, "node", "undrain", "n1"); r.code != 0 || !strings.Contains(r.stdout, "node n1 is ready") {
		t.Fatalf("undrain: code %d stdout %q", r.code, r.stdout)
	}
	r := cli(t, addr, nil, "node", "drain", "n1")
	r.wantCode(t, 0)
	if !strings.Contains(r.stdout, "node n1 is draining") {
		t.Fatalf("stdout %q", r.stdout)
	}
	if r := cli(t, addr, nil, "node", "drain", "n9"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("unknown node: code %d, stderr %q", r.code, r.stderr)
	}
	if r := cli(t, addr, nil, "node", "drain"); r.code == 0 {
		t.Fatal("drain without an ID succeeded")
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

func TestUsageInvoice(t *testing.T) {
	t.Parallel()
	const csvBody = "item,quantity,free,billable,unit_price,amount\ngpu_minutes,25.5,10,15.5,0.5,7.75\ntotal,,,,,7.75\n"
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /usage/invoice": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("month") != "2026-03" {
				apiError(w, http.StatusBadRequest, "invalid_month", "month "+r.URL.Query().Get("month"))
				return
			}
			if r.URL.Query().Get("tenant") == "globex" {
				apiError(w, http.StatusForbidden, "forbidden", "only an admin key may read another tenant's usage")
				return
			}
			if r.Header.Get("Accept") == "text/csv" {
				w.Header().Set("Content-Type", "text/csv")
				_, _ = io.WriteString(w, csvBody)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"tenant": "acme", "month": "2026-03", "currency": "USD",
				"lines": []map[string]any{
					{"item": "gpu_minutes", "quantity": 25.5, "free": 10, "billable": 15.5, "unit_price": 0.5, "amount": 7.75, "amount_cents": 775},
					{"item": "storage_gb_months", "quantity": 2.345678901, "free": 1, "billable": 1.345678901, "unit_price": 0.02, "amount": 0.03, "amount_cents": 3},
					{"item": "api_calls", "quantity": 100, "free": 100, "billable": 0, "unit_price": 0.001, "amount": 0, "amount_cents": 0},
				}, "total": 7.78, "total_cents": 778})
		},
	})
	r := cli(t, addr, nil, "usage", "--invoice", "--month", "2026-03")
	r.wantCode(t, 0)
	want := []string{
		"Invoice of acme for 2026-03 (USD)",
		"ITEM QUANTITY FREE BILLABLE UNIT PRICE AMOUNT",
		"gpu_minutes 25.5 10 15.5 0.5 7.75",
		"storage_gb_months 2.345678901 1 1.345678901 0.02 0.03",
		"api_calls 100 100 0 0.001 0.00",
		"TOTAL 7.78",
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("invoice:\n%s", r.stdout)
	}
	for i, l := range lines {
		if got := strings.Join(strings.Fields(l), " "); got != want[i] {
			t.Errorf("line %d = %q, want %q", i, got, want[i])
		}
	}
	r = cli(t, addr, nil, "usage", "--invoice", "--month", "2026-03", "--json")
	r.wantCode(t, 0)
	var inv struct {
		Total      float64 `json:"total"`
		TotalCents int64   `json:"total_cents"`
		Lines      []any   `json:"lines"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &inv); err != nil || inv.Total != 7.78 || inv.TotalCents != 778 || len(inv.Lines) != 3 {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}
	// --csv prints the node's CSV as it is, and implies --invoice.
	for _, args := range [][]string{{"usage", "--invoice", "--csv", "--month", "2026-03"}, {"usage", "--csv", "--month", "2026-03"}} {
		r = cli(t, addr, nil, args...)
		r.wantCode(t, 0)
		if r.stdout != csvBody {
			t.Errorf("%q: stdout %q", args, r.stdout)
		}
	}
	r = cli(t, addr, nil, "usage", "--invoice", "--month", "2026-03", "--tenant", "globex")
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "403 forbidden") {
		t.Errorf("another tenant's invoice: %q", r.stderr)
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
