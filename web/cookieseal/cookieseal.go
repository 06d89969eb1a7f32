// Package cookieseal seals small values into cookie-safe strings with
// AES-256-GCM: a cookie sealed on one node opens on every node that holds
// the same key, and any change to it, another key or another purpose
// (the additional data) makes it fail to open. The web UI's sessions and
// OpenID Connect's sign-in state use it.
package cookieseal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Errors of Open; Seal returns ErrTooLarge.
var (
	ErrTooLarge  = errors.New("cookieseal: value too large for a cookie")
	ErrMalformed = errors.New("cookieseal: malformed value")
	ErrNotOpen   = errors.New("cookieseal: value does not open (tampered, another key or another purpose)")
)

// Sealer seals and opens values for one purpose.
type Sealer struct {
	aead   cipher.AEAD
	aad    []byte
	maxLen int
}

// New returns a Sealer under a 32-byte key for purpose (bound into every
// value as additional data), whose sealed values are at most maxLen
// characters.
func New(key []byte, purpose string, maxLen int) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("cookieseal: key is %d bytes, want 32", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: g, aad: []byte(purpose), maxLen: maxLen}, nil
}

// Seal returns v's JSON, sealed and base64url-encoded.
func (s *Sealer) Seal(v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, s.aad))
	if len(out) > s.maxLen {
		return "", ErrTooLarge
	}
	return out, nil
}

// Open decodes what Seal made into v (a pointer).
func (s *Sealer) Open(value string, v any) error {
	if len(value) > s.maxLen {
		return ErrTooLarge
	}
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) < s.aead.NonceSize() {
		return ErrMalformed
	}
	plain, err := s.aead.Open(nil, b[:s.aead.NonceSize()], b[s.aead.NonceSize():], s.aad)
	if err != nil {
		return ErrNotOpen
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return ErrMalformed
	}
	return nil
}
