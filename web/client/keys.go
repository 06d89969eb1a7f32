package client

import (
	"context"
	"net/http"
)

// Key is a newly created API key. The node shows Key only once.
type Key struct {
	Key    string `json:"key"`
	Tenant string `json:"tenant"`
	Tier   string `json:"tier"`
}

// CreateKey creates an API key for tenant with tier "free" or "paid" (POST
// /keys). The caller must hold an admin key.
func (c *Client) CreateKey(ctx context.Context, tenant, tier string) (Key, error) {
	var k Key
	err := c.doJSON(ctx, request{
		method: http.MethodPost,
		path:   "/keys",
		json:   map[string]string{"tenant": tenant, "tier": tier},
	}, &k)
	return k, err
}
