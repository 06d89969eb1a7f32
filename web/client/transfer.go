package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Progress reports a transfer: done bytes of total (-1 when unknown). It is
// called from the transferring goroutine after every chunk.
type Progress func(done, total int64)

// DownloadBundle writes the job's RunBundle to w (GET /jobs/{id}/runbundle)
// and returns its ETag (the bundle's CID, unquoted) and the bytes written. A
// job that has not succeeded gives an *APIError 409 not_ready.
func (c *Client) DownloadBundle(ctx context.Context, id string, w io.Writer, progress Progress) (etag string, n int64, err error) {
	return c.DownloadBundleFrom(ctx, id, 0, w, progress)
}

// DownloadBundleFrom resumes a download: it writes the bundle's bytes from
// offset on to w, asking with a Range header. A node that ignores the Range
// (answering 200) is handled by skipping the first offset bytes. progress
// counts from offset, so done ends at the bundle's size. n counts only the
// bytes written to w.
func (c *Client) DownloadBundleFrom(ctx context.Context, id string, offset int64, w io.Writer, progress Progress) (etag string, n int64, err error) {
	if offset < 0 {
		return "", 0, fmt.Errorf("pwmesh: download bundle of %s: negative offset %d", id, offset)
	}
	h := http.Header{"Accept": {"application/x-tar"}}
	if offset > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/jobs/%s/runbundle", id), header: h})
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	etag = strings.TrimPrefix(resp.Header.Get("ETag"), "W/")
	etag = strings.Trim(etag, `"`)

	body := io.Reader(resp.Body)
	total := int64(-1)
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			return etag, 0, fmt.Errorf("pwmesh: download bundle of %s: asked for bytes from %d, got Content-Range %q",
				id, offset, resp.Header.Get("Content-Range"))
		}
		total = size
		if total < 0 && resp.ContentLength >= 0 {
			total = offset + resp.ContentLength
		}
	default: // 200: the whole bundle
		total = resp.ContentLength
		if offset > 0 {
			skipped, err := io.CopyN(io.Discard, body, offset)
			if err != nil {
				return etag, 0, fmt.Errorf("pwmesh: download bundle of %s: skip %d of %d bytes: %w", id, skipped, offset, err)
			}
		}
	}
	pw := &progressWriter{w: w, done: offset, total: total, fn: progress}
	n, err = io.Copy(pw, body)
	if err != nil {
		return etag, n, fmt.Errorf("pwmesh: download bundle of %s: %w", id, err)
	}
	if total >= 0 && offset+n != total {
		return etag, n, fmt.Errorf("pwmesh: download bundle of %s: got %d of %d bytes", id, offset+n, total)
	}
	return etag, n, nil
}

// parseContentRange reads "bytes START-END/SIZE"; size is -1 for "*".
func parseContentRange(v string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	first, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	size = -1
	if sz != "*" {
		if size, err = strconv.ParseInt(strings.TrimSpace(sz), 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, size, true
}

// progressWriter counts bytes written through it and reports them.
type progressWriter struct {
	w     io.Writer
	done  int64
	total int64
	fn    Progress
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	if p.fn != nil && n > 0 {
		p.fn(p.done, p.total)
	}
	return n, err
}

// progressReader counts bytes read through it and reports them.
type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.fn != nil && n > 0 {
		p.fn(p.done, p.total)
	}
	return n, err
}
