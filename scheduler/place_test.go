package scheduler

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Placement fixtures.

func gpus(model string, memMB int, idx ...int) []GPU {
	out := make([]GPU, len(idx))
	for i, x := range idx {
		out[i] = GPU{Index: x, UUID: fmt.Sprintf("GPU-%s-%d", model, x), Model: "NVIDIA " + model, MemoryMB: memMB}
	}
	return out
}

func pnode(id string, slots int, g ...GPU) Node {
	return Node{ID: id, Region: "eu", State: NodeReady, Slots: slots, GPUs: g, Incarnation: "inc-" + id, Executors: []string{"builtin"}}
}

func withRegion(n Node, r string) Node { n.Region = r; return n }
func withDocker(n Node) Node           { n.Executors = append(n.Executors, "docker"); return n }
func withState(n Node, s string) Node  { n.State = s; return n }
func withNetwork(n Node) Node          { n.JobNetwork = true; return n }

// netJob is a CPU job with an image that asks for network.
func netJob(id string, seq uint64) Job {
	j := cpuJob(id, PriorityPaid, seq)
	j.Image, j.Network = "pwm/fetch", NetworkBridge
	return j
}

func pjob(id, prio string, seq uint64, r Resources) Job {
	return Job{ID: id, Tenant: "acme", Type: "reconstruct", State: StateQueued, Priority: prio, Seq: seq, Resources: r}
}

func gpuJob(id, prio string, seq uint64, n int) Job { return pjob(id, prio, seq, Resources{GPUs: n}) }
func cpuJob(id, prio string, seq uint64) Job        { return pjob(id, prio, seq, Resources{}) }

func run(j Job, node string, token uint64, g ...int) Job {
	j.State = StateRunning
	j.Node = node
	j.Lease = &Lease{Node: node, Token: token, GPUs: g, Incarnation: "inc-" + node}
	return j
}

func assign(job, node string, g ...int) Assignment {
	return Assignment{JobID: job, Node: node, Incarnation: "inc-" + node, GPUs: g}
}

// wantPlan is a plan with Positions left out unless given.
type wantPlan struct {
	Assign    []Assignment
	Preempt   []Preemption
	Reasons   map[string]string
	Positions map[string]int
}

