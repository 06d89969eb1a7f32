package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/pwmesh/pwmesh/scheduler"
)

// UploadDataset streams r to the node as a new dataset called name (POST
// /datasets). size is r's length in bytes, sent as Content-Length; -1 sends
// the body chunked. Nothing is buffered: r is read as the request is sent,
// and progress (may be nil) is called as bytes go out.
func (c *Client) UploadDataset(ctx context.Context, name string, r io.Reader, size int64, progress Progress) (scheduler.Dataset, error) {
	if size < -1 {
		return scheduler.Dataset{}, fmt.Errorf("pwmesh: upload dataset %q: invalid size %d", name, size)
	}
	// io.NopCloser hides the concrete type, so that net/http neither sniffs
	// a length nor rewinds the body for a retry.
	body := io.NopCloser(&progressReader{r: r, total: size, fn: progress})
	var d scheduler.Dataset
	err := c.doJSON(ctx, request{
		method: http.MethodPost,
		path:   "/datasets",
		query:  url.Values{"name": {name}},
		header: http.Header{"Content-Type": {"application/octet-stream"}},
		body:   body,
		size:   size,
	}, &d)
	return d, err
}

// ListDatasets returns the caller's datasets.
func (c *Client) ListDatasets(ctx context.Context) ([]scheduler.Dataset, error) {
	var raw json.RawMessage
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/datasets"}, &raw); err != nil {
		return nil, err
	}
	// The contract says "dataset(s)": accept {"datasets":[...]} and a bare array.
	var ds []scheduler.Dataset
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &ds); err != nil {
			return nil, fmt.Errorf("pwmesh: GET /datasets: decode answer: %w", err)
		}
		return ds, nil
	}
	var page struct {
		Datasets []scheduler.Dataset `json:"datasets"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return nil, fmt.Errorf("pwmesh: GET /datasets: decode answer: %w", err)
	}
	return page.Datasets, nil
}

// GetDataset returns the dataset with that id.
func (c *Client) GetDataset(ctx context.Context, id string) (scheduler.Dataset, error) {
	var d scheduler.Dataset
	err := c.doJSON(ctx, request{method: http.MethodGet, path: pathf("/datasets/%s", id)}, &d)
	return d, err
}

// DeleteDataset removes the dataset with that id.
func (c *Client) DeleteDataset(ctx context.Context, id string) error {
	return c.doJSON(ctx, request{method: http.MethodDelete, path: pathf("/datasets/%s", id)}, nil)
}

// DownloadDatasetFrom writes the dataset's bytes, as they were uploaded,
// from offset on to w (GET /datasets/{id}/download; offset 0 for the whole
// dataset) and returns its ETag (the dataset's CID, unquoted) and the bytes
// written. The hex SHA-256 of the whole is the dataset's sha256.
//
// A resume (offset > 0) asks with a Range header. A node that ignores the
// Range (answering 200) is handled by skipping the first offset bytes; with
// [IfRange], a node whose object changed since the part the caller holds
// gives [ErrChanged] instead. progress counts from offset, so done ends at
// the dataset's size. n counts only the bytes written to w.
func (c *Client) DownloadDatasetFrom(ctx context.Context, id string, offset int64, w io.Writer, progress Progress, opts ...DownloadOption) (etag string, n int64, err error) {
	d := download{what: "dataset " + id, path: pathf("/datasets/%s/download", id), accept: "application/octet-stream"}
	return c.download(ctx, d, offset, w, progress, opts)
}
