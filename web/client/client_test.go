package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

const token = "test-token"

// newServer starts an httptest server whose mux checks the bearer token on
// every route but /health, and returns a client of it.
func newServer(t *testing.T, routes map[string]http.HandlerFunc) *client.Client {
	t.Helper()
	mux := http.NewServeMux()
	for pattern, h := range routes {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/health" && r.Header.Get("Authorization") != "Bearer "+token {
				writeError(w, http.StatusUnauthorized, "unauthorized", "missing or bad API key")
				return
			}
			h(w, r)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return client.New(srv.URL, token, client.WithHTTPClient(srv.Client()))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func TestAPIErrorJSON(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /datasets/{id}": func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "dataset_not_found", "no dataset "+r.PathValue("id"))
		},
	})
	_, err := c.GetDataset(t.Context(), "ds-1")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v (%T), want *APIError", err, err)
	}
	if apiErr.Status != 404 || apiErr.Code != "dataset_not_found" || apiErr.Message != "no dataset ds-1" {
		t.Errorf("APIError = %+v", apiErr)
	}
	if got, want := err.Error(), "pwmesh: 404 dataset_not_found: no dataset ds-1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestAPIErrorNotJSON(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /nodes": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "upstream exploded", http.StatusBadGateway)
		},
	})
	_, err := c.Nodes(t.Context())
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want *APIError", err)
	}
	if apiErr.Status != 502 || apiErr.Code != "" || apiErr.Message != "upstream exploded" {
		t.Errorf("APIError = %+v", apiErr)
	}
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{"GET /jobs/{id}": func(http.ResponseWriter, *http.Request) {}})
	c2 := client.New(c.Addr(), "wrong")
	_, err := c2.GetJob(t.Context(), "j1")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Fatalf("err = %v, want 401 APIError", err)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /health": func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "" {
				t.Error("client sent no token")
			}
			h := client.Health{Status: "ok", Node: "n1", Leader: "n1", Role: "leader", Members: 1}
			status := http.StatusOK
			if !ready.Load() {
				h.Status, h.Leader, status = "starting", "", http.StatusServiceUnavailable
			}
			writeJSON(w, status, h)
		},
	})
	h, err := c.Health(t.Context())
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || h.Node != "n1" || h.Status != "starting" {
		t.Fatalf("Health = %+v, %v; want the 503 shape and an APIError", h, err)
	}
	ready.Store(true)
	h, err = c.Health(t.Context())
	if err != nil || h != (client.Health{Status: "ok", Node: "n1", Leader: "n1", Role: "leader", Members: 1}) {
		t.Fatalf("Health = %+v, %v", h, err)
	}
}

func TestSubmitJob(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{
		"POST /jobs": func(w http.ResponseWriter, r *http.Request) {
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if k := r.Header.Get("Idempotency-Key"); k != "k-1" {
				t.Errorf("Idempotency-Key = %q", k)
			}
			var req scheduler.JobRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				writeError(w, 400, "bad_request", err.Error())
				return
			}
			writeJSON(w, http.StatusAccepted, scheduler.Job{
				ID: "j1", Type: req.Type, State: scheduler.StateQueued, Dataset: req.Dataset,
				Params: req.Params, Resources: req.Resources, Priority: "paid", QueuePosition: 1,
			})
		},
	})
	req := scheduler.JobRequest{
		Type: "reconstruct", Dataset: "ds-1", Params: json.RawMessage(`{"size":32}`),
		Resources: scheduler.Resources{GPUs: 1, GPUModel: "A100"},
	}
	j, err := c.SubmitJob(t.Context(), req, "k-1")
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != "j1" || j.State != "queued" || string(j.Params) != `{"size":32}` || j.Resources.GPUs != 1 || j.QueuePosition != 1 {
		t.Errorf("job = %+v", j)
	}
}

