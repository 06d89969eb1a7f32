package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/mesh"
)

// newKeygenCmd returns `pwmesh keygen`: a new cluster key for --cluster-key.
func newKeygenCmd() *cobra.Command {
	var out, master string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make a cluster key (a private mesh admits only nodes started with it)",
		Long: `Make a new cluster key. Give every node the same file with --cluster-key:
the libp2p network and gossip are then private to nodes that hold it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key := mesh.GenerateClusterKey()
			what, flag := "cluster key", "--cluster-key"
			if master != "" {
				var b [32]byte
				if _, err := rand.Read(b[:]); err != nil {
					return err
				}
				key = []byte(master + " " + hex.EncodeToString(b[:]) + "\n")
				if _, err := seal.ParseKeyringFile(key); err != nil {
					return fmt.Errorf("--master %q: %w", master, err)
				}
				what, flag = "master key", "--master-key-file"
			}
			if out == "" {
				_, err := cmd.OutOrStdout().Write(key)
				return err
			}
			f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("write the key: %w (it is never overwritten)", err)
			}
			if _, err := f.Write(key); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s written to %s (mode 0600); start every node with %s %s\n", what, out, flag, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&master, "master", "", "make a master key with this ID instead (an \"ID HEX\" line for --master-key-file)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the key to this new file (mode 0600) instead of standard output")
	return cmd
}
