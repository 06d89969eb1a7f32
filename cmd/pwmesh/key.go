package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) keyCmd() *cobra.Command {
	c := groupCmd("key", "Manage API keys (admin)")
	c.AddCommand(a.keyCreateCmd(), a.keyRotateCmd(), a.keyRewrapCmd())
	return c
}

func (a *app) keyRotateCmd() *cobra.Command {
	var tenant string
	c := &cobra.Command{
		Use:   "rotate --tenant T",
		Short: "Give a tenant a new data key for its new datasets (needs an admin key)",
		Long: "Give a tenant a new data key version. Datasets uploaded from now on are\n" +
			"sealed with it; older datasets keep the version they were sealed with.",
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.client().RotateTenantKey(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			_, err = fmt.Fprintf(a.stdout, "tenant %s now seals new datasets with data key version %d\n", r.Tenant, r.KeyVersion)
			return err
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "the tenant (required)")
	_ = c.MarkFlagRequired("tenant")
	return c
}

func (a *app) keyRewrapCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rewrap",
		Short: "Wrap every tenant's data keys with the active master key (needs an admin key)",
		Long: "Step three of a master-key rotation (docs/storage.md): once every node has\n" +
			"the new master key first in its --master-key-file, this wraps every data key\n" +
			"with it. Afterwards the old master key can be removed from the files.",
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.client().RewrapKeys(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			_, err = fmt.Fprintf(a.stdout, "data keys of %d tenant(s) are now wrapped by master key %s\n", r.Tenants, r.Master)
			return err
		},
	}
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
