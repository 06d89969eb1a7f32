package ui

import (
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/pwmesh/pwmesh/scheduler"
)

type datasetsData struct {
	Datasets []scheduler.Dataset
}

// datasetsPage lists the tenant's datasets with the upload form.
func (u *UI) datasetsPage(w http.ResponseWriter, r *http.Request, s *session) {
	u.renderDatasets(w, r, s, http.StatusOK, "")
}

func (u *UI) renderDatasets(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	d := &datasetsData{}
	var list struct {
		Datasets []scheduler.Dataset `json:"datasets"`
	}
	v := newView(s, "Datasets", "datasets", d)
	if err := u.getJSON(r, s, "/datasets", &list); err != nil {
		e := asAPIError(err)
		if e.Status == http.StatusUnauthorized {
			u.apiFailure(w, r, s, err)
			return
		}
		if msg == "" {
			msg, status = e.Message, e.Status
		}
	}
	d.Datasets = list.Datasets
	if msg != "" {
		v = v.withError(msg)
	} else {
		v = v.withFlash(flash(r))
	}
	u.render(w, r, status, "datasets", v)
}

// uploadDataset takes the upload form without a script (multipart): the
// token and the name come before the file, which streams into POST
// /datasets as it arrives. (The page's script uploads through
// /ui/api/datasets instead, to show progress.)
func (u *UI) uploadDataset(w http.ResponseWriter, r *http.Request) {
	s, state := u.session(r)
	if s == nil {
		u.toLogin(w, r, "/ui/datasets", state == expiredSession)
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		u.renderDatasets(w, r, s, http.StatusBadRequest, "Choose a file to upload.")
		return
	}
	var name string
	csrf := false
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			u.renderDatasets(w, r, s, http.StatusBadRequest, "The upload was cut off; try again.")
			return
		}
		switch p.FormName() {
		case csrfField:
			v, _ := io.ReadAll(io.LimitReader(p, 256))
			csrf = tokenEqual(string(v), s.CSRF)
		case "name":
			v, _ := io.ReadAll(io.LimitReader(p, 1024))
			name = strings.TrimSpace(string(v))
		case "file":
			if !csrf {
				u.forbidden(w, r, s)
				return
			}
			if name == "" {
				name = p.FileName()
			}
			u.sendUpload(w, r, s, name, p)
			return
		}
	}
	if !csrf {
		u.forbidden(w, r, s)
		return
	}
	u.renderDatasets(w, r, s, http.StatusBadRequest, "Choose a file to upload.")
}

// sendUpload streams one file part into POST /datasets.
func (u *UI) sendUpload(w http.ResponseWriter, r *http.Request, s *session, name string, p *multipart.Part) {
	req, err := apiRequest(r.Context(), r, s, http.MethodPost, "/datasets?name="+url.QueryEscape(name), p)
	if err != nil {
		u.renderDatasets(w, r, s, http.StatusBadRequest, "That dataset name cannot be used.")
		return
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	rec := newRecorder(maxJSONAnswer, false, w)
	u.deps.API.ServeHTTP(rec, req)
	if rec.status < 200 || rec.status > 299 {
		e := rec.apiError()
		if e.Status == http.StatusUnauthorized {
			u.toLogin(w, r, "/ui/datasets", true)
			return
		}
		u.renderDatasets(w, r, s, e.Status, e.Message)
		return
	}
	http.Redirect(w, r, "/ui/datasets?ok=uploaded", http.StatusSeeOther)
}

// deleteDataset removes one dataset.
func (u *UI) deleteDataset(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if err := u.sendJSON(r, s, http.MethodDelete, "/datasets/"+url.PathEscape(id), nil, nil); err != nil {
		e := asAPIError(err)
		if e.Status == http.StatusUnauthorized {
			u.apiFailure(w, r, s, err)
			return
		}
		u.renderDatasets(w, r, s, e.Status, e.Message)
		return
	}
	http.Redirect(w, r, "/ui/datasets?ok=deleted", http.StatusSeeOther)
}
