package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/node/tlsutil"
)

// newTLSCmd returns `pwmesh tls`: a private CA and node certificates for
// --tls-cert and --tls-key, as `consul tls` makes them.
func newTLSCmd() *cobra.Command {
	cmd := groupCmd("tls", "Make a CA and node certificates for the API's HTTPS")
	ca := groupCmd("ca", "Make the CA that signs node certificates")
	ca.AddCommand(newTLSCACreateCmd())
	cert := groupCmd("cert", "Make node certificates")
	cert.AddCommand(newTLSCertCreateCmd())
	cmd.AddCommand(ca, cert)
	return cmd
}

func newTLSCACreateCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make a CA: " + tlsutil.CAFile + " and " + tlsutil.CAKeyFile,
		Long: `Make a private CA (ECDSA P-256, valid 5 years) in --dir:
` + tlsutil.CAFile + `      the CA certificate: give it to clients (PWMESH_CACERT)
` + tlsutil.CAKeyFile + `  its key (mode 0600): keep it off the nodes; it signs
                             node certificates (pwmesh tls cert create)
Existing files are never overwritten.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPath, keyPath := filepath.Join(dir, tlsutil.CAFile), filepath.Join(dir, tlsutil.CAKeyFile)
			p, err := tlsutil.NewCA(time.Now())
			if err != nil {
				return err
			}
			if err := tlsutil.WriteFiles(p, certPath, keyPath); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "==> CA certificate written to %s\n==> CA key written to %s (mode 0600; keep it safe)\n", certPath, keyPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "folder to write the files in")
	return cmd
}

// certName is a file-name-safe certificate name.
var certName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func newTLSCertCreateCmd() *cobra.Command {
	var (
		caFile, caKeyFile, name, dir string
		ips, dnsNames                []string
		days                         int
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make a node certificate signed by the CA: <name>.pem and <name>-key.pem",
		Long: `Make a certificate for a node's API (ECDSA P-256, for server and client
authentication), signed by the CA of 'pwmesh tls ca create', and write
<name>.pem and <name>-key.pem (mode 0600) in --dir. Start the node with
--tls-cert <name>.pem --tls-key <name>-key.pem.

The certificate names exactly the addresses given with --ip and --dns (at
least one): clients check that the host in PWMESH_ADDR is among them.
Nothing is added implicitly; to reach the node on this machine too, add
--ip 127.0.0.1 --dns localhost. Existing files are never overwritten.

  pwmesh tls cert create --name node1 --ip 10.0.0.1 --dns node1.example.com`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !certName.MatchString(name) {
				return usagef("--name %q: want letters, digits, '.', '_' or '-' (it names the files)", name)
			}
			var parsed []net.IP
			for _, s := range ips {
				ip := net.ParseIP(strings.TrimSpace(s))
				if ip == nil {
					return usagef("--ip %q: not an IP address", s)
				}
				parsed = append(parsed, ip)
			}
			for _, d := range dnsNames {
				if d == "" || strings.ContainsAny(d, " /:") {
					return usagef("--dns %q: not a DNS name", d)
				}
			}
			if len(parsed) == 0 && len(dnsNames) == 0 {
				return usagef("give the addresses clients reach the node at: --ip IP and/or --dns NAME (repeatable)")
			}
			if days < 1 {
				return usagef("--days %d: want at least 1", days)
			}
			var ca tlsutil.PEM
			var err error
			if ca.Cert, err = os.ReadFile(caFile); err != nil {
				return fmt.Errorf("--ca: %w (make a CA with `pwmesh tls ca create`)", err)
			}
			if ca.Key, err = os.ReadFile(caKeyFile); err != nil {
				return fmt.Errorf("--ca-key: %w", err)
			}
			p, err := tlsutil.NewCert(ca, tlsutil.CertRequest{Name: name, IPs: parsed, DNS: dnsNames, Days: days, Now: time.Now()})
			if err != nil {
				return err
			}
			certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
			if err := tlsutil.WriteFiles(p, certPath, keyPath); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "==> certificate written to %s\n==> key written to %s (mode 0600)\n", certPath, keyPath)
			fmt.Fprintf(cmd.OutOrStdout(), "start the node with --tls-cert %s --tls-key %s\n", certPath, keyPath)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&caFile, "ca", tlsutil.CAFile, "the CA certificate")
	fl.StringVar(&caKeyFile, "ca-key", tlsutil.CAKeyFile, "the CA key")
	fl.StringVar(&name, "name", "", "the node's name: the certificate's common name and file names (required)")
	fl.StringSliceVar(&ips, "ip", nil, "an IP address the node is reached at (repeatable)")
	fl.StringSliceVar(&dnsNames, "dns", nil, "a DNS name the node is reached at (repeatable)")
	fl.IntVar(&days, "days", 365, "validity in days")
	fl.StringVar(&dir, "dir", ".", "folder to write the files in")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}
