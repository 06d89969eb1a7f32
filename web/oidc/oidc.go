package oidc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config is the provider and how its users map to the mesh. Issuer,
// ClientID, ExternalURL and StateKey are required; the rest have
// defaults.
type Config struct {
	// Issuer is the provider's issuer URL (its discovery document is at
	// Issuer + /.well-known/openid-configuration).
	Issuer string
	// ClientID and ClientSecret are the client registered with the
	// provider (the secret from --oidc-client-secret-file; "" for a
	// public client, which PKCE alone protects).
	ClientID     string
	ClientSecret string
	// ExternalURL is the URL people reach this node at (scheme and host:
	// the UI is at /ui/ of it); the redirect URI is ExternalURL +
	// /ui/callback, and command-line sign-in links name it.
	ExternalURL string
	// TenantClaim is the ID-token claim naming the user's tenant
	// (default "pwmesh_tenant").
	TenantClaim string
	// AdminGroup, when set, makes admins of the users whose "groups"
	// claim holds it.
	AdminGroup string
	// StateKey seals the flow's state cookie (32 bytes, DeriveStateKey of
	// a secret every node shares, so that the callback may land on any
	// node).
	StateKey []byte
	// Secure marks cookies Secure (the node serves HTTPS); a request that
	// came over TLS gets Secure cookies anyway.
	Secure bool
	// ProviderName is shown on pages ("Sign in with ProviderName";
	// default "single sign-on").
	ProviderName string
	// SessionKeyTTL is the lifetime of the key a browser sign-in mints
	// (default 12h: the session ends with it).
	SessionKeyTTL time.Duration
	// CLIKeyTTL is the lifetime of the key `pwmesh login` gets (default
	// 720h, 30 days).
	CLIKeyTTL time.Duration
	// LoginTTL bounds a sign-in at the provider: the state cookie and a
	// pending command-line sign-in expire after it (default 10m).
	LoginTTL time.Duration
	// MaxPendingCLI bounds the command-line sign-ins waiting on this node
	// (default 1000); more are refused with 429 until some end.
	MaxPendingCLI int
	// HTTPClient talks to the provider (default: a client with a 15 s
	// timeout).
	HTTPClient *http.Client
	// Clock says when states, sign-ins and tokens expire (default: the
	// wall clock).
	Clock interface{ Now() time.Time }
	// Logger gets refused sign-ins at info (a person may ask an operator
	// why), client mistakes at debug and provider failures at warn
	// (default: discard).
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultTenantClaim   = "pwmesh_tenant"
	DefaultProviderName  = "single sign-on"
	DefaultSessionKeyTTL = 12 * time.Hour
	DefaultCLIKeyTTL     = 30 * 24 * time.Hour
	DefaultLoginTTL      = 10 * time.Minute
	DefaultMaxPendingCLI = 1000
)

// Scopes are the scopes every sign-in asks for: the tenant claim and the
// groups come with the ID token.
var Scopes = []string{gooidc.ScopeOpenID, "profile", "email", "groups"}

// Paths of the flow (CONTRACT.md §7; CallbackPath is the redirect URI to
// register with the provider, under the external URL).
const (
	LoginPath    = "/ui/login/oidc"
	CallbackPath = "/ui/callback"
	CLILoginPath = "/ui/cli-login"
	CLIPollPath  = "/ui/cli-login/poll"
)

// Identity is whom a verified ID token speaks for.
type Identity struct {
	// Subject is the provider's ID of the user (sub); Email and Name are
	// what the token says of them ("" when it says nothing).
	Subject string
	Email   string
	Name    string
	// Tenant is the value of the tenant claim; Admin says whether the
	// groups claim holds the admin group.
	Tenant string
	Admin  bool
}

// Label names the user in key names and logs: the email, else the
// subject.
func (id Identity) Label() string {
	if id.Email != "" {
		return id.Email
	}
	return id.Subject
}

// KeyRequest asks for a key for a signed-in user.
type KeyRequest struct {
	Identity Identity
	// Name is the key's name: "oidc:<email>" for a browser session,
	// "cli:<email>" for `pwmesh login`.
	Name string
	// TTL is how long the key lasts.
	TTL time.Duration
	// IDToken is the verified ID token the key is made for: the node
	// forwards it with the key's creation, and the leader checks it again
	// (VerifyIDToken) before it lets a node make a key for a person.
	IDToken string
}

