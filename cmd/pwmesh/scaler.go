package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/web/client"
)

// scalerCmd is `pwmesh scaler`: what the leader's autoscaler does and why.
func (a *app) scalerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "scaler",
		Short: "Show the autoscaler: bounds, current and desired workers, the reason and the last action (admin)",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := a.client().Scaler(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(s)
			}
			tw := a.table()
			fmt.Fprintf(tw, "mode\t%s\n", s.Mode)
			if s.Mode != "none" {
				fmt.Fprintf(tw, "workers\t%d current, %d desired, %d starting (bounds %d..%d)\n", s.Current, s.Desired, s.Starting, s.Min, s.Max)
			}
			fmt.Fprintf(tw, "reason\t%s\n", orDash(s.Reason))
			if s.Pending != nil {
				fmt.Fprintf(tw, "under way\t%s\n", actionWords(*s.Pending))
			}
			if s.LastAction != nil {
				fmt.Fprintf(tw, "last action\t%s\n", actionWords(*s.LastAction))
			}
			if s.NextTry != nil {
				fmt.Fprintf(tw, "next try\t%s\n", s.NextTry.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

func actionWords(x client.ScalingAction) string {
	var parts []string
	if x.Add > 0 {
		p := fmt.Sprintf("add %d", x.Add)
		if x.Pool != "" {
			p += " in pool " + x.Pool
		}
		if x.GPUClass != "" {
			p += " of class " + x.GPUClass
		}
		parts = append(parts, p)
	}
	if len(x.Remove) > 0 {
		parts = append(parts, "remove "+strings.Join(x.Remove, ", "))
	}
	s := strings.Join(parts, ", ") + " at " + x.At.Format(time.RFC3339)
	switch {
	case !x.Done:
		s += ": running"
	case x.OK:
		s += ": ok"
	default:
		s += ": failed: " + x.Error
	}
	return s
}
