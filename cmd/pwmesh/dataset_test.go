package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

func TestDatasetUploadStreams(t *testing.T) {
	t.Parallel()
	content := strings.Repeat("measurement ", 100_000)
	path := filepath.Join(t.TempDir(), "scene.npy")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var (
		mu                  sync.Mutex
		gotLen, gotCL       int64
		gotName, gotType    string
		gotSum, gotEncoding string
	)
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"POST /datasets": func(w http.ResponseWriter, r *http.Request) {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				apiError(w, 400, "bad_request", err.Error())
				return
			}
			mu.Lock()
			gotLen, gotCL, gotName = n, r.ContentLength, r.URL.Query().Get("name")
			gotType, gotSum = r.Header.Get("Content-Type"), hex.EncodeToString(h.Sum(nil))
			gotEncoding = strings.Join(r.TransferEncoding, ",")
			mu.Unlock()
			writeJSON(w, http.StatusCreated, scheduler.Dataset{ID: "ds-7", Name: gotName, Size: n, SHA256: gotSum})
		},
	})
	r := cli(t, addr, nil, "dataset", "upload", path)
	r.wantCode(t, 0)
	if r.stdout != "ds-7\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	mu.Lock()
	sum := sha256.Sum256([]byte(content))
	if gotLen != int64(len(content)) || gotSum != hex.EncodeToString(sum[:]) {
		t.Errorf("server got %d bytes, sha256 %s", gotLen, gotSum)
	}
	// Streamed with a known length: Content-Length from the file's size, not chunked.
	if gotCL != int64(len(content)) || gotEncoding != "" {
		t.Errorf("Content-Length %d, Transfer-Encoding %q", gotCL, gotEncoding)
	}
	if gotName != "scene.npy" || gotType != "application/octet-stream" {
		t.Errorf("name %q, Content-Type %q", gotName, gotType)
	}
	mu.Unlock()

	r = cli(t, addr, nil, "dataset", "upload", path, "--name", "other", "--json")
	r.wantCode(t, 0)
	var d scheduler.Dataset
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || d.Name != "other" || d.ID != "ds-7" {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}
}

func TestDatasetUploadMissingFile(t *testing.T) {
	t.Parallel()
	r := cli(t, closedAddr(t), nil, "dataset", "upload", filepath.Join(t.TempDir(), "nope.npy"))
	r.wantCode(t, 1)
	if !strings.HasPrefix(r.stderr, "pwmesh: open ") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestDatasetListGetRm(t *testing.T) {
	t.Parallel()
	created := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ds := scheduler.Dataset{ID: "ds-1", Name: "scene.npy", Size: 3 << 20, SHA256: strings.Repeat("ab", 32), CID: "bafk", CreatedAt: created}
	var deleted sync.Map
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /datasets": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"datasets": []scheduler.Dataset{ds}})
		},
		"GET /datasets/{id}": func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("id") != ds.ID {
				apiError(w, http.StatusNotFound, "dataset_not_found", "no dataset "+r.PathValue("id"))
				return
			}
			writeJSON(w, http.StatusOK, ds)
		},
		"DELETE /datasets/{id}": func(w http.ResponseWriter, r *http.Request) {
			deleted.Store(r.PathValue("id"), true)
			w.WriteHeader(http.StatusNoContent)
		},
	})
	r := cli(t, addr, nil, "dataset", "list")
	r.wantCode(t, 0)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ID NAME SIZE SHA256 CREATED" ||
		strings.Join(strings.Fields(lines[1]), " ") != "ds-1 scene.npy 3.0 MiB abababababab 2025-03-01T12:00:00Z" {
		t.Errorf("dataset list:\n%s", r.stdout)
	}
	r = cli(t, addr, nil, "dataset", "list", "--json")
	r.wantCode(t, 0)
	var list []scheduler.Dataset
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].ID != "ds-1" {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}
	r = cli(t, addr, nil, "dataset", "get", "ds-1")
	r.wantCode(t, 0)
	if !strings.Contains(r.stdout, "3.0 MiB (3145728 bytes)") || !strings.Contains(r.stdout, ds.SHA256) {
		t.Errorf("dataset get:\n%s", r.stdout)
	}
	r = cli(t, addr, nil, "dataset", "get", "ds-2")
	r.wantCode(t, 1)
	if r.stderr != "pwmesh: 404 dataset_not_found: no dataset ds-2\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
	r = cli(t, addr, nil, "dataset", "rm", "ds-1")
	r.wantCode(t, 0)
	if _, ok := deleted.Load("ds-1"); !ok || r.stdout != "removed ds-1\n" {
		t.Errorf("rm: stdout %q, deleted %v", r.stdout, ok)
	}
}

