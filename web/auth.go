package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// caller is the authenticated key of a request.
type caller struct {
	key scheduler.APIKey
	// secret is the key's secret: a write this request forwards to the
	// leader carries it (scheduler.WithCaller), and the leader checks it.
	secret string
}

// tenant is the tenant every object the caller sees belongs to.
func (c *caller) tenant() string { return c.key.Tenant }

// tier is the caller key's tier; an empty tier counts as free.
func (c *caller) tier() string {
	if c.key.Tier == "" {
		return scheduler.PriorityFree
	}
	return c.key.Tier
}

// HashKey returns the hex SHA-256 of an API key's secret: what the state
// stores as APIKey.Hash.
func HashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// keyPrefix starts every secret NewKeySecret makes.
const keyPrefix = "pwm_"

// NewKeySecret returns a fresh API key secret: "pwm_" followed by 32
// lowercase hex characters (128 random bits).
func NewKeySecret() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("web: crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return keyPrefix + hex.EncodeToString(b[:])
}

// maxSecretLen bounds what is hashed and looked up.
const maxSecretLen = 512

var errUnauthorized = apiError(http.StatusUnauthorized, "unauthorized",
	"a valid API key is required: Authorization: Bearer <key>")

var errKeyExpired = apiError(http.StatusUnauthorized, "unauthorized", "this API key has expired: ask an admin for a new one")

// authenticate finds the key named by the Authorization header and notes
// its use; an expired key is refused.
func (s *Server) authenticate(r *http.Request) (*caller, error) {
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, errUnauthorized
	}
	return s.authenticateSecret(r.Context(), secret)
}

// KeyIdentity is what an API key speaks for: the web UI's sign-in reads
// it (Identify). It never holds the secret or its hash.
type KeyIdentity struct {
	ID     string
	Prefix string // the secret's first characters, for humans
	Name   string
	Tenant string
	Tier   string
	Admin  bool
	// ExpiresAt is the key's expiry; nil: none.
	ExpiresAt *time.Time
}

// Identify checks an API key secret exactly as a request's bearer is
// checked (unknown, revoked or expired: 401; a node with no leader yet:
// 503, both as *Error) and says whom it speaks for. It counts no API
// call: signing in to the web UI is not one (CONTRACT.md §3).
func (s *Server) Identify(ctx context.Context, secret string) (KeyIdentity, error) {
	c, err := s.authenticateSecret(ctx, strings.TrimSpace(secret))
	if err != nil {
		return KeyIdentity{}, err
	}
	k := c.key
	return KeyIdentity{ID: k.ID, Prefix: k.Prefix, Name: k.Name, Tenant: k.Tenant, Tier: c.tier(), Admin: k.Admin, ExpiresAt: k.ExpiresAt}, nil
}

// authenticateSecret finds the key of secret and notes its use; an
// expired key is refused.
func (s *Server) authenticateSecret(ctx context.Context, secret string) (*caller, error) {
	if secret == "" || len(secret) > maxSecretLen {
		return nil, errUnauthorized
	}
	hash := HashKey(secret)
	k, found := s.deps.State.Key(hash)
	if !found {
		h := s.deps.Cluster.Health()
		// A node still loading its state (a restart, no leader yet) does
		// not know any key: that is "try again", not "bad key".
		if !h.Ready {
			return nil, apiError(http.StatusServiceUnavailable, "no_leader",
				"this node is starting or has no leader yet; retry shortly")
		}
		// A follower's replica may lag a key just created through another
		// node: give it a moment to catch up before saying no. A key this
		// node has seen before is not new: it was revoked.
		if h.Role != "leader" && !s.uses.revoked(hash) {
			s.await(ctx, func() bool { k, found = s.deps.State.Key(hash); return found })
		}
		if !found {
			return nil, errUnauthorized
		}
	}
	// Expiry is checked by this node's clock: the state only stores it.
	now := s.now()
	if k.Expired(now) {
		return nil, errKeyExpired
	}
	s.uses.note(k.ID, now)
	s.uses.seen(hash)
	return &caller{key: k, secret: secret}, nil
}
