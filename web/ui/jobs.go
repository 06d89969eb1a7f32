package ui

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/pwmesh/pwmesh/scheduler"
)

// jobStates are the states the jobs page filters by, in lifecycle order.
var jobStates = []string{"queued", "running", "succeeded", "failed", "cancelled", "timed_out"}

// jobsPageSize is how many jobs one page of the list shows.
const jobsPageSize = 50

type jobsData struct {
	Jobs         []scheduler.Job
	State, Type  string
	States       []string
	Types        []string
	Cursor, Next string
}

// jobsPage lists the tenant's jobs, newest first, filtered by state and
// type; the page's script follows the jobs that have not finished.
func (u *UI) jobsPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := jobsData{State: q.Get("state"), Type: q.Get("type"), Cursor: q.Get("cursor"), States: jobStates}
	for _, t := range u.deps.JobTypes {
		d.Types = append(d.Types, t.Name)
	}
	aq := url.Values{"limit": {strconv.Itoa(jobsPageSize)}}
	for k, v := range map[string]string{"state": d.State, "type": d.Type, "cursor": d.Cursor} {
		if v != "" {
			aq.Set(k, v)
		}
	}
	var list struct {
		Jobs       []scheduler.Job `json:"jobs"`
		NextCursor *string         `json:"next_cursor"`
	}
	v := newView(s, "Jobs", "jobs", &d)
	if err := u.getJSON(r, s, "/jobs?"+aq.Encode(), &list); err != nil {
		e := asAPIError(err)
		if e.Status == http.StatusUnauthorized {
			u.apiFailure(w, r, s, err)
			return
		}
		u.render(w, r, e.Status, "jobs", v.withError(e.Message))
		return
	}
	d.Jobs = list.Jobs
	if list.NextCursor != nil {
		nq := url.Values{"cursor": {*list.NextCursor}}
		if d.State != "" {
			nq.Set("state", d.State)
		}
		if d.Type != "" {
			nq.Set("type", d.Type)
		}
		d.Next = "/ui/jobs?" + nq.Encode()
	}
	u.render(w, r, http.StatusOK, "jobs", v.withFlash(flash(r)))
}

// kv is one row of a two-column table.
type kv struct {
	K string
	V string
}

type jobData struct {
	Job       scheduler.Job
	Params    []kv
	Metrics   []kv
	Log       string
	LogCut    bool // only the log's tail is shown
	HasImage  bool
	Terminal  bool
	Submitted bool // just submitted through the form
}

// maxPageLog is how much of a job's log its page shows (the tail).
const maxPageLog = 256 << 10

// jobPage shows one job: its state (followed live by the page's script),
// queue position and reason, params, metrics, log, reconstruction image
// and RunBundle. Another tenant's job is "not found", as the API says.
func (u *UI) jobPage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	var j scheduler.Job
	if err := u.getJSON(r, s, "/jobs/"+url.PathEscape(id), &j); err != nil {
		u.apiFailure(w, r, s, err)
		return
	}
	d := jobData{Job: j, Terminal: terminal(j.State), Submitted: r.URL.Query().Get("submitted") == "1"}
	d.Params = sortedKV(j.Params)
	for _, k := range slices.Sorted(maps.Keys(j.Metrics)) {
		d.Metrics = append(d.Metrics, kv{k, fmtMetric(j.Metrics[k])})
	}
	if rec, err := u.call(r, s, http.MethodGet, "/jobs/"+url.PathEscape(id)+"/logs", nil, nil, maxPageLog, true); err == nil {
		d.Log, d.LogCut = rec.body.String(), rec.over
	}
	d.HasImage = j.State == scheduler.StateSucceeded && j.RunBundle != nil && !j.BundleExpired
	v := newView(s, "Job "+j.ID, "jobs", &d)
	if d.Submitted {
		v = v.withFlash("Job submitted.")
	} else {
		v = v.withFlash(flash(r))
	}
	u.render(w, r, http.StatusOK, "job", v)
}

// maxImage bounds the PNG read out of a RunBundle.
const maxImage = 32 << 20

// jobImage serves the reconstruction image of a succeeded job: the PNG
// in its RunBundle (x_hat.png, the reconstruction, when it has one; else
// the first PNG, a generated dataset's ground truth), read from the
// bundle as GET /jobs/{id}/runbundle streams it.
func (u *UI) jobImage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	status, _, body, err := u.stream(r, s, http.MethodGet, "/jobs/"+url.PathEscape(id)+"/runbundle")
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	defer body.Close()
	if status != http.StatusOK {
		if status == http.StatusUnauthorized {
			u.toLogin(w, r, "/ui/jobs/"+id, true)
			return
		}
		http.Error(w, "no image", http.StatusNotFound)
		return
	}
	png, err := pngOf(body)
	if err != nil {
		u.log.DebugContext(r.Context(), "ui: image of a RunBundle", "job_id", id, "err", err)
		http.Error(w, "no image", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	// A job's bundle never changes; the browser may keep its image.
	w.Header().Set("Cache-Control", "private, max-age=86400")
	_, _ = w.Write(png)
}

var errNoPNG = errors.New("ui: the RunBundle holds no PNG")

// pngOf reads a RunBundle tar and returns its reconstruction image.
func pngOf(r io.Reader) ([]byte, error) {
	tr := tar.NewReader(r)
	var first []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".png") || h.Size > maxImage {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxImage))
		if err != nil {
			return nil, err
		}
		if path.Base(h.Name) == "x_hat.png" {
			return b, nil
		}
		if first == nil {
			first = b
		}
	}
	if first == nil {
		return nil, errNoPNG
	}
	return first, nil
}

// cancelJob asks the API to cancel a job.
func (u *UI) cancelJob(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if err := u.sendJSON(r, s, http.MethodPost, "/jobs/"+url.PathEscape(id)+"/cancel", nil, nil); err != nil {
		u.apiFailure(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(id)+"?ok=cancelled", http.StatusSeeOther)
}

// sortedKV lists a JSON object's members by key, values as compact JSON
// (strings bare).
func sortedKV(raw json.RawMessage) []kv {
	var m map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil {
		return nil
	}
	var out []kv
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		var str string
		if json.Unmarshal(v, &str) == nil {
			out = append(out, kv{k, str})
			continue
		}
		var buf bytes.Buffer
		if json.Compact(&buf, v) == nil {
			out = append(out, kv{k, buf.String()})
		}
	}
	return out
}

// flashes are the success messages a redirect may name (?ok=), so that
// no text of the query string is ever shown.
var flashes = map[string]string{
	"cancelled": "Cancellation requested.",
	"deleted":   "Dataset deleted.",
	"uploaded":  "Dataset uploaded.",
	"revoked":   "Key revoked.",
	"tenant":    "Tenant updated.",
}

func flash(r *http.Request) string { return flashes[r.URL.Query().Get("ok")] }
