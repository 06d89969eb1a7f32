package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) keyCmd() *cobra.Command {
	c := groupCmd("key", "Manage API keys (admin)")
	c.AddCommand(a.keyCreateCmd())
	return c
}

func (a *app) keyCreateCmd() *cobra.Command {
	var tenant, tier string
	c := &cobra.Command{
		Use:   "create --tenant T --tier free|paid",
		Short: "Create an API key for a tenant (needs an admin key)",
		Long: "Create an API key for a tenant. The key is printed once, on stdout, and\n" +
			"cannot be shown again: store it now.",
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tier != "free" && tier != "paid" {
				return usagef("--tier %q: want free or paid", tier)
			}
			k, err := a.client().CreateKey(cmd.Context(), tenant, tier)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(k)
			}
			if _, err := fmt.Fprintln(a.stdout, k.Key); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Created a %s key for tenant %s. Store it now: it is not shown again.\n"+
				"Use it with: export %s=<key>\n", k.Tier, k.Tenant, envToken)
			return nil
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "tenant the key belongs to (required)")
	c.Flags().StringVar(&tier, "tier", "", "free or paid (required)")
	_ = c.MarkFlagRequired("tenant")
	_ = c.MarkFlagRequired("tier")
	return c
}
