package web_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math/big"
	"mime"
	"net/http"
	"reflect"
	"testing"
)

type invoiceJSON struct {
	Tenant   string `json:"tenant"`
	Month    string `json:"month"`
	Currency string `json:"currency"`
	Lines    []struct {
		Item        string      `json:"item"`
		Quantity    json.Number `json:"quantity"`
		Free        json.Number `json:"free"`
		Billable    json.Number `json:"billable"`
		UnitPrice   json.Number `json:"unit_price"`
		Amount      json.Number `json:"amount"`
		AmountCents int64       `json:"amount_cents"`
	} `json:"lines"`
	Total      json.Number `json:"total"`
	TotalCents int64       `json:"total_cents"`
}

func (e *env) invoice(key, query string) invoiceJSON {
	e.t.Helper()
	r := e.do("GET", "/usage/invoice"+query, key, nil)
	wantStatus(e.t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("Content-Type %q", ct)
	}
	var inv invoiceJSON
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(&inv); err != nil {
		e.t.Fatalf("decode %s: %v", r.body, err)
	}
	return inv
}

// line is an invoice line as decimal strings.
type line struct{ item, quantity, free, billable, price, amount string }

// check compares inv's lines with want and checks that its total is the
// sum of its lines, as decimals and as cents.
func (inv invoiceJSON) check(t *testing.T, want []line, total string) {
	t.Helper()
	var got []line
	sum, cents := new(big.Rat), int64(0)
	for _, l := range inv.Lines {
		got = append(got, line{l.Item, l.Quantity.String(), l.Free.String(), l.Billable.String(), l.UnitPrice.String(), l.Amount.String()})
		a, ok := new(big.Rat).SetString(l.Amount.String())
		if !ok {
			t.Fatalf("amount %q", l.Amount)
		}
		sum.Add(sum, a)
		cents += l.AmountCents
		if c := new(big.Rat).Mul(a, big.NewRat(100, 1)); !c.IsInt() || c.Num().Int64() != l.AmountCents {
			t.Errorf("%s: amount %s is not %d cents", l.Item, l.Amount, l.AmountCents)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("lines\n got %v\nwant %v", got, want)
	}
	tot, ok := new(big.Rat).SetString(inv.Total.String())
	if !ok || tot.Cmp(sum) != 0 || inv.Total.String() != total || inv.TotalCents != cents {
		t.Fatalf("total %s (%d cents), want %s = the sum of the lines %s (%d cents)", inv.Total, inv.TotalCents, total, sum.FloatString(2), cents)
	}
	if inv.Currency != "USD" {
		t.Fatalf("currency %q", inv.Currency)
	}
}

// The invoice against the cost model: GPU $0.50 a GPU-minute, storage
// $0.02 a GB-month, calls $0.001; the free tier's 10 GPU-minutes, 1 GB
// and 100 calls a day are free; amounts to the cent, half up, from the
// exact product; the total is the sum of the lines.
func TestInvoice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.patchTenant("acme", map[string]any{"quotas": map[string]any{"gpu_minutes_per_month": 100, "storage_bytes": 10e9}})
	gpu := map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": 1}}

	// Free acme: 25.5 GPU-minutes (15.5 billable: $7.75), 2.345678901 GB
	// (1.345678901 billable: $0.0269... → $0.03), 150 calls asked, 100
	// granted by the daily quota, all within the allowance.
	a := e.submit(e.acme, gpu)
	e.finishJob(a.ID, at(t, "2026-03-10T10:00:00Z"), at(t, "2026-03-10T10:25:30Z"), []int{0}, nil)
	e.storeBytes("acme", "ds_big", 2_345_678_901)
	if got := e.meter(1, testNow, map[string]int64{"acme": 150}); got.Allowed["acme"] != 100 {
		t.Fatalf("metered %+v", got)
	}
	e.invoice(e.acme, "").check(t, []line{
		{"gpu_minutes", "25.5", "10", "15.5", "0.5", "7.75"},
		{"storage_gb_months", "2.345678901", "1", "1.345678901", "0.02", "0.03"},
		{"api_calls", "100", "100", "0", "0.001", "0"},
	}, "7.78")

	// Paid globex: no allowance. 69 s on 1 GPU is $0.575 and 145 calls
	// $0.145: exactly half a cent each, rounded up (float64 arithmetic
	// gets 0.57 and 0.14); 5 GB is $0.10.
	g := e.submit(e.globex, gpu)
	e.finishJob(g.ID, at(t, "2026-03-11T10:00:00Z"), at(t, "2026-03-11T10:01:09Z"), []int{0}, nil)
	e.storeBytes("globex", "ds_five", 5_000_000_000)
	e.meter(2, testNow, map[string]int64{"globex": 145})
	inv := e.invoice(e.globex, "?month=2026-03")
	inv.check(t, []line{
		{"gpu_minutes", "1.15", "0", "1.15", "0.5", "0.58"},
		{"storage_gb_months", "5", "0", "5", "0.02", "0.1"},
		{"api_calls", "145", "0", "145", "0.001", "0.15"},
	}, "0.83")
	if inv.Tenant != "globex" || inv.Month != "2026-03" {
		t.Fatalf("invoice of %s %s", inv.Tenant, inv.Month)
	}
	// An admin reads it too; /usage agrees with it.
	e.invoice(e.admin, "?tenant=globex").check(t, []line{
		{"gpu_minutes", "1.15", "0", "1.15", "0.5", "0.58"},
		{"storage_gb_months", "5", "0", "5", "0.02", "0.1"},
		{"api_calls", "145", "0", "145", "0.001", "0.15"},
	}, "0.83")
	if u := e.usage(e.globex, ""); u.Cost.GPU != 0.58 || u.Cost.Storage != 0.1 || u.Cost.API != 0.15 || u.Cost.Total != 0.83 {
		t.Fatalf("usage cost %+v", u.Cost)
	}

	// February: nothing used; storage is what is stored now.
	e.invoice(e.acme, "?month=2026-02").check(t, []line{
		{"gpu_minutes", "0", "0", "0", "0.5", "0"},
		{"storage_gb_months", "2.345678901", "1", "1.345678901", "0.02", "0.03"},
		{"api_calls", "0", "0", "0", "0.001", "0"},
	}, "0.03")
	for _, bad := range []string{"2026-13", "03-2026", "x"} {
		wantError(t, e.do("GET", "/usage/invoice?month="+bad, e.acme, nil), http.StatusBadRequest, "invalid_month")
	}
}

