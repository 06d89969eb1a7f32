package ui

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/web"
)

// loginData is the sign-in page's: nothing about the cluster, only the
// form, the way back and the other ways in.
type loginData struct {
	Next      string
	Token     string // the sign-in form's anti-forgery token
	Expired   bool
	SignedOut bool
	Providers []Provider
}

// loginLife is how long a sign-in form's token lasts.
const loginLife = time.Hour

// loginPage shows the sign-in form. A browser that is signed in already
// goes on to next.
func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	next := safeNext(q.Get("next"))
	if s, _ := u.session(r); s != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	d := loginData{Next: next, Expired: q.Get("expired") == "1", SignedOut: q.Get("signed_out") == "1", Providers: u.cfg.SignInProviders}
	d.Token = u.loginToken(w, r)
	u.render(w, r, http.StatusOK, "login", newView(nil, "Sign in", "", d))
}

// loginToken returns the browser's sign-in token, setting a new one when
// it has none: a form posted from another site lacks the cookie (it is
// SameSite=Lax), so nobody can sign a browser in to their own account
// behind its back.
func (u *UI) loginToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == len(randomToken()) {
		return c.Value
	}
	t := randomToken()
	http.SetCookie(w, u.cookie(r, loginCookie, t, loginLife))
	return t
}

// loginSubmit signs in with an API key.
func (u *UI) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	next := safeNext(r.PostFormValue("next"))
	d := loginData{Next: next, Providers: u.cfg.SignInProviders}
	fail := func(status int, msg string) {
		d.Token = u.loginToken(w, r)
		u.render(w, r, status, "login", newView(nil, "Sign in", "", d).withError(msg))
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !tokenEqual(r.PostFormValue(csrfField), c.Value) {
		fail(http.StatusForbidden, "This sign-in form has expired or was not sent from this site. Nothing was changed: try again.")
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("key"))
	if secret == "" {
		fail(http.StatusBadRequest, "Enter an API key.")
		return
	}
	k, err := u.deps.Identify(r.Context(), secret)
	if err != nil {
		var we *web.Error
		if errors.As(err, &we) && we.Status == http.StatusServiceUnavailable {
			fail(http.StatusServiceUnavailable, "This node is starting or has no leader yet. Try again in a moment.")
			return
		}
		u.log.DebugContext(r.Context(), "ui: sign-in refused", "err", err)
		fail(http.StatusUnauthorized, "That API key is not valid: it is unknown, revoked or expired.")
		return
	}
	id := Identity{Tenant: k.Tenant, Admin: k.Admin, Name: k.Name, Key: secret, KeyID: k.ID}
	if id.Name == "" {
		id.Name = "key " + k.Prefix + "…"
	}
	if k.ExpiresAt != nil {
		id.ExpiresAt = *k.ExpiresAt
	}
	if err := u.SignIn(w, r, id, next); err != nil {
		fail(http.StatusUnauthorized, "That API key has expired.")
	}
}

// logoutPage asks to confirm a sign-out (a link cannot sign anyone out:
// sign-out is a form with the session's token).
func (u *UI) logoutPage(w http.ResponseWriter, r *http.Request, s *session) {
	u.render(w, r, http.StatusOK, "logout", newView(s, "Sign out", "", nil))
}

// logout ends the session: the cookie is cleared, and a key minted for
// this session alone is revoked.
func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	s, _ := u.session(r)
	if s == nil {
		u.endSession(w, r)
		http.Redirect(w, r, loginPath+"?signed_out=1", http.StatusSeeOther)
		return
	}
	if !s.csrfOK(r) {
		u.forbidden(w, r, s)
		return
	}
	if s.Revoke && s.KeyID != "" {
		if err := u.sendJSON(r, s, http.MethodDelete, "/keys/"+url.PathEscape(s.KeyID), nil, nil); err != nil {
			u.log.WarnContext(r.Context(), "ui: revoke the session's key at sign-out", "key_id", s.KeyID, "err", err)
		}
	}
	u.endSession(w, r)
	http.Redirect(w, r, loginPath+"?signed_out=1", http.StatusSeeOther)
}
