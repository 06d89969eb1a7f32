package ui

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/web"
)

// Config tunes the UI. SessionKey is required; the rest have defaults.
type Config struct {
	// SessionKey seals session cookies (32 bytes, DeriveSessionKey of a
	// secret every node shares, so that every node accepts every node's
	// sessions).
	SessionKey []byte
	// SessionLifetime is how long a sign-in lasts at most (default 12h);
	// a key that expires sooner ends its session sooner.
	SessionLifetime time.Duration
	// Secure marks cookies Secure (the node serves HTTPS); a request that
	// came over TLS gets Secure cookies anyway.
	Secure bool
	// Clock says when sessions expire (default: the wall clock).
	Clock interface{ Now() time.Time }
	// Logger gets refused sessions at debug and failures at error
	// (default: discard).
	Logger *slog.Logger
	// SignInProviders are the sign-in page's buttons besides the API key
	// form, one per external provider (OpenID Connect: "Sign in with
	// <Name>" leading to Path, a path under /ui/).
	SignInProviders []Provider
}

// Provider is a sign-in button: Name is shown ("Sign in with Name"), Path
// starts its flow (e.g. /ui/login/oidc).
type Provider struct {
	Name string
	Path string
}

// DefaultSessionLifetime is Config.SessionLifetime's default.
const DefaultSessionLifetime = 12 * time.Hour

// Deps are the UI's collaborators; API and Identify are required.
type Deps struct {
	// API is the node's HTTP API (web.Server.Handler): every page reads
	// and writes through it with the session's key.
	API http.Handler
	// Identify checks an API key secret without counting a call
	// (web.Server.Identify): the API-key sign-in.
	Identify func(ctx context.Context, secret string) (web.KeyIdentity, error)
	// JobTypes are the job types the submit form offers, in order (node:
	// from the workload registry).
	JobTypes []JobType
}

// JobType is one job type of the submit form.
type JobType struct {
	Name    string
	Summary string
	// NeedsDataset shows the dataset picker as required; NeedsGPU asks
	// for at least one GPU.
	NeedsDataset bool
	NeedsGPU     bool
	Params       []Param
}

// Param is one workload parameter of a job type.
type Param struct {
	Name string
	// Kind is ParamInt, ParamFloat or ParamChoice (one of Choices).
	Kind    string
	Choices []string
	// Default is shown as the field's placeholder ("": none); a field
	// left empty is not sent, so the workload's default applies.
	Default string
	Help    string
}

// Param kinds.
const (
	ParamInt    = "int"
	ParamFloat  = "float"
	ParamChoice = "choice"
)

// UI is the web UI of one node: server-rendered pages under /ui/.
type UI struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	sealer  *sealer
	pages   map[string]*template.Template
	static  map[string]asset
	handler http.Handler
}

// New validates cfg and deps and parses the templates. It starts nothing.
func New(cfg Config, deps Deps) (*UI, error) {
	if deps.API == nil || deps.Identify == nil {
		return nil, errors.New("ui: Deps.API and Deps.Identify are required")
	}
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = DefaultSessionLifetime
	}
	if cfg.Clock == nil {
		cfg.Clock = wallClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, p := range cfg.SignInProviders {
		if u, err := url.Parse(p.Path); p.Name == "" || err != nil || !strings.HasPrefix(p.Path, "/ui/") || u.Path != p.Path {
			return nil, errors.New("ui: a sign-in provider needs a name and a path under /ui/")
		}
	}
	s, err := newSealer(cfg.SessionKey)
	if err != nil {
		return nil, err
	}
	u := &UI{cfg: cfg, deps: deps, log: cfg.Logger, sealer: s}
	if u.static, err = loadStatic(); err != nil {
		return nil, err
	}
	if u.pages, err = parsePages(u.static); err != nil {
		return nil, err
	}
	u.handler = u.routes()
	return u, nil
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (u *UI) now() time.Time { return u.cfg.Clock.Now() }

// Handler serves /ui and everything under /ui/.
func (u *UI) Handler() http.Handler { return u.handler }

// routes is the UI's one route table (CONTRACT.md §7 fixes the paths of
// sign-in, jobs, datasets, nodes and usage).
func (u *UI) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	mux.HandleFunc("GET /ui/{$}", u.root)
	mux.HandleFunc("GET /ui/static/{file}", u.serveStatic)
	mux.HandleFunc("GET /ui/login", u.loginPage)
	mux.HandleFunc("POST /ui/login", u.loginSubmit)
	mux.HandleFunc("GET /ui/logout", u.page(u.logoutPage))
	mux.HandleFunc("POST /ui/logout", u.logout)
	mux.HandleFunc("/ui/api/", u.proxy)

	mux.HandleFunc("GET /ui/jobs", u.page(u.jobsPage))
	mux.HandleFunc("GET /ui/jobs/{id}", u.page(u.jobPage))
	mux.HandleFunc("GET /ui/jobs/{id}/image.png", u.page(u.jobImage))
	mux.HandleFunc("POST /ui/jobs/{id}/cancel", u.action(jobReturn, u.cancelJob))
	mux.HandleFunc("GET /ui/submit", u.page(u.submitPage))
	mux.HandleFunc("POST /ui/submit", u.action(submitReturn, u.submitJob))
	mux.HandleFunc("GET /ui/datasets", u.page(u.datasetsPage))
	mux.HandleFunc("POST /ui/datasets", u.uploadDataset) // multipart: checks its own token
	mux.HandleFunc("POST /ui/datasets/{id}/delete", u.action(fixedReturn("/ui/datasets"), u.deleteDataset))
	mux.HandleFunc("GET /ui/nodes", u.page(u.nodesPage))
	mux.HandleFunc("GET /ui/usage", u.page(u.usagePage))
	mux.HandleFunc("GET /ui/usage/invoice.csv", u.page(u.invoiceCSV))
	mux.HandleFunc("GET /ui/keys", u.page(u.keysPage))
	mux.HandleFunc("POST /ui/keys", u.action(fixedReturn("/ui/keys"), u.createKey))
	mux.HandleFunc("POST /ui/keys/{id}/delete", u.action(fixedReturn("/ui/keys"), u.deleteKey))
	mux.HandleFunc("GET /ui/tenants", u.page(u.tenantsPage))
	mux.HandleFunc("POST /ui/tenants/{tenant}", u.action(fixedReturn("/ui/tenants"), u.patchTenant))
	mux.HandleFunc("/ui/", u.notFound)
	return secure(mux)
}

