package client

import (
	"context"
	"net/http"
	"net/url"
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

// Rotated is the answer of RotateTenantKey.
type Rotated struct {
	Tenant     string `json:"tenant"`
	KeyVersion uint32 `json:"key_version"`
}

// RotateTenantKey gives tenant a new data key version for its new datasets
// (POST /admin/tenants/{tenant}/rotate-key; admin key).
func (c *Client) RotateTenantKey(ctx context.Context, tenant string) (Rotated, error) {
	var r Rotated
	err := c.doJSON(ctx, request{method: http.MethodPost, path: "/admin/tenants/" + url.PathEscape(tenant) + "/rotate-key"}, &r)
	return r, err
}

// Rewrapped is the answer of RewrapKeys.
type Rewrapped struct {
	Tenants int    `json:"tenants"`
	Master  string `json:"master"`
}

// RewrapKeys wraps every tenant's data keys with the answering node's active
// master key (POST /admin/rewrap-keys; admin key).
func (c *Client) RewrapKeys(ctx context.Context) (Rewrapped, error) {
	var r Rewrapped
	err := c.doJSON(ctx, request{method: http.MethodPost, path: "/admin/rewrap-keys"}, &r)
	return r, err
}