func TestPlace(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   PlaceInput
		want wantPlan
	}{
		{
			name: "priority order: sprint, paid, free; FIFO within a class",
			in: PlaceInput{
				Nodes: []Node{pnode("n1", 0, gpus("A100", 40960, 0)...)},
				Queued: []Job{
					gpuJob("free1", PriorityFree, 1, 1),
					gpuJob("paid2", PriorityPaid, 2, 1),
					gpuJob("sprint3", PrioritySprint, 3, 1),
					gpuJob("paid4", PriorityPaid, 4, 1),
				},
			},
			want: wantPlan{
				Assign: []Assignment{assign("sprint3", "n1", 0)},
				Reasons: map[string]string{
					"paid2": "waiting for 1 GPU(s): all matching GPUs on 1 node(s) are busy; queue position 2",
					"paid4": "waiting for 1 GPU(s): all matching GPUs on 1 node(s) are busy; queue position 3",
					"free1": "waiting for 1 GPU(s): all matching GPUs on 1 node(s) are busy; queue position 4",
				},
				Positions: map[string]int{"sprint3": 1, "paid2": 2, "paid4": 3, "free1": 4},
			},
		},
		{
			name: "GPU model and memory matching",
			in: PlaceInput{
				Nodes: []Node{
					pnode("a", 0, gpus("A100-SXM4-40GB", 40960, 0)...),
					pnode("t", 0, gpus("T4", 15360, 0, 1)...),
				},
				Queued: []Job{
					pjob("want-t4", PriorityPaid, 1, Resources{GPUs: 2, GPUModel: "t4"}),
					pjob("want-32g", PriorityPaid, 2, Resources{GPUs: 1, GPUMemoryMB: 32000}),
					pjob("want-h100", PriorityPaid, 3, Resources{GPUs: 1, GPUModel: "H100"}),
					pjob("want-2xa100", PriorityPaid, 4, Resources{GPUs: 2, GPUModel: "A100"}),
					pjob("want-80g", PriorityPaid, 5, Resources{GPUs: 1, GPUMemoryMB: 81920}),
				},
			},
			want: wantPlan{
				Assign: []Assignment{assign("want-t4", "t", 0, 1), assign("want-32g", "a", 0)},
				Reasons: map[string]string{
					"want-h100":   "no ready node has 1 GPU(s) of model H100",
					"want-2xa100": "no ready node has 2 GPU(s) of model A100",
					"want-80g":    "no ready node has 1 GPU(s) with at least 81920 MB",
				},
			},
		},
		{
			name: "best fit packs GPU jobs onto the fullest node that fits",
			in: PlaceInput{
				Nodes: []Node{
					pnode("big", 0, gpus("A100", 40960, 0, 1, 2, 3)...),
					pnode("half", 0, gpus("A100", 40960, 0, 1)...),
				},
				Running: []Job{run(gpuJob("r1", PriorityPaid, 1, 1), "half", 10, 0)},
				Queued: []Job{
					gpuJob("one", PriorityPaid, 2, 1),
					gpuJob("three", PriorityPaid, 3, 3),
					gpuJob("another", PriorityPaid, 4, 1),
				},
			},
			want: wantPlan{
				// "one" fills half; "three" takes big's lowest three; "another" the last.
				Assign: []Assignment{assign("one", "half", 1), assign("three", "big", 0, 1, 2), assign("another", "big", 3)},
			},
		},
		{
			name: "CPU slots: spread to the most free slots, then wait",
			in: PlaceInput{
				Nodes: []Node{pnode("a", 2), pnode("b", 3), pnode("gpu-only", 0, gpus("T4", 15360, 0)...)},
				Running: []Job{
					run(cpuJob("r1", PriorityPaid, 1), "b", 10),
					run(cpuJob("r2", PriorityPaid, 2), "b", 11),
				},
				Queued: []Job{cpuJob("c1", PriorityFree, 3), cpuJob("c2", PriorityFree, 4), cpuJob("c3", PriorityFree, 5), cpuJob("c4", PriorityFree, 6)},
			},
			want: wantPlan{
				Assign:  []Assignment{assign("c1", "a"), assign("c2", "a"), assign("c3", "b")},
				Reasons: map[string]string{"c4": "waiting for a free CPU slot on 2 node(s); queue position 4"},
			},
		},
		{
			name: "no node takes CPU jobs",
			in: PlaceInput{
				Nodes:  []Node{pnode("g", 0, gpus("T4", 15360, 0)...)},
				Queued: []Job{cpuJob("c1", PriorityFree, 1)},
			},
			want: wantPlan{Reasons: map[string]string{"c1": "no ready node accepts CPU jobs"}},
		},
		{
			name: "region constraint",
			in: PlaceInput{
				Nodes: []Node{pnode("eu1", 2), withRegion(pnode("us1", 1), "us")},
				Queued: []Job{
					func() Job { j := cpuJob("us-job", PriorityPaid, 1); j.Region = "us"; return j }(),
					func() Job { j := cpuJob("us-job2", PriorityPaid, 2); j.Region = "us"; return j }(),
					func() Job { j := cpuJob("ap-job", PriorityPaid, 3); j.Region = "ap"; return j }(),
				},
			},
			want: wantPlan{
				Assign: []Assignment{assign("us-job", "us1")},
				Reasons: map[string]string{
					"us-job2": "waiting for a free CPU slot on 1 node(s); queue position 2",
					"ap-job":  `no ready node in region "ap"`,
				},
			},
		},
		{
			name: "image jobs need a Docker executor",
			in: PlaceInput{
				Nodes: []Node{pnode("plain", 4, gpus("A100", 40960, 0)...), withDocker(pnode("docker", 1, gpus("A100", 40960, 0)...))},
				Queued: []Job{
					func() Job { j := gpuJob("img", PriorityPaid, 1, 1); j.Image = "pwm/core:cuda"; return j }(),
					func() Job { j := cpuJob("img-cpu", PriorityPaid, 2); j.Image = "pwm/core:cpu"; return j }(),
					func() Job { j := cpuJob("img-us", PriorityPaid, 3); j.Image = "x"; j.Region = "us"; return j }(),
				},
			},
			want: wantPlan{
				Assign:  []Assignment{assign("img", "docker", 0), assign("img-cpu", "docker")},
				Reasons: map[string]string{"img-us": `no ready node in region "us"`},
			},
		},
		{
			name: "image jobs with no Docker anywhere",
			in: PlaceInput{
				Nodes:  []Node{pnode("plain", 4)},
				Queued: []Job{func() Job { j := cpuJob("img", PriorityPaid, 1); j.Image = "x"; return j }()},
			},
			want: wantPlan{Reasons: map[string]string{"img": "no ready node can run container images (no Docker executor)"}},
		},
		{
			name: "network jobs go only to Docker nodes that give network",
			in: PlaceInput{
				Nodes: []Node{
					pnode("plain", 4),
					withDocker(pnode("docker-nonet", 2)),
					withNetwork(withDocker(pnode("docker-net", 1))),
				},
				Queued: []Job{
					netJob("net1", 1),
					netJob("net2", 2),
					func() Job { j := cpuJob("img", PriorityPaid, 3); j.Image = "x"; return j }(),
				},
			},
			want: wantPlan{
				Assign:  []Assignment{assign("net1", "docker-net"), assign("img", "docker-nonet")},
				Reasons: map[string]string{"net2": "waiting for a free CPU slot on 1 node(s); queue position 2"},
			},
		},
		{
			name: "network jobs where every Docker node forbids network",
			in: PlaceInput{
				Nodes:  []Node{pnode("plain", 4), withDocker(pnode("docker-nonet", 2))},
				Queued: []Job{netJob("net", 1)},
			},
			want: wantPlan{Reasons: map[string]string{"net": "no ready node gives jobs network (every Docker node forbids it with --no-job-network)"}},
		},
		{
			name: "only ready nodes count, and only their running jobs",
			in: PlaceInput{
				Nodes: []Node{withState(pnode("down", 4, gpus("A100", 40960, 0)...), NodeDown), withState(pnode("left", 4), NodeLeft)},
				Running: []Job{
					run(cpuJob("r1", PriorityPaid, 1), "down", 3),
					func() Job { j := cpuJob("nolease", PriorityPaid, 2); j.State = StateRunning; return j }(),
				},
				Queued: []Job{cpuJob("c1", PriorityFree, 3)},
			},
			want: wantPlan{Reasons: map[string]string{"c1": "no node is ready to run jobs"}},
		},
		{
			name: "sprint preempts the newest free job when no GPU is free",
			in: PlaceInput{
				Nodes: []Node{pnode("n1", 0, gpus("A100", 40960, 0, 1)...)},
				Running: []Job{
					run(gpuJob("old-free", PriorityFree, 1, 1), "n1", 20, 0),
					run(gpuJob("new-free", PriorityFree, 2, 1), "n1", 21, 1),
				},
				Queued: []Job{gpuJob("sprint", PrioritySprint, 3, 1), gpuJob("free3", PriorityFree, 4, 1)},
			},
			want: wantPlan{
				Preempt: []Preemption{{JobID: "new-free", Token: 21, For: "sprint"}},
				Reasons: map[string]string{
					"sprint": "preempting free job new-free to free its GPUs",
					"free3":  "waiting for 1 GPU(s): all matching GPUs on 1 node(s) are busy; queue position 2",
				},
			},
		},
		{
			name: "sprint uses a free GPU rather than preempt",
			in: PlaceInput{
				Nodes:   []Node{pnode("n1", 0, gpus("A100", 40960, 0, 1)...)},
				Running: []Job{run(gpuJob("free1", PriorityFree, 1, 1), "n1", 20, 0)},
				Queued:  []Job{gpuJob("sprint", PrioritySprint, 3, 1)},
			},
			want: wantPlan{Assign: []Assignment{assign("sprint", "n1", 1)}},
		},
		{
			name: "newest free job across nodes",
			in: PlaceInput{
				Nodes: []Node{pnode("a", 0, gpus("A100", 40960, 0)...), pnode("b", 0, gpus("A100", 40960, 0)...)},
				Running: []Job{
					run(gpuJob("on-a", PriorityFree, 2, 1), "a", 30, 0),
					run(gpuJob("on-b", PriorityFree, 5, 1), "b", 31, 0),
				},
				Queued: []Job{gpuJob("sprint", PrioritySprint, 9, 1)},
			},
			want: wantPlan{
				Preempt: []Preemption{{JobID: "on-b", Token: 31, For: "sprint"}},
				Reasons: map[string]string{"sprint": "preempting free job on-b to free its GPUs"},
			},
		},
		{
			name: "paid jobs and jobs being cancelled are never preempted",
			in: PlaceInput{
				Nodes: []Node{pnode("n1", 0, gpus("A100", 40960, 0, 1)...)},
				Running: []Job{
					run(gpuJob("paid", PriorityPaid, 1, 1), "n1", 20, 0),
					func() Job {
						j := run(gpuJob("stopping", PriorityFree, 2, 1), "n1", 21, 1)
						j.CancelRequested = true
						return j
					}(),
				},
				Queued: []Job{gpuJob("sprint", PrioritySprint, 3, 1)},
			},
			want: wantPlan{Reasons: map[string]string{"sprint": "waiting for 1 GPU(s): all matching GPUs on 1 node(s) are busy; queue position 1"}},
		},
		{
			name: "one victim's GPUs are not preempted for twice",
			in: PlaceInput{
				Nodes: []Node{pnode("n1", 0, gpus("A100", 40960, 0, 1)...)},
				Running: []Job{
					run(gpuJob("paid", PriorityPaid, 1, 1), "n1", 20, 0),
					run(gpuJob("free", PriorityFree, 2, 1), "n1", 21, 1),
				},
				Queued: []Job{gpuJob("s1", PrioritySprint, 3, 1), gpuJob("s2", PrioritySprint, 4, 1)},
			},
			want: wantPlan{
				Preempt: []Preemption{{JobID: "free", Token: 21, For: "s1"}},
				Reasons: map[string]string{
					"s1": "preempting free job free to free its GPUs",
					"s2": "waiting for 1 GPU(s): all matching GPUs on 1 node(s) are busy; queue position 2",
				},
			},
		},
		{
			name: "a victim plus a free GPU make room; free GPU is reserved",
			in: PlaceInput{
				Nodes:   []Node{pnode("n1", 0, gpus("A100", 40960, 0, 1)...)},
				Running: []Job{run(gpuJob("free", PriorityFree, 1, 1), "n1", 20, 0)},
				Queued:  []Job{gpuJob("s2gpu", PrioritySprint, 2, 2), gpuJob("paid1", PriorityPaid, 3, 1)},
			},
			want: wantPlan{
				Preempt: []Preemption{{JobID: "free", Token: 20, For: "s2gpu"}},
				Reasons: map[string]string{
					"s2gpu": "preempting free job free to free its GPUs",
					"paid1": "waiting for 1 GPU(s): all matching GPUs on 1 node(s) are busy; queue position 2",
				},
			},
		},
		{
			name: "paid jobs do not preempt",
			in: PlaceInput{
				Nodes:   []Node{pnode("n1", 0, gpus("A100", 40960, 0)...)},
				Running: []Job{run(gpuJob("free", PriorityFree, 1, 1), "n1", 20, 0)},
				Queued:  []Job{gpuJob("paid", PriorityPaid, 2, 1)},
			},
			want: wantPlan{Reasons: map[string]string{"paid": "waiting for 1 GPU(s): all matching GPUs on 1 node(s) are busy; queue position 1"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Place(tc.in)
			checkPlan(t, got, tc.want)
			// Every queued job has a position, and every one not assigned a reason.
			assigned := map[string]bool{}
			for _, a := range got.Assign {
				assigned[a.JobID] = true
			}
			for _, j := range tc.in.Queued {
				if got.Positions[j.ID] == 0 {
					t.Errorf("%s has no queue position", j.ID)
				}
				if _, ok := got.Reasons[j.ID]; ok == assigned[j.ID] {
					t.Errorf("%s: assigned=%v but reason %q", j.ID, assigned[j.ID], got.Reasons[j.ID])
				}
			}
		})
	}
}