// secure sets the headers every UI answer carries: no caching of pages
// that hold a tenant's data, no framing, no sniffing, and a content policy
// that runs only the UI's own script and style.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		if hd.Get("Cache-Control") == "" {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

// root sends a signed-in browser to its jobs, any other to sign-in.
func (u *UI) root(w http.ResponseWriter, r *http.Request) {
	if s, _ := u.session(r); s != nil {
		http.Redirect(w, r, "/ui/jobs", http.StatusFound)
		return
	}
	http.Redirect(w, r, loginPath, http.StatusFound)
}

// pageFunc renders one page for a signed-in session.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session)

// page serves h to a signed-in browser; any other goes to sign-in and
// comes back to this page afterwards.
func (u *UI) page(h pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, state := u.session(r)
		if s == nil {
			u.toLogin(w, r, r.URL.RequestURI(), state == expiredSession)
			return
		}
		h(w, r, s)
	}
}

// returnFunc says where a form's action leads back to: the page the form
// is on, with what the person typed where that is worth keeping.
type returnFunc func(r *http.Request) string

func fixedReturn(path string) returnFunc { return func(*http.Request) string { return path } }

func jobReturn(r *http.Request) string { return "/ui/jobs/" + r.PathValue("id") }

// action serves a state-changing form post: without a session it goes to
// sign-in (and back to the form's page afterwards); without the session's
// anti-forgery token it is refused with 403 and changes nothing.
func (u *UI) action(back returnFunc, h pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		s, state := u.session(r)
		if s == nil {
			u.toLogin(w, r, back(r), state == expiredSession)
			return
		}
		if !s.csrfOK(r) {
			u.forbidden(w, r, s)
			return
		}
		h(w, r, s)
	}
}

// maxFormBytes bounds a url-encoded form.
const maxFormBytes = 64 << 10

// toLogin sends the browser to sign-in, to return to next afterwards.
func (u *UI) toLogin(w http.ResponseWriter, r *http.Request, next string, expired bool) {
	if expired {
		u.endSession(w, r)
	}
	http.Redirect(w, r, loginURL(next, expired), http.StatusSeeOther)
}

// forbidden answers a state change without the anti-forgery token.
func (u *UI) forbidden(w http.ResponseWriter, r *http.Request, s *session) {
	u.log.DebugContext(r.Context(), "ui: refused a state change without the anti-forgery token", "method", r.Method, "path", r.URL.Path)
	u.errorPage(w, r, s, http.StatusForbidden, "Request refused",
		"This form was not sent from a page of this site, or the page is too old (its anti-forgery token does not match your session). Nothing was changed. Go back, reload the page and try again.")
}

// notFound answers a path the UI does not have.
func (u *UI) notFound(w http.ResponseWriter, r *http.Request) {
	s, _ := u.session(r)
	u.errorPage(w, r, s, http.StatusNotFound, "Not found", "There is no page at this address.")
}
