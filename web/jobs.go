package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

// JobType is what the API checks of a job type before it queues a job of
// it; node fills Deps.JobTypes from the workload's registry, so that the
// API lists no job types of its own.
type JobType struct {
	// NeedsDataset: a job without a dataset is refused (400
	// dataset_required).
	NeedsDataset bool
	// NeedsGPU: a job must ask for resources.gpus of at least 1 and name
	// no dataset (400 invalid_resources).
	NeedsGPU bool
	// OperatorBytes, when set, is the size of the compiled operator a job
	// of this type with these (valid) params would make; ok is false when
	// its params do not say (its dataset does). A job past its tenant's
	// tier's bound is refused (429 quota_exceeded).
	OperatorBytes func(params json.RawMessage) (n int64, ok bool)
}

// jobType returns the rules of a job type and whether Deps.JobTypes has it.
func (s *Server) jobType(name string) (JobType, bool) {
	jt, ok := s.deps.JobTypes[name]
	return jt, ok
}

// jobTypeNames lists the known job types for messages.
func (s *Server) jobTypeNames() string {
	return strings.Join(slices.Sorted(maps.Keys(s.deps.JobTypes)), ", ")
}

// Bounds of a job request.
const (
	maxGPUs      = 16
	maxTextLen   = 256 // image, region, gpu_model, Idempotency-Key
	defaultLimit = 100
	maxLimit     = 1000
)

// jobRequest is the body of POST /jobs (CONTRACT.md §3).
type jobRequest struct {
	Type      string              `json:"type"`
	Dataset   string              `json:"dataset"`
	Params    json.RawMessage     `json:"params"`
	Priority  string              `json:"priority"`
	Resources scheduler.Resources `json:"resources"`
	Timeout   string              `json:"timeout"`
	Image     string              `json:"image"`
	Region    string              `json:"region"`
	Network   string              `json:"network"`
}

// jobView is a job as a tenant sees it: the runner's lease (its fencing
// token) stays internal, and so do host paths.
func jobView(j scheduler.Job) scheduler.Job {
	j.Lease = nil
	// Messages made on a node may name its files: keep their host paths
	// out of what a tenant sees.
	j.Reason = scrubPaths(j.Reason)
	if j.Error != nil {
		e := *j.Error
		e.Message = scrubPaths(e.Message)
		j.Error = &e
	}
	return j
}

// submitJob handles POST /jobs.
func (s *Server) submitJob(w http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	var req jobRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return nil, err
	}
	idem := r.Header.Get("Idempotency-Key")
	if err := checkText("Idempotency-Key", idem); err != nil {
		return nil, badRequest("invalid_idempotency_key", "%v", err)
	}
	job, err := s.buildJob(c, req)
	if err != nil {
		return nil, err
	}
	cmd := &scheduler.SubmitJob{At: s.now(), Job: job, IdempotencyKey: idem}
	if idem != "" {
		if cmd.RequestHash, err = requestHash(job); err != nil {
			return nil, err
		}
	}
	v, err := s.deps.Writer.Apply(r.Context(), cmd)
	if errors.Is(err, scheduler.ErrNotFound) {
		return nil, &Error{Status: http.StatusNotFound, Code: "dataset_not_found",
			Message: fmt.Sprintf("dataset %s not found", job.Dataset), Err: err}
	}
	if err != nil {
		return nil, err
	}
	// A repeated Idempotency-Key answers the job it first created.
	if prev, ok := asJob(v); ok {
		job = prev
	}
	if got, ok := s.awaitJob(r, job.ID, func(j scheduler.Job) bool { return true }); ok {
		job = got
	}
	return jobView(job), nil
}

