package ui

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/pwmesh/pwmesh/scheduler"
)

type submitData struct {
	Types    []JobType
	Datasets []scheduler.Dataset
	// Type is the chosen job type; Values what the form holds, by field
	// name ("type", "dataset", "gpus", "timeout", "<type>.<param>").
	Type   string
	Values url.Values
	// FormID makes a double submission of one form one job
	// (Idempotency-Key).
	FormID string
	// DatasetsError says why the dataset list could not be read.
	DatasetsError string
}

// Value is a field's value.
func (d *submitData) Value(name string) string { return d.Values.Get(name) }

// submitPage shows the submit form, filled from the query: a sign-in
// that interrupted a submission comes back here with what was typed.
func (u *UI) submitPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := u.submitForm(r, s, r.URL.Query())
	u.render(w, r, http.StatusOK, "submit", newView(s, "Submit a job", "submit", d))
}

// submitForm builds the form's data around values.
func (u *UI) submitForm(r *http.Request, s *session, values url.Values) *submitData {
	d := &submitData{Types: u.deps.JobTypes, Values: values, Type: values.Get("type"), FormID: randomToken()[:22]}
	if _, ok := u.jobType(d.Type); !ok && len(d.Types) > 0 {
		d.Type = d.Types[0].Name
	}
	var list struct {
		Datasets []scheduler.Dataset `json:"datasets"`
	}
	if err := u.getJSON(r, s, "/datasets", &list); err != nil {
		d.DatasetsError = asAPIError(err).Message
	}
	d.Datasets = list.Datasets
	return d
}

func (u *UI) jobType(name string) (JobType, bool) {
	i := slices.IndexFunc(u.deps.JobTypes, func(t JobType) bool { return t.Name == name })
	if i < 0 {
		return JobType{}, false
	}
	return u.deps.JobTypes[i], true
}

// submitReturn is where a submission interrupted by an expired session
// comes back to: the form, with what was typed (the token and the form's
// ID left out).
func submitReturn(r *http.Request) string {
	if err := r.ParseForm(); err != nil {
		return "/ui/submit"
	}
	draft := url.Values{}
	for k, v := range r.PostForm {
		if k != csrfField && k != "form_id" && len(v) > 0 && v[0] != "" {
			draft.Set(k, v[0])
		}
	}
	next := "/ui/submit?" + draft.Encode()
	if len(next) > maxNextLen {
		return "/ui/submit"
	}
	return next
}

// submitJob turns the form into a job request and sends POST /jobs; a
// refusal shows the form again, filled, with the API's message.
func (u *UI) submitJob(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	again := func(status int, msg string) {
		d := u.submitForm(r, s, f)
		u.render(w, r, status, "submit", newView(s, "Submit a job", "submit", d).withError(msg))
	}
	req, msg := buildJobRequest(u, f)
	if msg != "" {
		again(http.StatusBadRequest, msg)
		return
	}
	var hdr []string
	if id := f.Get("form_id"); id != "" && len(id) <= 64 {
		hdr = []string{"Idempotency-Key", "ui-" + id}
	}
	var j scheduler.Job
	if err := u.sendJSON(r, s, http.MethodPost, "/jobs", req, &j, hdr...); err != nil {
		e := asAPIError(err)
		if e.Status == http.StatusUnauthorized {
			u.toLogin(w, r, submitReturn(r), true)
			return
		}
		again(e.Status, e.Message)
		return
	}
	http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(j.ID)+"?submitted=1", http.StatusSeeOther)
}

// buildJobRequest reads the form; msg says what is wrong with it.
func buildJobRequest(u *UI, f url.Values) (req map[string]any, msg string) {
	jt, ok := u.jobType(f.Get("type"))
	if !ok {
		return nil, "Choose a job type."
	}
	req = map[string]any{"type": jt.Name}
	if ds := strings.TrimSpace(f.Get("dataset")); ds != "" {
		req["dataset"] = ds
	} else if jt.NeedsDataset {
		return nil, "A " + jt.Name + " job needs a dataset: pick one (upload one on the Datasets page, or make one with a generate_dataset job)."
	}
	params := map[string]any{}
	for _, p := range jt.Params {
		v := strings.TrimSpace(f.Get(jt.Name + "." + p.Name))
		if v == "" {
			continue
		}
		switch p.Kind {
		case ParamInt:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, p.Name + " must be a whole number."
			}
			params[p.Name] = n
		case ParamFloat:
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, p.Name + " must be a number."
			}
			params[p.Name] = x
		default:
			if len(p.Choices) > 0 && !slices.Contains(p.Choices, v) {
				return nil, p.Name + " must be one of " + strings.Join(p.Choices, ", ") + "."
			}
			params[p.Name] = v
		}
	}
	if len(params) > 0 {
		req["params"] = params
	}
	if g := strings.TrimSpace(f.Get("gpus")); g != "" {
		n, err := strconv.Atoi(g)
		if err != nil || n < 0 {
			return nil, "GPUs must be a whole number, 0 or more."
		}
		if n > 0 {
			req["resources"] = map[string]any{"gpus": n}
		}
	}
	if t := strings.TrimSpace(f.Get("timeout")); t != "" {
		req["timeout"] = t
	}
	return req, ""
}