func TestListJobsPages(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /jobs": func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if q.Get("state") != "queued" || q.Get("type") != "calibrate" || q.Get("limit") != "1" {
				t.Errorf("query = %v", q)
			}
			switch q.Get("cursor") {
			case "":
				writeJSON(w, 200, map[string]any{"jobs": []scheduler.Job{{ID: "j1"}}, "next_cursor": "c2"})
			case "c2":
				writeJSON(w, 200, map[string]any{"jobs": []scheduler.Job{{ID: "j2"}}, "next_cursor": nil})
			default:
				writeError(w, 400, "bad_cursor", "bad cursor")
			}
		},
	})
	opts := client.ListJobsOptions{State: "queued", Type: "calibrate", Limit: 1}
	var ids []string
	for range 3 {
		jobs, next, err := c.ListJobs(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			ids = append(ids, j.ID)
		}
		if next == "" {
			break
		}
		opts.Cursor = next
	}
	if strings.Join(ids, ",") != "j1,j2" {
		t.Errorf("ids = %v", ids)
	}
}

func TestWaitJobAndCancel(t *testing.T) {
	t.Parallel()
	var polls atomic.Int32
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /jobs/{id}": func(w http.ResponseWriter, r *http.Request) {
			state := scheduler.StateRunning
			switch n := polls.Add(1); {
			case n == 2:
				writeError(w, http.StatusServiceUnavailable, "no_leader", "no leader yet")
				return
			case n >= 4:
				state = scheduler.StateCancelled
			}
			writeJSON(w, 200, scheduler.Job{ID: r.PathValue("id"), State: state})
		},
		"POST /jobs/{id}/cancel": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusAccepted, scheduler.Job{ID: r.PathValue("id"), State: scheduler.StateRunning, CancelRequested: true})
		},
	})
	j, err := c.CancelJob(t.Context(), "j/1") // an id with a slash stays one path segment
	if err != nil || j.ID != "j/1" || !j.CancelRequested {
		t.Fatalf("CancelJob = %+v, %v", j, err)
	}
	j, err = c.WaitJob(t.Context(), "j1", time.Millisecond)
	if err != nil || j.State != scheduler.StateCancelled || polls.Load() != 4 {
		t.Fatalf("WaitJob = %+v, %v after %d polls", j, err, polls.Load())
	}
}

func TestWaitJobContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var polls atomic.Int32
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /jobs/{id}": func(w http.ResponseWriter, r *http.Request) {
			if polls.Add(1) == 2 {
				cancel()
			}
			writeJSON(w, 200, scheduler.Job{ID: "j1", State: scheduler.StateQueued})
		},
	})
	j, err := c.WaitJob(ctx, "j1", time.Millisecond)
	if !errors.Is(err, context.Canceled) || j.State != scheduler.StateQueued {
		t.Fatalf("WaitJob = %+v, %v; want the last job and context.Canceled", j, err)
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /jobs/{id}/logs": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "follow=%s\nline 2\n", r.URL.Query().Get("follow"))
		},
	})
	for _, follow := range []bool{false, true} {
		rc, err := c.Logs(t.Context(), "j1", follow)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		want := "follow=\nline 2\n"
		if follow {
			want = "follow=1\nline 2\n"
		}
		if err != nil || string(b) != want {
			t.Errorf("Logs(follow=%v) = %q, %v; want %q", follow, b, err, want)
		}
	}
}

// bundleServer serves a bundle with http.ServeContent (Range honoured) or,
// with ignoreRange, always whole.
func bundleServer(t *testing.T, content []byte, ignoreRange bool) *client.Client {
	return newServer(t, map[string]http.HandlerFunc{
		"GET /jobs/{id}/runbundle": func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("id") == "queued" {
				writeError(w, http.StatusConflict, "not_ready", "job is queued")
				return
			}
			serveBlob(w, r, "application/x-tar", "bafkcid", content, ignoreRange)
		},
	})
}

// serveBlob answers with content and ETag "etag", through
// http.ServeContent (Range and If-Range honoured) or, with ignoreRange,
// always whole.
func serveBlob(w http.ResponseWriter, r *http.Request, contentType, etag string, content []byte, ignoreRange bool) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("ETag", `"`+etag+`"`)
	if ignoreRange {
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		_, _ = w.Write(content)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
}

