package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// SubmitJob submits req (POST /jobs). The idempotencyKey is sent as the
// Idempotency-Key header: resubmitting with the same key gives back the
// job of the first submit instead of a second job. An empty one is made
// up, so that a submission that met a failover (503 no_leader) can be sent
// again without risking a second job.
func (c *Client) SubmitJob(ctx context.Context, req scheduler.JobRequest, idempotencyKey string) (scheduler.Job, error) {
	if idempotencyKey == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		idempotencyKey = "client-" + hex.EncodeToString(b[:])
	}
	r := request{method: http.MethodPost, path: "/jobs", json: req,
		header: http.Header{"Idempotency-Key": {idempotencyKey}}}
	var j scheduler.Job
	err := c.doJSON(ctx, r, &j)
	return j, err
}

// GetJob returns the job with that id.
func (c *Client) GetJob(ctx context.Context, id string) (scheduler.Job, error) {
	var j scheduler.Job
	err := c.doJSON(ctx, request{method: http.MethodGet, path: pathf("/jobs/%s", id)}, &j)
	return j, err
}

// ListJobsOptions filters GET /jobs. Zero values are left out.
type ListJobsOptions struct {
	State  string // a job state, e.g. scheduler.StateQueued
	Type   string // a job type, e.g. "calibrate"
	Limit  int    // page size; 0 lets the node choose
	Cursor string // the nextCursor of the previous page
}

// ListJobs returns one page of the caller's jobs and the cursor of the next
// page, empty on the last page.
func (c *Client) ListJobs(ctx context.Context, opts ListJobsOptions) (jobs []scheduler.Job, nextCursor string, err error) {
	q := url.Values{}
	if opts.State != "" {
		q.Set("state", opts.State)
	}
	if opts.Type != "" {
		q.Set("type", opts.Type)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	var page struct {
		Jobs       []scheduler.Job `json:"jobs"`
		NextCursor *string         `json:"next_cursor"`
	}
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/jobs", query: q}, &page); err != nil {
		return nil, "", err
	}
	if page.NextCursor != nil {
		nextCursor = *page.NextCursor
	}
	return page.Jobs, nextCursor, nil
}

// CancelJob asks the job to stop (POST /jobs/{id}/cancel) and returns it. A
// running job may still show "running" until its runner has stopped it.
func (c *Client) CancelJob(ctx context.Context, id string) (scheduler.Job, error) {
	var j scheduler.Job
	err := c.doJSON(ctx, request{method: http.MethodPost, path: pathf("/jobs/%s/cancel", id)}, &j)
	return j, err
}

// WaitJob follows the job until it reaches a terminal state and returns
// it. Each request asks the node to answer when the state changes
// (GET /jobs/{id}?wait=), so a wait costs a call per change of state (or
// per 30 s), not one per poll; poll (1s when <= 0) spaces the retries of a
// 502, 503 or 504 answer (no leader yet, a node in between restarting).
// Any other error ends the wait; ctx's end returns its error together with
// the last job seen.
func (c *Client) WaitJob(ctx context.Context, id string, poll time.Duration) (scheduler.Job, error) {
	if poll <= 0 {
		poll = time.Second
	}
	j, err := c.GetJob(ctx, id)
	if err != nil || scheduler.Terminal(j.State) {
		return j, err
	}
	for {
		next, err := c.waitJobChange(ctx, id, j.State, 30*time.Second)
		if ctx.Err() != nil {
			return j, fmt.Errorf("pwmesh: wait for job %s (last state %s): %w", id, j.State, ctx.Err())
		}
		if transient(err) {
			select {
			case <-ctx.Done():
				return j, fmt.Errorf("pwmesh: wait for job %s (last state %s): %w", id, j.State, ctx.Err())
			case <-time.After(poll):
			}
			continue // e.g. 503 while a new leader is elected
		}
		if err != nil {
			return j, err
		}
		j = next
		if scheduler.Terminal(j.State) {
			return j, nil
		}
	}
}

// waitJobChange asks for the job once it is no longer in state from, or
// after wait (GET /jobs/{id}?wait=&state=).
func (c *Client) waitJobChange(ctx context.Context, id, from string, wait time.Duration) (scheduler.Job, error) {
	var j scheduler.Job
	q := url.Values{"wait": {wait.String()}, "state": {from}}
	err := c.doJSON(ctx, request{method: http.MethodGet, path: pathf("/jobs/%s", id), query: q}, &j)
	return j, err
}

// Logs returns the job's log text. With follow the node keeps the stream
// open until the job ends (or ctx does). The caller closes the reader.
func (c *Client) Logs(ctx context.Context, id string, follow bool) (io.ReadCloser, error) {
	var q url.Values
	if follow {
		q = url.Values{"follow": {"1"}}
	}
	resp, err := c.do(ctx, request{
		method: http.MethodGet,
		path:   pathf("/jobs/%s/logs", id),
		query:  q,
		header: http.Header{"Accept": {"text/plain"}},
	})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// transient reports whether err is an API answer worth retrying later.
func transient(err error) bool {
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.Status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}