func checkPlan(t *testing.T, got Plan, want wantPlan) {
	t.Helper()
	if len(got.Assign) != 0 || len(want.Assign) != 0 {
		if !reflect.DeepEqual(got.Assign, want.Assign) {
			t.Errorf("Assign:\n got %+v\nwant %+v", got.Assign, want.Assign)
		}
	}
	if len(got.Preempt) != 0 || len(want.Preempt) != 0 {
		if !reflect.DeepEqual(got.Preempt, want.Preempt) {
			t.Errorf("Preempt:\n got %+v\nwant %+v", got.Preempt, want.Preempt)
		}
	}
	if want.Reasons == nil {
		want.Reasons = map[string]string{}
	}
	if !reflect.DeepEqual(got.Reasons, want.Reasons) {
		t.Errorf("Reasons:\n got %q\nwant %q", got.Reasons, want.Reasons)
	}
	if want.Positions != nil && !reflect.DeepEqual(got.Positions, want.Positions) {
		t.Errorf("Positions:\n got %v\nwant %v", got.Positions, want.Positions)
	}
}

// randomInput builds a cluster of nodes with mixed GPUs, running jobs that
// fit it, and a queue of mixed jobs.
func randomInput(r *rand.Rand, nodes, queued int) PlaceInput {
	models := []struct {
		name string
		mem  int
	}{{"A100", 40960}, {"T4", 15360}, {"H100", 81920}}
	var in PlaceInput
	var seq uint64
	for i := range nodes {
		m := models[r.IntN(len(models))]
		n := pnode(fmt.Sprintf("node-%03d", i), r.IntN(4), gpus(m.name, m.mem, 0, 1, 2, 3, 4, 5, 6, 7)[:r.IntN(9)]...)
		if r.IntN(5) == 0 {
			n = withDocker(n)
			if i%2 == 0 {
				n = withNetwork(n)
			}
		}
		if r.IntN(4) == 0 {
			n = withRegion(n, "us")
		}
		if r.IntN(20) == 0 {
			n = withState(n, NodeDown)
		}
		in.Nodes = append(in.Nodes, n)
		// Run a job on every other GPU.
		for g := 0; g < len(n.GPUs); g += 2 {
			seq++
			prio := []string{PriorityFree, PriorityPaid}[r.IntN(2)]
			in.Running = append(in.Running, run(gpuJob(fmt.Sprintf("run-%05d", seq), prio, seq, 1), n.ID, 1000+seq, g))
		}
	}
	prios := []string{PriorityFree, PriorityFree, PriorityPaid, PrioritySprint}
	for range queued {
		seq++
		m := models[r.IntN(len(models))]
		res := Resources{GPUs: r.IntN(5)}
		if res.GPUs > 0 && r.IntN(2) == 0 {
			res.GPUModel = m.name
		}
		if res.GPUs > 0 && r.IntN(4) == 0 {
			res.GPUMemoryMB = m.mem
		}
		j := pjob(fmt.Sprintf("q-%05d", seq), prios[r.IntN(len(prios))], seq, res)
		if r.IntN(10) == 0 {
			j.Region = "us"
		}
		if r.IntN(10) == 0 {
			j.Image = "pwm/core"
			if seq%2 == 0 {
				j.Network = NetworkBridge
			}
		}
		in.Queued = append(in.Queued, j)
	}
	return in
}

