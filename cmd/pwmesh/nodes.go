package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/web/client"
)

func (a *app) nodesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes of the mesh",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, err := a.client().Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				if nodes == nil {
					nodes = []client.Node{}
				}
				return a.printJSON(nodes)
			}
			tw := a.table()
			fmt.Fprintln(tw, "ID\tREGION\tROLE\tSTATE\tGPUS")
			for _, n := range nodes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.ID, orDash(n.Region), orDash(n.Role), orDash(n.State), gpuSummary(n.GPUs))
			}
			return tw.Flush()
		},
	}
}

// nodeCmd is `pwmesh node drain|undrain ID`.
func (a *app) nodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Act on one node (admin)"}
	cmd.AddCommand(
		a.nodeActionCmd("drain ID", "Stop giving a node new jobs; what it runs finishes (admin)", (*client.Client).DrainNode),
		a.nodeActionCmd("undrain ID", "Give a drained node jobs again (admin)", (*client.Client).UndrainNode))
	return cmd
}

// nodeActionCmd runs act on the node named by its argument and prints the
// node's state after it.
func (a *app) nodeActionCmd(use, short string, act func(*client.Client, context.Context, string) (client.Node, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			n, err := act(a.client(), cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(n)
			}
			_, err = fmt.Fprintf(a.stdout, "node %s is %s\n", n.ID, n.State)
			return err
		},
	}
}

// gpuSummary counts GPUs per model in order of first appearance:
// "2xA100-80GB, 1xT4"; "-" for none.
func gpuSummary(gpus []client.GPU) string {
	var models []string
	count := map[string]int{}
	for _, g := range gpus {
		m := g.Model
		if m == "" {
			m = "GPU"
		}
		if g.Problem != "" {
			m += " (out of service)"
		}
		if count[m] == 0 {
			models = append(models, m)
		}
		count[m]++
	}
	parts := make([]string, len(models))
	for i, m := range models {
		parts[i] = fmt.Sprintf("%dx%s", count[m], m)
	}
	return orDash(strings.Join(parts, ", "))
}