// Key is an API key minted for a user.
type Key struct {
	ID        string
	Secret    string
	ExpiresAt time.Time
}

// Session is what a browser sign-in hands to the web UI.
type Session struct {
	Identity Identity
	// Key is the minted key: every call of the session carries it.
	Key Key
}

// ErrNoTenant is returned by Deps.MintKey when the identity may not have
// a key in its tenant (a tenant the mesh does not know, or one reserved
// for the mesh's operators): the user sees the same page as a user whose
// claim names no tenant.
var ErrNoTenant = errors.New("oidc: the account is not assigned to a tenant of this mesh")

// ErrRefused is returned by Deps.MintKey when the mesh refuses the key
// its sign-in asks for (the ID token no longer proves it, e.g. expired):
// the person signs in again.
var ErrRefused = errors.New("oidc: the mesh refused the sign-in's key")

// Deps are the handler's collaborators; all are required.
type Deps struct {
	// TenantExists reports whether the mesh knows the tenant (the
	// replicated state's tenants).
	TenantExists func(name string) bool
	// MintKey creates an API key for a signed-in user: the tenant's
	// tier, admin when Identity.Admin, expiring after TTL.
	MintKey func(ctx context.Context, req KeyRequest) (Key, error)
	// StartSession signs the browser of r in (the web UI's session
	// cookie) and sends it on to next, a path under /ui/; an error
	// writes nothing.
	StartSession func(w http.ResponseWriter, r *http.Request, s Session, next string) error
}

// Handler serves the sign-in paths of one node.
type Handler struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	sealer  *sealer
	cli     *cliLogins
	routes  *http.ServeMux
	mu      sync.Mutex // guards prov, tried, lastErr
	prov    *provider
	tried   time.Time
	lastErr error
	discMu  sync.Mutex // one discovery at a time
}

// provider is a discovered provider and the clients made from it.
type provider struct {
	oauth    oauth2.Config
	verifier *gooidc.IDTokenVerifier
}

// New validates cfg and deps. It asks the provider nothing: Run
// discovers it, and so does the first sign-in that finds it unknown. A
// provider that cannot be reached is no reason for a node not to start
// (API keys keep working): until it answers, a sign-in gets a page that
// says so.
func New(cfg Config, deps Deps) (*Handler, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if deps.TenantExists == nil || deps.MintKey == nil || deps.StartSession == nil {
		return nil, errors.New("oidc: Deps.TenantExists, MintKey and StartSession are required")
	}
	s, err := newSealer(cfg.StateKey)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, deps: deps, log: cfg.Logger, sealer: s, cli: newCLILogins(cfg.MaxPendingCLI)}
	h.routes = h.newRoutes()
	return h, nil
}

