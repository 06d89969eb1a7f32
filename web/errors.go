package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

// Error is an error with the HTTP status and the snake_case code the client
// sees. Message is shown to the client; Err, when set, is the cause that only
// the log gets.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
	// RetryAfter, when above 0, is sent as the Retry-After header (in
	// whole seconds, rounded up).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// ErrUnknownJobType may be wrapped by Deps.ValidateParams to report a job
// type it does not know; the client then gets 400 "unknown_job_type".
var ErrUnknownJobType = errors.New("unknown job type")

// apiError builds an *Error whose message is formatted.
func apiError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) *Error {
	return apiError(http.StatusBadRequest, code, format, args...)
}

func notFound(what string) *Error {
	return apiError(http.StatusNotFound, "not_found", "%s not found", what)
}

// errorBody is the one error shape of the API.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// RequestID is the ID the request was logged under (an extension of
	// CONTRACT.md §3's shape).
	RequestID string `json:"request_id,omitempty"`
}

// classify maps any error a handler returns to what the client sees. Errors
// of the server itself get a generic message: the cause goes to the log.
func classify(err error) *Error {
	var e *Error
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &tooLarge):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
			Message: fmt.Sprintf("request body exceeds %d bytes", tooLarge.Limit), Err: err}
	case errors.Is(err, scheduler.ErrNotFound), errors.Is(err, cas.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "not found", Err: err}
	case errors.Is(err, scheduler.ErrIdempotencyMismatch):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "idempotency_key_reused",
			Message: "this Idempotency-Key was used with a different request; use a new key for a new request", Err: err}
	case errors.Is(err, scheduler.ErrForbidden):
		return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "this key may not make this change", Err: err}
	case errors.Is(err, scheduler.ErrConflict), errors.Is(err, scheduler.ErrStaleToken):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: scrubPaths(err.Error()), Err: err}
	case errors.Is(err, scheduler.ErrQuota):
		return &Error{Status: http.StatusTooManyRequests, Code: "quota_exceeded", Message: scrubPaths(quotaMessage(err)), Err: err}
	case errors.Is(err, scheduler.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Message: scrubPaths(err.Error()), Err: err}
	case errors.Is(err, scheduler.ErrNotLeader), errors.Is(err, scheduler.ErrNoLeader):
		return &Error{Status: http.StatusServiceUnavailable, Code: "no_leader",
			Message: "the cluster has no leader yet; retry shortly", Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Code: "timeout",
			Message: "the cluster did not answer in time; retry shortly", Err: err}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return &Error{Status: 499, Code: "cancelled", Message: "request cancelled", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", Err: err}
}

// hostPath matches an absolute file path of two or more elements that
// starts a word: "/tmp/x/data/jobs/job_1/out.npy" but not the path of a
// URL ("http://host/a/b").
var hostPath = regexp.MustCompile(`(^|[\s"'=(\[])(?:/[^/\s"':;,()\[\]{}]+)*/([^/\s"':;,()\[\]{}]+)`)

// scrubPaths replaces the host paths in a message a client sees (a job's
// error, a cause's text) by their last element: where a node keeps its
// files is none of a tenant's business.
func scrubPaths(msg string) string {
	if !strings.Contains(msg, "/") {
		return msg
	}
	return hostPath.ReplaceAllStringFunc(msg, func(m string) string {
		sub := hostPath.FindStringSubmatch(m)
		if strings.Count(m[len(sub[1]):], "/") < 2 {
			return m // "/jobs" or a single "/x": not a host path
		}
		return sub[1] + ".../" + sub[2]
	})
}

// retryAfter is how long a client refused with e (for err) should wait
// before it tries again: e's own RetryAfter, else for a quota that renews,
// the time to its renewal at now: the next UTC day for API calls, the next
// UTC month for GPU-minutes. Storage and queued jobs free up when the
// tenant acts, not with time: none.
func retryAfter(e *Error, err error, now time.Time) time.Duration {
	if e.RetryAfter > 0 {
		return e.RetryAfter
	}
	if e.Code != "quota_exceeded" {
		return 0
	}
	now = now.UTC()
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch scheduler.QuotaOf(err) {
	case scheduler.QuotaAPICalls:
		return day.AddDate(0, 0, 1).Sub(now)
	case scheduler.QuotaGPUMinutes:
		return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0).Sub(now)
	}
	return 0
}
