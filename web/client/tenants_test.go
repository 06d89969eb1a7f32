package client_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/pwmesh/pwmesh/web/client"
)

func TestTenants(t *testing.T) {
	t.Parallel()
	hundred := 100.0
	acme := client.Tenant{Tenant: "acme", Tier: "free", Pool: "shared",
		Quotas:    map[string]*float64{"api_calls_per_day": &hundred, "gpu_minutes_per_month": nil},
		Overrides: map[string]float64{"api_calls_per_day": 100}}
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /tenants": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"tenants": []client.Tenant{acme}})
		},
		"GET /tenants/{tenant}": func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("tenant") != "acme" {
				writeError(w, http.StatusNotFound, "not_found", "tenant not found")
				return
			}
			writeJSON(w, http.StatusOK, acme)
		},
		"PATCH /tenants/{tenant}": func(w http.ResponseWriter, r *http.Request) {
			var body map[string]json.RawMessage
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Header.Get("Content-Type") != "application/json" {
				writeError(w, 400, "bad_request", "bad body")
				return
			}
			// Absent fields are not sent; a quota back to its default is null.
			if len(body) != 2 || string(body["tier"]) != `"paid"` ||
				!bytes.Equal(body["quotas"], []byte(`{"gpu_minutes_per_month":null,"storage_bytes":5000000}`)) {
				writeError(w, 400, "bad_request", "unexpected body")
				return
			}
			paid := acme
			paid.Tier = "paid"
			writeJSON(w, http.StatusOK, paid)
		},
	})
	l, err := c.ListTenants(t.Context())
	if err != nil || len(l) != 1 || l[0].Tenant != "acme" || *l[0].Quotas["api_calls_per_day"] != 100 || l[0].Quotas["gpu_minutes_per_month"] != nil {
		t.Fatalf("ListTenants = %+v, %v", l, err)
	}
	got, err := c.GetTenant(t.Context(), "acme")
	if err != nil || got.Overrides["api_calls_per_day"] != 100 {
		t.Fatalf("GetTenant = %+v, %v", got, err)
	}
	if _, err := c.GetTenant(t.Context(), "nobody"); err == nil {
		t.Fatal("GetTenant of an unknown tenant succeeded")
	}
	tier, five := "paid", 5e6
	got, err = c.SetTenant(t.Context(), "acme", client.TenantPatch{Tier: &tier,
		Quotas: map[string]*float64{"gpu_minutes_per_month": nil, "storage_bytes": &five}})
	if err != nil || got.Tier != "paid" {
		t.Fatalf("SetTenant = %+v, %v", got, err)
	}
}

func TestInvoice(t *testing.T) {
	t.Parallel()
	c := newServer(t, map[string]http.HandlerFunc{
		"GET /usage/invoice": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("month") != "2026-03" || r.URL.Query().Get("tenant") != "globex" {
				writeError(w, 400, "bad_request", "bad query "+r.URL.RawQuery)
				return
			}
			if r.Header.Get("Accept") == "text/csv" {
				w.Header().Set("Content-Type", "text/csv")
				_, _ = w.Write([]byte("item,amount\ntotal,0.30\n"))
				return
			}
			writeJSON(w, http.StatusOK, client.Invoice{Tenant: "globex", Month: "2026-03", Currency: "USD",
				Lines: []client.InvoiceLine{{Item: "api_calls", Quantity: 300, Billable: 300, UnitPrice: 0.001, Amount: 0.3, AmountCents: 30}},
				Total: 0.3, TotalCents: 30})
		},
		"GET /admin/usage": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"tenants": []map[string]any{{"tenant": "acme", "month": r.URL.Query().Get("month")}}})
		},
	})
	inv, err := c.Invoice(t.Context(), "2026-03", "globex")
	if err != nil || inv.TotalCents != 30 || len(inv.Lines) != 1 || inv.Lines[0].Item != "api_calls" {
		t.Fatalf("Invoice = %+v, %v", inv, err)
	}
	b, err := c.InvoiceCSV(t.Context(), "2026-03", "globex")
	if err != nil || string(b) != "item,amount\ntotal,0.30\n" {
		t.Fatalf("InvoiceCSV = %q, %v", b, err)
	}
	all, err := c.AdminUsage(t.Context(), "2026-02")
	if err != nil || len(all) != 1 || !bytes.Contains(all[0], []byte(`"month":"2026-02"`)) {
		t.Fatalf("AdminUsage = %s, %v", all, err)
	}
}