func (c *Config) withDefaults() error {
	var errs []error
	if u, err := url.Parse(c.Issuer); c.Issuer == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--oidc-issuer %q: want the provider's issuer URL, https://...", c.Issuer))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("--oidc-client-id is required with --oidc-issuer"))
	}
	c.ExternalURL = strings.TrimSuffix(c.ExternalURL, "/")
	if u, err := url.Parse(c.ExternalURL); c.ExternalURL == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") ||
		u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("--external-url %q: want the URL people reach this node at, e.g. https://mesh.example.com", c.ExternalURL))
	}
	if c.TenantClaim == "" {
		c.TenantClaim = DefaultTenantClaim
	}
	if c.ProviderName == "" {
		c.ProviderName = DefaultProviderName
	}
	if c.SessionKeyTTL <= 0 {
		c.SessionKeyTTL = DefaultSessionKeyTTL
	}
	if c.CLIKeyTTL <= 0 {
		c.CLIKeyTTL = DefaultCLIKeyTTL
	}
	if c.LoginTTL <= 0 {
		c.LoginTTL = DefaultLoginTTL
	}
	if c.MaxPendingCLI <= 0 {
		c.MaxPendingCLI = DefaultMaxPendingCLI
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if c.Clock == nil {
		c.Clock = wallClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (h *Handler) now() time.Time { return h.cfg.Clock.Now() }

// RedirectURL is the redirect URI to register with the provider.
func (h *Handler) RedirectURL() string { return h.cfg.ExternalURL + CallbackPath }

// retryGap is the least time between two discoveries that a sign-in
// starts, so that a provider that is down is not asked at every click.
const retryGap = 2 * time.Second

// discover returns the provider, discovering it first when that has not
// succeeded yet and the last attempt is retryGap old.
func (h *Handler) discover(ctx context.Context) (*provider, error) { return h.discoverOr(ctx, false) }

// discoverOr is discover; force ignores retryGap (Run keeps its own pace).
func (h *Handler) discoverOr(ctx context.Context, force bool) (*provider, error) {
	h.mu.Lock()
	p := h.prov
	h.mu.Unlock()
	if p != nil {
		return p, nil
	}
	h.discMu.Lock()
	defer h.discMu.Unlock()
	h.mu.Lock()
	p, tried, lastErr := h.prov, h.tried, h.lastErr
	h.mu.Unlock()
	if p != nil {
		return p, nil
	}
	if !force && lastErr != nil && h.now().Sub(tried) < retryGap {
		return nil, lastErr
	}
	p, err := h.newProvider(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tried, h.lastErr = h.now(), err
	if err != nil {
		return nil, err
	}
	h.prov = p
	h.log.Info("oidc: provider discovered", "issuer", h.cfg.Issuer, "redirect_uri", h.RedirectURL())
	return p, nil
}

func (h *Handler) newProvider(ctx context.Context) (*provider, error) {
	ctx = gooidc.ClientContext(ctx, h.cfg.HTTPClient)
	gp, err := gooidc.NewProvider(ctx, h.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc: discover %s: %w", h.cfg.Issuer, err)
	}
	var meta struct {
		Methods []string `json:"code_challenge_methods_supported"`
	}
	if err := gp.Claims(&meta); err == nil && len(meta.Methods) > 0 && !slices.Contains(meta.Methods, "S256") {
		// Sign-in needs PKCE with S256; a provider that says it has
		// only "plain" is refused rather than weakened.
		return nil, fmt.Errorf("oidc: %s supports PKCE methods %v, not S256", h.cfg.Issuer, meta.Methods)
	}
	return &provider{
		oauth: oauth2.Config{ClientID: h.cfg.ClientID, ClientSecret: h.cfg.ClientSecret, Endpoint: gp.Endpoint(),
			RedirectURL: h.RedirectURL(), Scopes: Scopes},
		// The key set is fetched (and refetched for an unknown key ID)
		// with the handler's client, not the request that needed it.
		verifier: gp.VerifierContext(gooidc.ClientContext(context.Background(), h.cfg.HTTPClient),
			&gooidc.Config{ClientID: h.cfg.ClientID, Now: h.now}),
	}, nil
}

// Run discovers the provider, retrying with backoff (1 s doubling to
// 1 min) while it cannot be reached; it returns nil once the provider is
// known or ctx ends.
func (h *Handler) Run(ctx context.Context) error {
	wait := time.Second
	for {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := h.discoverOr(dctx, true)
		cancel()
		if err == nil || ctx.Err() != nil {
			return nil
		}
		h.log.Warn("oidc: the provider cannot be reached; sign-in through it waits for it (API keys work meanwhile)",
			"issuer", h.cfg.Issuer, "retry_in", wait.String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, time.Minute)
	}
}

// Wrap serves the sign-in paths and hands every other request to next
// (the node's UI and API).
func (h *Handler) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := h.routes.Handler(r); pattern != "" {
			h.routes.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Handler serves the sign-in paths alone (anything else: 404).
func (h *Handler) Handler() http.Handler { return h.routes }

func (h *Handler) newRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LoginPath, h.Login)
	mux.HandleFunc("GET "+CallbackPath, h.Callback)
	mux.HandleFunc("POST "+CLILoginPath, h.CLIStart)
	mux.HandleFunc("POST "+CLIPollPath, h.CLIPoll)
	mux.HandleFunc("GET "+CLILoginPath+"/{id}", h.CLIPage)
	mux.HandleFunc("POST "+CLILoginPath+"/{id}", h.CLIContinue)
	return mux
}
