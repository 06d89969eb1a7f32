package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) usageCmd() *cobra.Command {
	var month, tenant string
	var invoice, csv bool
	c := &cobra.Command{
		Use:   "usage [--month YYYY-MM] [--invoice] [--csv]",
		Short: "Show your metered usage, quotas and cost for a month, or its invoice",
		Long: "Show the tenant's usage of a month (GPU-minutes, storage, API calls), its\n" +
			"quotas and what it costs. --invoice shows the month's invoice instead: a line\n" +
			"per priced resource with the free allowance subtracted and the total;\n" +
			"--csv prints it as CSV (for a spreadsheet), --json as the API's JSON.\n" +
			"An admin key may read another tenant's with --tenant.",
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if month != "" {
				if m, err := time.Parse("2006-01", month); err != nil || m.Format("2006-01") != month {
					return usagef("--month %q: want YYYY-MM", month)
				}
			}
			if csv && a.json {
				return usagef("--csv and --json: choose one")
			}
			if invoice || csv {
				return a.printInvoice(cmd, month, tenant, csv)
			}
			raw, err := a.client().UsageOf(cmd.Context(), month, tenant)
			if err != nil {
				return err
			}
			if a.json {
				var buf bytes.Buffer
				if err := json.Indent(&buf, raw, "", "  "); err != nil {
					return fmt.Errorf("usage: %w", err)
				}
				buf.WriteByte('\n')
				_, err := a.stdout.Write(buf.Bytes())
				return err
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				return fmt.Errorf("usage: decode answer: %w", err)
			}
			tw := a.table()
			flatten(v, "", func(k, val string) { fmt.Fprintf(tw, "%s\t%s\n", k, val) })
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.StringVar(&month, "month", "", "month as YYYY-MM (default: the current one)")
	f.BoolVar(&invoice, "invoice", false, "show the month's invoice")
	f.BoolVar(&csv, "csv", false, "print the invoice as CSV (implies --invoice)")
	f.StringVar(&tenant, "tenant", "", "another tenant's (needs an admin key)")
	return c
}

// printInvoice prints a month's invoice as a table, CSV or JSON.
func (a *app) printInvoice(cmd *cobra.Command, month, tenant string, csv bool) error {
	if csv {
		b, err := a.client().InvoiceCSV(cmd.Context(), month, tenant)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	inv, err := a.client().Invoice(cmd.Context(), month, tenant)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(inv)
	}
	fmt.Fprintf(a.stdout, "Invoice of %s for %s (%s)\n", inv.Tenant, inv.Month, orDash(inv.Currency))
	tw := a.table()
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	fmt.Fprintln(tw, "ITEM\tQUANTITY\tFREE\tBILLABLE\tUNIT PRICE\tAMOUNT")
	for _, l := range inv.Lines {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\n", l.Item, num(l.Quantity), num(l.Free), num(l.Billable), num(l.UnitPrice), l.Amount)
	}
	fmt.Fprintf(tw, "TOTAL\t\t\t\t\t%.2f\n", inv.Total)
	return tw.Flush()
}

// flatten calls emit for every leaf of a decoded JSON value, with dotted
// keys in sorted order ("quota.gpu_hours", "jobs[0]").
func flatten(v any, prefix string, emit func(key, val string)) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 && prefix != "" {
			emit(prefix, "{}")
		}
		for _, k := range slices.Sorted(maps.Keys(t)) {
			flatten(t[k], join(k), emit)
		}
	case []any:
		if len(t) == 0 {
			emit(prefix, "[]")
		}
		for i, e := range t {
			flatten(e, fmt.Sprintf("%s[%d]", prefix, i), emit)
		}
	case nil:
		emit(prefix, "-")
	default:
		emit(prefix, fmt.Sprint(t))
	}
}
