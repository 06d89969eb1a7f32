package node

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/gpu"
	"github.com/pwmesh/pwmesh/scheduler"
)

// Jobs are announced on pubsub topics by the class of machine they need:
// "cpu", "gpu-any", or "gpu-<model>" (lower case). A node subscribes to the
// classes it can serve and answers an announcement it can take with a claim:
// an AssignJob it proposes itself. Gossip is only a hint: the claim counts
// once committed through Raft, and the leader assigns a job nobody claimed
// after LeaderConfig.ClaimWindow.
const jobTopicPrefix = "pwmesh/jobs/v1/"

// claimWindow is how long the leader leaves a new job to claims.
const claimWindow = 250 * time.Millisecond

// announcement is the message on a job topic.
type announcement struct {
	V     int    `json:"v"`
	JobID string `json:"job_id"`
}

// jobClass is the topic a job is announced on.
func jobClass(r scheduler.Resources) string {
	switch {
	case r.GPUs == 0:
		return "cpu"
	case r.GPUModel == "":
		return "gpu-any"
	}
	return "gpu-" + strings.ToLower(r.GPUModel)
}

// nodeClasses are the topics a node with these slots and GPUs serves: a
// model "A100-80GB" serves "gpu-a100" and "gpu-a100-80gb".
func nodeClasses(slots int, devs []gpu.Device) []string {
	var out []string
	if slots > 0 {
		out = append(out, "cpu")
	}
	if len(devs) > 0 {
		out = append(out, "gpu-any")
	}
	for _, d := range devs {
		parts := strings.Split(strings.ToLower(d.Model), "-")
		for i := range parts {
			c := "gpu-" + strings.Join(parts[:i+1], "-")
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

type claimMetrics struct {
	announced prometheus.Counter
	claims    *prometheus.CounterVec
}

func newClaimMetrics(reg prometheus.Registerer) *claimMetrics {
	m := &claimMetrics{
		announced: prometheus.NewCounter(prometheus.CounterOpts{Name: "pwmesh_jobs_announced_total", Help: "Jobs this node announced as leader."}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pwmesh_job_claims_total",
			Help: "Claims this node proposed, by result (committed, refused)."}, []string{"result"}),
	}
	reg.MustRegister(m.announced, m.claims)
	return m
}

// announceJobs runs on the leader: every newly queued job is announced once
// on its class's topic.
func (n *Node) announceJobs(ctx context.Context) {
	seen := map[string]bool{}
	for {
		changed := n.fsm.Watch()
		queued, _ := n.fsm.Jobs(scheduler.JobFilter{State: scheduler.StateQueued})
		now := map[string]bool{}
		for _, j := range queued {
			now[j.ID] = true
			if seen[j.ID] || j.Attempts > 0 {
				continue
			}
			seen[j.ID] = true
			b, _ := json.Marshal(announcement{V: 1, JobID: j.ID})
			if err := n.mesh.Publish(ctx, jobTopicPrefix+jobClass(j.Resources), b); err != nil {
				n.log.Debug("announce", "job_id", j.ID, "err", err)
				continue
			}
			n.claims.announced.Inc()
		}
		for id := range seen {
			if !now[id] {
				delete(seen, id)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// claimJobs runs on every node that runs jobs: it listens on its classes'
// topics and claims an announced job when placement over its own replica
// gives that job to this node — so a claim never jumps the queue.
func (n *Node) claimJobs(ctx context.Context) {
	devs, _ := n.gpus.Devices(ctx)
	msgs := make(chan string, 64)
	for _, class := range nodeClasses(n.cfg.Slots, devs) {
		ch, err := n.mesh.Subscribe(ctx, jobTopicPrefix+class)
		if err != nil {
			n.log.Warn("subscribe to job announcements", "class", class, "err", err)
			continue
		}
		go func() {
			for m := range ch {
				var a announcement
				if json.Unmarshal(m.Data, &a) != nil || a.V != 1 || a.JobID == "" {
					continue
				}
				select {
				case msgs <- a.JobID:
				default: // a burst beyond the buffer is left to the leader
				}
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-msgs:
			n.claim(ctx, id)
		}
	}
}

// claim proposes this node for job id if its own placement says so. The
// announcement may arrive before this node's replica has the job: it waits
// for it briefly.
func (n *Node) claim(ctx context.Context, id string) {
	wait, cancel := context.WithTimeout(ctx, claimWindow)
	defer cancel()
	for {
		changed := n.fsm.Watch()
		if j, ok := n.fsm.Job(id); ok {
			if j.State != scheduler.StateQueued {
				return
			}
			break
		}
		select {
		case <-wait.Done():
			return
		case <-changed:
		}
	}
	in := n.fsm.PlaceInput()
	for _, a := range scheduler.Place(in).Assign {
		if a.JobID != id {
			continue
		}
		if a.Node != n.id || a.Incarnation != n.incarnation {
			return
		}
		now := n.cfg.Clock.Now()
		_, err := n.Apply(ctx, &scheduler.AssignJob{Claim: true, At: now, JobID: id, Node: n.id, Incarnation: n.incarnation,
			GPUs: a.GPUs, ExpiresAt: now.Add(time.Duration(n.cfg.LeaseTTL))})
		switch {
		case err == nil:
			n.claims.claims.WithLabelValues("committed").Inc()
			n.log.Info("job claimed", "job_id", id, "gpus", a.GPUs)
		case errors.Is(err, scheduler.ErrConflict):
			n.claims.claims.WithLabelValues("refused").Inc()
			n.log.Debug("claim refused", "job_id", id, "err", err)
		default:
			n.log.Debug("claim", "job_id", id, "err", err)
		}
		return
	}
}
