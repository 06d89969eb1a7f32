package oidc

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pwmesh/pwmesh/web/cookieseal"
)

// DeriveStateKey derives the key that seals the flow's state cookie from
// a secret every node of the mesh shares (the cluster key), so that the
// provider may send the browser back to any node (HKDF-SHA256 with a
// label of its own: the same secret gives the UI's session key under
// another label).
func DeriveStateKey(secret []byte) ([]byte, error) {
	if len(secret) < 16 {
		return nil, errors.New("oidc: the state secret must be at least 16 bytes")
	}
	return hkdf.Key(sha256.New, secret, nil, "pwmesh oidc login state v1", 32)
}

// loginState is what the browser carries through the provider, sealed in
// a cookie: what proves that the callback answers a sign-in this browser
// started (State), what the ID token must echo (Nonce), the PKCE
// verifier, and where to go afterwards.
type loginState struct {
	V        int    `json:"v"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"pv"`
	Next     string `json:"next,omitempty"`
	// CLI is the pending command-line sign-in this one completes ("" for
	// a browser session).
	CLI     string `json:"cli,omitempty"`
	Expires int64  `json:"exp"` // Unix seconds
}

const (
	stateVersion = 1
	// stateCookiePrefix + the state's first characters names the cookie,
	// so that two sign-ins in two tabs do not overwrite each other's.
	stateCookiePrefix = "pwmesh_oidc_"
	stateNameChars    = 16
	maxCookieLen      = 3800
)

// stateAAD binds a sealed state to its use and format.
var stateAAD = []byte("pwmesh oidc login state v1")

// sealer seals the sign-in state into its cookie.
type sealer struct{ s *cookieseal.Sealer }

func newSealer(key []byte) (*sealer, error) {
	s, err := cookieseal.New(key, string(stateAAD), maxCookieLen)
	if err != nil {
		return nil, fmt.Errorf("oidc: state key: %w (DeriveStateKey)", err)
	}
	return &sealer{s: s}, nil
}

func (s *sealer) seal(v *loginState) (string, error) {
	out, err := s.s.Seal(v)
	if errors.Is(err, cookieseal.ErrTooLarge) {
		return "", errors.New("oidc: sign-in state too large for a cookie")
	}
	return out, err
}

// open returns the state sealed in value; tampering, another key or
// another format fails.
func (s *sealer) open(value string) (*loginState, error) {
	var v loginState
	if err := s.s.Open(value, &v); err != nil {
		return nil, fmt.Errorf("oidc: state cookie: %w", err)
	}
	if v.V != stateVersion || v.State == "" || v.Nonce == "" || v.Verifier == "" {
		return nil, errors.New("oidc: state cookie of another format")
	}
	return &v, nil
}

// randomToken returns 32 random bytes, base64url (43 characters).
func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("oidc: crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func tokenEqual(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// stateCookieName is the cookie that holds the sign-in whose state is
// state ("" for a state too short to be one of ours).
func stateCookieName(state string) string {
	if len(state) != len(randomToken()) {
		return ""
	}
	for _, c := range state {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return ""
		}
	}
	return stateCookiePrefix + state[:stateNameChars]
}

// cookie builds one of the flow's cookies: HttpOnly, SameSite=Lax (the
// provider's redirect back is a top-level navigation, which carries it),
// Secure under TLS.
func (h *Handler) cookie(r *http.Request, name, value, path string, life time.Duration) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: path, MaxAge: max(int(life/time.Second), 1),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: h.cfg.Secure || r.TLS != nil}
}

func (h *Handler) expiredCookie(r *http.Request, name, path string) *http.Cookie {
	c := h.cookie(r, name, "", path, 0)
	c.MaxAge = -1
	return c
}

// errState is a callback that answers no sign-in this browser started (or
// one that took too long).
var errState = errors.New("oidc: no matching sign-in in progress")

// takeState reads and clears the state cookie of the callback's state,
// and checks it is the one the browser was sent out with and not expired.
func (h *Handler) takeState(w http.ResponseWriter, r *http.Request, state string) (*loginState, error) {
	name := stateCookieName(state)
	if name == "" {
		return nil, fmt.Errorf("%w: malformed state", errState)
	}
	c, err := r.Cookie(name)
	if err != nil {
		return nil, fmt.Errorf("%w: no state cookie", errState)
	}
	http.SetCookie(w, h.expiredCookie(r, name, CallbackPath)) // one use
	st, err := h.sealer.open(c.Value)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errState, err)
	}
	if !tokenEqual(st.State, state) {
		return nil, fmt.Errorf("%w: state differs", errState)
	}
	if !h.now().Before(time.Unix(st.Expires, 0)) {
		return nil, fmt.Errorf("%w: expired", errState)
	}
	return st, nil
}
