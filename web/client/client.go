package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// userAgent is sent on every request.
const userAgent = "pwmesh-client"

// Client talks to one pwmesh node. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with hc instead of
// http.DefaultClient. Give hc no overall Timeout if you follow logs or
// download large bundles: use contexts instead.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// New returns a client of the node at addr ("http://127.0.0.1:8080"; a bare
// "host:port" means http) sending token as its API key. An empty token sends
// no Authorization header. An addr that does not parse makes every call fail.
func New(addr, token string, opts ...Option) *Client {
	c := &Client{token: token, hc: http.DefaultClient}
	addr = strings.TrimSpace(addr)
	if addr != "" && !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	if u, err := url.Parse(strings.TrimRight(addr, "/")); err == nil && u.Host != "" {
		c.base = u
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Addr returns the node's base URL as the client uses it.
func (c *Client) Addr() string {
	if c.base == nil {
		return ""
	}
	return c.base.String()
}

// APIError is a non-2xx answer of the API. Code is the contract's
// snake_case code; it is empty when the body was not the JSON error envelope.
type APIError struct {
	Status  int
	Code    string
	Message string
}

// Error reads "pwmesh: 404 dataset_not_found: no such dataset".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pwmesh: %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// errorEnvelope is the contract's error body.
type errorEnvelope struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// decodeError turns a non-2xx response into an *APIError. It reads at most
// maxErrorBody bytes of the body.
func decodeError(resp *http.Response) *APIError {
	e := &APIError{Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var env errorEnvelope
	if err := json.Unmarshal(body, &env); err == nil && env.Error != nil {
		e.Code, e.Message = env.Error.Code, env.Error.Message
		return e
	}
	msg := strings.TrimSpace(string(body))
	if msg == "" || !isText(resp.Header.Get("Content-Type"), body) {
		msg = http.StatusText(resp.StatusCode)
	}
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	e.Message = msg
	return e
}

// isText reports whether an error body is worth showing to a human.
func isText(contentType string, body []byte) bool {
	if strings.HasPrefix(contentType, "text/") || strings.Contains(contentType, "json") {
		return true
	}
	return contentType == "" && !bytes.ContainsRune(body, 0)
}

// request describes one API call.
type request struct {
	method string
	path   string // already escaped
	query  url.Values
	header http.Header
	body   io.Reader
	size   int64 // body size; -1 unknown
	json   any   // marshalled as the body when body is nil
}

// do sends r and returns the response when its status is 2xx; otherwise it
// closes the body and returns an *APIError. The caller closes the body.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	if c.base == nil {
		return nil, fmt.Errorf("pwmesh: invalid node address")
	}
	target := strings.TrimRight(c.base.String(), "/") + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var encoded []byte // a JSON body, which can be sent again
	if r.body == nil && r.json != nil {
		b, err := json.Marshal(r.json)
		if err != nil {
			return nil, fmt.Errorf("pwmesh: encode %s %s: %w", r.method, r.path, err)
		}
		encoded = b
	}
	for attempt := 1; ; attempt++ {
		resp, err := c.send(ctx, r, target, encoded)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			apiErr := decodeError(resp)
			resp.Body.Close()
			// A node's per-key rate limit: wait as told and send again, a
			// few times, when the body can be sent again.
			wait, ok := retryAfter(resp.Header.Get("Retry-After"))
			if apiErr.Code == "rate_limited" && ok && wait <= maxRateWait &&
				attempt < maxRateTries && r.body == nil {
				select {
				case <-ctx.Done():
					return nil, apiErr
				case <-time.After(wait):
				}
				continue
			}
			// No leader for a moment (an election): a request that may be
			// sent twice waits for the next one.
			if (apiErr.Code == "no_leader" || apiErr.Code == "timeout") && resp.StatusCode == http.StatusServiceUnavailable &&
				attempt < maxLeaderTries && r.body == nil && repeatable(r) {
				select {
				case <-ctx.Done():
					return nil, apiErr
				case <-time.After(leaderBackoff << (attempt - 1)):
				}
				continue
			}
			return nil, apiErr
		}
		return resp, nil
	}
}

// A rate-limited request is sent again at most maxRateTries times in all,
// each after the node's Retry-After when that is at most maxRateWait. One
// that met no leader is sent at most maxLeaderTries times, 250 ms, 0.5 s,
// 1 s, 2 s apart (an election takes a second or two).
const (
	maxRateTries   = 4
	maxRateWait    = 10 * time.Second
	maxLeaderTries = 5
	leaderBackoff  = 250 * time.Millisecond
)

// repeatable reports whether sending r twice gives what sending it once
// does: a read, or a write that carries an Idempotency-Key.
func repeatable(r request) bool {
	switch r.method {
	case http.MethodGet, http.MethodHead:
		return true
	}
	return r.header.Get("Idempotency-Key") != ""
}

// retryAfter reads a Retry-After header's seconds.
func retryAfter(v string) (time.Duration, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// send makes one attempt of r (with encoded as its JSON body, if any).
func (c *Client) send(ctx context.Context, r request, target string, encoded []byte) (*http.Response, error) {
	body, size := r.body, r.size
	contentType := ""
	if encoded != nil {
		body, size, contentType = bytes.NewReader(encoded), int64(len(encoded)), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return nil, fmt.Errorf("pwmesh: %s %s: %w", r.method, r.path, err)
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", userAgent)
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pwmesh: %w", err) // a *url.Error names method and URL
	}
	return resp, nil
}

// doJSON sends r and decodes a 2xx JSON answer into out (nil: discard).
func (c *Client) doJSON(ctx context.Context, r request, out any) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("pwmesh: %s %s: decode answer: %w", r.method, r.path, err)
	}
	return nil
}

// pathf builds an API path, escaping each argument as one path segment.
func pathf(format string, ids ...string) string {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = url.PathEscape(id)
	}
	return fmt.Sprintf(format, args...)
}
