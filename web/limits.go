package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/pwmesh/pwmesh/scheduler"
)

// Meter counts API calls exactly (node/metering): Call returns once the
// call is committed to the usage ledger, or an error wrapping
// scheduler.ErrQuota when the tenant's daily calls are used.
type Meter interface {
	Call(ctx context.Context, tenant string) error
}

// RateLimit is a per-key token bucket: PerSecond requests a second on
// average, Burst at once.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// DefaultRateLimits are the per-key request rates of each tier, on each
// node; an admin key has none.
var DefaultRateLimits = map[string]RateLimit{
	scheduler.PriorityFree: {PerSecond: 5, Burst: 20},
	scheduler.PriorityPaid: {PerSecond: 100, Burst: 200},
}

// maxLimiters bounds the per-key buckets a node keeps; past it, the idle
// ones are dropped (a dropped bucket starts full again).
const maxLimiters = 10000

// limiters holds the per-key token buckets of this node.
type limiters struct {
	mu   sync.Mutex
	byID map[string]*limiter
}

type limiter struct {
	l    *rate.Limiter
	tier string
	used time.Time
}

// take spends one token of key id at now; when none is left it returns
// how long until one is.
func (ls *limiters) take(id, tier string, lim RateLimit, now time.Time) (time.Duration, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.byID == nil {
		ls.byID = map[string]*limiter{}
	}
	l := ls.byID[id]
	if l == nil || l.tier != tier {
		if len(ls.byID) >= maxLimiters {
			ls.evict(now)
		}
		l = &limiter{l: rate.NewLimiter(rate.Limit(lim.PerSecond), lim.Burst), tier: tier}
		ls.byID[id] = l
	}
	l.used = now
	r := l.l.ReserveN(now, 1)
	if !r.OK() {
		return time.Hour, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// evict drops the buckets idle for a minute (full again by then at any
// sane rate), or all when none is.
func (ls *limiters) evict(now time.Time) {
	for id, l := range ls.byID {
		if now.Sub(l.used) > time.Minute {
			delete(ls.byID, id)
		}
	}
	if len(ls.byID) >= maxLimiters {
		clear(ls.byID)
	}
}

// admit applies the per-key rate limit and meters the call: every
// authenticated request passes here before it is served. A refusal is a
// 429 with Retry-After; a call refused is not counted.
func (s *Server) admit(r *http.Request, c *caller) error {
	if c.key.Admin || scheduler.ReservedTenant(c.tenant()) {
		return nil // the operators' own keys: no rate, no quota, no bill
	}
	if lim, ok := s.cfg.RateLimits[c.tier()]; ok && lim.PerSecond > 0 {
		if wait, ok := s.limits.take(c.key.ID, c.tier(), lim, s.now()); !ok {
			return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", RetryAfter: wait,
				Message: fmt.Sprintf("this key may make %g requests a second (bursts of %d) on this node; slow down", lim.PerSecond, lim.Burst)}
		}
	}
	if s.deps.Meter == nil {
		return nil
	}
	err := s.deps.Meter.Call(r.Context(), c.tenant())
	switch {
	case err == nil, errors.Is(err, scheduler.ErrQuota):
		return err // a quota: classify answers 429 with Retry-After
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: "no_leader",
		Message: "this call could not be metered (the cluster has no leader); retry shortly", Err: err}
}

// quotaMessage is a quota refusal's text from "quota exceeded" on: the
// operation's context before it ("submit job j1: ...") is the server's.
func quotaMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, scheduler.ErrQuota.Error()+": "); i >= 0 {
		return msg[i:]
	}
	return msg
}
