package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The UI reads and writes only through the node's HTTP API, in-process:
// every call is a request to the API's handler with the session's key as
// its bearer, so that tenant isolation, quotas, metering and revocation
// apply to a signed-in person exactly as to a script.

// apiError is an API answer other than 2xx, as the API's JSON error body
// says it.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// asAPIError returns err's *apiError, or one that says the node failed.
func asAPIError(err error) *apiError {
	var e *apiError
	if errors.As(err, &e) {
		return e
	}
	return &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: "the node could not answer; try again"}
}

// maxJSONAnswer bounds an API answer the UI reads whole.
const maxJSONAnswer = 16 << 20

// apiRequest builds a request to the API on behalf of s, from the
// browser's request r (its context, remote address and host).
func apiRequest(ctx context.Context, r *http.Request, s *session, method, target string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	req.RemoteAddr, req.Host = r.RemoteAddr, r.Host
	req.TLS = r.TLS
	req.Header.Set("Authorization", "Bearer "+s.Key)
	req.Header.Set("User-Agent", "pwmesh-web-ui")
	return req, nil
}

// call sends one API request for s and returns its answer, whose body is
// kept whole up to limit bytes (keepTail: its last limit bytes). A non-2xx
// answer is an *apiError.
func (u *UI) call(r *http.Request, s *session, method, target string, body io.Reader, hdr http.Header, limit int64, keepTail bool) (*recorder, error) {
	req, err := apiRequest(r.Context(), r, s, method, target, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := newRecorder(limit, keepTail, nil)
	u.deps.API.ServeHTTP(rec, req)
	if rec.status < 200 || rec.status > 299 {
		return rec, rec.apiError()
	}
	return rec, nil
}

// getJSON reads target into v.
func (u *UI) getJSON(r *http.Request, s *session, target string, v any) error {
	rec, err := u.call(r, s, http.MethodGet, target, nil, nil, maxJSONAnswer, false)
	if err != nil {
		return err
	}
	return rec.decode(v)
}

// sendJSON sends body (nil: none) as JSON, with extra headers in name,
// value pairs, and reads the answer into v (nil: ignored).
func (u *UI) sendJSON(r *http.Request, s *session, method, target string, body, v any, hdr ...string) error {
	var rd io.Reader
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
		h.Set("Content-Type", "application/json")
	}
	rec, err := u.call(r, s, method, target, rd, h, maxJSONAnswer, false)
	if err != nil || v == nil {
		return err
	}
	return rec.decode(v)
}

// recorder is the http.ResponseWriter of an in-process API call: it keeps
// the status, the headers and (a bounded part of) the body, and passes
// connection deadlines on to the browser's connection, so that an upload
// streamed through the UI may take as long as the API lets it.
type recorder struct {
	hdr      http.Header
	status   int
	body     bytes.Buffer
	limit    int64
	keepTail bool
	over     bool // the body passed limit
	outer    *http.ResponseController
}

func newRecorder(limit int64, keepTail bool, outer http.ResponseWriter) *recorder {
	rec := &recorder{hdr: http.Header{}, limit: limit, keepTail: keepTail}
	if outer != nil {
		rec.outer = http.NewResponseController(outer)
	}
	return rec
}

func (rec *recorder) Header() http.Header { return rec.hdr }

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n := len(p)
	if int64(rec.body.Len()+len(p)) > rec.limit {
		rec.over = true
		if !rec.keepTail {
			p = p[:max(rec.limit-int64(rec.body.Len()), 0)]
		} else if int64(len(p)) >= rec.limit {
			rec.body.Reset()
			p = p[int64(len(p))-rec.limit:]
		} else {
			// Drop the oldest bytes: keep the buffer at limit.
			drop := rec.body.Len() + len(p) - int(rec.limit)
			rest := bytes.Clone(rec.body.Bytes()[drop:])
			rec.body.Reset()
			rec.body.Write(rest)
		}
	}
	rec.body.Write(p)
	return n, nil
}

// Flush lets streaming answers (a followed log) flush into the recorder.
func (rec *recorder) Flush() {}

func (rec *recorder) SetReadDeadline(t time.Time) error {
	if rec.outer == nil {
		return http.ErrNotSupported
	}
	return rec.outer.SetReadDeadline(t)
}

