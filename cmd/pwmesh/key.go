package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/web/client"
)

func (a *app) keyCmd() *cobra.Command {
	c := groupCmd("key", "Manage API keys")
	c.AddCommand(a.keyCreateCmd(), a.keyListCmd(), a.keyRmCmd(), a.keyRotateCmd(), a.keyRewrapCmd())
	return c
}

func (a *app) keyListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List API keys: every key with an admin key, your tenant's otherwise",
		Long: "List API keys: their IDs, tenants, tiers, names, creation, last use and expiry.\n" +
			"Secrets are never shown. An admin key lists every key; another key lists its\n" +
			"tenant's. Last use is recorded by each node about once a minute.",
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := a.client().ListKeys(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				if keys == nil {
					keys = []client.KeyInfo{}
				}
				return a.printJSON(keys)
			}
			tw := a.table()
			fmt.Fprintln(tw, "ID\tTENANT\tTIER\tADMIN\tNAME\tCREATED\tLAST USED\tEXPIRES")
			for _, k := range keys {
				admin := "-"
				if k.Admin {
					admin = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Tenant, orDash(k.Tier), admin, orDash(k.Name),
					fmtTime(k.CreatedAt), fmtTimePtr(k.LastUsedAt), fmtTimePtr(k.ExpiresAt))
			}
			return tw.Flush()
		},
	}
}

func (a *app) keyRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID",
		Aliases: []string{"revoke", "delete"},
		Short:   "Revoke an API key (an admin key, or a key of the same tenant)",
		Long: "Revoke an API key by its ID (see pwmesh key list). Within seconds every node\n" +
			"refuses it. The last admin key cannot be revoked.",
		Args: args("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.client().RevokeKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"id": args[0], "revoked": true})
			}
			_, err := fmt.Fprintf(a.stdout, "revoked key %s\n", args[0])
			return err
		},
	}
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
	var tenant, tier, name, expiresIn string
	c := &cobra.Command{
		Use:   "create --tenant T --tier free|paid [--name N] [--expires-in DUR]",
		Short: "Create an API key for a tenant (needs an admin key)",
		Long: "Create an API key for a tenant. The key is printed once, on stdout, and\n" +
			"cannot be shown again: store it now.",
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tier != "free" && tier != "paid" {
				return usagef("--tier %q: want free or paid", tier)
			}
			if expiresIn != "" {
				if d, err := time.ParseDuration(expiresIn); err != nil || d <= 0 {
					return usagef("--expires-in %q: want a duration above 0 such as 720h", expiresIn)
				}
			}
			k, err := a.client().CreateKeyWith(cmd.Context(), client.KeyRequest{Tenant: tenant, Tier: tier, Name: name, ExpiresIn: expiresIn})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(k)
			}
			if _, err := fmt.Fprintln(a.stdout, k.Key); err != nil {
				return err
			}
			expiry := ""
			if k.ExpiresAt != nil {
				expiry = ", valid until " + fmtTime(*k.ExpiresAt)
			}
			fmt.Fprintf(a.stderr, "Created %s, a %s key for tenant %s%s. Store it now: it is not shown again.\n"+
				"Use it with: export %s=<key>\n", orDash(k.ID), k.Tier, k.Tenant, expiry, envToken)
			return nil
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "tenant the key belongs to (required)")
	c.Flags().StringVar(&tier, "tier", "", "free or paid (required)")
	c.Flags().StringVar(&name, "name", "", "a name for humans (optional)")
	c.Flags().StringVar(&expiresIn, "expires-in", "", "validity from now, such as 720h; at most 8760h (default: no expiry)")
	_ = c.MarkFlagRequired("tenant")
	_ = c.MarkFlagRequired("tier")
	return c
}
