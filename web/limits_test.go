package web_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/metering"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

// withRateLimits sets the per-key rate limits by tier.
func withRateLimits(l map[string]web.RateLimit) option {
	return func(c *web.Config, _ *web.Deps) { c.RateLimits = l }
}

// withMeter meters calls through the env's real Raft, as a node does.
func withMeter(t *testing.T) option {
	return func(c *web.Config, d *web.Deps) {
		m, err := metering.New(metering.Config{Node: "n1", Incarnation: "i1", Apply: d.Writer, Clock: c.Clock})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = m.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		d.Meter = m
	}
}

func retryAfter(t *testing.T, r resp) int {
	t.Helper()
	v, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil {
		t.Fatalf("Retry-After %q: %v", r.header.Get("Retry-After"), err)
	}
	return v
}

func TestRateLimitPerKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRateLimits(map[string]web.RateLimit{
		scheduler.PriorityFree: {PerSecond: 2, Burst: 3},
		scheduler.PriorityPaid: {PerSecond: 100, Burst: 100},
	}))
	// A burst of 3, then 429 rate_limited with the wait until a token.
	for range 3 {
		wantStatus(t, e.do("GET", "/jobs", e.acme, nil), http.StatusOK)
	}
	before := e.sig()
	r := e.doJSON("POST", "/jobs", e.acme, map[string]any{"type": "generate_dataset"})
	wantError(t, r, http.StatusTooManyRequests, "rate_limited")
	if ra := retryAfter(t, r); ra != 1 {
		t.Fatalf("Retry-After %d, want 1", ra)
	}
	if e.sig() != before {
		t.Fatal("a rate-limited submission changed the state")
	}
	// Another key (another tenant) has its own bucket; an admin key none.
	for range 10 {
		wantStatus(t, e.do("GET", "/jobs", e.globex, nil), http.StatusOK)
		wantStatus(t, e.do("GET", "/jobs", e.admin, nil), http.StatusOK)
	}
	// Half a second later, one more.
	e.clock.set(testNow.Add(500 * time.Millisecond))
	wantStatus(t, e.do("GET", "/jobs", e.acme, nil), http.StatusOK)
	wantStatus(t, e.do("GET", "/jobs", e.acme, nil), http.StatusTooManyRequests)
}

func TestDailyCallQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withMeter(t))
	// acme is free: 100 calls a UTC day, whatever they are.
	for i := range 100 {
		path := "/jobs"
		if i%2 == 1 {
			path = "/usage"
		}
		wantStatus(t, e.do("GET", path, e.acme, nil), http.StatusOK)
	}
	before := e.sig()
	r := e.doJSON("POST", "/jobs", e.acme, map[string]any{"type": "generate_dataset"})
	wantError(t, r, http.StatusTooManyRequests, "quota_exceeded")
	next := time.Date(testNow.Year(), testNow.Month(), testNow.Day()+1, 0, 0, 0, 0, time.UTC)
	if ra := retryAfter(t, r); ra != int(next.Sub(testNow).Seconds()) {
		t.Fatalf("Retry-After %d, want %d (to the next UTC day)", ra, int(next.Sub(testNow).Seconds()))
	}
	if e.sig().objects != before.objects {
		t.Fatal("a refused call stored something")
	}
	if j, _ := e.fsm.Jobs(scheduler.JobFilter{Tenant: "acme"}); len(j) != 0 {
		t.Fatalf("a refused submission made %d jobs", len(j))
	}
	// Refused calls are not counted; /health and /metrics are not calls;
	// other tenants and the admin go on.
	wantStatus(t, e.do("GET", "/health", "", nil), http.StatusOK)
	wantStatus(t, e.do("GET", "/jobs", e.globex, nil), http.StatusOK)
	wantStatus(t, e.do("GET", "/jobs", e.admin, nil), http.StatusOK)
	if u := e.fsm.Usage("acme", testNow, testNow); u.APICalls != 100 || u.APICallsDay != 100 {
		t.Fatalf("ledger %+v, want 100 calls", u)
	}
	if u := e.fsm.Usage("admin", testNow, testNow); u.APICalls != 0 {
		t.Fatalf("the admin's calls were metered: %d", u.APICalls)
	}
	// The next UTC day, calls go through again; /usage says so.
	e.clock.set(next)
	r = e.do("GET", "/usage", e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	var u struct {
		APICalls int64 `json:"api_calls"`
	}
	r.decode(t, &u)
	if u.APICalls != 101 {
		t.Fatalf("/usage api_calls %d, want 101 (this call included)", u.APICalls)
	}
}
