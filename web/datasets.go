package web

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

const maxNameLen = 128

// checkDatasetName accepts 1 to 128 printable characters with no path
// separators, no "..", and no leading '.'.
func checkDatasetName(name string) error {
	switch {
	case name == "":
		return badRequest("invalid_name", "?name= is required")
	case len(name) > maxNameLen:
		return badRequest("invalid_name", "name is longer than %d bytes", maxNameLen)
	case strings.ContainsAny(name, `/\`), strings.Contains(name, ".."), strings.HasPrefix(name, "."):
		return badRequest("invalid_name", "name may not contain '/', '\\' or '..' nor start with '.'")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return badRequest("invalid_name", "name contains a control or non-printable character")
		}
	}
	return nil
}

// uploadDataset handles POST /datasets?name=: the raw body streams into the
// store, then the dataset is registered through Raft.
func (s *Server) uploadDataset(w http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/octet-stream" {
		return nil, apiError(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"upload the raw bytes with Content-Type: application/octet-stream")
	}
	name := r.URL.Query().Get("name")
	if err := checkDatasetName(name); err != nil {
		return nil, err
	}
	limit := s.cfg.MaxUploadBytes
	if r.ContentLength > limit {
		return nil, apiError(http.StatusRequestEntityTooLarge, "too_large", "dataset exceeds %d bytes", limit)
	}
	// Refused before the body is stored, as a body too large is (the
	// refusal drains it). A body of no declared length is stored, and
	// the FSM refuses the dataset if it passes the quota: its object,
	// referenced by nothing, is left to garbage collection.
	if err := s.checkUploadQuota(c, r.ContentLength); err != nil {
		return nil, err
	}
	// An upload may take as long as it needs while its bytes flow; its
	// answer is written once the dataset is durable, which may take longer
	// than the server's write timeout.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	defer func() { _ = rc.SetWriteDeadline(time.Now().Add(s.cfg.Timeouts.Write)) }()
	body := bufio.NewReader(&eofLifts{r: newStallReader(w, http.MaxBytesReader(w, r.Body, limit), s.cfg.Timeouts.Stall), rc: rc})
	if _, err := body.Peek(1); errors.Is(err, io.EOF) {
		return nil, badRequest("empty_body", "the dataset is empty")
	} else if err != nil {
		return nil, s.uploadError(err, limit)
	}
	d, err := s.deps.Datasets.PutDataset(r.Context(), c.tenant(), body)
	if err != nil {
		return nil, s.uploadError(err, limit)
	}
	d.ID, d.Tenant, d.Name, d.CreatedAt = s.deps.NewID("ds_"), c.tenant(), name, s.now()
	if _, err := s.deps.Writer.Apply(r.Context(), &scheduler.RegisterDataset{At: d.CreatedAt, Dataset: d}); err != nil {
		return nil, err
	}
	// Registered datasets are immutable: answer what was committed, once
	// the local replica has it so that a GET that follows finds it.
	s.await(r.Context(), func() bool { _, ok := s.deps.State.Dataset(d.ID); return ok })
	return d, nil
}

func (s *Server) uploadError(err error, limit int64) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
			Message: fmt.Sprintf("dataset exceeds %d bytes", limit), Err: err}
	}
	if errors.Is(err, syscall.ENOSPC) {
		return &Error{Status: http.StatusInsufficientStorage, Code: "insufficient_storage",
			Message: "this node's disk is full; nothing was stored: free space or upload through another node", Err: err}
	}
	return fmt.Errorf("web: store dataset: %w", err)
}

// tenantDataset returns the {id} dataset when it belongs to the caller.
func (s *Server) tenantDataset(r *http.Request, c *caller) (scheduler.Dataset, error) {
	id, err := pathID(r)
	if err != nil {
		return scheduler.Dataset{}, err
	}
	d, ok := s.deps.State.Dataset(id)
	if !ok || d.Tenant != c.tenant() {
		return scheduler.Dataset{}, notFound("dataset " + id)
	}
	return d, nil
}

type datasetList struct {
	Datasets []scheduler.Dataset `json:"datasets"`
}

// listDatasets handles GET /datasets.
func (s *Server) listDatasets(_ http.ResponseWriter, _ *http.Request, c *caller) (any, error) {
	ds := s.deps.State.Datasets(c.tenant())
	if ds == nil {
		ds = []scheduler.Dataset{}
	}
	return datasetList{Datasets: ds}, nil
}

// getDataset handles GET /datasets/{id}.
func (s *Server) getDataset(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	return s.tenantDataset(r, c)
}

// downloadDataset handles GET /datasets/{id}/download (an extension of the
// contract): the dataset's bytes, with Range and the CID as ETag. A range
// of a sealed dataset decrypts only the segments it touches.
func (s *Server) downloadDataset(w http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	d, err := s.tenantDataset(r, c)
	if err != nil {
		return nil, err
	}
	body, err := s.deps.Datasets.OpenDataset(r.Context(), d)
	if errors.Is(err, cas.ErrNotFound) {
		return nil, &Error{Status: http.StatusNotFound, Code: "dataset_not_stored",
			Message: fmt.Sprintf("no reachable node or mirror holds dataset %s", d.ID), Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("web: open dataset %s: %w", d.ID, err)
	}
	if err := checkRanges(w, r, d.Size); err != nil {
		body.Close()
		return nil, err
	}
	return rawBody(func(w http.ResponseWriter, r *http.Request) {
		defer body.Close()
		w = longAnswer(w, s.cfg.Timeouts.Stall)
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("ETag", `"`+d.CID+`"`)
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": d.Name}))
		http.ServeContent(w, r, "", d.CreatedAt, body)
	}), nil
}

// deleteDataset handles DELETE /datasets/{id}. The blob stays in the store
// (garbage collection reclaims it).
func (s *Server) deleteDataset(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	d, err := s.tenantDataset(r, c)
	if err != nil {
		return nil, err
	}
	// Refuse here what the FSM would refuse, sparing the log an entry;
	// the FSM checks again against the state it applies to.
	jobs, _ := s.deps.State.Jobs(scheduler.JobFilter{Tenant: c.tenant()})
	for _, j := range jobs {
		if j.Dataset == d.ID && !scheduler.Terminal(j.State) {
			return nil, apiError(http.StatusConflict, "dataset_in_use", "dataset %s is used by %s job %s", d.ID, j.State, j.ID)
		}
	}
	_, err = s.deps.Writer.Apply(r.Context(), &scheduler.DeleteDataset{At: s.now(), Tenant: c.tenant(), ID: d.ID})
	switch {
	case errors.Is(err, scheduler.ErrConflict):
		return nil, &Error{Status: http.StatusConflict, Code: "dataset_in_use",
			Message: fmt.Sprintf("dataset %s is used by a job that has not finished", d.ID), Err: err}
	case errors.Is(err, scheduler.ErrNotFound):
		return nil, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "dataset " + d.ID + " not found", Err: err}
	case err != nil:
		return nil, err
	}
	s.await(r.Context(), func() bool { _, ok := s.deps.State.Dataset(d.ID); return !ok })
	return d, nil
}
