package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

// downloader is a command that downloads a file whose SHA-256 its record
// gives: the same behaviour is tested for each.
type downloader struct {
	name string
	// serve starts a fake API whose record describes content (its CID and
	// size) but with sha256, and whose node serves content with Range
	// support under ETag "etag". The log holds the download requests.
	serve func(t *testing.T, content []byte, sha256, etag string) (string, *requestLog)
	args  func(out string) []string
	desc  string // the progress bar's label
	what  string // the mismatch message's subject
	owner string // who the mismatch message says recorded the sha256
}

var downloaders = []downloader{{
	name: "job bundle",
	serve: func(t *testing.T, content []byte, sha256, etag string) (string, *requestLog) {
		log := &requestLog{}
		ref := cas.SumBytes(content)
		return fakeAPI(t, map[string]http.HandlerFunc{
			"GET /jobs/{id}": jobRoute(func(id string) scheduler.Job {
				return scheduler.Job{ID: id, State: "succeeded",
					RunBundle: &scheduler.BundleRef{CID: ref.CID.String(), SHA256: sha256, Size: ref.Size}}
			}),
			"GET /jobs/{id}/runbundle": blobRoute("application/x-tar", etag, content, log),
		}), log
	},
	args: func(out string) []string { return []string{"job", "bundle", "j1", "-o", out} },
	desc: "bundle j1", what: "bundle of job j1", owner: "the job",
}, {
	name: "dataset download",
	serve: func(t *testing.T, content []byte, sha256, etag string) (string, *requestLog) {
		d := testDataset(content)
		d.SHA256 = sha256
		return datasetAPI(t, d, etag, content)
	},
	args: func(out string) []string { return []string{"dataset", "download", "ds-1", "-o", out} },
	desc: "dataset ds-1", what: "dataset ds-1", owner: "the dataset",
}}

// eachDownloader runs test in parallel for every downloader, with a file
// to download to in a fresh directory.
func eachDownloader(t *testing.T, test func(t *testing.T, dl downloader, out string)) {
	t.Parallel()
	for _, dl := range downloaders {
		t.Run(dl.name, func(t *testing.T) {
			t.Parallel()
			test(t, dl, filepath.Join(t.TempDir(), "file"))
		})
	}
}

func TestDownloadWhole(t *testing.T) {
	eachDownloader(t, func(t *testing.T, dl downloader, out string) {
		content := bytes.Repeat([]byte("downloaded bytes "), 5000)
		ref := cas.SumBytes(content)
		addr, log := dl.serve(t, content, ref.SHA256, ref.CID.String())

		r := cli(t, addr, nil, dl.args(out)...)
		r.wantCode(t, 0)
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, content) {
			t.Fatalf("downloaded file: %v (len %d)", err, len(got))
		}
		if want := out + "\ncid " + ref.CID.String() + " (sha256:" + ref.SHA256 + ", 83.0 KiB)\n"; r.stdout != want {
			t.Errorf("stdout = %q, want %q", r.stdout, want)
		}
		if r.stderr != "" {
			t.Errorf("stderr = %q, want no bar when stderr is not a terminal", r.stderr)
		}
		if _, err := os.Stat(out + ".part"); !os.IsNotExist(err) {
			t.Errorf("temp file left behind: %v", err)
		}
		if ranges := log.get("Range"); len(ranges) != 1 || ranges[0] != "" {
			t.Errorf("Range headers = %q, want one whole download", ranges)
		}

		// --json names the file and the CID.
		r = cli(t, addr, nil, append(dl.args(out), "--json")...)
		r.wantCode(t, 0)
		var v struct {
			Path, CID, SHA256 string
			Size              int64
		}
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Path != out || v.CID != ref.CID.String() ||
			v.SHA256 != ref.SHA256 || v.Size != ref.Size {
			t.Errorf("--json = %q: %v", r.stdout, err)
		}
	})
}

func TestDownloadResume(t *testing.T) {
	eachDownloader(t, func(t *testing.T, dl downloader, out string) {
		content := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		ref := cas.SumBytes(content)
		addr, log := dl.serve(t, content, ref.SHA256, ref.CID.String())
		const have = 10_000
		if err := os.WriteFile(out+".part", content[:have], 0o644); err != nil {
			t.Fatal(err)
		}
		r := cli(t, addr, nil, dl.args(out)...)
		r.wantCode(t, 0)
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, content) {
			t.Fatalf("resumed file differs: %v", err)
		}
		if ranges := log.get("Range"); len(ranges) != 1 || ranges[0] != fmt.Sprintf("bytes=%d-", have) {
			t.Errorf("Range headers = %q", ranges)
		}
		if ifRange := log.get("If-Range"); len(ifRange) != 1 || ifRange[0] != `"`+ref.CID.String()+`"` {
			t.Errorf("If-Range headers = %q, want the record's CID", ifRange)
		}
	})
}

func TestDownloadResumeChanged(t *testing.T) {
	eachDownloader(t, func(t *testing.T, dl downloader, out string) {
		content := bytes.Repeat([]byte("the new content "), 4096)
		// The node's object is no longer the one the record (and the .part) knew.
		addr, log := dl.serve(t, content, cas.SumBytes(content).SHA256, "cid-of-another-version")
		if err := os.WriteFile(out+".part", []byte("bytes of the old version"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := cli(t, addr, nil, dl.args(out)...)
		r.wantCode(t, 0)
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, content) {
			t.Fatalf("file differs after a restart: %v", err)
		}
		if ranges := log.get("Range"); len(ranges) != 2 || ranges[0] != "bytes=24-" || ranges[1] != "" {
			t.Errorf("Range headers = %q, want a refused resume, then a whole download", ranges)
		}
		if want := dl.what + " changed since " + out + ".part was written; downloading it again from the start\n"; r.stderr != want {
			t.Errorf("stderr = %q, want %q", r.stderr, want)
		}
	})
}

func TestDownloadSHA256Mismatch(t *testing.T) {
	eachDownloader(t, func(t *testing.T, dl downloader, out string) {
		content := []byte("the bytes the node sends")
		wrong := cas.SumBytes([]byte("the bytes the record holds")).SHA256
		addr, _ := dl.serve(t, content, wrong, cas.SumBytes(content).CID.String())
		r := cli(t, addr, nil, dl.args(out)...)
		r.wantCode(t, 1)
		want := fmt.Sprintf("pwmesh: %s: sha256 mismatch: downloaded %s, %s says %s; nothing was written to %s\n",
			dl.what, cas.SumBytes(content).SHA256, dl.owner, wrong, out)
		if r.stderr != want {
			t.Errorf("stderr = %q\nwant     %q", r.stderr, want)
		}
		for _, p := range []string{out, out + ".part"} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s exists after a mismatch (%v)", p, err)
			}
		}

		// After a resume, the message says a fresh start may help.
		if err := os.WriteFile(out+".part", content[:5], 0o644); err != nil {
			t.Fatal(err)
		}
		r = cli(t, addr, nil, dl.args(out)...)
		r.wantCode(t, 1)
		if !strings.Contains(r.stderr, "the first 5 bytes came from an earlier partial download, now deleted: run the command again") {
			t.Errorf("stderr = %q", r.stderr)
		}
		if _, err := os.Stat(out + ".part"); !os.IsNotExist(err) {
			t.Errorf(".part exists after a mismatch (%v)", err)
		}
	})
}
