package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
	"github.com/pwmesh/pwmesh/web/oidc"
	"github.com/pwmesh/pwmesh/web/ui"
)

// validateOIDC checks the OpenID Connect settings and --external-url, and
// reads the client secret (CONTRACT.md §2; docs/oidc.md).
func (c *Config) validateOIDC(bad func(string, ...any)) {
	if c.ExternalURL != "" {
		c.ExternalURL = strings.TrimSuffix(c.ExternalURL, "/")
		u, err := url.Parse(c.ExternalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			bad("--external-url %q: want the URL people reach this node at, such as https://mesh.example.com", c.ExternalURL)
		} else if u.Path != "" {
			// The UI's pages, links and cookies live at /ui/ of the host.
			bad("--external-url %q: want no path (the web UI is served at /ui/ of its host), such as %s://%s", c.ExternalURL, u.Scheme, u.Host)
		}
	}
	if c.OIDCTenantClaim == "" {
		c.OIDCTenantClaim = oidc.DefaultTenantClaim
	}
	if c.OIDCIssuer == "" {
		if c.OIDCClientID != "" || c.OIDCClientSecretFile != "" || c.OIDCAdminGroup != "" {
			bad("--oidc-client-id, --oidc-client-secret-file and --oidc-admin-group need --oidc-issuer (the provider's issuer URL)")
		}
		return
	}
	u, err := url.Parse(c.OIDCIssuer)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		bad("--oidc-issuer %q: want the provider's issuer URL, such as https://login.example.com", c.OIDCIssuer)
	case u.Scheme == "http" && !loopbackHost(u.Hostname()):
		bad("--oidc-issuer %q: want https (plain http only for a provider on this machine)", c.OIDCIssuer)
	}
	if c.OIDCClientID == "" {
		bad("--oidc-client-id is required with --oidc-issuer: the client ID this mesh is registered under at the provider")
	}
	c.oidcClientSecret = ""
	if c.OIDCClientSecretFile != "" {
		b, err := os.ReadFile(c.OIDCClientSecretFile)
		switch {
		case err != nil:
			bad("--oidc-client-secret-file: %v", err)
		case strings.TrimSpace(string(b)) == "":
			bad("--oidc-client-secret-file %s is empty", c.OIDCClientSecretFile)
		default:
			c.oidcClientSecret = strings.TrimSpace(string(b))
		}
	}
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// externalURL is --external-url, or else the URL of the address the API
// listens on (a wildcard host read as localhost).
func (n *Node) externalURL(listening string) string {
	if n.cfg.ExternalURL != "" {
		return n.cfg.ExternalURL
	}
	host, port, err := net.SplitHostPort(listening)
	if err != nil {
		return n.scheme() + "://" + listening
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return n.scheme() + "://" + net.JoinHostPort(host, port)
}

// signInProviders are the sign-in page's buttons besides the API key
// form: one for the OpenID Connect provider when --oidc-issuer is set.
func (n *Node) signInProviders() []ui.Provider {
	if n.cfg.OIDCIssuer == "" {
		return nil
	}
	return []ui.Provider{{Name: oidc.DefaultProviderName, Path: oidc.LoginPath}}
}

// newOIDC builds the OpenID Connect sign-in once the API listens (its
// redirect URI names the external URL); nil without --oidc-issuer. The
// state cookie's key derives from the secret the UI's sessions derive
// from, under a label of its own, so that the provider may send a browser
// back to any node of the mesh.
func (n *Node) newOIDC(listening string) (*oidc.Handler, error) {
	if n.cfg.OIDCIssuer == "" {
		return nil, nil
	}
	secret, err := n.uiSecret()
	if err != nil {
		return nil, err
	}
	key, err := oidc.DeriveStateKey(secret)
	if err != nil {
		return nil, err
	}
	h, err := oidc.New(oidc.Config{
		Issuer:       n.cfg.OIDCIssuer,
		ClientID:     n.cfg.OIDCClientID,
		ClientSecret: n.cfg.oidcClientSecret,
		ExternalURL:  n.externalURL(listening),
		TenantClaim:  n.cfg.OIDCTenantClaim,
		AdminGroup:   n.cfg.OIDCAdminGroup,
		StateKey:     key,
		Secure:       n.tls != nil,
		Clock:        n.cfg.Clock,
		Logger:       n.log,
	}, oidc.Deps{
		TenantExists: n.tenantExists,
		MintKey:      n.mintKey,
		StartSession: n.startSession,
	})
	if err != nil {
		return nil, fmt.Errorf("node: sign-in: %w", err)
	}
	n.log.Info("oidc: sign-in through the provider", "issuer", n.cfg.OIDCIssuer, "redirect_uri", h.RedirectURL())
	return h, nil
}

// tenantExists reports whether the replicated state holds the tenant.
func (n *Node) tenantExists(name string) bool {
	_, ok := n.fsm.Tenant(name)
	return ok
}

// mintKey makes a key for a signed-in person: a CreateKey through Raft in
// their tenant, at its tier, admin when the provider says so, expiring
// after req.TTL. A tenant reserved for the mesh's operators is refused
// unless the person is an admin (the FSM refuses it too).
func (n *Node) mintKey(ctx context.Context, req oidc.KeyRequest) (oidc.Key, error) {
	id := req.Identity
	tier, ok := n.signInTier(id)
	if !ok {
		return oidc.Key{}, oidc.ErrNoTenant
	}
	now := n.cfg.Clock.Now().UTC()
	exp := now.Add(req.TTL)
	secret := web.NewKeySecret()
	k := scheduler.APIKey{ID: newID("key_"), Hash: web.HashKey(secret), Prefix: secret[:8], Tenant: id.Tenant, Tier: tier,
		Admin: id.Admin, Name: req.Name, ExpiresAt: &exp}
	// A follower forwards the ID token with the command: the leader
	// verifies it again before it lets a node make a person's key.
	if _, err := n.Apply(withSignInProof(ctx, req.IDToken), &scheduler.CreateKey{At: now, Key: k}); err != nil {
		if errors.Is(err, scheduler.ErrForbidden) {
			return oidc.Key{}, fmt.Errorf("node: create the key of %s: %w (%w)", req.Name, oidc.ErrRefused, err)
		}
		return oidc.Key{}, fmt.Errorf("node: create the key of %s: %w", req.Name, err)
	}
	n.log.Info("audit: key created", "key_id", k.ID, "tenant", k.Tenant, "tier", tier, "admin", k.Admin, "name", k.Name, "by", "oidc")
	// The key works on this node before the browser uses it.
	n.awaitState(ctx, 2*time.Second, func() bool { _, ok := n.fsm.Key(k.Hash); return ok })
	return oidc.Key{ID: k.ID, Secret: secret, ExpiresAt: exp}, nil
}

// signInTier is the tier of the key a person signed in as id gets (their
// tenant's); false when id may have no key here.
func (n *Node) signInTier(id oidc.Identity) (string, bool) {
	t, ok := n.fsm.Tenant(id.Tenant)
	if !ok || (!id.Admin && scheduler.ReservedTenant(id.Tenant)) {
		return "", false
	}
	if t.Tier == scheduler.PriorityPaid {
		return scheduler.PriorityPaid, true
	}
	return scheduler.PriorityFree, true
}

type signInProofKey struct{}

// withSignInProof returns ctx carrying the ID token that authorizes the
// write made under it (a person's key).
func withSignInProof(ctx context.Context, idToken string) context.Context {
	if idToken == "" {
		return ctx
	}
	return context.WithValue(ctx, signInProofKey{}, idToken)
}

// signInProof is the ID token withSignInProof put in ctx, "" for none.
func signInProof(ctx context.Context) string {
	s, _ := ctx.Value(signInProofKey{}).(string)
	return s
}

// checkSignInProof is the leader's check of a key that a node forwards
// for a person: this node's own provider must accept the ID token, and
// the key must be exactly what the sign-in entitles them to (their
// tenant at its tier, admin only by the group, a sign-in key's name and no
// longer than a sign-in key lives). It wraps scheduler.ErrForbidden.
func (n *Node) checkSignInProof(ctx context.Context, c scheduler.Command, idToken string) error {
	refuse := func(why string, a ...any) error {
		return fmt.Errorf("node: %s by sign-in: %w: %s", c.Type(), scheduler.ErrForbidden, fmt.Sprintf(why, a...))
	}
	h := n.signIn.Load()
	if h == nil {
		return refuse("this leader has no OpenID Connect sign-in (--oidc-issuer)")
	}
	ck, ok := c.(*scheduler.CreateKey)
	if !ok {
		return refuse("a sign-in proves only a key of the person's own")
	}
	id, err := h.VerifyIDToken(ctx, idToken)
	if err != nil {
		return refuse("%v", err)
	}
	k := ck.Key
	tier, ok := n.signInTier(id)
	switch {
	case !ok || k.Tenant != id.Tenant:
		return refuse("the sign-in names tenant %q, not %q", id.Tenant, k.Tenant)
	case k.Admin && !id.Admin:
		return refuse("the sign-in is not an admin's")
	case k.Tier != tier:
		return refuse("tier %q is not the tenant's (%s)", k.Tier, tier)
	case k.Name != oidc.KeyName(oidc.SessionKeyPrefix, id) && k.Name != oidc.KeyName(oidc.CLIKeyPrefix, id):
		return refuse("name %q is not a sign-in key's", k.Name)
	case k.ExpiresAt == nil || k.ExpiresAt.After(n.cfg.Clock.Now().Add(h.MaxKeyTTL()+time.Minute)):
		return refuse("a sign-in key expires within %s", h.MaxKeyTTL())
	}
	return nil
}

// awaitState waits until ok holds on the local replica, ctx ends or limit
// passes.
func (n *Node) awaitState(ctx context.Context, limit time.Duration, ok func() bool) {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		changed := n.fsm.Watch()
		if ok() {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-t.C:
			return
		}
	}
}

// startSession signs a browser in to the UI with the key minted for it;
// signing out revokes the key.
func (n *Node) startSession(w http.ResponseWriter, r *http.Request, s oidc.Session, next string) error {
	name := s.Identity.Name
	if name == "" {
		name = s.Identity.Label()
	}
	return n.ui.SignIn(w, r, ui.Identity{Tenant: s.Identity.Tenant, Admin: s.Identity.Admin, Name: name, Key: s.Key.Secret,
		KeyID: s.Key.ID, RevokeOnSignOut: true, ExpiresAt: s.Key.ExpiresAt}, next)
}
