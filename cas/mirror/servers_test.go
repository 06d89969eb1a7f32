package mirror

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

const testBucket = "mirror"

// requestLog records the requests a fake server answered.
type requestLog struct {
	mu   sync.Mutex
	reqs []string // "METHOD path?query [Range]"
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		line := r.Method + " " + r.URL.RequestURI()
		if rg := r.Header.Get("Range"); rg != "" {
			line += " " + rg
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, line)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// count returns how many requests start with method and contain substr.
func (l *requestLog) count(method, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.reqs {
		if strings.HasPrefix(r, method+" ") && strings.Contains(r, substr) {
			n++
		}
	}
	return n
}

// startS3 serves an in-memory gofakes3 with bucket "mirror" on 127.0.0.1
// and returns the URL of that bucket. wrap, if not nil, wraps the handler.
//
// gofakes3 checks no signatures, so the URL may carry any static credentials
// (as here) or anonymous=true; either way the AWS SDK never looks at the
// environment for credentials. max_attempts=1 turns off the SDK's own
// retries, which sleep.
func startS3(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	h := gofakes3.New(backend).Server()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return "s3://test-key:test-secret@" + testBucket + "?endpoint=" + srv.URL +
		"&region=us-east-1&use_path_style=true&max_attempts=1"
}

// startGCS serves fake-gcs-server with bucket "mirror" on 127.0.0.1 and
// returns its host:port. The listener comes first so that PublicHost can
// name the real port: fake-gcs-server answers object reads (the XML API
// path /bucket/object) only for requests to PublicHost.
func startGCS(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:     "http",
		NoListener: true,
		PublicHost: addr,
	})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: testBucket})
	h := fake.HTTPHandler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		fake.Stop()
	})
	return addr
}

func gcsURL(addr string) string { return "gs://" + testBucket + "?emulator_host=" + addr }

func fileURL(t testing.TB) string {
	return "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "bucket"))
}

// open opens rawURL with opts and closes the store when t ends.
func open(t testing.TB, rawURL string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), rawURL, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", rawURL, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}
