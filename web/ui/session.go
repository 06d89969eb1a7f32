package ui

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/web/cookieseal"
)

// Identity is whom a session acts for: what a sign-in establishes. The
// API-key sign-in fills it from the key; an OpenID Connect sign-in fills
// it from the ID token and a short-lived key it creates for the user.
type Identity struct {
	// Tenant is the tenant every page shows (the key's).
	Tenant string
	// Admin shows the admin pages (keys, tenants); the API still checks
	// every admin call against the key itself.
	Admin bool
	// Name is shown in the header: a person's name, or the key's name or
	// prefix.
	Name string
	// Key is the API key secret every API call of the session carries
	// (Authorization: Bearer), so that the API's tenant isolation,
	// quotas, metering and revocation apply to the session unchanged.
	Key string
	// KeyID is the key's ID ("" when unknown).
	KeyID string
	// RevokeOnSignOut: sign-out revokes the key (DELETE /keys/{KeyID}),
	// for a key minted for this session alone.
	RevokeOnSignOut bool
	// ExpiresAt ends the session early (the key's own expiry); zero: the
	// session lasts Config.SessionLifetime.
	ExpiresAt time.Time
}

// session is a signed-in browser's state, sealed in its cookie.
type session struct {
	V       int    `json:"v"`
	Tenant  string `json:"t"`
	Admin   bool   `json:"a,omitempty"`
	Name    string `json:"n"`
	Key     string `json:"k"`
	KeyID   string `json:"i,omitempty"`
	Revoke  bool   `json:"r,omitempty"`
	Issued  int64  `json:"iat"` // Unix seconds
	Expires int64  `json:"exp"` // Unix seconds
	// CSRF is the session's anti-forgery token: every state-changing
	// request of the session must carry it (a form field or a header).
	CSRF string `json:"c"`
}

// Cookie names and the session format.
const (
	sessionCookie  = "pwmesh_session"
	loginCookie    = "pwmesh_login" // the sign-in form's anti-forgery token
	sessionVersion = 1
	csrfField      = "csrf"         // the hidden form field
	csrfHeader     = "X-CSRF-Token" // what the page's script sends
	maxNameLen     = 128
	// maxCookieLen keeps the cookie well under browsers' 4 KiB.
	maxCookieLen = 3800
)

// sessionAAD binds a sealed cookie to its name and format.
var sessionAAD = []byte("pwmesh ui session v1")

// DeriveSessionKey derives the key that seals session cookies from a
// secret every node of the mesh shares (the cluster key), so that any
// node accepts a session another node started (HKDF-SHA256; the
// derivation is the UI's own, independent of any other use of the
// secret).
func DeriveSessionKey(secret []byte) ([]byte, error) {
	if len(secret) < 16 {
		return nil, errors.New("ui: the session secret must be at least 16 bytes")
	}
	return hkdf.Key(sha256.New, secret, nil, "pwmesh web ui session cookie v1", 32)
}

// sealer seals sessions into their cookie.
type sealer struct{ s *cookieseal.Sealer }

func newSealer(key []byte) (*sealer, error) {
	s, err := cookieseal.New(key, string(sessionAAD), maxCookieLen)
	if err != nil {
		return nil, fmt.Errorf("ui: session key: %w (DeriveSessionKey)", err)
	}
	return &sealer{s: s}, nil
}

func (s *sealer) seal(v *session) (string, error) {
	out, err := s.s.Seal(v)
	if errors.Is(err, cookieseal.ErrTooLarge) {
		return "", errors.New("ui: session too large for a cookie")
	}
	return out, err
}