// requestHash is the hex SHA-256 of what a submission asks for, after
// defaults and with params in a canonical form (keys sorted): two requests
// that ask for the same job hash the same, whatever their JSON spelling.
func requestHash(j scheduler.Job) (string, error) {
	var params any
	if len(j.Params) > 0 {
		dec := json.NewDecoder(bytes.NewReader(j.Params))
		dec.UseNumber()
		if err := dec.Decode(&params); err != nil {
			return "", fmt.Errorf("web: canonical params: %w", err)
		}
	}
	b, err := json.Marshal(struct {
		Type      string              `json:"type"`
		Dataset   string              `json:"dataset"`
		Params    any                 `json:"params"`
		Priority  string              `json:"priority"`
		Resources scheduler.Resources `json:"resources"`
		Timeout   scheduler.Duration  `json:"timeout"`
		Image     string              `json:"image"`
		Region    string              `json:"region"`
		Network   string              `json:"network"`
	}{j.Type, j.Dataset, params, j.Priority, j.Resources, j.Timeout, j.Image, j.Region, j.Network})
	if err != nil {
		return "", fmt.Errorf("web: canonical request: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// buildJob validates a request and turns it into the job to submit.
func (s *Server) buildJob(c *caller, req jobRequest) (scheduler.Job, error) {
	jt, ok := s.jobType(req.Type)
	if !ok {
		return scheduler.Job{}, badRequest("unknown_job_type", "type %q is not one of %s", req.Type, s.jobTypeNames())
	}
	params := req.Params
	if t := bytes.TrimSpace(params); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		params = nil
	} else if t[0] != '{' {
		return scheduler.Job{}, badRequest("invalid_params", "params must be a JSON object")
	}
	if s.deps.ValidateParams != nil {
		if err := s.deps.ValidateParams(req.Type, params); err != nil {
			code := "invalid_params"
			if errors.Is(err, ErrUnknownJobType) {
				code = "unknown_job_type"
			}
			return scheduler.Job{}, &Error{Status: http.StatusBadRequest, Code: code, Message: err.Error(), Err: err}
		}
	}
	if req.Dataset == "" && jt.NeedsDataset {
		return scheduler.Job{}, badRequest("dataset_required", "a %s job needs a dataset", req.Type)
	}
	if jt.NeedsGPU && (req.Resources.GPUs < 1 || req.Dataset != "") {
		return scheduler.Job{}, badRequest("invalid_resources", "a %s job needs resources.gpus of at least 1 and no dataset", req.Type)
	}
	if req.Dataset != "" {
		d, ok := s.deps.State.Dataset(req.Dataset)
		if !idPattern.MatchString(req.Dataset) || !ok || d.Tenant != c.tenant() {
			return scheduler.Job{}, apiError(http.StatusNotFound, "dataset_not_found", "dataset %s not found", req.Dataset)
		}
	}
	prio := req.Priority
	if prio == "" {
		prio = c.tier()
	}
	rank := scheduler.PriorityRank(prio)
	if rank < 0 {
		return scheduler.Job{}, badRequest("invalid_priority", "priority %q is not one of free, paid, sprint", req.Priority)
	}
	if c.tier() == scheduler.PriorityFree && rank > scheduler.PriorityRank(scheduler.PriorityFree) {
		return scheduler.Job{}, apiError(http.StatusForbidden, "priority_not_allowed",
			"a free-tier key may submit only free jobs, not %s", prio)
	}
	timeout := scheduler.DefaultTimeout
	if prio == scheduler.PrioritySprint {
		timeout = scheduler.SprintTimeout
	}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 || d > scheduler.MaxTimeout {
			return scheduler.Job{}, badRequest("invalid_timeout",
				"timeout %q must be a duration such as \"90m\", above 0 and at most %s", req.Timeout, scheduler.MaxTimeout)
		}
		timeout = d
	}
	res := req.Resources
	if res.GPUs < 0 || res.GPUs > maxGPUs || res.GPUMemoryMB < 0 {
		return scheduler.Job{}, badRequest("invalid_resources",
			"resources.gpus must be 0 to %d and resources.gpu_memory_mb at least 0", maxGPUs)
	}
	for _, f := range []struct{ name, v string }{{"image", req.Image}, {"region", req.Region}, {"resources.gpu_model", res.GPUModel}} {
		if err := checkText(f.name, f.v); err != nil {
			return scheduler.Job{}, badRequest("invalid_"+lastField(f.name), "%v", err)
		}
	}
	network, err := jobNetwork(c, req)
	if err != nil {
		return scheduler.Job{}, err
	}
	if req.Image != "" && s.deps.ValidateImage != nil {
		if err := s.deps.ValidateImage(prio, req.Image); err != nil {
			return scheduler.Job{}, &Error{Status: http.StatusForbidden, Code: "image_not_allowed", Message: err.Error(), Err: err}
		}
	}
	if err := s.checkOperatorBound(c, jt, params); err != nil {
		return scheduler.Job{}, err
	}
	return scheduler.Job{
		ID:        s.deps.NewID("job_"),
		Tenant:    c.tenant(),
		Type:      req.Type,
		Priority:  prio,
		Dataset:   req.Dataset,
		Params:    params,
		Resources: res,
		Timeout:   scheduler.Duration(timeout),
		Image:     req.Image,
		Region:    req.Region,
		Network:   network,
	}, nil
}

// jobNetwork checks the request's network: none unless it asks, and only
// paid tiers may ask for one, for a job with an image (the built-in
// workload never needs one). It returns what the job record holds: ""
// for none.
func jobNetwork(c *caller, req jobRequest) (string, error) {
	switch req.Network {
	case "", scheduler.NetworkNone:
		return "", nil
	case scheduler.NetworkBridge:
	default:
		if err := checkText("network", req.Network); err != nil {
			return "", badRequest("invalid_network", "%v", err)
		}
		return "", badRequest("invalid_network", "network %q is not one of none, bridge", req.Network)
	}
	if req.Image == "" {
		return "", badRequest("invalid_network",
			"network %q is for jobs that name an image; the built-in workload runs without network", req.Network)
	}
	if c.tier() == scheduler.PriorityFree {
		return "", apiError(http.StatusForbidden, "network_not_allowed",
			"a free-tier key may not ask for network; paid tiers may (\"network\": \"bridge\" with an image)")
	}
	return scheduler.NetworkBridge, nil
}

func lastField(name string) string {
	if name == "resources.gpu_model" {
		return "resources"
	}
	return name
}

// checkText accepts printable strings of at most maxTextLen bytes.
func checkText(name, v string) error {
	if len(v) > maxTextLen {
		return fmt.Errorf("%s is longer than %d bytes", name, maxTextLen)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s contains a control or non-printable character", name)
		}
	}
	return nil
}

