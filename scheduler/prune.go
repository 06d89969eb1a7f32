package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Retention of the replicated records that would otherwise grow forever.
//
// A finished job's record is kept JobRetention after it finished, and for
// as long as its RunBundle is kept (a kept bundle is referenced by its job
// record: pruning the record would make the bundle garbage), so a paid
// tenant's jobs with bundles stay. Usage is billed from the ledger
// (usage.go), not from job records, so pruning changes no bill; 93 days
// keep the current and the two previous months' job records for people to
// read.
//
// An idempotency record is kept IdempotencyRetention after its submission
// (a client retries within minutes), and goes with its job in any case.
const (
	JobRetention         = 93 * 24 * time.Hour
	IdempotencyRetention = 24 * time.Hour
)

// PruneJobs removes finished jobs that finished before JobsBefore and whose
// RunBundle is expired or was never made, and idempotency records made
// before IdempotencyBefore (or whose job is gone). The leader proposes it
// (Leader.Prune) with cutoffs from its clock; the FSM reads only them.
type PruneJobs struct {
	At                time.Time `json:"at"`
	JobsBefore        time.Time `json:"jobs_before"`
	IdempotencyBefore time.Time `json:"idempotency_before"`
}

func (PruneJobs) Type() CommandType { return CmdPruneJobs }

// PruneResult is PruneJobs' answer: how many records went.
type PruneResult struct {
	Jobs        int `json:"jobs"`
	Idempotency int `json:"idempotency"`
}

// prunable reports whether job j may go at a cutoff of before.
func prunable(j *Job, before time.Time) bool {
	return Terminal(j.State) && j.Lease == nil && j.FinishedAt != nil && j.FinishedAt.Before(before) &&
		(j.RunBundle == nil || j.BundleExpired)
}

func (s *state) pruneJobs(c *PruneJobs) (PruneResult, error) {
	var res PruneResult
	for id, j := range s.jobs {
		if !prunable(j, c.JobsBefore) {
			continue
		}
		delete(s.jobs, id)
		res.Jobs++
	}
	for k, e := range s.idem {
		if _, ok := s.jobs[e.Job]; !ok || e.At.Before(c.IdempotencyBefore) {
			delete(s.idem, k)
			res.Idempotency++
		}
	}
	if res.Jobs == 0 && res.Idempotency == 0 {
		return PruneResult{}, fmt.Errorf("prune jobs: %w: nothing to prune", ErrConflict)
	}
	return res, nil
}

// PruneCandidates counts what a PruneJobs with these cutoffs would remove
// now, so that the leader proposes one only when it would do something.
func (f *FSM) PruneCandidates(jobsBefore, idemBefore time.Time) (jobs, idem int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	gone := map[string]bool{}
	for id, j := range f.s.jobs {
		if prunable(j, jobsBefore) {
			gone[id] = true
			jobs++
		}
	}
	for _, e := range f.s.idem {
		if _, ok := f.s.jobs[e.Job]; !ok || gone[e.Job] || e.At.Before(idemBefore) {
			idem++
		}
	}
	return jobs, idem
}

// PrunedGPUTime is the GPU time of tenant's jobs pruned in month before
// the usage ledger existed (read from old snapshots; the ledger includes
// it, see backfillUsage).
func (f *FSM) PrunedGPUTime(tenant, month string) time.Duration {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.prunedUsage[tenant+"\x00"+month]
}

// prunedUsageRecord is the snapshot form of one pruned-usage total.
type prunedUsageRecord struct {
	Tenant  string        `json:"tenant"`
	Month   string        `json:"month"`
	GPUTime time.Duration `json:"gpu_time_ns"`
}

func (s *state) prunedUsageRecords() []prunedUsageRecord {
	var out []prunedUsageRecord
	for _, k := range slices.Sorted(maps.Keys(s.prunedUsage)) {
		tenant, month, _ := strings.Cut(k, "\x00")
		out = append(out, prunedUsageRecord{Tenant: tenant, Month: month, GPUTime: s.prunedUsage[k]})
	}
	return out
}
