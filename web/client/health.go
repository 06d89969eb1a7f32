package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Health is the answer of GET /health.
type Health struct {
	Status  string `json:"status"`
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Role    string `json:"role"`
	Members int    `json:"members"`
}

// Health asks the node whether it serves and knows a leader. A node that
// answers 503 gives its Health together with an *APIError of status 503.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/health"}, &h)
	if err == nil {
		return h, nil
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable {
		return h, err
	}
	// The 503 body has the Health shape; decodeError kept it as the message.
	if json.Unmarshal([]byte(apiErr.Message), &h) == nil && h.Status != "" {
		apiErr.Code = "not_ready"
		apiErr.Message = fmt.Sprintf("node %s is %s (leader %q)", h.Node, h.Status, h.Leader)
	}
	return h, apiErr
}
