package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// fields compares the lines of out, with runs of spaces as one, to want.
func fields(t *testing.T, out string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s\nwant %d lines", out, len(want))
	}
	for i, l := range lines {
		if got := strings.Join(strings.Fields(l), " "); got != want[i] {
			t.Errorf("line %d = %q, want %q", i, got, want[i])
		}
	}
}

var acmeTenant = map[string]any{"tenant": "acme", "tier": "free", "pool": "gpu-a", "pool_only": true,
	"quotas":    map[string]any{"api_calls_per_day": 100, "gpu_minutes_per_month": 0.5, "storage_bytes": 1e9, "queued_jobs": 100},
	"overrides": map[string]any{"gpu_minutes_per_month": 0.5}, "created_at": "2026-03-01T10:00:00Z"}

func TestTenantListAndGet(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /tenants": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"tenants": []map[string]any{acmeTenant,
				{"tenant": "globex", "tier": "paid", "pool": "shared", "pool_only": false,
					"quotas":    map[string]any{"api_calls_per_day": nil, "gpu_minutes_per_month": nil, "storage_bytes": 100e9, "queued_jobs": 10000},
					"overrides": map[string]any{}, "created_at": "2026-03-02T10:00:00Z"}}})
		},
		"GET /tenants/{tenant}": func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("tenant") != "acme" {
				apiError(w, http.StatusNotFound, "not_found", "tenant "+r.PathValue("tenant")+" not found")
				return
			}
			writeJSON(w, http.StatusOK, acmeTenant)
		},
	})
	r := cli(t, addr, nil, "tenant", "list")
	r.wantCode(t, 0)
	fields(t, r.stdout, []string{
		"TENANT TIER POOL CALLS/DAY GPU-MIN/MONTH STORAGE QUEUED CREATED",
		"acme free gpu-a (only) 100 0.5* 1 GB 100 2026-03-01T10:00:00Z",
		"globex paid shared unlimited unlimited 100 GB 10000 2026-03-02T10:00:00Z",
	})
	r = cli(t, addr, nil, "tenant", "list", "--json")
	r.wantCode(t, 0)
	var l []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || len(l) != 2 || l[1]["tenant"] != "globex" {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}

	r = cli(t, addr, nil, "tenant", "get", "acme")
	r.wantCode(t, 0)
	fields(t, r.stdout, []string{
		"tenant acme",
		"tier free",
		"pool gpu-a (only)",
		"created 2026-03-01T10:00:00Z",
		"api_calls_per_day 100",
		"gpu_minutes_per_month 0.5 (set by an operator)",
		"storage_bytes 1000000000",
		"queued_jobs 100",
	})
	r = cli(t, addr, nil, "tenant", "get", "nobody")
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "404 not_found") {
		t.Errorf("get of an unknown tenant: %q", r.stderr)
	}
}

func TestTenantSet(t *testing.T) {
	t.Parallel()
	var bodies []string
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"PATCH /tenants/{tenant}": func(w http.ResponseWriter, r *http.Request) {
			var body map[string]any
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				apiError(w, 400, "invalid_json", err.Error())
				return
			}
			b, _ := json.Marshal(body)
			bodies = append(bodies, r.PathValue("tenant")+" "+string(b))
			writeJSON(w, http.StatusOK, acmeTenant)
		},
	})
	r := cli(t, addr, nil, "tenant", "set", "acme", "--tier", "paid", "--pool", "gpu-a", "--pool-only",
		"--quota", "gpu_minutes_per_month=0.5", "--quota", "storage_bytes=default")
	r.wantCode(t, 0)
	if !strings.Contains(r.stdout, "gpu_minutes_per_month") || !strings.Contains(r.stdout, "(set by an operator)") {
		t.Errorf("stdout %q", r.stdout)
	}
	cli(t, addr, nil, "tenant", "set", "acme", "--pool-only=false", "--json").wantCode(t, 0)
	cli(t, addr, nil, "tenant", "set", "acme", "--pool", "shared").wantCode(t, 0)
	want := []string{
		`acme {"pool":"gpu-a","pool_only":true,"quotas":{"gpu_minutes_per_month":0.5,"storage_bytes":null},"tier":"paid"}`,
		`acme {"pool_only":false}`,
		`acme {"pool":"shared"}`,
	}
	if strings.Join(bodies, "\n") != strings.Join(want, "\n") {
		t.Fatalf("bodies\n%s\nwant\n%s", strings.Join(bodies, "\n"), strings.Join(want, "\n"))
	}
}
