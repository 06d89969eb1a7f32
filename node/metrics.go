package node

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/scheduler"
)

// Cluster-wide series: every replica holds the same state, so only the
// leader exports them and a sum() over nodes counts each job once.
var (
	clusterJobsDesc = prometheus.NewDesc("pwmesh_jobs",
		"Jobs in the replicated state by state (all tenants); exported by the Raft leader only.", []string{"state"}, nil)
	queueDepthDesc = prometheus.NewDesc("pwmesh_queue_depth",
		"Queued jobs by priority and GPU class (the requested GPU model, \"any\" for GPU jobs without one, \"none\" for CPU jobs); exported by the Raft leader only.",
		[]string{"priority", "gpu_class"}, nil)
	queueWaitDesc = prometheus.NewDesc("pwmesh_queue_wait_seconds",
		"How long the oldest queued job of each priority and GPU class has waited since it was submitted, in seconds (each priority has a gpu_class=\"none\" series, 0 when no CPU job waits); exported by the Raft leader only.",
		[]string{"priority", "gpu_class"}, nil)
)

var priorities = []string{scheduler.PriorityFree, scheduler.PriorityPaid, scheduler.PrioritySprint}

// gpuClass names the kind of GPU a job waits for.
func gpuClass(r scheduler.Resources) string {
	switch {
	case r.GPUs == 0:
		return "none"
	case r.GPUModel == "":
		return "any"
	default:
		return r.GPUModel
	}
}

// clusterCollector reads the replicated state at scrape time and emits
// nothing unless this node leads.
type clusterCollector struct {
	leads func() bool
	jobs  func() []scheduler.Job
	now   func() time.Time
}

func (clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- clusterJobsDesc
	ch <- queueDepthDesc
	ch <- queueWaitDesc
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.leads() {
		return
	}
	now := c.now()
	states := map[string]int{}
	type class struct{ priority, gpu string }
	depth := map[class]int{}
	oldest := map[class]time.Time{}
	for _, j := range c.jobs() {
		states[j.State]++
		if j.State != scheduler.StateQueued {
			continue
		}
		k := class{j.Priority, gpuClass(j.Resources)}
		depth[k]++
		if t, ok := oldest[k]; !ok || j.SubmittedAt.Before(t) {
			oldest[k] = j.SubmittedAt
		}
	}
	for _, st := range []string{scheduler.StateQueued, scheduler.StateRunning, scheduler.StateSucceeded,
		scheduler.StateFailed, scheduler.StateCancelled, scheduler.StateTimedOut} {
		ch <- prometheus.MustNewConstMetric(clusterJobsDesc, prometheus.GaugeValue, float64(states[st]), st)
	}
	// Each priority has a series even when empty, so an alert on it has
	// a value to compare rather than an absent one.
	for _, p := range priorities {
		if _, ok := depth[class{p, "none"}]; !ok {
			depth[class{p, "none"}] = 0
		}
	}
	for k, v := range depth {
		ch <- prometheus.MustNewConstMetric(queueDepthDesc, prometheus.GaugeValue, float64(v), k.priority, k.gpu)
		wait := 0.0
		if t, ok := oldest[k]; ok && now.After(t) {
			wait = now.Sub(t).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(queueWaitDesc, prometheus.GaugeValue, wait, k.priority, k.gpu)
	}
}

// jobMetrics count the runs that end on this node's worker: each run is
// recorded once, by the worker whose completion the leader accepted.
type jobMetrics struct {
	finished *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newJobMetrics(reg prometheus.Registerer) *jobMetrics {
	m := &jobMetrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pwmesh_jobs_finished_total",
			Help: "Job runs that ended on this node's worker, by job type and outcome (succeeded, failed, timed_out, cancelled); recorded when the leader accepts the worker's completion, so a sum() over nodes counts each run once. Jobs cancelled or expired before they ran are not counted.",
		}, []string{"type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pwmesh_job_duration_seconds",
			Help:    "How long job runs that ended on this node's worker ran, from lease to accepted completion, by job type and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 14), // 0.5 s to about 2.3 h
		}, []string{"type", "outcome"}),
	}
	reg.MustRegister(m.finished, m.duration)
	return m
}

func (m *jobMetrics) observe(jobType, outcome string, ran time.Duration) {
	m.finished.WithLabelValues(jobType, outcome).Inc()
	m.duration.WithLabelValues(jobType, outcome).Observe(ran.Seconds())
}

// buildInfo is the constant pwmesh_build_info series.
func buildInfo(version, commit string) prometheus.Collector {
	if version == "" {
		version = "dev"
	}
	if commit == "" {
		commit = "unknown"
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "pwmesh_build_info",
		Help:        "Always 1; its labels name the running build.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "goversion": runtime.Version()},
	}, func() float64 { return 1 })
}
