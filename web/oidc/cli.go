package oidc

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// A command-line sign-in (`pwmesh login`):
//
//  1. POST /ui/cli-login (no key) starts one and answers its link, a
//     secret poll token and a short code;
//  2. the person opens the link in any browser, checks the code, confirms
//     and signs in at the provider; the callback marks the sign-in done;
//  3. the command line's POST /ui/cli-login/poll answers 202 while it
//     waits, then once a freshly minted key, and forgets it.
//
// Pending sign-ins live in this node's memory, bounded in number and
// time; the link names this node's external URL.

// cliStarted is the answer of POST /ui/cli-login.
type cliStarted struct {
	URL       string `json:"url"`
	Poll      string `json:"poll"`
	Code      string `json:"code"`
	ExpiresIn int    `json:"expires_in"` // seconds
}

// cliPollRequest is the body of POST /ui/cli-login/poll.
type cliPollRequest struct {
	Poll string `json:"poll"`
	// Wait holds the answer while the sign-in is pending, at most
	// maxPollWait ("25s"; "": answer at once).
	Wait string `json:"wait,omitempty"`
}

// CLIKey is the answer of POST /ui/cli-login/poll once signed in.
type CLIKey struct {
	Key       string    `json:"key"`
	KeyID     string    `json:"key_id"`
	Tenant    string    `json:"tenant"`
	Admin     bool      `json:"admin"`
	Name      string    `json:"name"`
	ExpiresAt time.Time `json:"expires_at"`
}

// maxPollWait bounds how long one poll waits (well under the HTTP
// server's write timeout).
const maxPollWait = 30 * time.Second

// cliLogin is one pending command-line sign-in.
type cliLogin struct {
	id       string
	pollHash string
	code     string
	expires  time.Time
	done     chan struct{} // closed once the callback finished it
	// Set when done: whom it signed in and their ID token (the authority
	// of the key the poll makes), or why not.
	identity *Identity
	idToken  string
	err      error
}

// cliLogins are this node's pending command-line sign-ins.
type cliLogins struct {
	mu     sync.Mutex
	max    int
	byID   map[string]*cliLogin
	byPoll map[string]*cliLogin
}

func newCLILogins(max int) *cliLogins {
	return &cliLogins{max: max, byID: map[string]*cliLogin{}, byPoll: map[string]*cliLogin{}}
}

var errTooMany = errors.New("oidc: too many command-line sign-ins in progress")

func pollHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// add starts a sign-in that expires after ttl and returns it with its poll
// token (kept only as a hash).
func (c *cliLogins) add(now time.Time, ttl time.Duration) (*cliLogin, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now)
	if len(c.byID) >= c.max {
		return nil, "", errTooMany
	}
	poll := randomToken()
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, "", err
	}
	l := &cliLogin{id: base64.RawURLEncoding.EncodeToString(id[:]), pollHash: pollHash(poll), code: userCode(),
		expires: now.Add(ttl), done: make(chan struct{})}
	c.byID[l.id], c.byPoll[l.pollHash] = l, l
	return l, poll, nil
}

// sweep forgets expired sign-ins. c.mu is held.
func (c *cliLogins) sweep(now time.Time) {
	for id, l := range c.byID {
		if !now.Before(l.expires) {
			delete(c.byID, id)
			delete(c.byPoll, l.pollHash)
		}
	}
}

// pending returns the sign-in id while a browser may still complete it.
func (c *cliLogins) pending(id string, now time.Time) *cliLogin {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byID[id]
	if l == nil || !now.Before(l.expires) || l.finished() {
		return nil
	}
	return l
}

func (l *cliLogin) finished() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// pollGrace keeps a finished sign-in for its poll at least this long,
// even past its expiry.
const pollGrace = time.Minute

