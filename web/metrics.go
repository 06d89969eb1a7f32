package web

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/scheduler"
)

// httpMetrics are the API's Prometheus metrics, registered on the node's
// own registry.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg *prometheus.Registry, st State) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pwmesh_http_requests_total",
			Help: "HTTP API requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pwmesh_http_request_duration_seconds",
			Help:    "Time to answer an HTTP API request (streams included), by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, jobsCollector{st}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("web: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *httpMetrics) observe(route, method string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

var jobsDesc = prometheus.NewDesc("pwmesh_jobs", "Jobs in the replicated state by state (all tenants).", []string{"state"}, nil)

// jobsCollector counts jobs by state at scrape time.
type jobsCollector struct{ st State }

func (jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }

func (c jobsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	jobs, _ := c.st.Jobs(scheduler.JobFilter{})
	for _, j := range jobs {
		counts[j.State]++
	}
	for _, st := range []string{scheduler.StateQueued, scheduler.StateRunning, scheduler.StateSucceeded,
		scheduler.StateFailed, scheduler.StateCancelled, scheduler.StateTimedOut} {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(counts[st]), st)
	}
}
