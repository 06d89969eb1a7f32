package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Key is a newly created API key. The node shows Key only once.
type Key struct {
	ID        string     `json:"id"`
	Key       string     `json:"key"`
	Tenant    string     `json:"tenant"`
	Tier      string     `json:"tier"`
	Name      string     `json:"name,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// KeyRequest is what CreateKeyWith asks for. Tier is "free" (the
// default) or "paid"; Name and ExpiresIn (a Go duration such as "720h")
// are optional.
type KeyRequest struct {
	Tenant    string `json:"tenant"`
	Tier      string `json:"tier,omitempty"`
	Name      string `json:"name,omitempty"`
	ExpiresIn string `json:"expires_in,omitempty"`
}

// CreateKey creates an API key for tenant with tier "free" or "paid" (POST
// /keys). The caller must hold an admin key.
func (c *Client) CreateKey(ctx context.Context, tenant, tier string) (Key, error) {
	return c.CreateKeyWith(ctx, KeyRequest{Tenant: tenant, Tier: tier})
}

// CreateKeyWith creates an API key as req asks (POST /keys; admin key).
func (c *Client) CreateKeyWith(ctx context.Context, req KeyRequest) (Key, error) {
	var k Key
	err := c.doJSON(ctx, request{method: http.MethodPost, path: "/keys", json: req}, &k)
	return k, err
}

// KeyInfo is a key as GET /keys lists it: never its secret.
type KeyInfo struct {
	ID         string     `json:"id"`
	Tenant     string     `json:"tenant"`
	Tier       string     `json:"tier"`
	Admin      bool       `json:"admin"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

// ListKeys lists API keys (GET /keys): every key for an admin key, the
// caller's tenant's otherwise.
func (c *Client) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	var l struct {
		Keys []KeyInfo `json:"keys"`
	}
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/keys"}, &l)
	return l.Keys, err
}

// RevokeKey revokes the key with ID id (DELETE /keys/{id}): from then on it
// authenticates nothing, on any node.
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	return c.doJSON(ctx, request{method: http.MethodDelete, path: pathf("/keys/%s", id)}, nil)
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
