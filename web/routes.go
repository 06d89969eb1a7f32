package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pwmesh/pwmesh/scheduler"
)

// apiFunc is a handler: it returns the value to answer with, or an error
// that the wrapper maps to a status and a JSON error body. c is the
// authenticated caller (nil on public routes).
type apiFunc func(w http.ResponseWriter, r *http.Request, c *caller) (any, error)

// withStatus overrides a route's success status for one answer.
type withStatus struct {
	status int
	body   any
}

// rawBody is returned by handlers that write the response themselves
// (streams, downloads) once every check that can fail cleanly has passed.
type rawBody func(w http.ResponseWriter, r *http.Request)

// routes is the one route table of the API.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern string, status int, auth bool, h apiFunc) {
		mux.Handle(pattern, s.instrument(pattern, s.wrap(status, auth, h)))
	}
	const public, private = false, true

	api("GET /health", http.StatusOK, public, s.getHealth)
	mux.Handle("GET /metrics", s.instrument("GET /metrics",
		promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{Registry: s.cfg.Registry})))

	api("POST /jobs", http.StatusAccepted, private, s.submitJob)
	api("GET /jobs", http.StatusOK, private, s.listJobs)
	api("GET /jobs/{id}", http.StatusOK, private, s.getJob)
	api("POST /jobs/{id}/cancel", http.StatusAccepted, private, s.cancelJob)
	api("GET /jobs/{id}/logs", http.StatusOK, private, s.jobLogs)
	api("GET /jobs/{id}/runbundle", http.StatusOK, private, s.runBundle)

	api("POST /datasets", http.StatusCreated, private, s.uploadDataset)
	api("GET /datasets", http.StatusOK, private, s.listDatasets)
	api("GET /datasets/{id}", http.StatusOK, private, s.getDataset)
	api("GET /datasets/{id}/download", http.StatusOK, private, s.downloadDataset)
	api("DELETE /datasets/{id}", http.StatusOK, private, s.deleteDataset)

	api("GET /nodes", http.StatusOK, private, s.listNodes)
	api("POST /nodes/{id}/drain", http.StatusAccepted, private, s.drainNode)
	api("DELETE /nodes/{id}/drain", http.StatusOK, private, s.undrainNode)
	api("GET /scaler", http.StatusOK, private, s.getScaler)
	api("GET /usage", http.StatusOK, private, s.getUsage)
	api("GET /usage/invoice", http.StatusOK, private, s.getInvoice)
	api("GET /admin/usage", http.StatusOK, private, s.adminUsage)
	api("GET /tenants", http.StatusOK, private, s.listTenants)
	api("GET /tenants/{tenant}", http.StatusOK, private, s.getTenant)
	api("PATCH /tenants/{tenant}", http.StatusOK, private, s.patchTenant)
	api("POST /keys", http.StatusCreated, private, s.createKey)
	api("GET /keys", http.StatusOK, private, s.listKeys)
	api("DELETE /keys/{id}", http.StatusNoContent, private, s.deleteKey)
	api("POST /admin/tenants/{tenant}/rotate-key", http.StatusOK, private, s.rotateTenantKey)
	api("POST /admin/rewrap-keys", http.StatusOK, private, s.rewrapKeys)

	return s.fallback(mux)
}

// fallback answers what the mux itself refuses (404, 405) with the API's
// JSON error body instead of the mux's plain text.
func (s *Server) fallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerOnly{h: http.Header{}}
		mux.ServeHTTP(rec, r) // learns the status (and Allow) the mux would give
		s.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			method, path := truncate(r.Method, 16), truncate(r.URL.Path, 256)
			e := apiError(http.StatusNotFound, "not_found", "no such endpoint: %s %s", method, path)
			if rec.status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", rec.h.Get("Allow"))
				e = apiError(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s", method, path)
			}
			s.drain(w, r, &trackedBody{ReadCloser: r.Body})
			s.writeError(w, r, e)
		})).ServeHTTP(w, r)
	})
}

// headerOnly records a status and headers and drops the body.
type headerOnly struct {
	h      http.Header
	status int
}

func (h *headerOnly) Header() http.Header         { return h.h }
func (h *headerOnly) Write(p []byte) (int, error) { return len(p), nil }
func (h *headerOnly) WriteHeader(code int)        { h.status = code }

// wrap authenticates (when auth), runs h and writes its answer. A refusal
// first drains what the client still sends of its body (drain).
func (s *Server) wrap(status int, auth bool, h apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := &trackedBody{ReadCloser: r.Body}
		r.Body = body
		var c *caller
		if auth {
			var err error
			if c, err = s.authenticate(r); err != nil {
				s.drain(w, r, body)
				s.writeError(w, r, err)
				return
			}
			if err := s.admit(r, c); err != nil {
				s.drain(w, r, body)
				s.writeError(w, r, err)
				return
			}
			noteCaller(r.Context(), c)
			r = r.WithContext(scheduler.WithCaller(r.Context(), c.secret))
		}
		v, err := h(w, r, c)
		if err != nil {
			if body.timedOut && classify(err).Status >= 500 {
				err = &Error{Status: errBodyStalled.Status, Code: errBodyStalled.Code, Message: errBodyStalled.Message, Err: err}
			}
			s.drain(w, r, body)
			s.writeError(w, r, err)
			return
		}
		switch v := v.(type) {
		case rawBody:
			v(w, r)
		case withStatus:
			s.writeJSON(w, r, v.status, v.body)
		default:
			s.writeJSON(w, r, status, v)
		}
	})
}

