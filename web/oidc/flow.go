package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Login handles GET /ui/login/oidc?next=/ui/...: it sends the browser to
// the provider, to come back to next once signed in.
func (h *Handler) Login(w http.ResponseWriter, r *http.Request) {
	h.begin(w, r, safeNext(r.URL.Query().Get("next")), "")
}

// begin sends the browser to the provider's authorization endpoint with
// a fresh state, nonce and PKCE challenge, all kept in a sealed cookie
// for the callback (on this node or any other).
func (h *Handler) begin(w http.ResponseWriter, r *http.Request, next, cli string) {
	p, err := h.discover(r.Context())
	if err != nil {
		h.log.WarnContext(r.Context(), "oidc: sign-in while the provider cannot be reached", "err", err)
		h.page(w, r, http.StatusServiceUnavailable, pageData{Title: "Sign-in is unavailable",
			Text:  "The sign-in provider cannot be reached right now. Try again in a moment, or sign in with an API key.",
			Links: []link{{"/ui/login", "Back to sign-in"}}})
		return
	}
	st := &loginState{V: stateVersion, State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		Next: next, CLI: cli, Expires: h.now().Add(h.cfg.LoginTTL).Unix()}
	v, err := h.sealer.seal(st)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	http.SetCookie(w, h.cookie(r, stateCookieName(st.State), v, CallbackPath, h.cfg.LoginTTL))
	http.Redirect(w, r, p.oauth.AuthCodeURL(st.State, gooidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusFound)
}

// Callback handles GET /ui/callback, where the provider sends the browser
// back: it checks the state against the browser's cookie, exchanges the
// code (with the PKCE verifier), verifies the ID token (signature,
// issuer, audience, expiry, nonce) and maps its claims to a tenant. A
// browser sign-in then gets a key and a session; a command-line sign-in
// is marked done for its poll.
func (h *Handler) Callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st, err := h.takeState(w, r, q.Get("state"))
	if err != nil {
		h.log.DebugContext(r.Context(), "oidc: callback refused", "err", err)
		h.page(w, r, http.StatusBadRequest, pageData{Title: "Sign-in failed",
			Text:  "This sign-in was not started from this browser, was already used, or took too long. Nothing was changed: start again.",
			Links: []link{{"/ui/login", "Back to sign-in"}}})
		return
	}
	if e := q.Get("error"); e != "" {
		h.log.InfoContext(r.Context(), "oidc: the provider refused the sign-in", "error", truncate(e, 64), "description", truncate(q.Get("error_description"), 256))
		h.page(w, r, http.StatusForbidden, pageData{Title: "Sign-in refused",
			Text:  "The sign-in provider did not sign you in (" + truncate(e, 64) + "). Nothing was changed.",
			Links: []link{{"/ui/login", "Back to sign-in"}}})
		return
	}
	id, raw, err := h.verify(r.Context(), q.Get("code"), st)
	if err != nil {
		h.log.WarnContext(r.Context(), "oidc: sign-in failed", "err", err)
		h.page(w, r, http.StatusBadGateway, pageData{Title: "Sign-in failed",
			Text:  "The answer of the sign-in provider could not be verified. Nothing was changed: start again.",
			Links: []link{{"/ui/login", "Back to sign-in"}}})
		return
	}
	if !h.knownTenant(id) {
		h.noTenant(w, r, id)
		if st.CLI != "" {
			h.cli.finish(st.CLI, h.now(), nil, "", ErrNoTenant)
		}
		return
	}
	if st.CLI != "" {
		h.cliDone(w, r, st.CLI, id, raw)
		return
	}
	k, err := h.deps.MintKey(r.Context(), KeyRequest{Identity: id, Name: KeyName(SessionKeyPrefix, id), TTL: h.cfg.SessionKeyTTL, IDToken: raw})
	switch {
	case errors.Is(err, ErrNoTenant):
		h.noTenant(w, r, id)
		return
	case errors.Is(err, ErrRefused):
		h.log.InfoContext(r.Context(), "oidc: the mesh refused a session key", "subject", id.Subject, "err", err)
		h.page(w, r, http.StatusForbidden, pageData{Title: "Sign-in failed",
			Text:  "The mesh did not accept this sign-in (it may have expired). Nothing was changed: start again.",
			Links: []link{{"/ui/login", "Back to sign-in"}}})
		return
	case err != nil:
		h.fail(w, r, fmt.Errorf("oidc: mint a session key for %s: %w", id.Label(), err))
		return
	}
	h.log.InfoContext(r.Context(), "oidc: signed in", "subject", id.Subject, "tenant", id.Tenant, "admin", id.Admin, "key_id", k.ID)
	if err := h.deps.StartSession(w, r, Session{Identity: id, Key: k}, safeNext(st.Next)); err != nil {
		h.fail(w, r, fmt.Errorf("oidc: start a session for %s: %w", id.Label(), err))
	}
}

