package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/node/worker"
)

// newWorkloadCmd returns the hidden `pwmesh workload run`, which the
// process executor (and a container) runs on a job directory.
func newWorkloadCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "workload", Short: "Run the built-in workload (used by executors)", Hidden: true}
	var root string
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the job in --root (job.json, input/, output/, export/)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			code := worker.RunChild(ctx, root, cmd.ErrOrStderr())
			if code != 0 {
				os.Exit(code)
			}
			return nil
		},
	}
	run.Flags().StringVar(&root, "root", "/pwm", "job directory")
	cmd.AddCommand(run)
	return cmd
}
