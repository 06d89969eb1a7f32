package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Usage returns the caller's metered usage, quotas and cost in dollars for
// month ("YYYY-MM"; empty: the node's current month) as the node wrote it.
func (c *Client) Usage(ctx context.Context, month string) (json.RawMessage, error) {
	return c.UsageOf(ctx, month, "")
}

// UsageOf is Usage of tenant ("": the caller's; another one needs an
// admin key).
func (c *Client) UsageOf(ctx context.Context, month, tenant string) (json.RawMessage, error) {
	var raw json.RawMessage
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/usage", query: usageQuery(month, tenant)}, &raw)
	return raw, err
}

// AdminUsage returns every tenant's usage in month (GET /admin/usage;
// admin key), each as Usage shows it.
func (c *Client) AdminUsage(ctx context.Context, month string) ([]json.RawMessage, error) {
	var l struct {
		Tenants []json.RawMessage `json:"tenants"`
	}
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/admin/usage", query: usageQuery(month, "")}, &l)
	return l.Tenants, err
}

// InvoiceLine is one priced resource of an Invoice: gpu_minutes,
// storage_gb_months or api_calls. Amount is in dollars, to the cent.
type InvoiceLine struct {
	Item        string  `json:"item"`
	Quantity    float64 `json:"quantity"`
	Free        float64 `json:"free"`
	Billable    float64 `json:"billable"`
	UnitPrice   float64 `json:"unit_price"`
	Amount      float64 `json:"amount"`
	AmountCents int64   `json:"amount_cents"`
}

// Invoice is a tenant's bill for a month. Total is the sum of the lines'
// amounts (TotalCents the same in cents).
type Invoice struct {
	Tenant     string        `json:"tenant"`
	Tier       string        `json:"tier,omitempty"`
	Month      string        `json:"month"`
	Currency   string        `json:"currency"`
	Lines      []InvoiceLine `json:"lines"`
	Total      float64       `json:"total"`
	TotalCents int64         `json:"total_cents"`
}

// Invoice returns the invoice of month ("": the current one) of tenant
// ("": the caller's; another one needs an admin key) (GET /usage/invoice).
func (c *Client) Invoice(ctx context.Context, month, tenant string) (Invoice, error) {
	var inv Invoice
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/usage/invoice", query: usageQuery(month, tenant)}, &inv)
	return inv, err
}

// maxInvoiceCSV bounds an invoice's CSV.
const maxInvoiceCSV = 1 << 20

// InvoiceCSV is Invoice as the node writes it in CSV (Accept: text/csv).
func (c *Client) InvoiceCSV(ctx context.Context, month, tenant string) ([]byte, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/usage/invoice", query: usageQuery(month, tenant),
		header: http.Header{"Accept": {"text/csv"}}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxInvoiceCSV+1))
	if err != nil {
		return nil, fmt.Errorf("pwmesh: GET /usage/invoice: %w", err)
	}
	if len(b) > maxInvoiceCSV {
		return nil, fmt.Errorf("pwmesh: GET /usage/invoice: the CSV exceeds %d bytes", maxInvoiceCSV)
	}
	return b, nil
}

func usageQuery(month, tenant string) url.Values {
	q := url.Values{}
	if month != "" {
		q.Set("month", month)
	}
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	return q
}
