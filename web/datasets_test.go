package web_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

func TestDatasetLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("GET", "/datasets", e.acme, nil)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"datasets":[]}` {
		t.Fatalf("empty list %d %s", r.status, r.body)
	}
	data := bytes.Repeat([]byte("measurement "), 10000)
	d := e.upload(e.acme, url.QueryEscape("scan 1.npz"), data)
	sum := sha256.Sum256(data)
	if !strings.HasPrefix(d.ID, "ds_") || d.Tenant != "acme" || d.Name != "scan 1.npz" || d.Size != int64(len(data)) ||
		d.SHA256 != hex.EncodeToString(sum[:]) || !d.CreatedAt.Equal(testNow) {
		t.Fatalf("dataset %+v", d)
	}
	c, err := cas.ParseCID(d.CID)
	if err != nil {
		t.Fatal(err)
	}
	f, err := e.store.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(stored, data) {
		t.Fatal("stored bytes differ")
	}
	// Content-Type parameters are fine.
	d2 := func() scheduler.Dataset {
		r := e.do("POST", "/datasets?name=b.bin", e.acme, strings.NewReader("b"), "Content-Type", "application/octet-stream; charset=binary")
		wantStatus(t, r, http.StatusCreated)
		var d scheduler.Dataset
		r.decode(t, &d)
		return d
	}()

	var l struct{ Datasets []scheduler.Dataset }
	e.do("GET", "/datasets", e.acme, nil).decode(t, &l)
	if len(l.Datasets) != 2 || l.Datasets[0].ID == l.Datasets[1].ID {
		t.Fatalf("list %+v", l)
	}
	var got scheduler.Dataset
	r = e.do("GET", "/datasets/"+d.ID, e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &got)
	if got != d {
		t.Fatalf("get %+v, want %+v", got, d)
	}

	// In use by a job that has not finished: 409, and nothing deleted.
	j := e.submit(e.acme, map[string]any{"type": "calibrate", "dataset": d.ID})
	e.unchanged(func() {
		wantError(t, e.do("DELETE", "/datasets/"+d.ID, e.acme, nil), http.StatusConflict, "dataset_in_use")
	})
	e.doJSON("POST", "/jobs/"+j.ID+"/cancel", e.acme, nil)
	r = e.do("DELETE", "/datasets/"+d.ID, e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &got)
	if got != d {
		t.Fatalf("deleted %+v", got)
	}
	wantError(t, e.do("GET", "/datasets/"+d.ID, e.acme, nil), http.StatusNotFound, "not_found")
	wantError(t, e.do("DELETE", "/datasets/"+d.ID, e.acme, nil), http.StatusNotFound, "not_found")
	if _, ok := e.fsm.Dataset(d2.ID); !ok {
		t.Fatal("the other dataset went too")
	}
	// The blob stays for garbage collection.
	if ok, _ := e.store.Has(context.Background(), c); !ok {
		t.Fatal("blob deleted")
	}
}

func TestUploadRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *web.Config, _ *web.Deps) { c.MaxUploadBytes = 64 })
	octet := []string{"Content-Type", "application/octet-stream"}
	cases := []struct {
		name   string
		query  string
		body   io.Reader
		hdr    []string
		status int
		code   string
	}{
		{"no content type", "?name=a", strings.NewReader("x"), nil, 415, "unsupported_media_type"},
		{"json", "?name=a", strings.NewReader("{}"), []string{"Content-Type", "application/json"}, 415, "unsupported_media_type"},
		{"multipart", "?name=a", strings.NewReader("x"), []string{"Content-Type", "multipart/form-data; boundary=x"}, 415, "unsupported_media_type"},
		{"no name", "", strings.NewReader("x"), octet, 400, "invalid_name"},
		{"empty name", "?name=", strings.NewReader("x"), octet, 400, "invalid_name"},
		{"slash", "?name=a/b", strings.NewReader("x"), octet, 400, "invalid_name"},
		{"backslash", "?name=a%5Cb", strings.NewReader("x"), octet, 400, "invalid_name"},
		{"dotdot", "?name=a..b", strings.NewReader("x"), octet, 400, "invalid_name"},
		{"leading dot", "?name=.hidden", strings.NewReader("x"), octet, 400, "invalid_name"},
		{"control", "?name=a%0Ab", strings.NewReader("x"), octet, 400, "invalid_name"},
		{"nul", "?name=a%00b", strings.NewReader("x"), octet, 400, "invalid_name"},
		{"long name", "?name=" + strings.Repeat("n", 129), strings.NewReader("x"), octet, 400, "invalid_name"},
		{"empty body", "?name=a", strings.NewReader(""), octet, 400, "empty_body"},
		{"too large", "?name=a", strings.NewReader(strings.Repeat("x", 65)), octet, 413, "too_large"},
		// No Content-Length: the limit trips while streaming.
		{"too large chunked", "?name=a", io.MultiReader(strings.NewReader(strings.Repeat("x", 1000))), octet, 413, "too_large"},
	}
	for _, c := range cases {
		e.unchanged(func() {
			r := e.do("POST", "/datasets"+c.query, e.acme, c.body, c.hdr...)
			if r.status != c.status {
				t.Fatalf("%s: status %d, want %d: %s", c.name, r.status, c.status, r.body)
			}
			wantError(t, r, c.status, c.code)
		})
	}
	if ds := e.fsm.Datasets(""); len(ds) != 0 {
		t.Fatalf("registered %+v", ds)
	}
	// Exactly the limit is fine.
	e.upload(e.acme, "a", bytes.Repeat([]byte("x"), 64))
}

func TestDatasetDownload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	data := bytes.Repeat([]byte("0123456789"), 1000)
	d := e.upload(e.acme, "scan.npz", data)
	r := e.do("GET", "/datasets/"+d.ID+"/download", e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	if !bytes.Equal(r.body, data) {
		t.Fatal("downloaded bytes differ")
	}
	if et := r.header.Get("ETag"); et != `"`+d.CID+`"` {
		t.Errorf("ETag %q", et)
	}
	if cd := r.header.Get("Content-Disposition"); !dispositionNames(cd, "scan.npz") {
		t.Errorf("Content-Disposition %q", cd)
	}
	r = e.do("GET", "/datasets/"+d.ID+"/download", e.acme, nil, "Range", "bytes=10-19")
	wantStatus(t, r, http.StatusPartialContent)
	if string(r.body) != "0123456789" {
		t.Errorf("range body %q", r.body)
	}
	wantError(t, e.do("GET", "/datasets/"+d.ID+"/download", e.globex, nil), http.StatusNotFound, "not_found")
}
