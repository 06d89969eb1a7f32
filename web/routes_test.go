package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

func TestUnmatchedRoutesAnswerJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wantError(t, e.do("GET", "/nope", e.acme, nil), http.StatusNotFound, "not_found")
	r := e.do("PUT", "/jobs", e.acme, nil)
	wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Fatalf("Allow %q", allow)
	}
	if r.header.Get("X-Pwmesh-Node") != "n1" {
		t.Fatal("no node header")
	}
	wantError(t, e.do("PUT", "/keys", e.admin, nil), http.StatusMethodNotAllowed, "method_not_allowed")
}

// failingWriter refuses every write with err.
type failingWriter struct{ err error }

func (f failingWriter) Apply(context.Context, scheduler.Command) (any, error) { return nil, f.err }

func TestWriteFailures(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("scheduler: submit_job: %w", scheduler.ErrNotLeader), 503, "no_leader"},
		{fmt.Errorf("forward: %w", scheduler.ErrNoLeader), 503, "no_leader"},
		{errors.New("raft: disk on fire"), 500, "internal"},
	} {
		e := newEnv(t, func(_ *web.Config, d *web.Deps) { d.Writer = failingWriter{c.err} })
		r := e.doJSON("POST", "/jobs", e.acme, map[string]any{"type": "generate_dataset"})
		wantError(t, r, c.status, c.code)
		if strings.Contains(string(r.body), "disk on fire") {
			t.Fatal("cause leaked to the client")
		}
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRequestLog(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	e := newEnv(t, func(c *web.Config, _ *web.Deps) {
		c.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	r := e.do("GET", "/jobs/job_nope", e.acme, nil, "X-Request-Id", "trace-42")
	wantError(t, r, http.StatusNotFound, "not_found")
	if got := r.header.Get("X-Request-Id"); got != "trace-42" {
		t.Fatalf("X-Request-Id %q, want the client's", got)
	}
	var body struct {
		Error struct {
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error.RequestID != "trace-42" {
		t.Fatalf("error body %s: want request_id trace-42 (%v)", r.body, err)
	}
	logs := buf.String()
	for _, want := range []string{
		`"level":"INFO","msg":"http request","method":"GET","path":"/jobs/job_nope","status":404,"duration":`,
		`"route":"GET /jobs/{id}","tenant":"acme","key_id":`,
		`"msg":"request refused"`, `"code":"not_found"`, `"err":`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	// Every line of the request names it, and only once.
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if strings.Count(line, `"request_id":"trace-42"`) != 1 {
			t.Errorf("line without the request's ID (or with it twice): %s", line)
		}
	}
	// The key's secret is never logged.
	if strings.Contains(logs, e.acme) {
		t.Errorf("the log holds an API key:\n%s", logs)
	}
}
