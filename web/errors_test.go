package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("scheduler: submit_job: %w", err) }
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{wrap(scheduler.ErrNotFound), 404, "not_found"},
		{wrap(scheduler.ErrConflict), 409, "conflict"},
		{wrap(scheduler.ErrStaleToken), 409, "conflict"},
		{wrap(scheduler.ErrInvalid), 400, "invalid"},
		{wrap(scheduler.ErrNotLeader), 503, "no_leader"},
		{wrap(scheduler.ErrNoLeader), 503, "no_leader"},
		{fmt.Errorf("open: %w", cas.ErrNotFound), 404, "not_found"},
		{&http.MaxBytesError{Limit: 10}, 413, "too_large"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), 503, "timeout"},
		{fmt.Errorf("wrapped: %w", apiError(418, "teapot", "short and stout")), 418, "teapot"},
		{errors.New("disk on fire"), 500, "internal"},
	} {
		e := classify(c.err)
		if e.Status != c.status || e.Code != c.code || e.Message == "" {
			t.Errorf("classify(%v) = %d %q %q, want %d %q", c.err, e.Status, e.Code, e.Message, c.status, c.code)
		}
	}
	// Server faults do not leak their cause to the client.
	if e := classify(errors.New("disk on fire at /var/lib")); e.Message != "internal error" {
		t.Errorf("message %q", e.Message)
	}
}

// asJob reads the answer of a Writer in any shape it may deliver.
func TestAsJob(t *testing.T) {
	t.Parallel()
	j := scheduler.Job{ID: "job_1", Tenant: "acme", State: scheduler.StateQueued}
	for _, v := range []any{j, &j, map[string]any{"id": "job_1", "tenant": "acme", "state": "queued"}, []byte(`{"id":"job_1"}`)} {
		got, ok := asJob(v)
		if _, isBytes := v.([]byte); isBytes {
			if ok {
				t.Errorf("asJob(bytes) = %+v", got)
			}
			continue
		}
		if !ok || got.ID != "job_1" || got.Tenant != "acme" {
			t.Errorf("asJob(%T) = %+v %v", v, got, ok)
		}
	}
	for _, v := range []any{nil, (*scheduler.Job)(nil), scheduler.Job{}, func() {}} {
		if _, ok := asJob(v); ok {
			t.Errorf("asJob(%T) ok", v)
		}
	}
}