// finish records the outcome of the sign-in id; false when it is unknown,
// expired or finished already.
func (c *cliLogins) finish(id string, now time.Time, who *Identity, idToken string, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byID[id]
	if l == nil || !now.Before(l.expires) || l.finished() {
		return false
	}
	l.identity, l.idToken, l.err = who, idToken, err
	l.expires = maxTime(l.expires, now.Add(pollGrace))
	close(l.done)
	return true
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// byToken returns the sign-in whose poll token is token.
func (c *cliLogins) byToken(token string, now time.Time) *cliLogin {
	if token == "" || len(token) > 256 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.byPoll[pollHash(token)]
	if l == nil || !now.Before(l.expires) {
		return nil
	}
	return l
}

// expiry is when l expires.
func (c *cliLogins) expiry(l *cliLogin) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return l.expires
}

// take removes l (its outcome is being handed out); false when another
// poll took it first.
func (c *cliLogins) take(l *cliLogin) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID[l.id] != l {
		return false
	}
	delete(c.byID, l.id)
	delete(c.byPoll, l.pollHash)
	return true
}

// putBack returns l after its key could not be minted, for the next poll.
func (c *cliLogins) putBack(l *cliLogin) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID[l.id], c.byPoll[l.pollHash] = l, l
}

// userCode is a short code the command line prints and the browser page
// shows, so that a person who did not start the sign-in notices (letters
// hard to confuse, as RFC 8628 suggests for device codes).
func userCode() string {
	const alphabet = "BCDFGHJKLMNPQRSTVWXZ"
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("oidc: crypto/rand: " + err.Error())
	}
	out := make([]byte, 0, 9)
	for i, v := range b {
		if i == 4 {
			out = append(out, '-')
		}
		out = append(out, alphabet[int(v)%len(alphabet)])
	}
	return string(out)
}

// CLIStart handles POST /ui/cli-login: it starts a command-line sign-in.
func (h *Handler) CLIStart(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 4<<10))
	l, poll, err := h.cli.add(h.now(), h.cfg.LoginTTL)
	if errors.Is(err, errTooMany) {
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "too_many_logins", "too many sign-ins are in progress on this node; try again in a minute")
		return
	}
	if err != nil {
		h.log.ErrorContext(r.Context(), "oidc: start a command-line sign-in", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the sign-in could not be started")
		return
	}
	h.log.DebugContext(r.Context(), "oidc: command-line sign-in started", "login", l.id)
	writeJSON(w, http.StatusOK, cliStarted{URL: h.cfg.ExternalURL + CLILoginPath + "/" + l.id, Poll: poll, Code: l.code,
		ExpiresIn: int(h.cfg.LoginTTL / time.Second)})
}

// confirmCookie holds the confirmation page's anti-forgery token: a page
// of another site cannot post the confirmation (the cookie is
// SameSite=Lax), so nobody can make a browser sign a stranger's command
// line in behind its back.
const confirmCookie = "pwmesh_cli_confirm"

// CLIPage handles GET /ui/cli-login/{id}, the page the command line's
// link opens: it shows the code and asks the person to confirm.
func (h *Handler) CLIPage(w http.ResponseWriter, r *http.Request) {
	l := h.cli.pending(r.PathValue("id"), h.now())
	if l == nil {
		h.unknownCLI(w, r)
		return
	}
	token := randomToken()
	http.SetCookie(w, h.cookie(r, confirmCookie, token, CLILoginPath+"/", h.cfg.LoginTTL))
	h.page(w, r, http.StatusOK, pageData{Title: "Sign in the command line",
		Text: "A command line (pwmesh login) asks to sign in as you. Continue only if you started it yourself and it shows this code:",
		Code: l.code,
		Form: &form{Action: CLILoginPath + "/" + url.PathEscape(l.id), Token: token, Button: "Continue with " + h.cfg.ProviderName}})
}

// CLIContinue handles POST /ui/cli-login/{id}: the person confirmed; on to
// the provider.
func (h *Handler) CLIContinue(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	c, err := r.Cookie(confirmCookie)
	if err != nil || !tokenEqual(r.PostFormValue("csrf"), c.Value) {
		h.log.DebugContext(r.Context(), "oidc: command-line confirmation without its token")
		h.page(w, r, http.StatusForbidden, pageData{Title: "Request refused",
			Text: "This confirmation was not sent from this site's page, or the page is too old. Nothing was changed: open the link the command line printed again."})
		return
	}
	l := h.cli.pending(r.PathValue("id"), h.now())
	if l == nil {
		h.unknownCLI(w, r)
		return
	}
	http.SetCookie(w, h.expiredCookie(r, confirmCookie, CLILoginPath+"/"))
	h.begin(w, r, "", l.id)
}

