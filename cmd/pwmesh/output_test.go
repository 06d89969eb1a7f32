package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

// TestProgressFlag checks that every transfer draws its bar with
// --progress always even where stderr is not a terminal, and none with
// never or (stderr being a buffer here) auto.
func TestProgressFlag(t *testing.T) {
	t.Parallel()
	content := bytes.Repeat([]byte("progress "), 20_000)
	ref := cas.SumBytes(content)
	dir := t.TempDir()
	src := filepath.Join(dir, "scene.npy")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	type transfer struct {
		addr string
		args []string
		desc string
	}
	transfers := []transfer{{
		addr: fakeAPI(t, map[string]http.HandlerFunc{
			"POST /datasets": func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				writeJSON(w, http.StatusCreated, scheduler.Dataset{ID: "ds-1"})
			},
		}),
		args: []string{"dataset", "upload", src},
		desc: "upload scene.npy",
	}}
	for _, dl := range downloaders {
		addr, _ := dl.serve(t, content, ref.SHA256, ref.CID.String())
		transfers = append(transfers, transfer{addr, dl.args(filepath.Join(dir, "out")), dl.desc})
	}
	// The finished bar: its label, 100 % and the byte count (176 KiB).
	for _, tc := range transfers {
		r := cli(t, tc.addr, nil, append(tc.args, "--progress", "always")...)
		r.wantCode(t, 0)
		bar := regexp.MustCompile(regexp.QuoteMeta(tc.desc) + ` 100% \|.*\| \(176/176 KiB`)
		if !bar.MatchString(r.stderr) || !strings.HasSuffix(r.stderr, "\n") {
			t.Errorf("%q --progress always: stderr = %q, want a full bar labelled %q", tc.args, r.stderr, tc.desc)
		}
		for _, mode := range []string{"never", "auto"} {
			r := cli(t, tc.addr, nil, append(tc.args, "--progress", mode)...)
			r.wantCode(t, 0)
			if r.stderr != "" {
				t.Errorf("%q --progress %s: stderr = %q, want no bar", tc.args, mode, r.stderr)
			}
		}
	}
}
