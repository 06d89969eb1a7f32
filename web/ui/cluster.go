package ui

import (
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/web/client"
)

// nodeView is a node as GET /nodes shows it.
type nodeView struct {
	ID     string    `json:"id"`
	Region string    `json:"region"`
	Pool   string    `json:"pool"`
	Role   string    `json:"role"`
	State  string    `json:"state"`
	GPUs   []gpuView `json:"gpus"`
	// Managed: a scaler started it and may remove it.
	Managed bool `json:"managed"`
}

type gpuView struct {
	Index        int     `json:"index"`
	Model        string  `json:"model"`
	MemoryMB     int     `json:"memory_mb"`
	MemoryUsedMB int     `json:"memory_used_mb"`
	Utilization  float64 `json:"utilization"`
	TemperatureC int     `json:"temperature_c"`
	Healthy      bool    `json:"healthy"`
	Problem      string  `json:"problem"`
	UUID         string  `json:"uuid"`
}

// MemoryShare is the share of the GPU's memory in use, 0 to 1.
func (g gpuView) MemoryShare() float64 {
	if g.MemoryMB <= 0 {
		return 0
	}
	return min(float64(g.MemoryUsedMB)/float64(g.MemoryMB), 1)
}

// Utilization01 is the utilisation (GET /nodes gives percent) as a
// share, 0 to 1.
func (g gpuView) Utilization01() float64 {
	return min(max(g.Utilization/100, 0), 1)
}

type nodesData struct {
	Nodes []nodeView
	GPUs  int
	// Scaler is the autoscaler's state, for admins (nil for others).
	Scaler *client.Scaler
}

// nodesPage shows the mesh's nodes and their GPUs.
func (u *UI) nodesPage(w http.ResponseWriter, r *http.Request, s *session) {
	var list struct {
		Nodes []nodeView `json:"nodes"`
	}
	if err := u.getJSON(r, s, "/nodes", &list); err != nil {
		u.apiFailure(w, r, s, err)
		return
	}
	d := &nodesData{Nodes: list.Nodes}
	for _, n := range list.Nodes {
		d.GPUs += len(n.GPUs)
	}
	if s.Admin {
		var sc client.Scaler
		if err := u.getJSON(r, s, "/scaler", &sc); err != nil {
			u.apiFailure(w, r, s, err)
			return
		}
		d.Scaler = &sc
	}
	u.render(w, r, http.StatusOK, "nodes", newView(s, "Nodes", "nodes", d))
}

// usageView is GET /usage's answer.
type usageView struct {
	Tenant        string  `json:"tenant"`
	Tier          string  `json:"tier"`
	Month         string  `json:"month"`
	GPUMinutes    float64 `json:"gpu_minutes"`
	StorageBytes  int64   `json:"storage_bytes"`
	APICalls      int64   `json:"api_calls"`
	APICallsToday *int64  `json:"api_calls_today"`
	Cost          struct {
		Total float64 `json:"total"`
	} `json:"cost_usd"`
	Quotas struct {
		GPUMinutesPerMonth *float64 `json:"gpu_minutes_per_month"`
		StorageBytes       *int64   `json:"storage_bytes"`
		APICallsPerDay     *int64   `json:"api_calls_per_day"`
		QueuedJobs         *int64   `json:"queued_jobs"`
	} `json:"quotas"`
}

// invoiceView is GET /usage/invoice's answer.
type invoiceView struct {
	Month    string `json:"month"`
	Currency string `json:"currency"`
	Lines    []struct {
		Item      string  `json:"item"`
		Quantity  float64 `json:"quantity"`
		Free      float64 `json:"free"`
		Billable  float64 `json:"billable"`
		UnitPrice float64 `json:"unit_price"`
		Amount    float64 `json:"amount"`
	} `json:"lines"`
	Total float64 `json:"total"`
}

type usageData struct {
	Month   string
	Prev    string
	Next    string
	Usage   usageView
	Invoice invoiceView
}

var monthPattern = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}$`)

// itemNames are the invoice's items in words.
var itemNames = map[string]string{
	"gpu_minutes":       "GPU time (GPU-minutes)",
	"storage_gb_months": "Storage (GB-months)",
	"api_calls":         "API calls",
}

// ItemName names an invoice item.
func (usageData) ItemName(item string) string {
	if n, ok := itemNames[item]; ok {
		return n
	}
	return item
}

// usagePage shows a month's usage, quotas and invoice (this month by
// default).
func (u *UI) usagePage(w http.ResponseWriter, r *http.Request, s *session) {
	month := r.URL.Query().Get("month")
	if !monthPattern.MatchString(month) {
		month = u.now().UTC().Format("2006-01")
	}
	d := &usageData{Month: month}
	if t, err := time.Parse("2006-01", month); err == nil {
		d.Prev, d.Next = t.AddDate(0, -1, 0).Format("2006-01"), t.AddDate(0, 1, 0).Format("2006-01")
	}
	q := "?month=" + url.QueryEscape(month)
	if err := u.getJSON(r, s, "/usage"+q, &d.Usage); err != nil {
		u.apiFailure(w, r, s, err)
		return
	}
	if err := u.getJSON(r, s, "/usage/invoice"+q, &d.Invoice); err != nil {
		u.apiFailure(w, r, s, err)
		return
	}
	u.render(w, r, http.StatusOK, "usage", newView(s, "Usage", "usage", d))
}

// maxInvoiceCSV bounds the invoice's CSV (a few lines; the bound is
// generous).
const maxInvoiceCSV = 1 << 20

// invoiceCSV serves a month's invoice (this month by default) as the API
// writes it with Accept: text/csv, as a download.
func (u *UI) invoiceCSV(w http.ResponseWriter, r *http.Request, s *session) {
	month := r.URL.Query().Get("month")
	if month == "" {
		month = u.now().UTC().Format("2006-01")
	}
	rec, err := u.call(r, s, http.MethodGet, "/usage/invoice?month="+url.QueryEscape(month), nil,
		http.Header{"Accept": {"text/csv"}}, maxInvoiceCSV, false)
	if err == nil && rec.over {
		err = &apiError{Status: http.StatusInternalServerError, Code: "too_large", Message: "the invoice is too large to download"}
	}
	if err != nil {
		u.apiFailure(w, r, s, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	// The API names the file after the tenant and the month.
	disp := rec.hdr.Get("Content-Disposition")
	if !strings.HasPrefix(disp, "attachment") {
		disp = mime.FormatMediaType("attachment", map[string]string{"filename": "invoice-" + month + ".csv"})
	}
	h.Set("Content-Disposition", disp)
	h.Set("Content-Length", strconv.Itoa(rec.body.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rec.body.Bytes())
}
