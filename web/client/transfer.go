package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Progress reports a transfer: done bytes of total (-1 when unknown). It is
// called from the transferring goroutine after every chunk.
type Progress func(done, total int64)

// ErrChanged is returned by a download resumed with [IfRange] when the
// node's object no longer has the ETag the caller's partial copy came from.
// Nothing was written: start again from offset 0.
var ErrChanged = errors.New("the object changed since the partial download")

// DownloadOption adjusts a download.
type DownloadOption func(*downloadOptions)

type downloadOptions struct {
	ifRange string // unquoted ETag; empty: none
}

// IfRange makes a resumed download (offset > 0) conditional on the object
// still having ETag etag (unquoted, as the download methods return it): the
// request carries If-Range, and when the node answers with the whole,
// changed object instead of the rest, the download fails with [ErrChanged]
// before writing anything. An empty etag does nothing.
func IfRange(etag string) DownloadOption {
	return func(o *downloadOptions) { o.ifRange = etag }
}

// download names one downloadable resource of the API.
type download struct {
	what   string // "dataset ds-1", for errors
	path   string // already escaped
	accept string // the Accept header
}

// download writes d's bytes from offset on to w, asking with a Range header
// (and If-Range when opts hold one). A node that ignores the Range
// (answering 200 with the same ETag, or with none when no If-Range was
// sent) is handled by skipping the first offset bytes. progress counts from
// offset, so done ends at the object's size. n counts only the bytes
// written to w. The ETag comes back unquoted.
func (c *Client) download(ctx context.Context, d download, offset int64, w io.Writer, progress Progress, opts []DownloadOption) (etag string, n int64, err error) {
	if offset < 0 {
		return "", 0, fmt.Errorf("pwmesh: download %s: negative offset %d", d.what, offset)
	}
	var o downloadOptions
	for _, opt := range opts {
		opt(&o)
	}
	h := http.Header{"Accept": {d.accept}}
	if offset > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		if o.ifRange != "" {
			h.Set("If-Range", `"`+o.ifRange+`"`)
		}
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: d.path, header: h})
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	etag = unquoteETag(resp.Header.Get("ETag"))

	body := io.Reader(resp.Body)
	total := int64(-1)
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			return etag, 0, fmt.Errorf("pwmesh: download %s: asked for bytes from %d, got Content-Range %q",
				d.what, offset, resp.Header.Get("Content-Range"))
		}
		total = size
		if total < 0 && resp.ContentLength >= 0 {
			total = offset + resp.ContentLength
		}
	case offset > 0 && o.ifRange != "" && etag != o.ifRange:
		return etag, 0, fmt.Errorf("pwmesh: download %s: %w (ETag %q, was %q)", d.what, ErrChanged, etag, o.ifRange)
	default: // 200: the whole object
		total = resp.ContentLength
		if offset > 0 {
			skipped, err := io.CopyN(io.Discard, body, offset)
			if err != nil {
				return etag, 0, fmt.Errorf("pwmesh: download %s: skip %d of %d bytes: %w", d.what, skipped, offset, err)
			}
		}
	}
	pw := &progressWriter{w: w, done: offset, total: total, fn: progress}
	n, err = io.Copy(pw, body)
	if err != nil {
		return etag, n, fmt.Errorf("pwmesh: download %s: %w", d.what, err)
	}
	if total >= 0 && offset+n != total {
		return etag, n, fmt.Errorf("pwmesh: download %s: got %d of %d bytes", d.what, offset+n, total)
	}
	return etag, n, nil
}

// unquoteETag turns `W/"x"` or `"x"` into x.
func unquoteETag(v string) string {
	return strings.Trim(strings.TrimPrefix(v, "W/"), `"`)
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