func TestPlaceIsDeterministic(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	in := randomInput(r, 30, 300)
	want := Place(in)
	if len(want.Assign) == 0 || len(want.Preempt) == 0 || len(want.Reasons) == 0 {
		t.Fatalf("fixture too easy: %d assignments, %d preemptions, %d reasons", len(want.Assign), len(want.Preempt), len(want.Reasons))
	}
	orig := randomInputCopy(in)
	for i := range 20 {
		sh := randomInputCopy(in)
		r.Shuffle(len(sh.Nodes), func(a, b int) { sh.Nodes[a], sh.Nodes[b] = sh.Nodes[b], sh.Nodes[a] })
		r.Shuffle(len(sh.Running), func(a, b int) { sh.Running[a], sh.Running[b] = sh.Running[b], sh.Running[a] })
		r.Shuffle(len(sh.Queued), func(a, b int) { sh.Queued[a], sh.Queued[b] = sh.Queued[b], sh.Queued[a] })
		if got := Place(sh); !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffle %d gave a different plan", i)
		}
	}
	if !reflect.DeepEqual(in, orig) {
		t.Fatal("Place changed its input")
	}
	checkPlanInvariants(t, in, want)
}

func randomInputCopy(in PlaceInput) PlaceInput {
	out := PlaceInput{}
	for _, n := range in.Nodes {
		out.Nodes = append(out.Nodes, cloneNode(&n))
	}
	for _, j := range in.Running {
		out.Running = append(out.Running, cloneJob(&j))
	}
	for _, j := range in.Queued {
		out.Queued = append(out.Queued, cloneJob(&j))
	}
	return out
}

