package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

func (a *app) tenantCmd() *cobra.Command {
	c := groupCmd("tenant", "List tenants and change their tier, pool and quotas (needs an admin key)")
	c.AddCommand(a.tenantListCmd(), a.tenantGetCmd(), a.tenantSetCmd())
	return c
}

func (a *app) tenantListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List tenants with their tier, pool and quotas (needs an admin key)",
		Long: "List every tenant: its tier, GPU pool and effective quotas (\"unlimited\" where\n" +
			"it has none; a * marks a quota an operator set over the tier's default).",
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := a.client().ListTenants(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				if ts == nil {
					ts = []client.Tenant{}
				}
				return a.printJSON(ts)
			}
			tw := a.table()
			fmt.Fprintln(tw, "TENANT\tTIER\tPOOL\tCALLS/DAY\tGPU-MIN/MONTH\tSTORAGE\tQUEUED\tCREATED")
			for _, t := range ts {
				q := func(name string) string { return fmtQuota(t, name, false) }
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Tenant, orDash(t.Tier), fmtPool(t),
					q(scheduler.QuotaAPICalls), q(scheduler.QuotaGPUMinutes), q(scheduler.QuotaStorage), q(scheduler.QuotaQueued),
					fmtTime(t.CreatedAt))
			}
			return tw.Flush()
		},
	}
}

func (a *app) tenantGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get TENANT",
		Short: "Show a tenant's tier, pool and quotas (needs an admin key)",
		Args:  args("TENANT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := a.client().GetTenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printTenant(t)
		},
	}
}

func (a *app) tenantSetCmd() *cobra.Command {
	var tier, pool string
	var poolOnly bool
	var quotas []string
	c := &cobra.Command{
		Use:   "set TENANT [--tier free|paid] [--pool NAME] [--pool-only] [--quota NAME=VALUE ...]",
		Short: "Change a tenant's tier, pool or quotas (needs an admin key)",
		Long: "Change a tenant's tier, its dedicated GPU pool, or its quotas; what is not\n" +
			"given stays as it is.\n\n" +
			"  --pool NAME        run the tenant's jobs on the workers of pool NAME too\n" +
			"                     (--pool shared: no dedicated pool)\n" +
			"  --pool-only        only there (--pool-only=false: the shared pool too)\n" +
			"  --quota NAME=N     override a quota (repeatable); N may be a fraction\n" +
			"  --quota NAME=default  back to the tier's default\n\n" +
			"Quotas: " + strings.Join(scheduler.QuotaNames, ", ") + ".",
		Args: args("TENANT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p client.TenantPatch
			f := cmd.Flags()
			if f.Changed("tier") {
				if tier != scheduler.PriorityFree && tier != scheduler.PriorityPaid {
					return usagef("--tier %q: want free or paid", tier)
				}
				p.Tier = &tier
			}
			if f.Changed("pool") {
				if pool != scheduler.PoolShared && !scheduler.ValidPool(pool) {
					return usagef("--pool %q: use lower-case letters, digits and '-' (or shared for none)", pool)
				}
				p.Pool = &pool
			}
			if f.Changed("pool-only") {
				p.PoolOnly = &poolOnly
			}
			for _, q := range quotas {
				name, val, ok := strings.Cut(q, "=")
				if !ok || !scheduler.ValidQuota(name) {
					return usagef("--quota %q: want NAME=VALUE or NAME=default, NAME one of %s", q, strings.Join(scheduler.QuotaNames, ", "))
				}
				if p.Quotas == nil {
					p.Quotas = map[string]*float64{}
				}
				if _, dup := p.Quotas[name]; dup {
					return usagef("--quota %s is given twice", name)
				}
				if val == "default" {
					p.Quotas[name] = nil
					continue
				}
				v, err := strconv.ParseFloat(val, 64)
				if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					return usagef("--quota %q: want a number of at least 0, or default", q)
				}
				p.Quotas[name] = &v
			}
			if p.Tier == nil && p.Pool == nil && p.PoolOnly == nil && p.Quotas == nil {
				return usagef("%s: nothing to change: give --tier, --pool, --pool-only or --quota", cmd.CommandPath())
			}
			t, err := a.client().SetTenant(cmd.Context(), args[0], p)
			if err != nil {
				return err
			}
			return a.printTenant(t)
		},
	}
	f := c.Flags()
	f.StringVar(&tier, "tier", "", "free or paid")
	f.StringVar(&pool, "pool", "", "the tenant's dedicated GPU pool (shared: none)")
	f.BoolVar(&poolOnly, "pool-only", false, "run the tenant's jobs only in its pool")
	f.StringArrayVar(&quotas, "quota", nil, "NAME=VALUE or NAME=default (repeatable)")
	return c
}

// printTenant shows one tenant, a field a line, or its JSON.
func (a *app) printTenant(t client.Tenant) error {
	if a.json {
		return a.printJSON(t)
	}
	tw := a.table()
	fmt.Fprintf(tw, "tenant\t%s\n", t.Tenant)
	fmt.Fprintf(tw, "tier\t%s\n", orDash(t.Tier))
	fmt.Fprintf(tw, "pool\t%s\n", fmtPool(t))
	fmt.Fprintf(tw, "created\t%s\n", fmtTime(t.CreatedAt))
	for _, name := range scheduler.QuotaNames {
		fmt.Fprintf(tw, "%s\t%s\n", name, fmtQuota(t, name, true))
	}
	return tw.Flush()
}

// fmtPool is the tenant's pool, "(only)" when its jobs are pinned there.
func fmtPool(t client.Tenant) string {
	p := orDash(t.Pool)
	if t.PoolOnly {
		p += " (only)"
	}
	return p
}

// fmtQuota shows a quota: "unlimited", or its value (storage in decimal
// GB in tables, bytes when exact), marked when an operator set it.
func fmtQuota(t client.Tenant, name string, exact bool) string {
	v, ok := t.Quotas[name]
	if !ok || v == nil {
		return "unlimited"
	}
	s := strconv.FormatFloat(*v, 'f', -1, 64)
	if name == scheduler.QuotaStorage && !exact {
		s = strconv.FormatFloat(*v/1e9, 'f', -1, 64) + " GB"
	}
	if _, over := t.Overrides[name]; over {
		if exact {
			return s + " (set by an operator)"
		}
		return s + "*"
	}
	return s
}