func (h *Handler) unknownCLI(w http.ResponseWriter, r *http.Request) {
	h.page(w, r, http.StatusNotFound, pageData{Title: "Sign-in link expired",
		Text: "This sign-in link is unknown to this node, was used already, or has expired. Run pwmesh login again."})
}

// cliDone finishes the command-line sign-in id for who (the callback).
func (h *Handler) cliDone(w http.ResponseWriter, r *http.Request, id string, who Identity, idToken string) {
	if !h.cli.finish(id, h.now(), &who, idToken, nil) {
		h.unknownCLI(w, r)
		return
	}
	h.log.InfoContext(r.Context(), "oidc: command line signed in", "subject", who.Subject, "tenant", who.Tenant, "admin", who.Admin)
	h.page(w, r, http.StatusOK, pageData{Title: "Signed in",
		Text: fmt.Sprintf("The command line is signed in as %s (tenant %s). You may close this tab.", who.Label(), who.Tenant)})
}

// CLIPoll handles POST /ui/cli-login/poll {"poll": token, "wait": "25s"}:
// 202 while the sign-in is pending, 200 with a new key once (then it is
// forgotten), 403 when the account has no tenant here, 404 when unknown or
// expired.
func (h *Handler) CLIPoll(w http.ResponseWriter, r *http.Request) {
	var req cliPollRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "want {\"poll\": \"<token>\"}")
		return
	}
	var wait time.Duration
	if req.Wait != "" {
		d, err := time.ParseDuration(req.Wait)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "invalid_wait", "wait must be a duration such as \"25s\"")
			return
		}
		wait = min(d, maxPollWait)
	}
	l := h.cli.byToken(req.Poll, h.now())
	if l == nil {
		writeError(w, http.StatusNotFound, "not_found", "this sign-in is unknown or has expired; run pwmesh login again")
		return
	}
	if !l.finished() && wait > 0 {
		t := time.NewTimer(min(wait, max(h.cli.expiry(l).Sub(h.now()), 0)))
		select {
		case <-l.done:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	if !l.finished() {
		writeJSON(w, http.StatusAccepted, map[string]any{"status": "pending", "expires_in": int(max(h.cli.expiry(l).Sub(h.now()), 0) / time.Second)})
		return
	}
	if !h.cli.take(l) {
		writeError(w, http.StatusNotFound, "not_found", "this sign-in was handed out already; run pwmesh login again")
		return
	}
	if l.err != nil {
		writeError(w, http.StatusForbidden, "no_tenant", "your account is not assigned to a tenant of this mesh; ask an operator")
		return
	}
	who := *l.identity
	k, err := h.deps.MintKey(r.Context(), KeyRequest{Identity: who, Name: KeyName(CLIKeyPrefix, who), TTL: h.cfg.CLIKeyTTL, IDToken: l.idToken})
	switch {
	case errors.Is(err, ErrNoTenant):
		writeError(w, http.StatusForbidden, "no_tenant", "your account is not assigned to a tenant of this mesh; ask an operator")
		return
	case errors.Is(err, ErrRefused):
		h.log.InfoContext(r.Context(), "oidc: the mesh refused a command-line key", "subject", who.Subject, "err", err)
		writeError(w, http.StatusForbidden, "sign_in_expired", "the sign-in no longer proves who you are (it expired); run pwmesh login again")
		return
	case err != nil:
		h.cli.putBack(l)
		h.log.WarnContext(r.Context(), "oidc: mint a command-line key", "subject", who.Subject, "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the key could not be made yet (no leader?); poll again")
		return
	}
	h.log.InfoContext(r.Context(), "oidc: command-line key handed out", "subject", who.Subject, "tenant", who.Tenant, "key_id", k.ID)
	writeJSON(w, http.StatusOK, CLIKey{Key: k.Secret, KeyID: k.ID, Tenant: who.Tenant, Admin: who.Admin, Name: who.Label(),
		ExpiresAt: k.ExpiresAt.UTC()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the API's error shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