// asJob reads the job a command answered with, whatever form the forwarding
// Writer delivers it in.
func asJob(v any) (scheduler.Job, bool) {
	switch v := v.(type) {
	case scheduler.Job:
		return v, v.ID != ""
	case *scheduler.Job:
		if v == nil {
			return scheduler.Job{}, false
		}
		return *v, v.ID != ""
	case nil:
		return scheduler.Job{}, false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return scheduler.Job{}, false
	}
	var j scheduler.Job
	if json.Unmarshal(b, &j) != nil {
		return scheduler.Job{}, false
	}
	return j, j.ID != ""
}

// awaitJob reads a job from the local replica once ok holds for it (the
// FSM fills queue_position and reason on read).
func (s *Server) awaitJob(r *http.Request, id string, ok func(scheduler.Job) bool) (scheduler.Job, bool) {
	var got scheduler.Job
	found := s.await(r.Context(), func() bool {
		j, exists := s.deps.State.Job(id)
		if exists && ok(j) {
			got = j
			return true
		}
		return false
	})
	return got, found
}

// tenantJob returns the {id} job when it belongs to the caller's tenant;
// another tenant's job is not found, exactly like a missing one.
func (s *Server) tenantJob(r *http.Request, c *caller) (scheduler.Job, error) {
	id, err := pathID(r)
	if err != nil {
		return scheduler.Job{}, err
	}
	j, ok := s.deps.State.Job(id)
	if !ok || j.Tenant != c.tenant() {
		return scheduler.Job{}, notFound("job " + id)
	}
	return j, nil
}

// getJob handles GET /jobs/{id}.
func (s *Server) getJob(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	j, err := s.tenantJob(r, c)
	if err != nil {
		return nil, err
	}
	// ?wait=30s (an extension): answer when the job leaves the state it
	// is in (or ?state=, the one the client last saw), or when the wait
	// is over, so that following a job costs a call per change, not one a
	// second against a tenant's daily calls.
	q := r.URL.Query()
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxJobWait {
			return nil, badRequest("invalid_wait", "wait must be a duration from 0s to %s, e.g. 30s", maxJobWait)
		}
		from := j.State
		if st := q.Get("state"); st != "" {
			if !scheduler.ValidState(st) {
				return nil, badRequest("invalid_state", "state %q is not one of queued, running, succeeded, failed, cancelled, timed_out", st)
			}
			from = st
		}
		id := j.ID
		s.awaitFor(r.Context(), d, func() bool {
			cur, ok := s.deps.State.Job(id)
			if ok {
				j = cur
			}
			return !ok || cur.State != from
		})
		if r.Context().Err() != nil {
			return nil, r.Context().Err()
		}
	}
	return jobView(j), nil
}

// maxJobWait bounds GET /jobs/{id}?wait=, well within the write timeout.
const maxJobWait = 50 * time.Second

