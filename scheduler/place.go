package scheduler

import (
	"fmt"
	"slices"
	"strings"
)

// PlaceInput is everything placement reads: a snapshot, nothing else.
type PlaceInput struct {
	Nodes   []Node // any order; placement sorts by ID
	Running []Job  // jobs in state running, with their leases
	Queued  []Job  // jobs in state queued, any order; placement applies QueueOrder
	// Held jobs keep the capacity placement gives them but are not
	// assigned: they are left to the nodes' claims for a moment.
	Held map[string]bool
	// Pools: the pool each tenant with one is assigned to.
	Pools map[string]TenantPool
	// Blocked jobs may not start for a quota: the reason says which.
	Blocked map[string]string
}

// TenantPool is a tenant's dedicated pool; Only pins its jobs there.
type TenantPool struct {
	Pool string
	Only bool
}

// Assignment starts one queued job on a node.
type Assignment struct {
	JobID       string
	Node        string
	Incarnation string
	GPUs        []int
}

// Preemption hands a running job back to free its GPUs for a sprint job.
type Preemption struct {
	JobID string
	Token uint64
	For   string // the sprint job it makes room for
}

// Plan is placement's answer.
type Plan struct {
	Assign  []Assignment
	Preempt []Preemption
	// Reasons says, for every queued job not assigned, why, in words a user
	// understands.
	Reasons map[string]string
	// Positions is each queued job's 1-based place in the queue.
	Positions map[string]int
}

type nodeFree struct {
	node     *Node
	models   []string // node.GPUs[i].Model in lower case
	freeGPUs []int    // indices
	slots    int
	// running free-priority GPU jobs, preemptible by sprint jobs
	preemptible []Job
}

// Place is the scheduler's pure placement function: it decides which queued
// jobs start where, and which running jobs a sprint job preempts. It reads
// only its input and is deterministic: the same input gives the same plan.
func Place(in PlaceInput) Plan {
	plan := Plan{Reasons: map[string]string{}, Positions: map[string]int{}}
	nodes := slices.Clone(in.Nodes)
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	free := make([]*nodeFree, 0, len(nodes))
	byID := map[string]*nodeFree{}
	for i := range nodes {
		n := &nodes[i]
		if n.State != NodeReady || n.Draining {
			continue
		}
		f := &nodeFree{node: n, slots: n.Slots}
		for _, g := range n.GPUs {
			if g.Unhealthy == "" {
				f.freeGPUs = append(f.freeGPUs, g.Index)
			}
			f.models = append(f.models, strings.ToLower(g.Model))
		}
		free = append(free, f)
		byID[n.ID] = f
	}
	running := slices.Clone(in.Running)
	slices.SortFunc(running, func(a, b Job) int { return jobLess(&a, &b) })
	for _, j := range running {
		if j.Lease == nil {
			continue
		}
		f, ok := byID[j.Lease.Node]
		if !ok {
			continue
		}
		if len(j.Lease.GPUs) == 0 {
			f.slots--
			continue
		}
		f.freeGPUs = slices.DeleteFunc(f.freeGPUs, func(i int) bool { return slices.Contains(j.Lease.GPUs, i) })
		if j.Priority == PriorityFree && !j.CancelRequested {
			f.preemptible = append(f.preemptible, j)
		}
	}

	queued := slices.Clone(in.Queued)
	QueueOrder(queued)
	for pos, j := range queued {
		plan.Positions[j.ID] = pos + 1
		if why, ok := in.Blocked[j.ID]; ok {
			plan.Reasons[j.ID] = why
			continue
		}
		cands, why := candidates(free, &j, in.Pools[j.Tenant])
		if len(cands) == 0 {
			plan.Reasons[j.ID] = why
			continue
		}
		if a, ok := pick(cands, &j); ok {
			if in.Held[j.ID] {
				plan.Reasons[j.ID] = fmt.Sprintf("announced to matching nodes; about to start on %s", a.Node)
				continue
			}
			plan.Assign = append(plan.Assign, a)
			continue
		}
		if j.Priority == PrioritySprint && j.Resources.GPUs > 0 {
			if p, ok := preempt(cands, &j); ok {
				plan.Preempt = append(plan.Preempt, p)
				plan.Reasons[j.ID] = fmt.Sprintf("preempting free job %s to free its GPUs", p.JobID)
				continue
			}
		}
		plan.Reasons[j.ID] = busyReason(&j, cands, pos+1)
	}
	return plan
}

// candidates lists the ready nodes that could ever run j, or says why none can.
func candidates(free []*nodeFree, j *Job, tp TenantPool) ([]*nodeFree, string) {
	if len(free) == 0 {
		return nil, "no node is ready to run jobs"
	}
	var out []*nodeFree
	inPool, inRegion, withExec, withNet := 0, 0, 0, 0
	want := strings.ToLower(j.Resources.GPUModel)
	for _, f := range free {
		if !poolAllows(f.node.Pool, tp.Pool, tp.Only) {
			continue
		}
		inPool++
		if j.Region != "" && f.node.Region != j.Region {
			continue
		}
		inRegion++
		if j.Image != "" && !slices.Contains(f.node.Executors, "docker") {
			continue
		}
		withExec++
		if j.Network == NetworkBridge && !f.node.JobNetwork {
			continue
		}
		withNet++
		if j.Resources.GPUs == 0 {
			if f.node.Slots > 0 {
				out = append(out, f)
			}
			continue
		}
		n := 0
		for i := range f.node.GPUs {
			if f.fits(i, j.Resources, want) {
				n++
			}
		}
		if n >= j.Resources.GPUs {
			out = append(out, f)
		}
	}
	if len(out) > 0 {
		return out, ""
	}
	switch {
	case inPool == 0 && tp.Pool != "" && tp.Only:
		return nil, fmt.Sprintf("waits for its pool: no ready node in pool %q", tp.Pool)
	case inPool == 0 && tp.Pool != "":
		return nil, fmt.Sprintf("waits for its pool: no ready node in pool %q or the shared pool", tp.Pool)
	case inPool == 0:
		return nil, "no ready node in the shared pool (every ready node is dedicated to other tenants' pools)"
	case inRegion == 0:
		return nil, fmt.Sprintf("no ready node in region %q", j.Region)
	case withExec == 0:
		return nil, "no ready node can run container images (no Docker executor)"
	case withNet == 0:
		return nil, "no ready node gives jobs network (every Docker node forbids it with --no-job-network)"
	case j.Resources.GPUs == 0:
		return nil, "no ready node accepts CPU jobs"
	}
	return nil, fmt.Sprintf("no ready node has %s", describeGPUs(j.Resources))
}