func TestDownloadBundle(t *testing.T) {
	t.Parallel()
	content := bytes.Repeat([]byte("0123456789"), 10_000)
	for _, ignoreRange := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignoreRange=%v", ignoreRange), func(t *testing.T) {
			t.Parallel()
			c := bundleServer(t, content, ignoreRange)
			var buf bytes.Buffer
			var lastDone, lastTotal int64
			progress := func(done, total int64) { lastDone, lastTotal = done, total }
			etag, n, err := c.DownloadBundle(t.Context(), "j1", &buf, progress)
			if err != nil || etag != "bafkcid" || n != int64(len(content)) || !bytes.Equal(buf.Bytes(), content) {
				t.Fatalf("DownloadBundle = %q, %d, %v", etag, n, err)
			}
			if lastDone != int64(len(content)) || lastTotal != int64(len(content)) {
				t.Errorf("last progress = %d/%d", lastDone, lastTotal)
			}

			// Resume from the middle.
			buf.Reset()
			off := int64(12_345)
			_, n, err = c.DownloadBundleFrom(t.Context(), "j1", off, &buf, progress)
			if err != nil || n != int64(len(content))-off || !bytes.Equal(buf.Bytes(), content[off:]) {
				t.Fatalf("DownloadBundleFrom = %d, %v", n, err)
			}
			if lastDone != int64(len(content)) || lastTotal != int64(len(content)) {
				t.Errorf("last progress after resume = %d/%d", lastDone, lastTotal)
			}
		})
	}
}

func TestDownloadBundleNotReady(t *testing.T) {
	t.Parallel()
	c := bundleServer(t, []byte("x"), false)
	_, _, err := c.DownloadBundle(t.Context(), "queued", io.Discard, nil)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || apiErr.Code != "not_ready" {
		t.Fatalf("err = %v, want 409 not_ready", err)
	}
}

// datasetServer serves dataset "ds-1" as content with ETag "bafkds" and
// records the Range and If-Range headers it saw.
func datasetServer(t *testing.T, content []byte, ignoreRange bool, seen *[][2]string) *client.Client {
	var mu sync.Mutex
	return newServer(t, map[string]http.HandlerFunc{
		"GET /datasets/{id}/download": func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("id") != "ds-1" {
				writeError(w, http.StatusNotFound, "dataset_not_found", "no dataset "+r.PathValue("id"))
				return
			}
			mu.Lock()
			*seen = append(*seen, [2]string{r.Header.Get("Range"), r.Header.Get("If-Range")})
			mu.Unlock()
			serveBlob(w, r, "application/octet-stream", "bafkds", content, ignoreRange)
		},
	})
}

func TestDownloadDataset(t *testing.T) {
	t.Parallel()
	content := bytes.Repeat([]byte("dataset bytes "), 10_000)
	for _, ignoreRange := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignoreRange=%v", ignoreRange), func(t *testing.T) {
			t.Parallel()
			var seen [][2]string
			c := datasetServer(t, content, ignoreRange, &seen)
			var buf bytes.Buffer
			var lastDone, lastTotal int64
			progress := func(done, total int64) { lastDone, lastTotal = done, total }
			etag, n, err := c.DownloadDatasetFrom(t.Context(), "ds-1", 0, &buf, progress)
			if err != nil || etag != "bafkds" || n != int64(len(content)) || !bytes.Equal(buf.Bytes(), content) {
				t.Fatalf("DownloadDatasetFrom(0) = %q, %d, %v", etag, n, err)
			}
			if lastDone != int64(len(content)) || lastTotal != int64(len(content)) {
				t.Errorf("last progress = %d/%d", lastDone, lastTotal)
			}

			// Resume from the middle, on condition that the object is unchanged.
			buf.Reset()
			const off = 54_321
			_, n, err = c.DownloadDatasetFrom(t.Context(), "ds-1", off, &buf, progress, client.IfRange("bafkds"))
			if err != nil || n != int64(len(content))-off || !bytes.Equal(buf.Bytes(), content[off:]) {
				t.Fatalf("DownloadDatasetFrom = %d, %v", n, err)
			}
			if lastDone != int64(len(content)) || lastTotal != int64(len(content)) {
				t.Errorf("last progress after resume = %d/%d", lastDone, lastTotal)
			}
			want := [][2]string{{"", ""}, {fmt.Sprintf("bytes=%d-", off), `"bafkds"`}}
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Errorf("Range, If-Range = %q, want %q", seen, want)
			}
		})
	}
}