type jobList struct {
	Jobs       []scheduler.Job `json:"jobs"`
	NextCursor *string         `json:"next_cursor"`
}

// listJobs handles GET /jobs.
func (s *Server) listJobs(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	q := r.URL.Query()
	f := scheduler.JobFilter{Tenant: c.tenant(), State: q.Get("state"), Type: q.Get("type"), Limit: defaultLimit}
	if f.State != "" && !scheduler.ValidState(f.State) {
		return nil, badRequest("invalid_state", "state %q is not one of queued, running, succeeded, failed, cancelled, timed_out", f.State)
	}
	if _, ok := s.jobType(f.Type); f.Type != "" && !ok {
		return nil, badRequest("unknown_job_type", "type %q is not a job type", f.Type)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return nil, badRequest("invalid_limit", "limit must be an integer from 1 to %d", maxLimit)
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		after, err := decodeCursor(v)
		if err != nil {
			return nil, badRequest("invalid_cursor", "cursor is not one this API returned")
		}
		f.After = after
	}
	jobs, next := s.deps.State.Jobs(f)
	out := jobList{Jobs: make([]scheduler.Job, 0, len(jobs))}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, jobView(j))
	}
	if next != 0 {
		cur := encodeCursor(next)
		out.NextCursor = &cur
	}
	return out, nil
}

// Cursors are "c" + the unpadded base64url of the big-endian position.
func encodeCursor(after uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], after)
	return "c" + base64.RawURLEncoding.EncodeToString(b[:])
}

func decodeCursor(s string) (uint64, error) {
	if len(s) != 12 || s[0] != 'c' {
		return 0, errors.New("bad cursor")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s[1:])
	if err != nil || len(b) != 8 {
		return 0, errors.New("bad cursor")
	}
	n := binary.BigEndian.Uint64(b)
	if n == 0 {
		return 0, errors.New("bad cursor")
	}
	return n, nil
}

// cancelJob handles POST /jobs/{id}/cancel.
func (s *Server) cancelJob(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	j, err := s.tenantJob(r, c)
	if err != nil {
		return nil, err
	}
	if scheduler.Terminal(j.State) {
		return nil, apiError(http.StatusConflict, "already_finished", "job %s is already %s", j.ID, j.State)
	}
	v, err := s.deps.Writer.Apply(r.Context(), &scheduler.CancelJob{At: s.now(), Tenant: c.tenant(), JobID: j.ID})
	if errors.Is(err, scheduler.ErrConflict) {
		return nil, &Error{Status: http.StatusConflict, Code: "already_finished", Message: fmt.Sprintf("job %s has already finished", j.ID), Err: err}
	}
	if err != nil {
		return nil, err
	}
	if after, ok := asJob(v); ok {
		j = after
	}
	if got, ok := s.awaitJob(r, j.ID, func(x scheduler.Job) bool { return scheduler.Terminal(x.State) || x.CancelRequested }); ok {
		j = got
	}
	return jobView(j), nil
}

// logPoll is how often a followed log is re-read when the state is quiet.
const logPoll = 500 * time.Millisecond

// jobLogs handles GET /jobs/{id}/logs[?follow=1].
func (s *Server) jobLogs(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	j, err := s.tenantJob(r, c)
	if err != nil {
		return nil, err
	}
	follow, err := parseBool(r.URL.Query().Get("follow"))
	if err != nil {
		return nil, badRequest("invalid_follow", "follow must be 1, 0, true or false")
	}
	if !follow {
		rc, err := s.openLog(j.ID)
		if err != nil {
			return nil, err
		}
		return rawBody(func(w http.ResponseWriter, r *http.Request) {
			w = longAnswer(w, s.cfg.Timeouts.Stall)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			if rc == nil {
				return
			}
			defer rc.Close()
			if _, err := io.Copy(w, rc); err != nil {
				s.cfg.Logger.DebugContext(r.Context(), "web: send log", "job_id", j.ID, "err", err)
			}
		}), nil
	}
	return rawBody(func(w http.ResponseWriter, r *http.Request) {
		// A follow lasts as long as the job: the write deadline moves with
		// each write instead.
		w = longAnswer(w, s.cfg.Timeouts.Stall)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		if err := s.followLog(r.Context(), w, j.ID); err != nil && r.Context().Err() == nil {
			s.cfg.Logger.WarnContext(r.Context(), "web: follow log", "job_id", j.ID, "err", err)
		}
	}), nil
}

