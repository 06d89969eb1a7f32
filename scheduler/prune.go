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
//
// An API key past its expiry is kept ExpiredKeyRetention (listings show it
// expired for a while), then removed: every web UI sign-in and `pwmesh
// login` mints a key of its own, which would otherwise pile up.
const (
	JobRetention         = 93 * 24 * time.Hour
	IdempotencyRetention = 24 * time.Hour
	ExpiredKeyRetention  = 7 * 24 * time.Hour
)

// PruneJobs removes finished jobs that finished before JobsBefore and whose
// RunBundle is expired or was never made, and idempotency records made
// before IdempotencyBefore (or whose job is gone). The leader proposes it
// (Leader.Prune) with cutoffs from its clock; the FSM reads only them.
type PruneJobs struct {
	At                time.Time `json:"at"`
	JobsBefore        time.Time `json:"jobs_before"`
	IdempotencyBefore time.Time `json:"idempotency_before"`
	// KeysBefore removes the API keys that expired before it (zero: none),
	// never the last admin key.
	KeysBefore time.Time `json:"keys_before,omitzero"`
}

func (PruneJobs) Type() CommandType { return CmdPruneJobs }

// PruneResult is PruneJobs' answer: how many records went.
type PruneResult struct {
	Jobs        int `json:"jobs"`
	Idempotency int `json:"idempotency"`
	Keys        int `json:"keys,omitempty"`
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
		delete(s.live, id) // a prunable job is finished, its bundle not kept
		res.Jobs++
	}
	for k, e := range s.idem {
		if _, ok := s.jobs[e.Job]; !ok || e.At.Before(c.IdempotencyBefore) {
			delete(s.idem, k)
			res.Idempotency++
		}
	}
	for _, h := range s.expiredKeys(c.KeysBefore) {
		delete(s.keyIDs, s.keys[h].ID)
		delete(s.keys, h)
		res.Keys++
	}
	if res.Jobs == 0 && res.Idempotency == 0 && res.Keys == 0 {
		return PruneResult{}, fmt.Errorf("prune jobs: %w: nothing to prune", ErrConflict)
	}
	return res, nil
}

// expiredKeys lists the hashes of the keys that expired before before
// (zero: none), sorted, keeping one admin key when every admin key is in
// it (the oldest expiry goes first).
func (s *state) expiredKeys(before time.Time) []string {
	if before.IsZero() {
		return nil
	}
	var out []string
	admins, expiredAdmins := 0, 0
	for h, k := range s.keys {
		if k.Admin {
			admins++
		}
		if k.ExpiresAt != nil && k.ExpiresAt.Before(before) {
			out = append(out, h)
			if k.Admin {
				expiredAdmins++
			}
		}
	}
	slices.Sort(out)
	if admins > 0 && admins == expiredAdmins {
		// Keep the admin key that expired last (ties: the greatest hash).
		keep := ""
		for _, h := range out {
			k := s.keys[h]
			if k.Admin && (keep == "" || !k.ExpiresAt.Before(*s.keys[keep].ExpiresAt)) {
				keep = h
			}
		}
		out = slices.DeleteFunc(out, func(h string) bool { return h == keep })
	}
	return out
}

// PruneCandidates counts what a PruneJobs with these cutoffs would remove
// now, so that the leader proposes one only when it would do something.
func (f *FSM) PruneCandidates(jobsBefore, idemBefore, keysBefore time.Time) (jobs, idem, keys int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	keys = len(f.s.expiredKeys(keysBefore))
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
	return jobs, idem, keys
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