func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "web: encode answer", "err", err)
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{errorDetail{Code: "internal", Message: "internal error", RequestID: RequestID(r.Context())}})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Answers may hold secrets (a new key) or tenant data: no cache keeps them.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers with the error body and logs the cause: client
// mistakes at debug, server failures at error. The answer names the
// request's ID (error.request_id; a server failure's message too), which
// its log line carries as well, and never the cause (which may hold host
// paths).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	lvl := slog.LevelDebug
	msg := e.Message
	reqID := RequestID(r.Context())
	if e.Status >= 500 {
		lvl = slog.LevelError
		if reqID != "" {
			msg += " (request " + reqID + ")"
		}
	}
	s.cfg.Logger.Log(r.Context(), lvl, "request refused", "method", methodLabel(r.Method), "path", truncate(r.URL.Path, 256),
		"status", e.Status, "code", e.Code, "err", err)
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pwmesh"`)
	}
	if d := retryAfter(e, err, s.now()); d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	s.writeJSON(w, r, e.Status, errorBody{errorDetail{Code: e.Code, Message: msg, RequestID: reqID}})
}

// methodLabel maps a request method to a fixed set, for metric labels and
// logs: any other method (one may be megabytes long) is "other".
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodHead, http.MethodOptions:
		return m
	}
	return "other"
}

// instrument sets the node and nosniff headers, counts and times the
// request under its route pattern (never the raw path, never a method
// outside a fixed set) and names the route to the access log (Requests).
func (s *Server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusWriter{ResponseWriter: w}
		hdr := w.Header()
		if s.cfg.NodeID != "" {
			hdr.Set("X-Pwmesh-Node", s.cfg.NodeID)
		}
		hdr.Set("X-Content-Type-Options", "nosniff")
		noteRoute(r.Context(), route)
		h.ServeHTTP(rec, r)
		s.metrics.observe(route, methodLabel(r.Method), rec.code(), time.Since(start))
	})
}

// statusWriter remembers the status written through it and passes Flush,
// Hijack and ResponseController calls through.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (w *statusWriter) Flush() { _ = w.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (w *statusWriter) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// pathID returns the {id} path value when it is a well-formed ID.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !idPattern.MatchString(id) {
		return "", badRequest("invalid_id", "ids are 1 to 128 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	return id, nil
}

// decodeJSON reads one JSON value of at most MaxJSONBytes into v, refusing
// unknown fields, trailing data, duplicate object keys and nesting deeper
// than maxJSONDepth.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	tooLarge := func(err error) error {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
			Message: fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxJSONBytes), Err: err}
	}
	if r.ContentLength > s.cfg.MaxJSONBytes {
		return tooLarge(nil)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxJSONBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return tooLarge(err)
		}
		return fmt.Errorf("web: read request body: %w", err)
	}
	if err := checkJSON(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_json", Message: "malformed JSON body: " + err.Error(), Err: err}
	}
	return nil
}

// maxJSONDepth bounds the nesting of objects and arrays in a request body.
const maxJSONDepth = 64

// checkJSON walks the tokens of one JSON value and refuses, with 400, a
// syntax error, data after the value, nesting deeper than maxJSONDepth and
// an object that repeats a key (which parsers resolve differently: the
// first wins in some, the last in others).
func checkJSON(b []byte) error {
	malformed := func(err error) error {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_json", Message: "malformed JSON body: " + err.Error(), Err: err}
	}
	type frame struct {
		object  bool
		wantKey bool
		keys    map[string]struct{}
		path    string // where this object or array is, for messages
		member  string // where its current member is
		n       int    // members so far
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []*frame
	done := false // the top-level value is complete
	// valueDone notes that a value ended: the enclosing object wants a key next.
	valueDone := func() {
		if len(stack) == 0 {
			done = true
			return
		}
		if top := stack[len(stack)-1]; top.object {
			top.wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if !done {
				return malformed(io.ErrUnexpectedEOF)
			}
			return nil
		}
		if err != nil {
			return malformed(err)
		}
		if done {
			return badRequest("invalid_json", "malformed JSON body: data after the JSON value")
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			key, ok := tok.(string)
			if !ok { // the closing brace
				stack = stack[:len(stack)-1]
				valueDone()
				continue
			}
			if _, dup := top.keys[key]; dup {
				return badRequest("duplicate_key", "the JSON body repeats the key %q in %s", truncate(key, 64), top.path)
			}
			top.keys[key] = struct{}{}
			top.wantKey = false
			top.member = top.path + "." + truncate(key, 64)
			continue
		}
		if top != nil && !top.object {
			top.member = top.path + "[" + strconv.Itoa(top.n) + "]"
			top.n++
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxJSONDepth {
				return badRequest("too_deep", "the JSON body nests objects and arrays deeper than %d levels", maxJSONDepth)
			}
			path := "$"
			if top != nil {
				path = top.member
			}
			f := &frame{object: tok == json.Delim('{'), path: path}
			if f.object {
				f.wantKey, f.keys = true, map[string]struct{}{}
			}
			stack = append(stack, f)
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}

// truncate shortens s to at most n bytes for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
