// Command pwmesh is the one pwmesh binary: `pwmesh agent` starts a node, and
// the other subcommands (job, dataset, nodes, usage, key, tenant, bundle,
// version) are the client CLI of CONTRACT.md §5, talking to the node at
// $PWMESH_ADDR with the API key in $PWMESH_TOKEN.
//
// Every client command prints a human table or text by default and the API's
// JSON with --json. Errors go to stderr as "pwmesh: <message>"; a failure
// exits 1, a usage error 2.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/node/tlsutil"
	"github.com/pwmesh/pwmesh/web/client"
)

const (
	envAddr     = "PWMESH_ADDR"
	envToken    = "PWMESH_TOKEN"
	envCACert   = "PWMESH_CACERT"
	defaultAddr = "http://127.0.0.1:8080"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// app is one invocation of the CLI: its streams, environment and the
// persistent flags. Nothing in it outlives run.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            func(string) string

	addr, token string // flags; empty: from the environment
	cacert      string // flag; empty: from the environment
	json        bool
	progress    progressMode
	// loggedIn: the key in use is the one `pwmesh login` kept.
	loggedIn bool
}

// run executes the command line args and returns the exit status: 0 on
// success, 1 on failure, 2 on a usage error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	if env == nil {
		env = func(string) string { return "" }
	}
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, env: env, progress: progressAuto}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var exit *exitError
	if errors.As(err, &exit) {
		return exit.code
	}
	var rerr *runError
	if errors.As(err, &rerr) {
		a.printError(rerr.err)
		return 1
	}
	// Anything else comes from cobra (flags, arguments, unknown commands)
	// or is a usageError of ours.
	fmt.Fprintf(stderr, "pwmesh: %v\n", err)
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return 2
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "pwmesh",
		Short: "Run computational-imaging jobs on a mesh of GPU nodes",
		Long: "pwmesh runs calibration and reconstruction jobs on a mesh of GPU nodes.\n\n" +
			"`pwmesh agent` starts a node; the other commands talk to the node at\n" +
			"$" + envAddr + " (default " + defaultAddr + ") with the API key in $" + envToken + ";\n" +
			"for an https:// address, $" + envCACert + " names the CA file that signed the node's certificate.",
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       version,
	}
	root.SetVersionTemplate(`{{.Name}} {{.Version}}` + "\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", "", "node API address (env "+envAddr+", default "+defaultAddr+")")
	pf.StringVar(&a.token, "token", "", "API key (env "+envToken+")")
	pf.StringVar(&a.cacert, "cacert", "", "PEM file of the CA that signed the node's HTTPS certificate (env "+envCACert+"; default: the system's CAs)")
	pf.BoolVar(&a.json, "json", false, "print JSON instead of human output")
	pf.Var(&a.progress, "progress", "progress bars of uploads and downloads on stderr: auto (when stderr is a terminal), always or never")

	root.AddCommand(
		newAgentCmd(),
		newWorkloadCmd(),
		newKeygenCmd(),
		newTLSCmd(),
		a.jobCmd(),
		a.datasetCmd(),
		a.nodesCmd(),
		a.nodeCmd(),
		a.scalerCmd(),
		a.usageCmd(),
		a.keyCmd(),
		a.tenantCmd(),
		a.bundleCmd(),
		a.versionCmd(),
		a.loginCmd(),
		a.logoutCmd(),
	)
	tagRunErrors(root)
	return root
}

// addrValue is the node address: --addr, else $PWMESH_ADDR, else the default.
func (a *app) addrValue() string {
	switch {
	case a.addr != "":
		return a.addr
	case a.env(envAddr) != "":
		return a.env(envAddr)
	}
	return defaultAddr
}

// client returns an API client for the selected node and key: --token,
// else $PWMESH_TOKEN, else the key `pwmesh login` kept for the node.
func (a *app) client() *client.Client {
	token := a.token
	if token == "" {
		token = a.env(envToken)
	}
	if token == "" {
		if k, ok := a.storedKey(); ok {
			token, a.loggedIn = k.Key, true
		}
	}
	// No overall timeout: logs follow and bundles are large; ctx ends calls.
	return client.New(a.addrValue(), token, client.WithHTTPClient(&http.Client{Transport: a.transport()}))
}

// caCertValue is the CA file for HTTPS: --cacert, else $PWMESH_CACERT.
func (a *app) caCertValue() string {
	if a.cacert != "" {
		return a.cacert
	}
	return a.env(envCACert)
}

