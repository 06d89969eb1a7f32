// Package client is the typed Go client of a pwmesh node's HTTP API
// (CONTRACT.md §3): jobs, their logs and RunBundles, datasets, nodes, usage
// and API keys.
//
// Every method takes a context and talks to one node; the node forwards
// writes to the leader itself. A non-2xx answer comes back as an *APIError,
// so callers test it with errors.As:
//
//	var apiErr *client.APIError
//	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound { ... }
//
// Uploads and downloads stream: neither holds a whole body in memory.
package client