func describeGPUs(r Resources) string {
	s := fmt.Sprintf("%d GPU(s)", r.GPUs)
	if r.GPUModel != "" {
		s += " of model " + r.GPUModel
	}
	if r.GPUMemoryMB > 0 {
		s += fmt.Sprintf(" with at least %d MB", r.GPUMemoryMB)
	}
	return s
}

// matching returns the indices of f's GPUs that match r, restricted to
// allowed when allowed is non-nil, in ascending index order. A model matches
// when it contains r.GPUModel, ignoring case ("a100" matches
// "NVIDIA A100-SXM4-40GB").
func (f *nodeFree) matching(allowed []int, r Resources) []int {
	want := strings.ToLower(r.GPUModel)
	var out []int
	for i, g := range f.node.GPUs {
		if (allowed == nil || slices.Contains(allowed, g.Index)) && f.fits(i, r, want) {
			out = append(out, g.Index)
		}
	}
	if !slices.IsSorted(out) {
		slices.Sort(out)
	}
	return out
}

// fits reports whether GPU i of the node matches r; want is r.GPUModel in
// lower case.
func (f *nodeFree) fits(i int, r Resources, want string) bool {
	return f.node.GPUs[i].Unhealthy == "" && (want == "" || strings.Contains(f.models[i], want)) && (r.GPUMemoryMB <= 0 || f.node.GPUs[i].MemoryMB >= r.GPUMemoryMB)
}

// pick chooses a node with room now: GPU jobs go to the node with the fewest
// matching free GPUs that still fit (packing), CPU jobs to the node with the
// most free slots (spreading); ties go to the lowest node ID.
func pick(cands []*nodeFree, j *Job) (Assignment, bool) {
	var best *nodeFree
	var bestGPUs []int
	for _, f := range cands {
		if j.Resources.GPUs == 0 {
			if f.slots > 0 && (best == nil || f.slots > best.slots) {
				best = f
			}
			continue
		}
		m := f.matching(f.freeGPUs, j.Resources)
		if len(m) >= j.Resources.GPUs && (best == nil || len(m) < len(bestGPUs)) {
			best, bestGPUs = f, m
		}
	}
	if best == nil {
		return Assignment{}, false
	}
	a := Assignment{JobID: j.ID, Node: best.node.ID, Incarnation: best.node.Incarnation}
	if j.Resources.GPUs == 0 {
		best.slots--
		return a, true
	}
	a.GPUs = slices.Clone(bestGPUs[:j.Resources.GPUs])
	best.freeGPUs = slices.DeleteFunc(best.freeGPUs, func(i int) bool { return slices.Contains(a.GPUs, i) })
	return a, true
}

// preempt finds the newest free-priority job, on any candidate node, whose
// GPUs, with the free ones, make room for sprint job j. Its GPUs are reserved
// so that no other sprint job of the same plan preempts for them.
func preempt(cands []*nodeFree, j *Job) (Preemption, bool) {
	var (
		bestF *nodeFree
		bestI int
		used  []int
	)
	for _, f := range cands {
		for i, v := range f.preemptible {
			if bestF != nil && jobLess(&v, &bestF.preemptible[bestI]) < 0 {
				continue // older than the best victim so far
			}
			pool := append(slices.Clone(f.freeGPUs), v.Lease.GPUs...)
			m := f.matching(pool, j.Resources)
			if len(m) < j.Resources.GPUs {
				continue
			}
			bestF, bestI, used = f, i, m[:j.Resources.GPUs]
		}
	}
	if bestF == nil {
		return Preemption{}, false
	}
	v := bestF.preemptible[bestI]
	bestF.preemptible = slices.Delete(bestF.preemptible, bestI, bestI+1)
	// Reserve: the freed GPUs plus the free ones it needs are spoken for.
	bestF.freeGPUs = slices.DeleteFunc(bestF.freeGPUs, func(x int) bool { return slices.Contains(used, x) })
	return Preemption{JobID: v.ID, Token: v.Lease.Token, For: j.ID}, true
}

func busyReason(j *Job, cands []*nodeFree, pos int) string {
	if j.Resources.GPUs == 0 {
		return fmt.Sprintf("waiting for a free CPU slot on %d node(s); queue position %d", len(cands), pos)
	}
	return fmt.Sprintf("waiting for %s: all matching GPUs on %d node(s) are busy; queue position %d", describeGPUs(j.Resources), len(cands), pos)
}

// QueueOrder sorts queued jobs into the order placement considers them:
// sprint before paid before free, first come first served within a class.
func QueueOrder(jobs []Job) {
	slices.SortFunc(jobs, func(a, b Job) int { return jobLess(&a, &b) })
}
