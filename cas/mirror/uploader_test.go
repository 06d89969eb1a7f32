package mirror

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/fsstore"
)

// fakeClock moves only when told to.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	added  chan struct{} // cap 1: a timer was added
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), added: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	select {
	case c.added <- struct{}{}:
	default:
	}
	return ch
}

// Advance moves the clock by d and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			t.ch <- c.now
		}
	}
	c.timers = kept
}

// nextTimer waits until a timer is pending and returns how far ahead the
// earliest one is, or fails t if done closes first.
func (c *fakeClock) nextTimer(t *testing.T, done <-chan struct{}) time.Duration {
	t.Helper()
	for {
		c.mu.Lock()
		if len(c.timers) > 0 {
			first := c.timers[0].at
			for _, tm := range c.timers[1:] {
				if tm.at.Before(first) {
					first = tm.at
				}
			}
			c.mu.Unlock()
			return first.Sub(c.Now())
		}
		c.mu.Unlock()
		select {
		case <-c.added:
		case <-done:
			t.Fatal("finished while a retry was expected")
		}
	}
}

type doneCall struct {
	c   cid.Cid
	err error
}

// harness runs an Uploader from a fresh fsstore to dst until the test ends.
type harness struct {
	u     *Uploader
	src   *fsstore.Store
	clock *fakeClock
	done  chan doneCall
}

func startUploader(t *testing.T, dst cas.Store, cfg UploaderConfig) *harness {
	t.Helper()
	src, err := fsstore.New(t.TempDir(), fsstore.WithFsync(false))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{src: src, clock: newFakeClock(), done: make(chan doneCall, 100)}
	cfg.Clock = h.clock
	cfg.OnDone = func(c cid.Cid, err error) { h.done <- doneCall{c, err} }
	h.u = NewUploader(src, dst, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- h.u.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
		if len(h.done) != 0 {
			t.Errorf("%d unexpected OnDone calls", len(h.done))
		}
	})
	return h
}

func (h *harness) put(t *testing.T, data string) cid.Cid {
	t.Helper()
	ref, err := h.src.Put(t.Context(), bytes.NewReader([]byte(data)))
	if err != nil {
		t.Fatal(err)
	}
	return ref.CID
}

func (h *harness) wait(t *testing.T) doneCall {
	t.Helper()
	select {
	case d := <-h.done:
		return d
	case <-t.Context().Done():
		t.Fatal("test ended waiting for OnDone")
		return doneCall{}
	}
}

