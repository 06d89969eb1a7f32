package client

import (
	"context"
	"io"
)

// DownloadBundle writes the job's RunBundle to w (GET /jobs/{id}/runbundle)
// and returns its ETag (the bundle's CID, unquoted) and the bytes written. A
// job that has not succeeded gives an *APIError 409 not_ready.
func (c *Client) DownloadBundle(ctx context.Context, id string, w io.Writer, progress Progress) (etag string, n int64, err error) {
	return c.DownloadBundleFrom(ctx, id, 0, w, progress)
}

// DownloadBundleFrom resumes a download of the job's RunBundle: it writes
// the bundle's bytes from offset on to w. See [Client.DownloadDatasetFrom]
// for how offset, progress and the options work; the bundle's ETag is its
// CID.
func (c *Client) DownloadBundleFrom(ctx context.Context, id string, offset int64, w io.Writer, progress Progress, opts ...DownloadOption) (etag string, n int64, err error) {
	d := download{what: "bundle of " + id, path: pathf("/jobs/%s/runbundle", id), accept: "application/x-tar"}
	return c.download(ctx, d, offset, w, progress, opts)
}
