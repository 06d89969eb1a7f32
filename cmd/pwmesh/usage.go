package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) usageCmd() *cobra.Command {
	var month string
	c := &cobra.Command{
		Use:   "usage",
		Short: "Show your metered usage, quotas and cost for a month",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if month != "" {
				if _, err := time.Parse("2006-01", month); err != nil {
					return usagef("--month %q: want YYYY-MM", month)
				}
			}
			raw, err := a.client().Usage(cmd.Context(), month)
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
	c.Flags().StringVar(&month, "month", "", "month as YYYY-MM (default: the current one)")
	return c
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
