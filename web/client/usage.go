package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// Usage returns the caller's metered usage, quotas and cost in dollars for
// month ("YYYY-MM"; empty: the node's current month) as the node wrote it.
func (c *Client) Usage(ctx context.Context, month string) (json.RawMessage, error) {
	var q url.Values
	if month != "" {
		q = url.Values{"month": {month}}
	}
	var raw json.RawMessage
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/usage", query: q}, &raw)
	return raw, err
}