// open returns the session sealed in value; any tampering, another key or
// another format fails.
func (s *sealer) open(value string) (*session, error) {
	var v session
	if err := s.s.Open(value, &v); err != nil {
		return nil, fmt.Errorf("ui: session cookie: %w", err)
	}
	if v.V != sessionVersion || v.Key == "" || v.CSRF == "" {
		return nil, errors.New("ui: session cookie of another format")
	}
	return &v, nil
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("ui: crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// StartSession signs the browser of r in as id: it sets the session
// cookie on w (HttpOnly, SameSite=Lax, Path=/ui/, Secure under TLS). The
// session lasts Config.SessionLifetime or until id.ExpiresAt, whichever
// comes first. Every sign-in method ends here: the API-key form, and
// OpenID Connect's callback once it has made a key for the user.
func (u *UI) StartSession(w http.ResponseWriter, r *http.Request, id Identity) error {
	if id.Key == "" || id.Tenant == "" {
		return errors.New("ui: a session needs a tenant and a key")
	}
	now := u.now()
	exp := now.Add(u.cfg.SessionLifetime)
	if !id.ExpiresAt.IsZero() && id.ExpiresAt.Before(exp) {
		exp = id.ExpiresAt
	}
	if !exp.After(now) {
		return errors.New("ui: the identity has already expired")
	}
	name := id.Name
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	s := &session{V: sessionVersion, Tenant: id.Tenant, Admin: id.Admin, Name: name, Key: id.Key, KeyID: id.KeyID,
		Revoke: id.RevokeOnSignOut, Issued: now.Unix(), Expires: exp.Unix(), CSRF: randomToken()}
	v, err := u.sealer.seal(s)
	if err != nil {
		return err
	}
	http.SetCookie(w, u.cookie(r, sessionCookie, v, exp.Sub(now)))
	return nil
}

// SignIn starts a session for id and sends the browser on to next (a
// path under /ui/; anything else goes to the jobs page). An error starts
// no session and writes nothing.
func (u *UI) SignIn(w http.ResponseWriter, r *http.Request, id Identity, next string) error {
	if err := u.StartSession(w, r, id); err != nil {
		return err
	}
	// The sign-in form's token has done its work.
	http.SetCookie(w, u.expiredCookie(r, loginCookie, loginPath))
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
	return nil
}

// cookie builds one of the UI's cookies: HttpOnly, SameSite=Lax, under
// /ui/ (the sign-in token under /ui/login), Secure when the node serves
// TLS.
func (u *UI) cookie(r *http.Request, name, value string, life time.Duration) *http.Cookie {
	path := "/ui/"
	if name == loginCookie {
		path = loginPath
	}
	return &http.Cookie{Name: name, Value: value, Path: path, MaxAge: max(int(life/time.Second), 1),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: u.cfg.Secure || r.TLS != nil}
}

func (u *UI) expiredCookie(r *http.Request, name, path string) *http.Cookie {
	c := u.cookie(r, name, "", 0)
	c.Path, c.MaxAge = path, -1
	return c
}

// sessionState says what a request's cookie holds.
type sessionState int

const (
	noSession sessionState = iota
	validSession
	expiredSession // present, but past its expiry or no longer readable
)

// session reads the request's session: a cookie that does not open (a
// tampered one, one sealed with another key) counts as expired.
func (u *UI) session(r *http.Request) (*session, sessionState) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, noSession
	}
	s, err := u.sealer.open(c.Value)
	if err != nil {
		u.log.DebugContext(r.Context(), "ui: session cookie refused", "err", err)
		return nil, expiredSession
	}
	if !u.now().Before(time.Unix(s.Expires, 0)) {
		return nil, expiredSession
	}
	return s, validSession
}

// endSession clears the session cookie.
func (u *UI) endSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, u.expiredCookie(r, sessionCookie, "/ui/"))
}

// csrfOK reports whether r carries the session's anti-forgery token, in
// the X-CSRF-Token header or the csrf form field (which reads the body of
// a url-encoded form; a multipart form checks its field itself).
func (s *session) csrfOK(r *http.Request) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		got = r.PostFormValue(csrfField)
	}
	return tokenEqual(got, s.CSRF)
}

func tokenEqual(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// loginPath is the sign-in page (CONTRACT.md §7).
const loginPath = "/ui/login"

// safeNext returns next when it is a path of this UI (so a sign-in never
// sends the browser to another site), else the jobs page.
func safeNext(next string) string {
	const home = "/ui/jobs"
	if next == "" || len(next) > maxNextLen || !strings.HasPrefix(next, "/ui/") ||
		strings.HasPrefix(next, loginPath) || strings.HasPrefix(next, "/ui/logout") || strings.HasPrefix(next, "/ui/api/") ||
		strings.HasPrefix(next, "/ui/callback") || strings.HasPrefix(next, "/ui/cli-login") ||
		strings.ContainsAny(next, "\\\r\n\t") {
		return home
	}
	p, err := url.Parse(next)
	if err != nil || p.Scheme != "" || p.Host != "" || p.User != nil || strings.Contains(p.Path, "..") {
		return home
	}
	return next
}

// maxNextLen bounds a next= path (a submit form's draft rides in it).
const maxNextLen = 2048

// loginURL is the sign-in page that returns to next afterwards.
func loginURL(next string, expired bool) string {
	q := url.Values{}
	if n := safeNext(next); n != "/ui/jobs" || next == "/ui/jobs" {
		q.Set("next", n)
	}
	if expired {
		q.Set("expired", "1")
	}
	if len(q) == 0 {
		return loginPath
	}
	return loginPath + "?" + q.Encode()
}
