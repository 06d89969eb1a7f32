package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/web/client"
)

// `pwmesh login` signs the command line in through the mesh's OpenID
// Connect provider (docs/oidc.md) and keeps the key it gets in the user's
// config folder, per node address; commands use it when neither --token
// nor $PWMESH_TOKEN gives a key. `pwmesh logout` revokes and forgets it.

// credential is a key that `pwmesh login` kept.
type credential struct {
	Key       string    `json:"key"`
	KeyID     string    `json:"key_id,omitempty"`
	Tenant    string    `json:"tenant"`
	Admin     bool      `json:"admin,omitempty"`
	Name      string    `json:"name,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// credentials is the file of kept keys, by node address.
type credentials struct {
	Nodes map[string]credential `json:"nodes"`
}

// envConfigDir overrides where the credentials file lives (default: the
// user's config folder, os.UserConfigDir, + /pwmesh).
const envConfigDir = "PWMESH_CONFIG_DIR"

// credentialsPath is the file of kept keys.
func (a *app) credentialsPath() (string, error) {
	if d := a.env(envConfigDir); d != "" {
		return filepath.Join(d, "credentials"), nil
	}
	dir, err := userConfigDir(a.env)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "pwmesh", "credentials"), nil
}

// userConfigDir is os.UserConfigDir read from env (the CLI's environment,
// which tests replace).
func userConfigDir(env func(string) string) (string, error) {
	switch runtime.GOOS {
	case "windows":
		if d := env("AppData"); d != "" {
			return d, nil
		}
		return "", errors.New("%AppData% is not set")
	case "darwin", "ios":
		if h := env("HOME"); h != "" {
			return filepath.Join(h, "Library", "Application Support"), nil
		}
		return "", errors.New("$HOME is not set")
	}
	if d := env("XDG_CONFIG_HOME"); d != "" {
		if !filepath.IsAbs(d) {
			return "", errors.New("$XDG_CONFIG_HOME is a relative path")
		}
		return d, nil
	}
	if h := env("HOME"); h != "" {
		return filepath.Join(h, ".config"), nil
	}
	return "", errors.New("neither $XDG_CONFIG_HOME nor $HOME is set")
}

// nodeKey is how the credentials file names a node: its address without a
// trailing slash, scheme and host in lower case.
func nodeKey(addr string) string {
	addr = strings.TrimRight(strings.TrimSpace(addr), "/")
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		return u.String()
	}
	return addr
}

// loadCredentials reads the credentials file (none: empty).
func (a *app) loadCredentials() (credentials, string, error) {
	path, err := a.credentialsPath()
	if err != nil {
		return credentials{}, "", err
	}
	c := credentials{Nodes: map[string]credential{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, path, nil
	}
	if err != nil {
		return c, path, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return credentials{Nodes: map[string]credential{}}, path, fmt.Errorf("%s is damaged (%v): remove it and run pwmesh login", path, err)
	}
	if c.Nodes == nil {
		c.Nodes = map[string]credential{}
	}
	return c, path, nil
}

// saveCredentials writes the file readable by its owner alone, whole or
// not at all.
func saveCredentials(path string, c credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// storedKey is the key `pwmesh login` kept for the selected node, unless
// it has expired.
func (a *app) storedKey() (credential, bool) {
	c, _, err := a.loadCredentials()
	if err != nil {
		return credential{}, false
	}
	k, ok := c.Nodes[nodeKey(a.addrValue())]
	if !ok || k.Key == "" || (!k.ExpiresAt.IsZero() && !time.Now().Before(k.ExpiresAt)) {
		return credential{}, false
	}
	return k, true
}

// pollWait is how long one poll of `pwmesh login` asks the node to hold
// its answer while the person signs in.
const pollWait = 25 * time.Second

func (a *app) loginCmd() *cobra.Command {
	var noBrowser bool
	c := &cobra.Command{
		Use:   "login",
		Short: "Sign in through the mesh's OpenID Connect provider and keep the key for later commands",
		Long: "Sign in through the OpenID Connect provider of the node at $" + envAddr + ".\n" +
			"It prints a URL (and opens it in a browser where it can): sign in there, on\n" +
			"this machine or any other, after checking that the page shows the code printed\n" +
			"here. The key the node then hands out (30 days) is kept in your config folder\n" +
			"(" + filepath.Join("<user config dir>", "pwmesh", "credentials") + ", $" + envConfigDir + " to move it),\n" +
			"mode 0600, for that node address; later commands use it when neither --token\n" +
			"nor $" + envToken + " is set. `pwmesh logout` revokes and forgets it.",
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.login(cmd.Context(), !noBrowser) },
	}
	c.Flags().BoolVar(&noBrowser, "no-browser", false, "do not try to open a browser: only print the URL")
	return c
}

func (a *app) login(ctx context.Context, browse bool) error {
	addr := a.addrValue()
	cl := client.New(addr, "", client.WithHTTPClient(&http.Client{Transport: a.transport()}))
	st, err := cl.StartLogin(ctx)
	var apiErr *client.APIError
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusMethodNotAllowed) {
		return fmt.Errorf("the node at %s offers no sign-in through a provider (it runs without --oidc-issuer): set %s to an API key instead", addr, envToken)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "open this URL to sign in: %s\n", st.URL)
	fmt.Fprintf(a.stderr, "and check that the page shows the code %s\n", st.Code)
	if browse && openBrowser(st.URL, a.env) {
		fmt.Fprintln(a.stderr, "(opened in your browser)")
	}
	fmt.Fprintln(a.stderr, "waiting for the sign-in...")
	deadline := time.Now().Add(time.Duration(st.ExpiresIn)*time.Second + 30*time.Second)
	for {
		asked := time.Now()
		pctx, cancel := context.WithTimeout(ctx, pollWait+30*time.Second)
		k, done, err := cl.PollLogin(pctx, st.Poll, pollWait)
		cancel()
		if done {
			return a.keep(addr, k)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		retry := err == nil // pending
		if errors.As(err, &apiErr) {
			switch apiErr.Status {
			case http.StatusNotFound:
				return errors.New("the sign-in expired or is unknown to the node: run pwmesh login again")
			case http.StatusServiceUnavailable:
				retry = true // the key could not be made yet
			default:
				return err
			}
		} else if err != nil {
			retry = true // the network: try again until the sign-in expires
		}
		if !retry || time.Now().After(deadline) {
			return errors.New("the sign-in expired before it was completed: run pwmesh login again")
		}
		// A node that answered at once (a failure, or one that does not
		// hold polls) is asked again after a second, not in a busy loop.
		if wait := time.Second - time.Since(asked); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}

// keep stores k for addr and says so.
func (a *app) keep(addr string, k client.LoginKey) error {
	c, path, err := a.loadCredentials()
	if err != nil {
		return fmt.Errorf("signed in, but the key cannot be kept: %w", err)
	}
	c.Nodes[nodeKey(addr)] = credential{Key: k.Key, KeyID: k.KeyID, Tenant: k.Tenant, Admin: k.Admin, Name: k.Name, ExpiresAt: k.ExpiresAt}
	if err := saveCredentials(path, c); err != nil {
		return fmt.Errorf("signed in, but the key cannot be kept in %s: %w", path, err)
	}
	if a.json {
		return a.printJSON(map[string]any{"node": nodeKey(addr), "tenant": k.Tenant, "admin": k.Admin, "name": k.Name,
			"key_id": k.KeyID, "expires_at": k.ExpiresAt, "credentials": path})
	}
	role := ""
	if k.Admin {
		role = ", admin"
	}
	_, err = fmt.Fprintf(a.stdout, "signed in to %s as %s (tenant %s%s); the key is kept in %s until %s\n",
		nodeKey(addr), k.Name, k.Tenant, role, path, fmtTime(k.ExpiresAt))
	return err
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Revoke and forget the key `pwmesh login` kept for the node",
		Long: "Revoke the key that `pwmesh login` kept for the node at $" + envAddr + " and\n" +
			"remove it from the credentials file. A node that cannot be reached does not\n" +
			"stop the removal (the key then lives until it expires).",
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			addr := a.addrValue()
			c, path, err := a.loadCredentials()
			if err != nil {
				return err
			}
			k, ok := c.Nodes[nodeKey(addr)]
			if !ok {
				_, err := fmt.Fprintf(a.stdout, "not signed in to %s\n", nodeKey(addr))
				return err
			}
			if k.KeyID != "" && (k.ExpiresAt.IsZero() || time.Now().Before(k.ExpiresAt)) {
				cl := client.New(addr, k.Key, client.WithHTTPClient(&http.Client{Transport: a.transport(), Timeout: 30 * time.Second}))
				var apiErr *client.APIError
				if err := cl.RevokeKey(cmd.Context(), k.KeyID); err != nil && !(errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized) {
					fmt.Fprintf(a.stderr, "pwmesh: warning: the key was not revoked (%v); it is forgotten here and lives until %s\n", err, fmtTime(k.ExpiresAt))
				}
			}
			delete(c.Nodes, nodeKey(addr))
			if err := saveCredentials(path, c); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "signed out of %s\n", nodeKey(addr))
			return err
		},
	}
}

// openBrowser tries to open u in the user's browser and reports whether a
// browser command started; it never fails the sign-in.
func openBrowser(u string, env func(string) string) bool {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		if env("DISPLAY") == "" && env("WAYLAND_DISPLAY") == "" {
			return false // no desktop: the printed URL is the way
		}
		cmd = exec.Command("xdg-open", u)
	}
	if err := cmd.Start(); err != nil {
		return false
	}
	go func() { _ = cmd.Wait() }() // reaped; its outcome does not matter
	return true
}
