package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/cas/bundle"
)

func (a *app) bundleCmd() *cobra.Command {
	c := groupCmd("bundle", "Work with RunBundle files")
	c.AddCommand(a.bundleVerifyCmd())
	return c
}

func (a *app) bundleVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE",
		Short: "Check every hash of a RunBundle, offline, and print its CID",
		Args:  args("FILE"),
		RunE: func(_ *cobra.Command, args []string) error {
			path := args[0]
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			rep, err := bundle.Verify(bufio.NewReaderSize(f, 1<<20))
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if a.json {
				return a.printJSON(map[string]any{
					"ok": true, "path": path, "cid": rep.Ref.CID.String(), "sha256": rep.Ref.SHA256,
					"size": rep.Ref.Size, "files": rep.Files, "manifest": rep.Manifest,
				})
			}
			_, err = fmt.Fprintf(a.stdout, "ok %s sha256:%s %d files\n", rep.Ref.CID, rep.Ref.SHA256, rep.Files)
			return err
		},
	}
}