func TestDownloadDatasetChanged(t *testing.T) {
	t.Parallel()
	var seen [][2]string
	c := datasetServer(t, []byte("the new content of the dataset"), false, &seen)
	var buf bytes.Buffer
	called := false
	_, n, err := c.DownloadDatasetFrom(t.Context(), "ds-1", 5, &buf, func(int64, int64) { called = true }, client.IfRange("bafkold"))
	if !errors.Is(err, client.ErrChanged) || n != 0 || buf.Len() != 0 || called {
		t.Fatalf("DownloadDatasetFrom = %d, %v (wrote %d bytes, progress %v); want ErrChanged and nothing written", n, err, buf.Len(), called)
	}
	if len(seen) != 1 || seen[0] != [2]string{"bytes=5-", `"bafkold"`} {
		t.Errorf("Range, If-Range = %q", seen)
	}
}

func TestDownloadDatasetNotFound(t *testing.T) {
	t.Parallel()
	var seen [][2]string
	c := datasetServer(t, []byte("x"), false, &seen)
	_, _, err := c.DownloadDatasetFrom(t.Context(), "ds-2", 0, io.Discard, nil)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound || apiErr.Code != "dataset_not_found" {
		t.Fatalf("err = %v, want 404 dataset_not_found", err)
	}
	if _, _, err := c.DownloadDatasetFrom(t.Context(), "ds-1", -1, io.Discard, nil); err == nil {
		t.Error("negative offset: no error")
	}
}

func TestUploadDatasetStreams(t *testing.T) {
	t.Parallel()
	gotFirst := make(chan struct{})
	c := newServer(t, map[string]http.HandlerFunc{
		"POST /datasets": func(w http.ResponseWriter, r *http.Request) {
			if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
				t.Errorf("Content-Type = %q", ct)
			}
			first := make([]byte, 5)
			if _, err := io.ReadFull(r.Body, first); err != nil || string(first) != "part1" {
				t.Errorf("first read = %q, %v", first, err)
			}
			// The client has sent part1 before part2 exists: it streams.
			close(gotFirst)
			rest, _ := io.ReadAll(r.Body)
			body := string(first) + string(rest)
			writeJSON(w, http.StatusCreated, scheduler.Dataset{
				ID: "ds-1", Name: r.URL.Query().Get("name"), Size: int64(len(body)),
				SHA256: fmt.Sprintf("len=%d cl=%d", len(body), r.ContentLength),
			})
		},
	})
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte("part1"))
		select {
		case <-gotFirst:
		case <-t.Context().Done():
		}
		_, _ = pw.Write([]byte("part2"))
		pw.Close()
	}()
	var lastDone atomic.Int64
	d, err := c.UploadDataset(t.Context(), "my data.npy", pr, 10, func(done, total int64) {
		if total != 10 {
			t.Errorf("progress total = %d", total)
		}
		lastDone.Store(done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "ds-1" || d.Name != "my data.npy" || d.Size != 10 || d.SHA256 != "len=10 cl=10" {
		t.Errorf("dataset = %+v", d)
	}
	if lastDone.Load() != 10 {
		t.Errorf("progress done = %d", lastDone.Load())
	}
}

func TestUploadDatasetUnknownSize(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{
		"POST /datasets": func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			writeJSON(w, http.StatusCreated, scheduler.Dataset{ID: "ds-2", Size: int64(len(b)), SHA256: fmt.Sprint(r.ContentLength)})
		},
	})
	d, err := c.UploadDataset(t.Context(), "x", strings.NewReader("hello"), -1, nil)
	if err != nil || d.Size != 5 || d.SHA256 != "-1" {
		t.Fatalf("dataset = %+v, %v; want 5 bytes sent chunked", d, err)
	}
}

