package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The usage ledger: what each tenant used, by UTC month (GPU time, API
// calls) and by UTC day (API calls, for the daily quota). It is part of
// the replicated state, snapshots included, so every node bills the same
// and a restored node agrees. Job records are not read for billing: a
// pruned job's GPU time stays in the ledger, and every attempt of a job
// is charged, not only the last.

const (
	monthLayout = "2006-01"
	dayLayout   = "2006-01-02"
	// dailyKept: days of API-call counts kept for the daily quota.
	dailyKept = 2
)

// Usage is one tenant's month in the ledger.
type Usage struct {
	Tenant string `json:"tenant"`
	Month  string `json:"month"` // YYYY-MM, UTC
	// GPUTime is GPUs × run time of the attempts that ended, each attempt
	// rounded to the second.
	GPUTime  time.Duration `json:"gpu_time"`
	APICalls int64         `json:"api_calls"`
}

// MeterCalls commits API calls answered (or about to be) by a node:
// tenant → how many. The leader's FSM grants each tenant what its daily
// quota leaves; the node answers that many and refuses the rest with 429.
// (Node, Incarnation, Seq) makes it repeatable: the same batch sent again
// after a leader change gets the first answer and is counted once.
type MeterCalls struct {
	At          time.Time        `json:"at"`
	Node        string           `json:"node"`
	Incarnation string           `json:"incarnation"`
	Seq         uint64           `json:"seq"`
	Calls       map[string]int64 `json:"calls"`
}

func (MeterCalls) Type() CommandType { return CmdMeterCalls }

// MeterResult is MeterCalls' answer.
type MeterResult struct {
	Day     string           `json:"day"`
	Allowed map[string]int64 `json:"allowed"`
}

// meterMark is the last batch a node's incarnation had applied.
type meterMark struct {
	Node        string      `json:"node"`
	Incarnation string      `json:"incarnation"`
	Seq         uint64      `json:"seq"`
	Result      MeterResult `json:"result"`
}

func usageKey(tenant string, at time.Time) string {
	return tenant + "\x00" + at.UTC().Format(monthLayout)
}

func dayKey(tenant string, at time.Time) string {
	return tenant + "\x00" + at.UTC().Format(dayLayout)
}

func (s *state) ledger(tenant string, at time.Time) *Usage {
	k := usageKey(tenant, at)
	u := s.usage[k]
	if u == nil {
		u = &Usage{Tenant: tenant, Month: at.UTC().Format(monthLayout)}
		s.usage[k] = u
	}
	return u
}

func (s *state) meterCalls(c *MeterCalls) (MeterResult, error) {
	if c.Node == "" || c.Seq == 0 {
		return MeterResult{}, fmt.Errorf("meter calls: %w: node and seq are required", ErrInvalid)
	}
	for t, n := range c.Calls {
		if t == "" || n < 0 || n > 1<<20 {
			return MeterResult{}, fmt.Errorf("meter calls: %w: tenant %q, %d calls", ErrInvalid, t, n)
		}
	}
	if m, ok := s.meters[c.Node]; ok && m.Incarnation == c.Incarnation {
		switch {
		case c.Seq == m.Seq:
			return cloneMeterResult(m.Result), nil
		case c.Seq < m.Seq:
			return MeterResult{}, fmt.Errorf("meter calls of %s: %w: batch %d is older than %d", c.Node, ErrConflict, c.Seq, m.Seq)
		}
	}
	day := c.At.UTC().Format(dayLayout)
	res := MeterResult{Day: day, Allowed: map[string]int64{}}
	for _, t := range slices.Sorted(maps.Keys(c.Calls)) {
		n := c.Calls[t]
		k := dayKey(t, c.At)
		if q, ok := s.quota(t, QuotaAPICalls); ok {
			n = max(min(n, int64(q)-s.daily[k]), 0)
		}
		res.Allowed[t] = n
		if n > 0 {
			s.daily[k] += n
			s.ledger(t, c.At).APICalls += n
		}
	}
	// Forget the days the daily quota no longer reads.
	cutoff := c.At.UTC().AddDate(0, 0, -dailyKept).Format(dayLayout)
	for k := range s.daily {
		if k[strings.IndexByte(k, 0)+1:] < cutoff {
			delete(s.daily, k)
		}
	}
	s.meters[c.Node] = meterMark{Node: c.Node, Incarnation: c.Incarnation, Seq: c.Seq, Result: cloneMeterResult(res)}
	return res, nil
}

func cloneMeterResult(r MeterResult) MeterResult {
	r.Allowed = maps.Clone(r.Allowed)
	return r
}

// endAttempt charges the GPU time of j's running attempt, ending at end:
// GPUs × (end − start), rounded to the second, no more than the attempt's
// limit (a runner stops it there; the rest is the mesh's delay), split
// between the months it spans.
func (s *state) endAttempt(j *Job, end time.Time) {
	if j.Lease == nil || j.StartedAt == nil || len(j.Lease.GPUs) == 0 {
		return
	}
	start := *j.StartedAt
	d := end.Sub(start).Round(time.Second)
	if lim := time.Duration(j.Lease.Limit); lim > 0 && d > lim {
		d = lim
	}
	if d <= 0 {
		return
	}
	gpus := time.Duration(len(j.Lease.GPUs))
	for from, to := start, start.Add(d); from.Before(to); {
		next := monthStart(from).AddDate(0, 1, 0)
		if next.After(to) {
			next = to
		}
		s.ledger(j.Tenant, from).GPUTime += next.Sub(from) * gpus
		from = next
	}
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// backfillUsage builds the ledger of a state restored from a snapshot made
// before the ledger existed: the last attempt of every job, and the GPU
// time of jobs pruned then.
func (s *state) backfillUsage() {
	for _, id := range s.sortedJobIDs() {
		j := s.jobs[id]
		if j.StartedAt == nil || j.FinishedAt == nil || j.Resources.GPUs <= 0 {
			continue
		}
		d := j.FinishedAt.Sub(*j.StartedAt).Round(time.Second)
		if d > 0 {
			s.ledger(j.Tenant, *j.StartedAt).GPUTime += d * time.Duration(j.Resources.GPUs)
		}
	}
	for k, d := range s.prunedUsage {
		i := strings.IndexByte(k, 0)
		m, err := time.Parse(monthLayout, k[i+1:])
		if err != nil {
			continue
		}
		s.ledger(k[:i], m).GPUTime += d
	}
}

// TenantUsage is a tenant's month as /usage reports it.
type TenantUsage struct {
	Tenant string
	Month  string
	// GPUTime: ended attempts, and running ones up to now.
	GPUTime      time.Duration
	APICalls     int64
	APICallsDay  int64 // today's calls (UTC), when Month is the current month
	StorageBytes int64
}

// Usage returns a tenant's usage in the month of month (any time in it),
// with running attempts counted up to now.
func (f *FSM) Usage(tenant string, month, now time.Time) TenantUsage {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.usageOf(tenant, month, now)
}

func (s *state) usageOf(tenant string, month, now time.Time) TenantUsage {
	u := TenantUsage{Tenant: tenant, Month: month.UTC().Format(monthLayout)}
	if l := s.usage[usageKey(tenant, month)]; l != nil {
		u.GPUTime, u.APICalls = l.GPUTime, l.APICalls
	}
	from, to := monthStart(month), monthStart(month).AddDate(0, 1, 0)
	for _, j := range s.live {
		if j.Tenant != tenant || j.State != StateRunning || j.Lease == nil || j.StartedAt == nil || len(j.Lease.GPUs) == 0 {
			continue
		}
		end := now
		if lim := time.Duration(j.Lease.Limit); lim > 0 && end.Sub(*j.StartedAt) > lim {
			end = j.StartedAt.Add(lim)
		}
		a, b := maxTime(*j.StartedAt, from), minTime(end, to)
		if b.After(a) {
			u.GPUTime += b.Sub(a) * time.Duration(len(j.Lease.GPUs))
		}
	}
	if now.UTC().Format(monthLayout) == u.Month {
		u.APICallsDay = s.daily[dayKey(tenant, now)]
	}
	u.StorageBytes = s.storedBytes(tenant)
	return u
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// CallsToday is how many API calls a tenant made on the UTC day of now.
func (f *FSM) CallsToday(tenant string, now time.Time) int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.daily[dayKey(tenant, now)]
}

// Tenants returns every tenant, sorted by name.
func (f *FSM) Tenants() []Tenant {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Tenant, 0, len(f.s.tenants))
	for _, k := range slices.Sorted(maps.Keys(f.s.tenants)) {
		out = append(out, cloneTenant(f.s.tenants[k]))
	}
	return out
}

// UsageTenants lists the tenants with a ledger entry in the month of
// month, or a tenant record, sorted.
func (f *FSM) UsageTenants(month time.Time) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	set := map[string]bool{}
	for t := range f.s.tenants {
		set[t] = true
	}
	m := month.UTC().Format(monthLayout)
	for _, u := range f.s.usage {
		if u.Month == m {
			set[u.Tenant] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// GPUTimeLeft is what a tenant may still use of its GPU-minute quota in the
// month of now (ok false: no quota).
func (f *FSM) GPUTimeLeft(tenant string, now time.Time) (time.Duration, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.gpuTimeLeft(tenant, now)
}

// usageRecords and dailyRecord are the ledger's snapshot records.
type dailyRecord struct {
	Key   string `json:"key"`
	Calls int64  `json:"calls"`
}

func (s *state) usageRecords() []Usage {
	out := make([]Usage, 0, len(s.usage))
	for _, k := range slices.Sorted(maps.Keys(s.usage)) {
		out = append(out, *s.usage[k])
	}
	return out
}
