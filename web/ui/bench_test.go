package ui_test

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkJobsPage renders the jobs page of a tenant with 1,000 jobs
// (the newest 50 show) as a signed-in browser asks for it, through the
// API. It reports the median time to the whole page and the page's
// weight: its HTML, and its style sheet and script (cached after the
// first page).
func BenchmarkJobsPage(b *testing.B) {
	e := newEnv(b)
	for range 1000 {
		e.submit(e.globex, `{"type":"generate_dataset","params":{"size":32}}`)
	}
	br := newBrowser(b, e.url)
	br.mustSignIn(e.globex)
	p := br.get("/ui/jobs")
	wantStatus(b, p, http.StatusOK)
	assets := 0
	for _, a := range []string{"/ui/static/ui.css", "/ui/static/ui.js"} {
		assets += len(br.get(a).body)
	}
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		if p := br.get("/ui/jobs"); p.status != http.StatusOK {
			b.Fatalf("status %d", p.status)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(len(p.body)), "html_bytes")
	b.ReportMetric(float64(assets), "asset_bytes")
}
