package web_test

// The HTTP edge: timeouts, bounds and refusals tested against the Server's
// own http.Server with raw TCP clients, as an attacker or a careless client
// would send.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

func withTimeouts(to web.Timeouts) option {
	return func(c *web.Config, _ *web.Deps) { c.Timeouts = to }
}

// serve runs the Server's own http.Server (its timeouts and bounds) on a
// loopback port and returns the address.
func (e *env) serve() string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	hs := e.srv.NewHTTPServer()
	var wg sync.WaitGroup
	wg.Go(func() { _ = hs.Serve(ln) })
	e.t.Cleanup(func() {
		_ = hs.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial opens a raw connection that gives up after a minute whatever happens.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	return c
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// untilClosed reads r until the server closes the connection and returns
// what came; it fails if the server still holds it after limit.
func untilClosed(t *testing.T, c net.Conn, r io.Reader, limit time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server still held the connection after %s; read %q", limit, b)
	}
	return string(b)
}

// stillOpen checks that the server neither answers nor closes c for d.
func stillOpen(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	n, err := c.Read(b[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("the server answered or closed within %s: %q %v", d, b[:n], err)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
}

// A body that drips in, authenticated or not, is cut off after the read
// timeout and answered (401 or 408) with the connection closed.
func TestDrippingBodyIsCut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTimeouts(web.Timeouts{ReadHeader: 200 * time.Millisecond, Read: 200 * time.Millisecond}))
	addr := e.serve()
	for _, c := range []struct{ key, status string }{{"", "401"}, {e.acme, "408"}} {
		e.unchanged(func() {
			conn := dial(t, addr)
			auth := ""
			if c.key != "" {
				auth = "Authorization: Bearer " + c.key + "\r\n"
			}
			send(t, conn, "POST /jobs HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"type\":")
			got := untilClosed(t, conn, conn, 10*time.Second)
			if !strings.HasPrefix(got, "HTTP/1.1 "+c.status+" ") || !strings.Contains(got, "Connection: close") {
				t.Fatalf("answer to a dripping body (key %t):\n%s", c.key != "", got)
			}
		})
	}
	// A header that never ends is cut too.
	conn := dial(t, addr)
	send(t, conn, "GET /health HTTP/1.1\r\nHost: x\r\n")
	untilClosed(t, conn, conn, 10*time.Second)
}

// An idle keep-alive connection is closed after the idle timeout.
func TestIdleConnectionCloses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTimeouts(web.Timeouts{Idle: 200 * time.Millisecond}))
	conn := dial(t, e.serve())
	send(t, conn, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil || res.StatusCode != 200 || res.Close {
		t.Fatalf("health %d close=%v %v", res.StatusCode, res.Close, err)
	}
	if rest := untilClosed(t, conn, br, 10*time.Second); rest != "" {
		t.Fatalf("unexpected bytes %q", rest)
	}
}

// A header past MaxHeaderBytes is refused.
func TestHeaderBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTimeouts(web.Timeouts{MaxHeaderBytes: 4 << 10}))
	conn := dial(t, e.serve())
	send(t, conn, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 16<<10)+"\r\n\r\n")
	if got := untilClosed(t, conn, conn, 10*time.Second); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Fatalf("answer %q", got)
	}
}

// An upload that keeps flowing may take longer than the read timeout; one
// that stalls is cut after the stall timeout and stores nothing.
func TestUploadDeadlines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTimeouts(web.Timeouts{Read: 200 * time.Millisecond, Write: 200 * time.Millisecond, Stall: 5 * time.Second}))
	addr := e.serve()
	head := func(key string) string {
		return "POST /datasets?name=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key +
			"\r\nContent-Type: application/octet-stream\r\nContent-Length: 2000\r\n\r\n"
	}
	conn := dial(t, addr)
	send(t, conn, head(e.acme)+strings.Repeat("a", 1000))
	stillOpen(t, conn, 600*time.Millisecond) // three read timeouts
	send(t, conn, strings.Repeat("b", 1000))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("slow upload: %d %s", res.StatusCode, body)
	}

	e2 := newEnv(t, withTimeouts(web.Timeouts{Read: 10 * time.Second, Stall: 200 * time.Millisecond}))
	addr = e2.serve()
	e2.unchanged(func() {
		conn := dial(t, addr)
		send(t, conn, head(e2.acme)+strings.Repeat("a", 1000))
		got := untilClosed(t, conn, conn, 10*time.Second)
		if !strings.HasPrefix(got, "HTTP/1.1 408 ") || !strings.Contains(got, `"request_timeout"`) {
			t.Fatalf("stalled upload:\n%s", got)
		}
	})
}