// transport is the HTTP transport of API calls: the default one, trusting
// the CA in --cacert / $PWMESH_CACERT instead of the system's when given.
// A CA file that does not load fails every call with the reason.
func (a *app) transport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if f := a.caCertValue(); f != "" {
		pool, err := tlsutil.CertPool(f)
		if err != nil {
			return failingTransport{fmt.Errorf("%s: %w", envCACert, err)}
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t
}

// failingTransport fails every request with err.
type failingTransport struct{ err error }

func (f failingTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// printError writes "pwmesh: <message>" and, for errors a user can fix
// from here, a hint.
func (a *app) printError(err error) {
	msg := err.Error()
	if !strings.HasPrefix(msg, "pwmesh: ") {
		msg = "pwmesh: " + msg
	}
	fmt.Fprintln(a.stderr, msg)
	var apiErr *client.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized && a.loggedIn:
		fmt.Fprintln(a.stderr, "hint: the key `pwmesh login` kept for this node was revoked: run pwmesh login again")
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
		fmt.Fprintln(a.stderr, "hint: set "+envToken+" to an API key; the admin token of a dev node is in <data-dir>/bootstrap-token (or run pwmesh login, where the mesh has a sign-in provider)")
	case errors.Is(err, syscall.ECONNREFUSED):
		fmt.Fprintf(a.stderr, "hint: is a node running at %s ($%s)? start one with `pwmesh agent --dev`\n", a.addrValue(), envAddr)
	case errors.As(err, new(x509.UnknownAuthorityError)):
		if a.caCertValue() == "" {
			fmt.Fprintln(a.stderr, "hint: the node's certificate is not signed by a CA this machine trusts: set "+envCACert+" to the CA that signed the node's certificate (pwmesh-agent-ca.pem of `pwmesh tls ca create`)")
		} else {
			fmt.Fprintf(a.stderr, "hint: the node's certificate is not signed by the CA in %s: set %s to the CA that signed the node's certificate\n", a.caCertValue(), envCACert)
		}
	case errors.As(err, new(x509.HostnameError)):
		fmt.Fprintln(a.stderr, "hint: the node's certificate does not name the host in "+envAddr+": use an address it names, or make one that does with `pwmesh tls cert create --ip ... --dns ...`")
	case errors.As(err, new(tls.RecordHeaderError)) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http turns the RecordHeaderError of an HTTP answer into an
		// untyped error: only its text tells; this picks a hint, nothing more.
		fmt.Fprintln(a.stderr, "hint: the node serves plain HTTP: use an http:// address in "+envAddr)
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest && strings.HasPrefix(a.addrValue(), "http://") && strings.Contains(apiErr.Message, "HTTPS server"):
		// Go's server answers plain HTTP on a TLS port with this 400.
		fmt.Fprintln(a.stderr, "hint: the node serves HTTPS: use an https:// address in "+envAddr+" (and set "+envCACert+" to the CA that signed its certificate)")
	}
}

// runError marks an error returned by a command's RunE: a failure, exit 1.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// usageError is a mistake in the command line: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError.
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError ends the command with code after the command has said why.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// tagRunErrors wraps every RunE in the tree so that its failures are told
// apart from cobra's usage errors.
func tagRunErrors(c *cobra.Command) {
	if f := c.RunE; f != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := f(cmd, args)
			var u usageError
			var x *exitError
			if err == nil || errors.As(err, &u) || errors.As(err, &x) {
				return err
			}
			return &runError{err}
		}
	}
	for _, sub := range c.Commands() {
		tagRunErrors(sub)
	}
}

// groupCmd returns a command that only holds subcommands: run without one
// (or with an unknown one) it is a usage error.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			if len(args) > 0 {
				return usagef("unknown command %q for %q (one of: %s)", args[0], cmd.CommandPath(), strings.Join(names, ", "))
			}
			return usagef("%q needs a subcommand (one of: %s)", cmd.CommandPath(), strings.Join(names, ", "))
		},
	}
}

// args checks the number of positional arguments and names them in the error.
func args(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, got []string) error {
		switch {
		case len(got) == len(names):
		case len(names) == 0:
			return usagef("%s takes no arguments (got %q)", cmd.CommandPath(), got)
		case len(names) == 1:
			return usagef("%s takes one argument, %s (got %d)", cmd.CommandPath(), names[0], len(got))
		default:
			return usagef("%s takes %d arguments, %s (got %d)", cmd.CommandPath(), len(names), strings.Join(names, " "), len(got))
		}
		for i, v := range got {
			if strings.TrimSpace(v) == "" {
				return usagef("%s: %s must not be empty", cmd.CommandPath(), names[i])
			}
		}
		return nil
	}
}