func TestInvoiceCSV(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.submit(e.globex, map[string]any{"type": "generate_dataset", "resources": map[string]any{"gpus": 1}})
	e.finishJob(g.ID, at(t, "2026-03-11T10:00:00Z"), at(t, "2026-03-11T10:00:12Z"), []int{0}, nil)
	e.meter(1, testNow, map[string]int64{"globex": 200})
	for _, accept := range []string{"text/csv", "application/json;q=0.5, text/csv", "text/csv; charset=utf-8"} {
		r := e.do("GET", "/usage/invoice?month=2026-03", e.globex, nil, "Accept", accept)
		wantStatus(t, r, http.StatusOK)
		if ct := r.header.Get("Content-Type"); ct != "text/csv" {
			t.Fatalf("Accept %q: Content-Type %q", accept, ct)
		}
		disp, params, err := mime.ParseMediaType(r.header.Get("Content-Disposition"))
		if err != nil || disp != "attachment" || params["filename"] != "invoice-globex-2026-03.csv" {
			t.Fatalf("Content-Disposition %q", r.header.Get("Content-Disposition"))
		}
		rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		// 12 GPU-seconds: $0.10; 200 calls: $0.20; the total is 0.30, not
		// float64's 0.30000000000000004.
		want := [][]string{
			{"item", "quantity", "free", "billable", "unit_price", "amount"},
			{"gpu_minutes", "0.2", "0", "0.2", "0.5", "0.10"},
			{"storage_gb_months", "0", "0", "0", "0.02", "0.00"},
			{"api_calls", "200", "0", "200", "0.001", "0.20"},
			{"total", "", "", "", "", "0.30"},
		}
		if !reflect.DeepEqual(rows, want) {
			t.Fatalf("CSV\n got %q\nwant %q", rows, want)
		}
	}
	// Without Accept: text/csv, JSON, whose total is 0.3 too.
	e.invoice(e.globex, "?month=2026-03").check(t, []line{
		{"gpu_minutes", "0.2", "0", "0.2", "0.5", "0.1"},
		{"storage_gb_months", "0", "0", "0", "0.02", "0"},
		{"api_calls", "200", "0", "200", "0.001", "0.2"},
	}, "0.3")
}
