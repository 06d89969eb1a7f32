package web

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math/big"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// The price list of CONTRACT.md §3 and the free tier's allowances, which
// are not billed. Prices are exact fractions of a dollar; storage is
// counted in decimal gigabytes (1 GB = 10^9 bytes).
var (
	priceGPUMinute = big.NewRat(1, 2)    // $0.50 a GPU-minute
	priceGBMonth   = big.NewRat(1, 50)   // $0.02 a GB-month
	priceAPICall   = big.NewRat(1, 1000) // $0.001 a call
)

const (
	bytesPerGB = 1_000_000_000

	// The free tier's allowances: a month's GPU-minutes, the storage of a
	// month and the calls of a day. Paid tiers have none. They are the
	// price list's, not the tenant's quotas: an operator who raises a free
	// tenant's quota does not raise what is free.
	freeGPUMinutes     = 10
	freeStorageBytes   = 1 * bytesPerGB
	freeAPICallsPerDay = 100

	currency = "USD"
)

// Invoice items.
const (
	itemGPUMinutes = "gpu_minutes"
	itemStorage    = "storage_gb_months"
	itemAPICalls   = "api_calls"
)

// invoiceLine is one priced resource. Quantity, Free and Billable are in
// the item's unit; Amount is in dollars, to the cent, and AmountCents the
// same in whole cents.
type invoiceLine struct {
	Item        string  `json:"item"`
	Quantity    float64 `json:"quantity"`
	Free        float64 `json:"free"`
	Billable    float64 `json:"billable"`
	UnitPrice   float64 `json:"unit_price"`
	Amount      float64 `json:"amount"`
	AmountCents int64   `json:"amount_cents"`
}

// invoice is the answer of GET /usage/invoice. Total is the sum of the
// lines' amounts, exactly: every amount is a whole number of cents.
type invoice struct {
	Tenant     string        `json:"tenant"`
	Tier       string        `json:"tier"`
	Month      string        `json:"month"`
	Currency   string        `json:"currency"`
	Lines      []invoiceLine `json:"lines"`
	Total      float64       `json:"total"`
	TotalCents int64         `json:"total_cents"`
}

// bill prices a tenant's month of usage at tier's prices:
//   - gpu_minutes: GPUs × run time of every attempt in the month (a
//     running one up to now), to the second; the free tier's 10 minutes
//     are free.
//   - storage_gb_months: what the tenant stores when the bill is made,
//     as a whole month (the ledger keeps no history of storage); the free
//     tier's 1 GB is free.
//   - api_calls: the month's metered calls; the free tier's allowance is
//     100 a day, which for a month is 100 × its days (exact while the
//     tenant's daily quota is the free tier's 100: every call it made is
//     within the allowance).
//
// Each amount is rounded to the cent, half up, from the exact product of
// quantity and price; the total is the sum of the rounded amounts.
func bill(u scheduler.TenantUsage, tier string) invoice {
	free := tier == scheduler.PriorityFree
	allowance := func(v *big.Rat) *big.Rat {
		if !free {
			return new(big.Rat)
		}
		return v
	}
	month, _ := time.Parse(monthLayout, u.Month)
	days := int64(month.AddDate(0, 1, 0).Sub(month) / (24 * time.Hour))
	gpuSeconds := int64(u.GPUTime.Round(time.Second) / time.Second)

	inv := invoice{Tenant: u.Tenant, Tier: tier, Month: u.Month, Currency: currency}
	for _, l := range []struct {
		item            string
		quantity, limit *big.Rat
		price           *big.Rat
	}{
		{itemGPUMinutes, big.NewRat(gpuSeconds, 60), allowance(big.NewRat(freeGPUMinutes, 1)), priceGPUMinute},
		{itemStorage, big.NewRat(u.StorageBytes, bytesPerGB), allowance(big.NewRat(freeStorageBytes, bytesPerGB)), priceGBMonth},
		{itemAPICalls, big.NewRat(u.APICalls, 1), allowance(big.NewRat(freeAPICallsPerDay*days, 1)), priceAPICall},
	} {
		q := l.quantity
		if q.Sign() < 0 {
			q = new(big.Rat)
		}
		f := l.limit
		if q.Cmp(f) < 0 {
			f = q
		}
		b := new(big.Rat).Sub(q, f)
		cents := centsHalfUp(new(big.Rat).Mul(b, l.price))
		inv.Lines = append(inv.Lines, invoiceLine{
			Item: l.item, Quantity: ratFloat(q), Free: ratFloat(f), Billable: ratFloat(b),
			UnitPrice: ratFloat(l.price), Amount: centsFloat(cents), AmountCents: cents,
		})
		inv.TotalCents += cents
	}
	inv.Total = centsFloat(inv.TotalCents)
	return inv
}

// centsHalfUp rounds a non-negative amount in dollars to whole cents, half
// up.
func centsHalfUp(dollars *big.Rat) int64 {
	c := new(big.Rat).Mul(dollars, big.NewRat(100, 1))
	n := new(big.Int).Mul(c.Num(), big.NewInt(2))
	n.Add(n, c.Denom())
	d := new(big.Int).Mul(c.Denom(), big.NewInt(2))
	return n.Quo(n, d).Int64()
}

// centsFloat is an amount of cents in dollars: the float64 nearest to the
// decimal, which JSON writes as that decimal.
func centsFloat(c int64) float64 {
	v, _ := strconv.ParseFloat(centsString(c), 64)
	return v
}

// centsString writes cents as dollars with two decimals ("7.75").
func centsString(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// ratFloat is r rounded to 9 decimals (a byte of a GB), for display.
func ratFloat(r *big.Rat) float64 {
	v, _ := strconv.ParseFloat(r.FloatString(9), 64)
	return v
}

// getInvoice handles GET /usage/invoice[?month=YYYY-MM][&tenant=T]: the
// month's bill of the caller's tenant (another tenant's for an admin), as
// JSON or, with Accept: text/csv, as CSV.
func (s *Server) getInvoice(_ http.ResponseWriter, r *http.Request, c *caller) (any, error) {
	month, err := s.usageMonth(r)
	if err != nil {
		return nil, err
	}
	tenant, tier, err := s.usageTenant(r, c)
	if err != nil {
		return nil, err
	}
	inv := bill(s.deps.State.Usage(tenant, month, s.now()), tier)
	if !wantsCSV(r) {
		return inv, nil
	}
	b, err := invoiceCSV(inv)
	if err != nil {
		return nil, err
	}
	return rawBody(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/csv")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment",
			map[string]string{"filename": "invoice-" + inv.Tenant + "-" + inv.Month + ".csv"}))
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
	}), nil
}

// wantsCSV reports whether the request's Accept header names text/csv.
func wantsCSV(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/csv" {
				return true
			}
		}
	}
	return false
}

// invoiceCSV writes an invoice as CSV: a header row, a row per line and a
// total row, amounts in dollars with two decimals.
func invoiceCSV(inv invoice) ([]byte, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	rows := [][]string{{"item", "quantity", "free", "billable", "unit_price", "amount"}}
	for _, l := range inv.Lines {
		rows = append(rows, []string{l.Item, num(l.Quantity), num(l.Free), num(l.Billable), num(l.UnitPrice), centsString(l.AmountCents)})
	}
	rows = append(rows, []string{"total", "", "", "", "", centsString(inv.TotalCents)})
	if err := w.WriteAll(rows); err != nil {
		return nil, fmt.Errorf("web: invoice csv: %w", err)
	}
	return buf.Bytes(), nil
}
