package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// LoginStart is a command-line sign-in the node started (POST
// /ui/cli-login, docs/oidc.md): the person opens URL in a browser and
// checks that the page shows Code; Poll is the secret the command line
// polls with.
type LoginStart struct {
	URL       string `json:"url"`
	Poll      string `json:"poll"`
	Code      string `json:"code"`
	ExpiresIn int    `json:"expires_in"` // seconds
}

// LoginKey is the key a finished command-line sign-in hands out, once.
type LoginKey struct {
	Key       string    `json:"key"`
	KeyID     string    `json:"key_id"`
	Tenant    string    `json:"tenant"`
	Admin     bool      `json:"admin"`
	Name      string    `json:"name"`
	ExpiresAt time.Time `json:"expires_at"`
}

// StartLogin starts a command-line sign-in through the mesh's OpenID
// Connect provider. It needs no key. A node without a provider answers
// 404 (an *APIError).
func (c *Client) StartLogin(ctx context.Context) (LoginStart, error) {
	var s LoginStart
	err := c.doJSON(ctx, request{method: http.MethodPost, path: "/ui/cli-login"}, &s)
	return s, err
}

// PollLogin asks whether the sign-in of poll is done, holding the answer
// up to wait while it is pending (the node caps it at 30 s). It returns
// the key and true once signed in (the node then forgets the sign-in),
// false while pending, or an *APIError: 403 no_tenant or sign_in_expired,
// 404 unknown or expired, 503 when the key could not be made yet (poll
// again).
func (c *Client) PollLogin(ctx context.Context, poll string, wait time.Duration) (LoginKey, bool, error) {
	body := map[string]string{"poll": poll}
	if wait > 0 {
		body["wait"] = wait.String()
	}
	resp, err := c.do(ctx, request{method: http.MethodPost, path: "/ui/cli-login/poll", json: body})
	if err != nil {
		return LoginKey{}, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return LoginKey{}, false, nil
	}
	var k LoginKey
	if err := json.NewDecoder(resp.Body).Decode(&k); err != nil || k.Key == "" {
		return LoginKey{}, false, fmt.Errorf("pwmesh: POST /ui/cli-login/poll: bad answer (%v)", err)
	}
	return k, true, nil
}
