package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Timeouts bound how long one connection may hold the node's HTTP server.
// Zero fields get the defaults below.
type Timeouts struct {
	// ReadHeader bounds reading a request's header (default 10s).
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included, of every
	// endpoint but uploads, which instead may stall at most Stall between
	// two reads (default 30s).
	Read time.Duration
	// Write bounds writing an answer from the end of its request's
	// header; downloads and followed logs instead may stall at most Stall
	// between two writes (default 60s).
	Write time.Duration
	// Idle closes a keep-alive connection that sends no request for this
	// long (default 2m).
	Idle time.Duration
	// Stall is how long an upload or a download may make no progress
	// before its connection is cut (default 30s).
	Stall time.Duration
	// MaxHeaderBytes bounds a request's header, request line included
	// (default 64 KiB).
	MaxHeaderBytes int
}

// Defaults of Timeouts.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultStallTimeout      = 30 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.ReadHeader, DefaultReadHeaderTimeout)
	def(&t.Read, DefaultReadTimeout)
	def(&t.Write, DefaultWriteTimeout)
	def(&t.Idle, DefaultIdleTimeout)
	def(&t.Stall, DefaultStallTimeout)
	if t.MaxHeaderBytes <= 0 {
		t.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return t
}

// NewHTTPServer returns an http.Server for the API with its timeouts and
// header bound set; the caller adds what is its own (ErrorLog,
// BaseContext, TLSConfig) and serves it.
func (s *Server) NewHTTPServer() *http.Server {
	t := s.cfg.Timeouts
	return &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    t.MaxHeaderBytes,
	}
}

// deadlineStep is the least time between two deadline pushes of one
// transfer, as a fraction of Stall: a transfer is cut between 3/4 Stall
// and Stall after its last progress.
const deadlineStep = 4

// stallReader pushes the connection's read deadline Stall ahead as an
// upload's body is read, so that a steady upload may take as long as it
// needs while a stalled one is cut.
type stallReader struct {
	r     io.Reader
	rc    *http.ResponseController
	stall time.Duration
	next  time.Time // when the deadline is pushed again
}

func newStallReader(w http.ResponseWriter, r io.Reader, stall time.Duration) *stallReader {
	return &stallReader{r: r, rc: http.NewResponseController(w), stall: stall}
}

func (s *stallReader) Read(p []byte) (int, error) {
	if now := time.Now(); !now.Before(s.next) {
		_ = s.rc.SetReadDeadline(now.Add(s.stall))
		s.next = now.Add(s.stall / deadlineStep)
	}
	return s.r.Read(p)
}

// stallWriter pushes the connection's write deadline Stall ahead as a
// download is written.
type stallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	next  time.Time
}

// longAnswer prepares w for an answer that may take longer than the
// server's Read and Write timeouts (a download, a followed log): the read
// deadline is lifted (the request is read; the server's background read
// would otherwise cancel the request's context when it passes), and the
// returned writer pushes the write deadline as it writes.
func longAnswer(w http.ResponseWriter, stall time.Duration) *stallWriter {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	return &stallWriter{ResponseWriter: w, rc: rc, stall: stall}
}

func (w *stallWriter) push() {
	if now := time.Now(); !now.Before(w.next) {
		_ = w.rc.SetWriteDeadline(now.Add(w.stall))
		w.next = now.Add(w.stall / deadlineStep)
	}
}

func (w *stallWriter) WriteHeader(code int) {
	w.push()
	w.ResponseWriter.WriteHeader(code)
}

func (w *stallWriter) Write(p []byte) (int, error) {
	w.push()
	return w.ResponseWriter.Write(p)
}

func (w *stallWriter) Flush() { _ = w.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (w *stallWriter) FlushError() error {
	w.push()
	return w.rc.Flush()
}

func (w *stallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// trackedBody records whether a request body was read, to its end, and
// whether a read ran past the connection's deadline.
type trackedBody struct {
	io.ReadCloser
	read     int64
	atEOF    bool
	timedOut bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if err == io.EOF {
		b.atEOF = true
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		b.timedOut = true
	}
	return n, err
}

// errBodyStalled answers a request whose body stopped coming.
var errBodyStalled = apiError(http.StatusRequestTimeout, "request_timeout",
	"the request body stopped arriving before it was complete; nothing was stored")

// maxDrainBytes bounds how much of a refused request's unread body is read
// and discarded before the answer.
const maxDrainBytes = 32 << 20

// drain prepares a refusal of a request whose body is not read to its end.
// Clients such as Python's urllib and requests send the whole body before
// they read the answer: if the connection were closed with their body
// unread, their kernel would get a reset and they would never see the
// answer. So up to maxDrainBytes of the body are read and discarded (at
// most Timeouts.Read long), and the connection closes after the answer.
// A client that waits for "100 Continue" has sent nothing and is answered
// at once.
func (s *Server) drain(w http.ResponseWriter, r *http.Request, b *trackedBody) {
	// HTTP/2 ends a stream's unread body on its own; "Connection: close"
	// there would end every stream of the connection.
	if b == nil || b.atEOF || r.ContentLength == 0 || r.ProtoMajor != 1 {
		return
	}
	w.Header().Set("Connection", "close")
	if b.timedOut || b.read == 0 && strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return // a stalled body; a client that sends nothing until told to
	}
	if r.ContentLength > 0 && r.ContentLength-b.read > maxDrainBytes {
		return // too much to wait for: close at once
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.Timeouts.Read))
	_, _ = io.CopyN(io.Discard, b, maxDrainBytes)
}

// maxRanges bounds the ranges of one Range request. Every range of sealed
// content costs a seek and the decryption of at least one 64 KiB segment:
// many small ranges would make one small request decrypt many segments.
const maxRanges = 4

// checkRanges refuses a Range header of more than maxRanges ranges with
// 416 and the content's size in Content-Range; http.ServeContent checks
// the rest.
func checkRanges(w http.ResponseWriter, r *http.Request, size int64) error {
	h := r.Header.Get("Range")
	if h == "" {
		return nil
	}
	if n := strings.Count(h, ",") + 1; n > maxRanges {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		return apiError(http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable",
			"%d ranges asked; at most %d ranges per request", n, maxRanges)
	}
	return nil
}

// eofLifts lifts the read deadline once an upload's body is read to its
// end: the server's background read would otherwise cancel the request's
// context when the deadline passes while the upload is being stored.
type eofLifts struct {
	r  io.Reader
	rc *http.ResponseController
}

func (e *eofLifts) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		_ = e.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
