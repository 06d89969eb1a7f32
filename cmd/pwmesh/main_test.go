package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

const testToken = "test-token"

// result is what one CLI run left behind.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs the command line with PWMESH_ADDR=addr and PWMESH_TOKEN=testToken
// unless env overrides them.
func cli(t *testing.T, addr string, env map[string]string, args ...string) result {
	t.Helper()
	vars := map[string]string{envAddr: addr, envToken: testToken}
	for k, v := range env {
		vars[k] = v
	}
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return vars[k] })
	return result{code, stdout.String(), stderr.String()}
}

// wantCode fails the test unless r exited with code.
func (r result) wantCode(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// fakeAPI starts an httptest server with the given contract routes; every
// route but /health wants the bearer testToken and answers 401 otherwise.
func fakeAPI(t *testing.T, routes map[string]http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(apiMux(routes))
	t.Cleanup(srv.Close)
	return srv.URL
}

// apiMux serves routes, wanting the bearer testToken on all but /health.
func apiMux(routes map[string]http.HandlerFunc) *http.ServeMux {
	mux := http.NewServeMux()
	for pattern, h := range routes {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/health" && r.Header.Get("Authorization") != "Bearer "+testToken {
				apiError(w, http.StatusUnauthorized, "unauthorized", "missing or bad API key")
				return
			}
			h(w, r)
		})
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// closedAddr is the URL of a server that is no longer listening.
func closedAddr(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

// jobRoute serves GET /jobs/{id} from a function of the poll number.
func jobRoute(job func(id string) scheduler.Job) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, job(r.PathValue("id")))
	}
}

// requestLog records the headers of the requests a fake route saw.
type requestLog struct {
	mu      sync.Mutex
	headers []http.Header
}

func (l *requestLog) add(h http.Header) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.headers = append(l.headers, h.Clone())
}

// get returns header name of every request, in order ("" where absent).
func (l *requestLog) get(name string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	vs := make([]string, len(l.headers))
	for i, h := range l.headers {
		vs[i] = h.Get(name)
	}
	return vs
}

// blobRoute serves content with ETag "etag" through http.ServeContent, as
// the node does (Range and If-Range honoured), and logs each request.
func blobRoute(contentType, etag string, content []byte, log *requestLog) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		log.add(r.Header)
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("ETag", `"`+etag+`"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
	}
}

func TestUnauthorizedHint(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{"GET /nodes": func(http.ResponseWriter, *http.Request) {}})
	r := cli(t, addr, map[string]string{envToken: "wrong"}, "nodes")
	r.wantCode(t, 1)
	if !strings.HasPrefix(r.stderr, "pwmesh: 401 unauthorized: missing or bad API key\n") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if !strings.Contains(r.stderr, "set PWMESH_TOKEN to an API key; the admin token of a dev node is in <data-dir>/bootstrap-token") {
		t.Errorf("stderr has no 401 hint: %q", r.stderr)
	}
}

func TestConnectionRefusedHint(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	r := cli(t, addr, nil, "job", "get", "j1")
	r.wantCode(t, 1)
	if !strings.HasPrefix(r.stderr, "pwmesh: ") || !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if !strings.Contains(r.stderr, "is a node running at "+addr) || !strings.Contains(r.stderr, "pwmesh agent --dev") {
		t.Errorf("stderr has no connection hint: %q", r.stderr)
	}
}

func TestAddrFlagOverridesEnv(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /jobs/{id}": jobRoute(func(id string) scheduler.Job { return scheduler.Job{ID: id, State: "running"} }),
	})
	r := cli(t, closedAddr(t), map[string]string{envToken: "wrong"}, "job", "get", "j1", "--addr", addr, "--token", testToken)
	r.wantCode(t, 0)
	if !strings.Contains(r.stdout, "running") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t) // a usage error must fail before any request
	for _, args := range [][]string{
		{"bogus"},
		{"--no-such-flag"},
		{"job"},
		{"job", "bogus"},
		{"job", "get"},
		{"job", "get", "a", "b"},
		{"job", "submit"},
		{"job", "submit", "--type", "calibrate", "--param", "novalue"},
		{"job", "submit", "--type", "calibrate", "--params-json", "[1]"},
		{"job", "submit", "--type", "calibrate", "--priority", "urgent"},
		{"job", "submit", "--type", "calibrate", "--timeout", "soon"},
		{"job", "submit", "--type", "calibrate", "--gpus", "two"},
		{"job", "list", "--state", "sleeping"},
		{"job", "list", "--type", "train"},
		{"job", "wait", "j1", "--timeout", "-1s"},
		{"dataset", "upload"},
		{"dataset", "download"},
		{"dataset", "download", "ds-1", "--progress", "sometimes"},
		{"usage", "--month", "2025-13"},
		{"usage", "--month", "2025-3"},
		{"usage", "--csv", "--json"},
		{"usage", "--invoice", "extra"},
		{"tenant"},
		{"tenant", "get"},
		{"tenant", "set", "acme"},
		{"tenant", "set", "acme", "--tier", "gold"},
		{"tenant", "set", "acme", "--pool", "Not A Pool"},
		{"tenant", "set", "acme", "--quota", "gpu_hours=5"},
		{"tenant", "set", "acme", "--quota", "storage_bytes"},
		{"tenant", "set", "acme", "--quota", "storage_bytes=-1"},
		{"tenant", "set", "acme", "--quota", "storage_bytes=lots"},
		{"tenant", "set", "acme", "--quota", "queued_jobs=1", "--quota", "queued_jobs=default"},
		{"tenant", "set", "acme", "--pool-only=maybe"},
		{"key", "create", "--tenant", "acme"},
		{"key", "create", "--tenant", "acme", "--tier", "gold"},
		{"bundle", "verify"},
		{"nodes", "extra"},
	} {
		r := cli(t, addr, nil, args...)
		if r.code != 2 {
			t.Errorf("%q: exit %d, want 2\nstderr: %s", args, r.code, r.stderr)
			continue
		}
		if !strings.HasPrefix(r.stderr, "pwmesh: ") || strings.Contains(r.stderr, "connection refused") {
			t.Errorf("%q: stderr = %q", args, r.stderr)
		}
	}
}

func TestHelpExits0(t *testing.T) {
	t.Parallel()
	r := cli(t, "", nil, "--help")
	r.wantCode(t, 0)
	for _, sub := range []string{"agent", "job", "dataset", "nodes", "usage", "key", "tenant", "bundle", "version"} {
		if !strings.Contains(r.stdout, sub) {
			t.Errorf("help does not list %q:\n%s", sub, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "workload") {
		t.Errorf("help lists the hidden workload command")
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := cli(t, "", nil, "version")
	r.wantCode(t, 0)
	if !strings.HasPrefix(r.stdout, "pwmesh "+version+"\ncommit ") || !strings.Contains(r.stdout, "go1.") {
		t.Errorf("stdout = %q", r.stdout)
	}
	r = cli(t, "", nil, "version", "--json")
	r.wantCode(t, 0)
	var v map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["version"] != version || v["commit"] == "" || v["go"] == "" {
		t.Errorf("version --json = %q (%v)", r.stdout, err)
	}
}