// checkPlanInvariants: no GPU is handed out twice or while held, no node
// exceeds its slots, every assignment fits its job's needs.
func checkPlanInvariants(t *testing.T, in PlaceInput, p Plan) {
	t.Helper()
	nodes := map[string]Node{}
	for _, n := range in.Nodes {
		nodes[n.ID] = n
	}
	jobs := map[string]Job{}
	for _, j := range in.Queued {
		jobs[j.ID] = j
	}
	held := map[string]bool{}
	slots := map[string]int{}
	for _, j := range in.Running {
		for _, g := range j.Lease.GPUs {
			held[fmt.Sprint(j.Lease.Node, "/", g)] = true
		}
		if len(j.Lease.GPUs) == 0 {
			slots[j.Lease.Node]++
		}
	}
	victims := map[string]bool{}
	for _, v := range p.Preempt {
		if victims[v.JobID] {
			t.Errorf("%s preempted twice", v.JobID)
		}
		victims[v.JobID] = true
		if jobs[v.For].Priority != PrioritySprint {
			t.Errorf("preemption for non-sprint job %s", v.For)
		}
		i := slices.IndexFunc(in.Running, func(j Job) bool { return j.ID == v.JobID })
		if i < 0 || in.Running[i].Priority != PriorityFree {
			t.Errorf("preempted %s is not a running free job", v.JobID)
		}
	}
	for _, a := range p.Assign {
		n, j := nodes[a.Node], jobs[a.JobID]
		if n.State != NodeReady || a.Incarnation != n.Incarnation {
			t.Errorf("%s assigned to unready node %s", a.JobID, a.Node)
		}
		if j.Region != "" && j.Region != n.Region {
			t.Errorf("%s assigned outside region %s", a.JobID, j.Region)
		}
		if j.Image != "" && !slices.Contains(n.Executors, "docker") {
			t.Errorf("%s (image) assigned to %s without docker", a.JobID, a.Node)
		}
		if j.Network != "" && !n.JobNetwork {
			t.Errorf("%s (network) assigned to %s, which gives jobs no network", a.JobID, a.Node)
		}
		if len(a.GPUs) != j.Resources.GPUs {
			t.Errorf("%s got %d GPUs, asked %d", a.JobID, len(a.GPUs), j.Resources.GPUs)
		}
		if j.Resources.GPUs == 0 {
			slots[a.Node]++
			if slots[a.Node] > n.Slots {
				t.Errorf("%s overfills %s's %d slots", a.JobID, a.Node, n.Slots)
			}
		}
		for _, g := range a.GPUs {
			k := fmt.Sprint(a.Node, "/", g)
			if held[k] {
				t.Errorf("%s given GPU %s which is taken", a.JobID, k)
			}
			held[k] = true
			gi := slices.IndexFunc(n.GPUs, func(x GPU) bool { return x.Index == g })
			if gi < 0 || !strings.Contains(strings.ToLower(n.GPUs[gi].Model), strings.ToLower(j.Resources.GPUModel)) ||
				n.GPUs[gi].MemoryMB < j.Resources.GPUMemoryMB {
				t.Errorf("%s given GPU %s that does not match %+v", a.JobID, k, j.Resources)
			}
		}
	}
}

func TestPlaceInvariantsRandom(t *testing.T) {
	t.Parallel()
	for seed := range uint64(30) {
		in := randomInput(rand.New(rand.NewPCG(seed, 7)), 1+int(seed%10), 5+int(seed*7%60))
		checkPlanInvariants(t, in, Place(in))
	}
}

func BenchmarkPlace(b *testing.B) {
	in := randomInput(rand.New(rand.NewPCG(42, 42)), 50, 1000)
	b.ReportAllocs()
	for b.Loop() {
		Place(in)
	}
}