// datasetAPI serves the dataset record d and, for d.ID, content as its
// bytes under ETag "etag" with Range support; any other id is not found.
// The log holds the headers of the download requests.
func datasetAPI(t *testing.T, d scheduler.Dataset, etag string, content []byte) (string, *requestLog) {
	log := &requestLog{}
	blob := blobRoute("application/octet-stream", etag, content, log)
	notFound := func(w http.ResponseWriter, r *http.Request) bool {
		if r.PathValue("id") == d.ID {
			return false
		}
		apiError(w, http.StatusNotFound, "dataset_not_found", "no dataset "+r.PathValue("id"))
		return true
	}
	return fakeAPI(t, map[string]http.HandlerFunc{
		"GET /datasets/{id}": func(w http.ResponseWriter, r *http.Request) {
			if !notFound(w, r) {
				writeJSON(w, http.StatusOK, d)
			}
		},
		"GET /datasets/{id}/download": func(w http.ResponseWriter, r *http.Request) {
			if !notFound(w, r) {
				blob(w, r)
			}
		},
	}), log
}

// testDataset returns content and a dataset record that describes it.
func testDataset(content []byte) scheduler.Dataset {
	ref := cas.SumBytes(content)
	return scheduler.Dataset{ID: "ds-1", Name: "scene.npy", CID: ref.CID.String(), SHA256: ref.SHA256, Size: ref.Size}
}

// TestDatasetDownloadDefaultName changes the working directory, so it
// cannot run in parallel.
func TestDatasetDownloadDefaultName(t *testing.T) {
	content := []byte("a small dataset")
	d := testDataset(content)
	d.Name = "../../outside/scene.npy" // a name never writes outside the directory
	addr, _ := datasetAPI(t, d, d.CID, content)
	dir := t.TempDir()
	t.Chdir(dir)
	r := cli(t, addr, nil, "dataset", "download", "ds-1")
	r.wantCode(t, 0)
	if got, err := os.ReadFile(filepath.Join(dir, "scene.npy")); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("scene.npy: %q, %v", got, err)
	}
	if !strings.HasPrefix(r.stdout, "scene.npy\n") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestDatasetFileName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"scene.npy":     "scene.npy",
		"a/b/scene.npy": "scene.npy",
		"/etc/passwd":   "passwd",
		"..":            "ds-1",
		".":             "ds-1",
		"/":             "ds-1",
		"":              "ds-1",
	} {
		if got := datasetFileName(scheduler.Dataset{ID: "ds-1", Name: name}); got != want {
			t.Errorf("datasetFileName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestDatasetDownloadNotFound(t *testing.T) {
	t.Parallel()
	d := testDataset([]byte("x"))
	addr, log := datasetAPI(t, d, d.CID, []byte("x"))
	dir := t.TempDir()
	r := cli(t, addr, nil, "dataset", "download", "ds-2", "-o", filepath.Join(dir, "x"))
	r.wantCode(t, 1)
	if r.stderr != "pwmesh: 404 dataset_not_found: no dataset ds-2\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
	if len(log.get("Range")) != 0 {
		t.Error("downloaded although the record was not found")
	}

	// The record exists but no node holds the bytes.
	addr = fakeAPI(t, map[string]http.HandlerFunc{
		"GET /datasets/{id}": func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, d) },
		"GET /datasets/{id}/download": func(w http.ResponseWriter, r *http.Request) {
			apiError(w, http.StatusNotFound, "dataset_not_stored", "no reachable node or mirror holds dataset ds-1")
		},
	})
	r = cli(t, addr, nil, "dataset", "download", "ds-1", "-o", filepath.Join(dir, "x"))
	r.wantCode(t, 1)
	if r.stderr != "pwmesh: 404 dataset_not_stored: no reachable node or mirror holds dataset ds-1\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}