// failPuts answers the first n PUT requests with 500 InternalError.
func failPuts(n int64, count *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && count.Add(1) <= n {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestUploaderRetries: the first three uploads fail with 500 (the SDK does
// not retry: max_attempts=1); the Uploader retries after backoffs that the
// fake clock runs through, each in its jittered span, and reports the CID
// once when it is in the mirror.
func TestUploaderRetries(t *testing.T) {
	t.Parallel()
	const failures = 3
	var puts atomic.Int64
	dst := open(t, startS3(t, failPuts(failures, &puts)), Options{})
	minB, maxB := time.Second, 3*time.Second
	h := startUploader(t, dst, UploaderConfig{Workers: 1, MinBackoff: minB, MaxBackoff: maxB})
	c := h.put(t, "retry me")
	h.u.Enqueue(c)
	h.u.Enqueue(c)
	if n := h.u.Pending(); n != 1 {
		t.Errorf("Pending = %d after enqueueing one CID twice", n)
	}
	done := make(chan struct{})
	for i := range failures {
		span := min(minB<<i, maxB)
		d := h.clock.nextTimer(t, done)
		if d < span/2 || d > span {
			t.Errorf("backoff %d = %v, want in [%v, %v]", i+1, d, span/2, span)
		}
		if n := puts.Load(); n != int64(i+1) {
			t.Errorf("before retry %d: %d PUTs", i+1, n)
		}
		h.clock.Advance(d)
	}
	got := h.wait(t)
	if !got.c.Equals(c) || got.err != nil {
		t.Fatalf("OnDone(%s, %v), want (%s, nil)", got.c, got.err, c)
	}
	if n := puts.Load(); n != failures+1 {
		t.Errorf("%d PUTs, want %d", n, failures+1)
	}
	if err := dst.Verify(t.Context(), c); err != nil {
		t.Errorf("mirror: %v", err)
	}
	if n := h.u.Pending(); n != 0 {
		t.Errorf("Pending = %d after upload", n)
	}
	if n := h.u.Failures(); n != failures {
		t.Errorf("Failures = %d, want %d", n, failures)
	}
}

// TestUploaderDedupes: CIDs enqueued several times upload and report once
// each; a CID the mirror has already is reported without uploading.
func TestUploaderDedupes(t *testing.T) {
	t.Parallel()
	var puts atomic.Int64
	dst := open(t, startS3(t, failPuts(0, &puts)), Options{})
	present := cas.SumBytes([]byte("already there"))
	if _, err := dst.Put(t.Context(), bytes.NewReader([]byte("already there"))); err != nil {
		t.Fatal(err)
	}
	putsBefore := puts.Load()
	// Not started yet: nothing moves while the queue fills.
	src, err := fsstore.New(t.TempDir(), fsstore.WithFsync(false))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan doneCall, 100)
	u := NewUploader(src, dst, UploaderConfig{Clock: newFakeClock(), OnDone: func(c cid.Cid, err error) { done <- doneCall{c, err} }})
	want := map[cid.Cid]bool{present.CID: true}
	for _, s := range []string{"a", "b", "c"} {
		ref, err := src.Put(t.Context(), bytes.NewReader([]byte(s)))
		if err != nil {
			t.Fatal(err)
		}
		want[ref.CID] = true
	}
	if _, err := src.Put(t.Context(), bytes.NewReader([]byte("already there"))); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		for c := range want {
			u.Enqueue(c)
		}
	}
	if n := u.Pending(); n != len(want) {
		t.Fatalf("Pending = %d, want %d", n, len(want))
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error)
	go func() { ran <- u.Run(ctx) }()
	for range len(want) {
		d := <-done
		if d.err != nil || !want[d.c] {
			t.Errorf("OnDone(%s, %v)", d.c, d.err)
		}
		delete(want, d.c)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	if len(done) != 0 {
		t.Errorf("%d extra OnDone calls", len(done))
	}
	if n := puts.Load() - putsBefore; n != 3 {
		t.Errorf("%d PUTs, want 3 (the CID already mirrored is skipped)", n)
	}
	if n := u.Pending(); n != 0 {
		t.Errorf("Pending = %d", n)
	}
	if n := u.Failures(); n != 0 {
		t.Errorf("Failures = %d, want 0", n)
	}
}

// TestUploaderSourceMissing: a CID the source does not have is reported
// with ErrNotFound at once, without retries.
func TestUploaderSourceMissing(t *testing.T) {
	t.Parallel()
	dst := open(t, fileURL(t), Options{})
	h := startUploader(t, dst, UploaderConfig{})
	gone := cas.SumBytes([]byte("never stored")).CID
	h.u.Enqueue(gone)
	got := h.wait(t)
	if !got.c.Equals(gone) || !errors.Is(got.err, cas.ErrNotFound) {
		t.Errorf("OnDone(%s, %v), want (%s, ErrNotFound)", got.c, got.err, gone)
	}
	if n := h.u.Failures(); n != 1 {
		t.Errorf("Failures = %d, want 1", n)
	}
	h.clock.mu.Lock()
	defer h.clock.mu.Unlock()
	if len(h.clock.timers) != 0 {
		t.Errorf("%d backoff timers for a permanent error", len(h.clock.timers))
	}
}

// TestUploaderResumes: an upload cut short by the end of Run stays pending
// and finishes in the next Run.
func TestUploaderResumes(t *testing.T) {
	t.Parallel()
	var puts atomic.Int64
	dst := open(t, startS3(t, failPuts(1, &puts)), Options{})
	src, err := fsstore.New(t.TempDir(), fsstore.WithFsync(false))
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	done := make(chan doneCall, 10)
	u := NewUploader(src, dst, UploaderConfig{Clock: clock, OnDone: func(c cid.Cid, err error) { done <- doneCall{c, err} }})
	ref, err := src.Put(t.Context(), bytes.NewReader([]byte("resume")))
	if err != nil {
		t.Fatal(err)
	}
	u.Enqueue(ref.CID)

	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error)
	go func() { ran <- u.Run(ctx) }()
	clock.nextTimer(t, nil) // the first PUT failed; a retry waits
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if n := u.Pending(); n != 1 {
		t.Fatalf("Pending = %d after Run ended, want 1", n)
	}

	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	go func() { ran <- u.Run(ctx) }()
	// Whenever Run waits for the retry, move past it.
	for finished := false; !finished; {
		select {
		case d := <-done:
			if d.err != nil || !d.c.Equals(ref.CID) {
				t.Errorf("OnDone(%s, %v)", d.c, d.err)
			}
			finished = true
		case <-clock.added:
			clock.Advance(time.Hour)
		}
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	lowest := func(int64) int64 { return 0 }
	highest := func(k int64) int64 { return k - 1 }
	for _, tc := range []struct {
		n    int
		span time.Duration // the backoff is drawn from [span/2, span]
	}{
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{9, 256 * time.Second},
		{10, 5 * time.Minute}, // 512s, capped
		{200, 5 * time.Minute},
	} {
		lo := backoff(tc.n, time.Second, 5*time.Minute, lowest)
		hi := backoff(tc.n, time.Second, 5*time.Minute, highest)
		if lo != tc.span/2 || hi != tc.span {
			t.Errorf("backoff(%d) spans [%v, %v], want [%v, %v]", tc.n, lo, hi, tc.span/2, tc.span)
		}
	}
}