// A followed log outlives the read and write timeouts.
func TestFollowOutlivesTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTimeouts(web.Timeouts{Read: 200 * time.Millisecond, Write: 200 * time.Millisecond}))
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	tok := e.runJob(j.ID, testNow, nil)
	e.logs.append(j.ID, "line 1\n")
	conn := dial(t, e.serve())
	send(t, conn, "GET /jobs/"+j.ID+"/logs?follow=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+e.acme+"\r\n\r\n")
	var got []byte
	readUntil := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		for !bytes.Contains(got, []byte(want)) {
			n, err := conn.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				t.Fatalf("waiting for %q: %v; read %q", want, err, got)
			}
		}
	}
	readUntil("line 1\n")
	stillOpen(t, conn, 700*time.Millisecond)
	e.logs.append(j.ID, "line 2\n")
	readUntil("line 2\n")
	e.apply(&scheduler.CompleteJob{At: testNow, JobID: j.ID, Token: tok, State: scheduler.StateFailed})
	readUntil("\r\n0\r\n\r\n") // the end of the chunked stream
}

// A body over the bound that the client sends whole before it reads (as
// Python's urllib and requests do) still gets its 413, and the connection
// closes; a client that waits for 100 Continue gets it without sending.
func TestOversizedBodySentWhole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *web.Config, _ *web.Deps) { c.MaxUploadBytes = 1 << 20 })
	addr := e.serve()
	const size = 20 << 20
	body := bytes.Repeat([]byte("x"), size)
	chunked := func() []byte {
		var b bytes.Buffer
		for off := 0; off < size; off += 64 << 10 {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", 64<<10, body[off:off+64<<10])
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}()
	for _, c := range []struct {
		name, head string
		body       []byte
	}{
		{"json declared", "POST /jobs HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(size), body},
		{"json chunked", "POST /jobs HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked", chunked},
		{"upload declared", "POST /datasets?name=big HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: " + fmt.Sprint(size), body},
		{"upload chunked", "POST /datasets?name=big HTTP/1.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked", chunked},
		{"no such endpoint", "POST /nowhere HTTP/1.1\r\nContent-Length: " + fmt.Sprint(size), body},
	} {
		e.unchanged(func() {
			conn := dial(t, addr)
			var wg sync.WaitGroup
			var werr error
			wg.Go(func() {
				_, werr = conn.Write(append([]byte(c.head+"\r\nHost: x\r\nAuthorization: Bearer "+e.acme+"\r\n\r\n"), c.body...))
			})
			wg.Wait() // the whole body is sent before anything is read
			if werr != nil {
				t.Fatalf("%s: sending the body: %v", c.name, werr)
			}
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			b, _ := io.ReadAll(res.Body)
			if c.name == "no such endpoint" {
				if res.StatusCode != http.StatusNotFound || !res.Close {
					t.Fatalf("%s: %d close=%v %s", c.name, res.StatusCode, res.Close, b)
				}
				return
			}
			if res.StatusCode != http.StatusRequestEntityTooLarge || !res.Close || !strings.Contains(string(b), `"too_large"`) {
				t.Fatalf("%s: %d close=%v %s", c.name, res.StatusCode, res.Close, b)
			}
		})
	}
	// Expect: 100-continue with a size over the bound: answered at once.
	conn := dial(t, addr)
	send(t, conn, "POST /datasets?name=big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+e.acme+
		"\r\nContent-Type: application/octet-stream\r\nExpect: 100-continue\r\nContent-Length: "+fmt.Sprint(size)+"\r\n\r\n")
	if got := untilClosed(t, conn, conn, 10*time.Second); !strings.HasPrefix(got, "HTTP/1.1 413 ") {
		t.Fatalf("expect-continue: %q", got)
	}
}

// Metric labels come from fixed sets: a request with a 100 KB method adds
// at most a label "other", never the method.
func TestMetricLabelsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, m := range []string{strings.Repeat("A", 100<<10), strings.Repeat("B", 100<<10), "PROPFIND"} {
		req, err := http.NewRequest(m, e.url+"/jobs", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	// A request is counted once its answer is written: wait for the last.
	var body string
	waitFor(t, 10*time.Second, "three requests counted", func() bool {
		body = string(e.do("GET", "/metrics", "", nil).body)
		return strings.Contains(body, `pwmesh_http_requests_total{code="405",method="other",route="unmatched"} 3`)
	})
	if len(body) > 64<<10 || strings.Contains(body, "AAAA") || strings.Contains(body, "PROPFIND") {
		t.Fatalf("a method leaked into /metrics (%d bytes)", len(body))
	}
}

// Every answer says nosniff; JSON answers are not cached.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.upload(e.acme, "d.bin", []byte("data"))
	for _, c := range []struct {
		method, path, key string
		body              any
		json              bool
	}{
		{"POST", "/keys", e.admin, map[string]string{"tenant": "initech"}, true},
		{"GET", "/jobs", e.acme, nil, true},
		{"GET", "/jobs/nope", e.acme, nil, true},
		{"GET", "/health", "", nil, true},
		{"GET", "/no/such", "", nil, true},
		{"GET", "/datasets/" + d.ID + "/download", e.acme, nil, false},
		{"GET", "/metrics", "", nil, false},
	} {
		r := e.doJSON(c.method, c.path, c.key, c.body)
		if r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("X-Request-Id") == "" {
			t.Errorf("%s %s: headers %v", c.method, c.path, r.header)
		}
		if got := r.header.Get("Cache-Control") == "no-store"; got != c.json {
			t.Errorf("%s %s: Cache-Control %q", c.method, c.path, r.header.Get("Cache-Control"))
		}
	}
}

// At most a few ranges per request: 1,000 ranges (each of which would
// decrypt a segment of a sealed dataset) get 416; four are served.
func TestRangesBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	data := bytes.Repeat([]byte("0123456789"), 1000)
	d := e.upload(e.acme, "d.bin", data)
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	e.finishJob(j.ID, testNow, testNow, nil, data)
	var many []string
	for i := range 1000 {
		many = append(many, fmt.Sprintf("%d-%d", i, i))
	}
	for _, path := range []string{"/datasets/" + d.ID + "/download", "/jobs/" + j.ID + "/runbundle"} {
		r := e.do("GET", path, e.acme, nil, "Range", "bytes="+strings.Join(many, ","))
		wantError(t, r, http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable")
		if cr := r.header.Get("Content-Range"); cr != fmt.Sprintf("bytes */%d", len(data)) {
			t.Errorf("%s: Content-Range %q", path, cr)
		}
		r = e.do("GET", path, e.acme, nil, "Range", "bytes=9000-9009,0-1,5-6,10-10")
		if r.status != http.StatusPartialContent || !strings.HasPrefix(r.header.Get("Content-Type"), "multipart/byteranges") ||
			!bytes.Contains(r.body, []byte("0123456789")) {
			t.Fatalf("%s: four ranges: %d %v", path, r.status, r.header)
		}
		r = e.do("GET", path, e.acme, nil, "Range", "bytes=10-19")
		if r.status != http.StatusPartialContent || string(r.body) != "0123456789" {
			t.Fatalf("%s: one range: %d %q", path, r.status, r.body)
		}
	}
}

// brokenDatasets fails as a store whose error names host paths.
type brokenDatasets struct{ plainDatasets }

func (brokenDatasets) PutDataset(_ context.Context, _ string, r io.Reader) (scheduler.Dataset, error) {
	_, _ = io.Copy(io.Discard, r)
	return scheduler.Dataset{}, errors.New("storage: rename /tmp/TestX/001/data/objects/tmp-1 /tmp/TestX/001/data/objects/ab/cd: permission denied")
}

// A server failure's answer names the request, not the cause, which goes
// to the log with the same request ID.
func TestInternalErrorHidesCause(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	e := newEnv(t, func(c *web.Config, d *web.Deps) {
		c.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
		d.Datasets = brokenDatasets{}
	})
	r := e.do("POST", "/datasets?name=a", e.acme, strings.NewReader("data"), "Content-Type", "application/octet-stream")
	wantError(t, r, http.StatusInternalServerError, "internal")
	id := r.header.Get("X-Request-Id")
	if strings.Contains(string(r.body), "/tmp") || strings.Contains(string(r.body), "permission") || id == "" ||
		!strings.Contains(string(r.body), id) {
		t.Fatalf("answer %s (request %s)", r.body, id)
	}
	if logs := buf.String(); !strings.Contains(logs, `"request_id":"`+id+`"`) || !strings.Contains(logs, "permission denied") {
		t.Fatalf("log lacks the cause or the request ID:\n%s", logs)
	}
	// A job's error made on a node keeps its host paths to itself.
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	tok := e.runJob(j.ID, testNow, nil)
	e.apply(&scheduler.CompleteJob{At: testNow, JobID: j.ID, Token: tok, State: scheduler.StateFailed,
		Error: &scheduler.JobError{Code: "workload_failed", Message: "open /tmp/TestX/001/data/jobs/" + j.ID + "/out/recon.npy: no such file"}})
	r = e.do("GET", "/jobs/"+j.ID, e.acme, nil)
	if strings.Contains(string(r.body), "/tmp") || !strings.Contains(string(r.body), "recon.npy: no such file") {
		t.Fatalf("job answer %s", r.body)
	}
}

// Duplicate keys at any depth and deep nesting are refused, and nothing
// is stored.
func TestJSONBodyShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	for body, code := range map[string]string{
		`{"type":"generate_dataset","params":{"size":16,"size":{"x":{"y":1}}}}`: "duplicate_key",
		`{"type":"generate_dataset","type":"calibrate"}`:                        "duplicate_key",
		`{"type":"generate_dataset","params":{"a":[{"k":1,"k":1}]}}`:            "duplicate_key",
		`{"type":"generate_dataset","params":` + deep + `}`:                     "too_deep",
	} {
		e.unchanged(func() { wantError(t, e.doJSON("POST", "/jobs", e.acme, body), http.StatusBadRequest, code) })
	}
	e.unchanged(func() {
		wantError(t, e.doJSON("POST", "/keys", e.admin, `{"tenant":"x","tenant":"admin"}`), http.StatusBadRequest, "duplicate_key")
	})
	// Nesting within the bound is fine.
	nested := strings.Repeat(`{"a":`, 30) + "1" + strings.Repeat("}", 30)
	e.submit(e.acme, `{"type":"generate_dataset","params":`+nested+`}`)
}

// An Idempotency-Key reused with the same request (however its JSON is
// spelled) answers the first job; with another request, 422.
func TestIdempotencyKeyReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.submit(e.acme, `{"type":"generate_dataset","params":{"size":16,"seed":1}}`, "Idempotency-Key", "k-1")
	b := e.submit(e.acme, `{"params":{"seed":1,"size":16},"type":"generate_dataset","priority":"free"}`, "Idempotency-Key", "k-1")
	if a.ID != b.ID {
		t.Fatalf("the same request made two jobs: %s %s", a.ID, b.ID)
	}
	r := e.doJSON("POST", "/jobs", e.acme, `{"type":"generate_dataset","params":{"size":32,"seed":1}}`, "Idempotency-Key", "k-1")
	wantError(t, r, http.StatusUnprocessableEntity, "idempotency_key_reused")
	if jobs, _ := e.fsm.Jobs(scheduler.JobFilter{}); len(jobs) != 1 {
		t.Fatalf("%d jobs", len(jobs))
	}
}