// verify exchanges the code for tokens and returns whom the ID token
// speaks for, and the raw ID token.
func (h *Handler) verify(ctx context.Context, code string, st *loginState) (Identity, string, error) {
	if code == "" {
		return Identity{}, "", errors.New("oidc: the callback has no code")
	}
	p, err := h.discover(ctx)
	if err != nil {
		return Identity{}, "", err
	}
	tok, err := p.oauth.Exchange(gooidc.ClientContext(ctx, h.cfg.HTTPClient), code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return Identity{}, "", fmt.Errorf("oidc: exchange the code: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, "", errors.New("oidc: the token answer has no id_token")
	}
	id, idt, err := h.identity(ctx, p, raw)
	if err != nil {
		return Identity{}, "", err
	}
	if !tokenEqual(idt.Nonce, st.Nonce) {
		return Identity{}, "", errors.New("oidc: the ID token's nonce is not the sign-in's")
	}
	return id, raw, nil
}

// VerifyIDToken checks an ID token that another node of the mesh verified
// at its callback (signature, issuer, audience, expiry; the nonce was that
// node's to check) and returns whom it speaks for: the leader's check
// before it lets a node make a key for a person.
func (h *Handler) VerifyIDToken(ctx context.Context, raw string) (Identity, error) {
	p, err := h.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	id, _, err := h.identity(ctx, p, raw)
	return id, err
}

// identity verifies raw and maps its claims.
func (h *Handler) identity(ctx context.Context, p *provider, raw string) (Identity, *gooidc.IDToken, error) {
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, nil, fmt.Errorf("oidc: verify the ID token: %w", err)
	}
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, nil, fmt.Errorf("oidc: read the ID token's claims: %w", err)
	}
	id := Identity{Subject: idt.Subject, Email: claimString(claims["email"]), Name: claimString(claims["name"])}
	if id.Name == "" {
		id.Name = claimString(claims["preferred_username"])
	}
	id.Tenant = claimString(claims[h.cfg.TenantClaim])
	id.Admin = h.cfg.AdminGroup != "" && slices.Contains(claimStrings(claims["groups"]), h.cfg.AdminGroup)
	return id, idt, nil
}

// MaxKeyTTL is the longest life of a key this handler asks for.
func (h *Handler) MaxKeyTTL() time.Duration { return max(h.cfg.SessionKeyTTL, h.cfg.CLIKeyTTL) }

// claimString reads a claim that is a string, or a list of exactly one.
func claimString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	if l := claimStrings(raw); len(l) == 1 {
		return strings.TrimSpace(l[0])
	}
	return ""
}

// claimStrings reads a claim that is a list of strings, or one string.
func claimStrings(raw json.RawMessage) []string {
	var l []string
	if json.Unmarshal(raw, &l) == nil {
		return l
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return []string{s}
	}
	return nil
}

// knownTenant reports whether id names a tenant the mesh knows.
func (h *Handler) knownTenant(id Identity) bool {
	return id.Tenant != "" && len(id.Tenant) <= 63 && h.deps.TenantExists(id.Tenant)
}

// noTenant answers a user the mesh has no tenant for: that, and nothing
// else.
func (h *Handler) noTenant(w http.ResponseWriter, r *http.Request, id Identity) {
	h.log.InfoContext(r.Context(), "oidc: sign-in refused: no tenant of this mesh", "subject", id.Subject, "claim", h.cfg.TenantClaim,
		"tenant", truncate(id.Tenant, 64))
	h.page(w, r, http.StatusForbidden, pageData{Title: "No tenant",
		Text: "You signed in, but your account is not assigned to a tenant of this mesh; ask an operator."})
}

// fail answers a failure of the node's own (the cause goes to the log).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.log.ErrorContext(r.Context(), "oidc: sign-in", "err", err)
	h.page(w, r, http.StatusServiceUnavailable, pageData{Title: "Sign-in failed",
		Text:  "Signing you in failed on this node (it may have no leader yet). Nothing was changed: try again in a moment.",
		Links: []link{{"/ui/login", "Back to sign-in"}}})
}

// Prefixes of the names of the keys sign-ins make: a browser session's,
// and `pwmesh login`'s.
const (
	SessionKeyPrefix = "oidc:"
	CLIKeyPrefix     = "cli:"
)

// KeyName is the name of a key for id: prefix + the email or subject, at
// most 64 bytes of printable text (the API's bound on key names).
func KeyName(prefix string, id Identity) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, prefix+id.Label())
	for len(s) > 64 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// home is where a sign-in goes when next is not a path of the UI.
const home = "/ui/jobs"

// maxNextLen bounds next (a form's draft may ride in it).
const maxNextLen = 2048

// safeNext returns next when it is a path of the UI (so that a sign-in
// never sends the browser to another site), else the jobs page.
func safeNext(next string) string {
	if next == "" || len(next) > maxNextLen || !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "/ui/login") ||
		strings.HasPrefix(next, "/ui/logout") || strings.HasPrefix(next, "/ui/callback") || strings.HasPrefix(next, "/ui/cli-login") ||
		strings.HasPrefix(next, "/ui/api/") || strings.ContainsAny(next, "\\\r\n\t") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.Contains(u.Path, "..") {
		return home
	}
	return next
}