func TestDatasets(t *testing.T) {
	t.Parallel()
	var deleted atomic.Value
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /datasets": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"datasets": []scheduler.Dataset{{ID: "a"}, {ID: "b"}}})
		},
		"GET /datasets/{id}": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, scheduler.Dataset{ID: r.PathValue("id"), Name: "n"})
		},
		"DELETE /datasets/{id}": func(w http.ResponseWriter, r *http.Request) {
			deleted.Store(r.PathValue("id"))
			w.WriteHeader(http.StatusNoContent)
		},
	})
	ds, err := c.ListDatasets(t.Context())
	if err != nil || len(ds) != 2 || ds[1].ID != "b" {
		t.Fatalf("ListDatasets = %+v, %v", ds, err)
	}
	d, err := c.GetDataset(t.Context(), "a")
	if err != nil || d.ID != "a" || d.Name != "n" {
		t.Fatalf("GetDataset = %+v, %v", d, err)
	}
	if err := c.DeleteDataset(t.Context(), "a"); err != nil || deleted.Load() != "a" {
		t.Fatalf("DeleteDataset = %v (deleted %v)", err, deleted.Load())
	}
}

func TestListDatasetsBareArray(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /datasets": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, []scheduler.Dataset{{ID: "a"}})
		},
	})
	ds, err := c.ListDatasets(t.Context())
	if err != nil || len(ds) != 1 || ds[0].ID != "a" {
		t.Fatalf("ListDatasets = %+v, %v", ds, err)
	}
}

func TestNodesUsageKeys(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /nodes": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"nodes":[{"id":"n1","region":"eu","role":"leader","state":"ready",`+
				`"gpus":[{"index":0,"model":"A100","memory_mb":81920,"utilization":0.5,"uuid":"GPU-1"}]}]}`)
		},
		"GET /usage": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"month": r.URL.Query().Get("month"), "cost_usd": 1.5})
		},
		"POST /keys": func(w http.ResponseWriter, r *http.Request) {
			var body map[string]string
			_ = json.NewDecoder(r.Body).Decode(&body)
			writeJSON(w, http.StatusCreated, client.Key{Key: "pwk_secret", Tenant: body["tenant"], Tier: body["tier"]})
		},
	})
	nodes, err := c.Nodes(t.Context())
	if err != nil || len(nodes) != 1 {
		t.Fatalf("Nodes = %+v, %v", nodes, err)
	}
	n := nodes[0]
	if n.ID != "n1" || n.Role != "leader" || n.Region != "eu" || len(n.GPUs) != 1 || n.GPUs[0].MemoryMB != 81920 || n.GPUs[0].UUID != "GPU-1" {
		t.Errorf("node = %+v", n)
	}
	raw, err := c.Usage(t.Context(), "2025-01")
	if err != nil || !strings.Contains(string(raw), `"month":"2025-01"`) {
		t.Errorf("Usage = %s, %v", raw, err)
	}
	k, err := c.CreateKey(t.Context(), "acme", "paid")
	if err != nil || k != (client.Key{Key: "pwk_secret", Tenant: "acme", Tier: "paid"}) {
		t.Errorf("CreateKey = %+v, %v", k, err)
	}
}

func TestAddrForms(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"127.0.0.1:8080":         "http://127.0.0.1:8080",
		"http://example.com/":    "http://example.com",
		"https://example.com/x/": "https://example.com/x",
	} {
		if got := client.New(in, "").Addr(); got != want {
			t.Errorf("New(%q).Addr() = %q, want %q", in, got, want)
		}
	}
	if _, err := client.New("", "").GetJob(t.Context(), "j"); err == nil {
		t.Error("a client without an address did not fail")
	}
}