func parseBool(v string) (bool, error) {
	switch v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	}
	return false, errors.New("not a boolean")
}

// followLog writes the log from the start and then whatever is appended,
// until the job is terminal and its log drained, or ctx ends. It wakes on
// every state change and every logPoll.
func (s *Server) followLog(ctx context.Context, w http.ResponseWriter, id string) error {
	rc := http.NewResponseController(w)
	tick := time.NewTicker(logPoll)
	defer tick.Stop()
	var off int64
	for {
		changed := s.deps.State.Watch()
		// Read the job's state before draining: a runner writes its log
		// before it completes, so the drain after a terminal state is the last.
		j, ok := s.deps.State.Job(id)
		done := !ok || scheduler.Terminal(j.State)
		n, err := s.copyLog(w, id, off)
		off += n
		if err != nil {
			return err
		}
		if err := rc.Flush(); err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

// copyLog writes the job's log from byte off on and returns how many bytes
// it wrote. A job with no log yet has an empty one.
func (s *Server) copyLog(w io.Writer, id string, off int64) (int64, error) {
	rc, err := s.openLog(id)
	if err != nil || rc == nil {
		return 0, err
	}
	defer rc.Close()
	if off > 0 {
		if sk, ok := rc.(io.Seeker); ok {
			if _, err := sk.Seek(off, io.SeekStart); err != nil {
				return 0, fmt.Errorf("web: seek log of %s: %w", id, err)
			}
		} else if _, err := io.CopyN(io.Discard, rc, off); err != nil {
			if errors.Is(err, io.EOF) {
				return 0, nil // the log shrank (rotated); nothing new
			}
			return 0, fmt.Errorf("web: skip log of %s: %w", id, err)
		}
	}
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, fmt.Errorf("web: copy log of %s: %w", id, err)
	}
	return n, nil
}

// openLog opens the job's log so far; nil (and no error) when it has none.
func (s *Server) openLog(id string) (io.ReadCloser, error) {
	if s.deps.Logs == nil {
		return nil, nil
	}
	rc, err := s.deps.Logs.OpenLog(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("web: open log of %s: %w", id, err)
	}
	return rc, nil
}

// runBundle handles GET /jobs/{id}/runbundle: the plain tar (a sealed
// bundle is opened with its tenant's key), with Range and If-None-Match
// through http.ServeContent; the ETag is the job's runbundle.cid.
func (s *Server) runBundle(w http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	j, err := s.tenantJob(r, c)
	if err != nil {
		return nil, err
	}
	if j.BundleExpired {
		return nil, apiError(http.StatusGone, "expired", "the RunBundle of job %s was removed after %d days, the free tier's retention; paid tiers keep theirs",
			j.ID, int(scheduler.BundleRetention/(24*time.Hour)))
	}
	if j.State != scheduler.StateSucceeded || j.RunBundle == nil || j.RunBundle.CID == "" {
		return nil, apiError(http.StatusConflict, "not_ready", "job %s is %s; its RunBundle exists once it has succeeded", j.ID, j.State)
	}
	b := *j.RunBundle
	var body io.ReadSeekCloser
	if s.deps.Bundles != nil {
		body, err = s.deps.Bundles.OpenBundle(r.Context(), j.Tenant, b)
	} else if id, perr := cas.ParseCID(b.CID); perr != nil {
		err = perr
	} else {
		body, err = s.deps.Store.Open(r.Context(), id)
	}
	if errors.Is(err, cas.ErrNotFound) {
		return nil, &Error{Status: http.StatusNotFound, Code: "bundle_not_found",
			Message: fmt.Sprintf("no reachable node or mirror holds the RunBundle of job %s", j.ID), Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("web: open the RunBundle of %s: %w", j.ID, err)
	}
	if err := checkRanges(w, r, b.Size); err != nil {
		body.Close()
		return nil, err
	}
	var mod time.Time
	if j.FinishedAt != nil {
		mod = *j.FinishedAt
	}
	return rawBody(func(w http.ResponseWriter, r *http.Request) {
		defer body.Close()
		w = longAnswer(w, s.cfg.Timeouts.Stall)
		h := w.Header()
		h.Set("Content-Type", "application/x-tar")
		h.Set("ETag", `"`+b.CID+`"`)
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": j.ID + ".runbundle.tar"}))
		http.ServeContent(w, r, "", mod, body)
	}), nil
}