func (rec *recorder) SetWriteDeadline(t time.Time) error {
	if rec.outer == nil {
		return http.ErrNotSupported
	}
	return rec.outer.SetWriteDeadline(t)
}

func (rec *recorder) decode(v any) error {
	if rec.over {
		return &apiError{Status: http.StatusInternalServerError, Code: "too_large", Message: "the answer is too large to show"}
	}
	if err := json.Unmarshal(rec.body.Bytes(), v); err != nil {
		return fmt.Errorf("ui: decode API answer: %w", err)
	}
	return nil
}

// apiError reads the API's error body of a non-2xx answer.
func (rec *recorder) apiError() *apiError {
	e := &apiError{Status: rec.status}
	var b struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal(rec.body.Bytes(), &b) == nil && b.Error.Code != "" {
		e.Code, e.Message = b.Error.Code, b.Error.Message
	} else {
		e.Code, e.Message = "error", strings.TrimSpace(http.StatusText(rec.status))
	}
	return e
}

// stream sends one API request for s and returns the answer's status,
// headers and body as the API writes it, for answers too large to hold
// (a RunBundle read for its image). The caller must close the body; the
// API's handler has returned once it is closed.
func (u *UI) stream(r *http.Request, s *session, method, target string) (int, http.Header, io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(r.Context())
	req, err := apiRequest(ctx, r, s, method, target, nil)
	if err != nil {
		cancel()
		return 0, nil, nil, err
	}
	pr, pw := io.Pipe()
	pwr := &pipeWriter{hdr: http.Header{}, pw: pw, started: make(chan struct{})}
	done := make(chan struct{})
	go func() { // owned by the returned body: its Close waits for it
		defer close(done)
		u.deps.API.ServeHTTP(pwr, req)
		pwr.start(http.StatusOK)
		_ = pw.Close()
	}()
	<-pwr.started
	body := &pipeBody{PipeReader: pr, cancel: cancel, done: done}
	return pwr.status, pwr.snapshot, body, nil
}

// pipeWriter is the http.ResponseWriter of a streamed API call.
type pipeWriter struct {
	hdr      http.Header
	snapshot http.Header // the headers as of the status
	status   int
	pw       *io.PipeWriter
	once     sync.Once
	started  chan struct{}
}

func (p *pipeWriter) Header() http.Header { return p.hdr }

func (p *pipeWriter) start(code int) {
	p.once.Do(func() {
		p.status, p.snapshot = code, p.hdr.Clone()
		close(p.started)
	})
}

func (p *pipeWriter) WriteHeader(code int) { p.start(code) }

func (p *pipeWriter) Write(b []byte) (int, error) {
	p.start(http.StatusOK)
	return p.pw.Write(b)
}

func (p *pipeWriter) Flush() {}

// pipeBody is a streamed answer's body; Close stops the API's handler and
// waits for it.
type pipeBody struct {
	*io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
}

func (b *pipeBody) Close() error {
	b.cancel()
	_ = b.PipeReader.CloseWithError(errors.New("ui: answer no longer read"))
	<-b.done
	return nil
}

// proxy serves /ui/api/...: the API itself, for the page's scripts (live
// job state, the followed log, downloads, uploads with progress), with the
// session's key as the bearer. Every method but GET and HEAD must carry
// the session's anti-forgery token in X-CSRF-Token; a request without a
// session gets 401 in the API's error shape, which the page's script
// turns into a trip to the sign-in page.
func (u *UI) proxy(w http.ResponseWriter, r *http.Request) {
	s, _ := u.session(r)
	if s == nil {
		writeAPIError(w, http.StatusUnauthorized, "session_expired", "your session has expired: sign in again")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !tokenEqual(r.Header.Get(csrfHeader), s.CSRF) {
		writeAPIError(w, http.StatusForbidden, "csrf", "this request lacks the page's anti-forgery token: reload the page and try again")
		return
	}
	req := r.Clone(r.Context())
	req.URL.Path = strings.TrimPrefix(r.URL.Path, "/ui/api")
	req.URL.RawPath = ""
	req.RequestURI = ""
	req.Header.Del("Cookie")
	req.Header.Del(csrfHeader)
	req.Header.Set("Authorization", "Bearer "+s.Key)
	u.deps.API.ServeHTTP(w, req)
}

// writeAPIError answers in the API's JSON error shape.
func writeAPIError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