// TestRateLimitedRequestIsSentAgain: a 429 rate_limited with a short
// Retry-After is sent again (the same JSON body); a quota refusal is not.
func TestRateLimitedRequestIsSentAgain(t *testing.T) {
	t.Parallel()
	var tries atomic.Int32
	var bodies sync.Map
	c := newServer(t, map[string]http.HandlerFunc{
		"POST /jobs": func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			n := tries.Add(1)
			bodies.Store(n, string(b))
			if n < 3 {
				w.Header().Set("Retry-After", "0")
				writeError(w, http.StatusTooManyRequests, "rate_limited", "slow down")
				return
			}
			writeJSON(w, http.StatusAccepted, scheduler.Job{ID: "job_1", State: scheduler.StateQueued})
		},
		"GET /jobs/{id}": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "3600")
			writeError(w, http.StatusTooManyRequests, "quota_exceeded", "calls of the day used")
		},
	})
	j, err := c.SubmitJob(t.Context(), scheduler.JobRequest{Type: "generate_dataset"}, "")
	if err != nil || j.ID != "job_1" || tries.Load() != 3 {
		t.Fatalf("submit: %+v %v after %d tries", j, err, tries.Load())
	}
	first, _ := bodies.Load(int32(1))
	last, _ := bodies.Load(int32(3))
	if first != last || !strings.Contains(first.(string), "generate_dataset") {
		t.Fatalf("bodies differ: %q vs %q", first, last)
	}
	_, err = c.GetJob(t.Context(), "job_1")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != "quota_exceeded" {
		t.Fatalf("quota refusal: %v", err)
	}
}

// TestNoLeaderIsWaitedOut: a 503 no_leader (an election) is sent again
// after a short backoff when sending twice is safe: a read, or a
// submission, which always carries an Idempotency-Key (made up when the
// caller gave none, the same on every try); another write is not.
func TestNoLeaderIsWaitedOut(t *testing.T) {
	t.Parallel()
	var submits, reads, keys atomic.Int32
	var idem sync.Map
	c := newServer(t, map[string]http.HandlerFunc{
		"POST /jobs": func(w http.ResponseWriter, r *http.Request) {
			n := submits.Add(1)
			idem.Store(n, r.Header.Get("Idempotency-Key"))
			if n < 3 {
				writeError(w, http.StatusServiceUnavailable, "no_leader", "the cluster has no leader yet; retry shortly")
				return
			}
			writeJSON(w, http.StatusAccepted, scheduler.Job{ID: "job_1", State: scheduler.StateQueued})
		},
		"GET /jobs/{id}": func(w http.ResponseWriter, r *http.Request) {
			if reads.Add(1) < 2 {
				writeError(w, http.StatusServiceUnavailable, "no_leader", "the cluster has no leader yet; retry shortly")
				return
			}
			writeJSON(w, http.StatusOK, scheduler.Job{ID: "job_1", State: scheduler.StateQueued})
		},
		"POST /keys": func(w http.ResponseWriter, r *http.Request) {
			keys.Add(1)
			writeError(w, http.StatusServiceUnavailable, "no_leader", "the cluster has no leader yet; retry shortly")
		},
	})
	j, err := c.SubmitJob(t.Context(), scheduler.JobRequest{Type: "generate_dataset"}, "")
	if err != nil || j.ID != "job_1" || submits.Load() != 3 {
		t.Fatalf("submit: %+v %v after %d tries", j, err, submits.Load())
	}
	k1, _ := idem.Load(int32(1))
	k3, _ := idem.Load(int32(3))
	if k1 == "" || k1 != k3 {
		t.Fatalf("Idempotency-Key %q then %q, want one made-up key on every try", k1, k3)
	}
	if _, err := c.GetJob(t.Context(), "job_1"); err != nil || reads.Load() != 2 {
		t.Fatalf("read: %v after %d tries", err, reads.Load())
	}
	_, err = c.CreateKey(t.Context(), "acme", "paid")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != "no_leader" || keys.Load() != 1 {
		t.Fatalf("a write without an idempotency key: %v after %d tries, want one try", err, keys.Load())
	}
}
