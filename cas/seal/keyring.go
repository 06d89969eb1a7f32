package seal

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Sentinel errors. Every error this package returns starts with "seal: " and
// wraps at most one of these; test with errors.Is.
var (
	// ErrAuth means authentication failed: the ciphertext, its header or the
	// additional data were altered, segments were reordered, dropped or added,
	// or the key is wrong.
	ErrAuth = errors.New("seal: authentication failed")
	// ErrUnknownMaster means a wrapped key names a master key the keyring
	// does not hold.
	ErrUnknownMaster = errors.New("seal: unknown master key")
	// ErrFormat means the input is not in this package's format: a bad magic
	// or size, a malformed key file or key ID.
	ErrFormat = errors.New("seal: bad format")
)

// KeySize is the size in bytes of master keys and data keys.
const KeySize = 32

// masterInfo is the HKDF info label of DeriveMasterKey. Changing it changes
// every derived master key, so it is versioned and never edited.
const masterInfo = "pwmesh master key v1"

// maxIDLen bounds a master key ID.
const maxIDLen = 64

// MasterKey is a cluster master key: it wraps (encrypts) tenant data keys
// and nothing else. ID names it in wrapped keys and key files.
//
// String and GoString print only the ID, so a MasterKey logged by mistake
// does not leak the key.
type MasterKey struct {
	ID  string
	Key [KeySize]byte
}

// String returns "MasterKey(<ID>)" and never the key bytes.
func (m MasterKey) String() string { return "MasterKey(" + m.ID + ")" }

// GoString is String, so %#v does not print the key either.
func (m MasterKey) GoString() string { return m.String() }

// DeriveMasterKey derives a master key from a cluster secret with
// HKDF-SHA256 (no salt, info "pwmesh master key v1"). It is meant for clusters
// without a key file, whose master key then follows from the cluster key: every
// node holding the same secret derives the same key. The secret should carry
// at least 256 bits of entropy.
func DeriveMasterKey(id string, secret []byte) MasterKey {
	k, err := hkdf.Key(sha256.New, secret, nil, masterInfo, KeySize)
	if err != nil {
		// hkdf.Key fails only for lengths beyond 255*32 bytes.
		panic("seal: derive master key: " + err.Error())
	}
	m := MasterKey{ID: id}
	copy(m.Key[:], k)
	clear(k)
	return m
}

// Keyring holds the master keys a node knows, one of them active: Wrap uses
// the active key, Unwrap any key it holds. A Keyring is immutable and safe for
// concurrent use. Printing it shows key IDs only.
type Keyring struct {
	active string
	ids    []string // active first, then the others in the order given
	keys   map[string][KeySize]byte
}

// NewKeyring builds a keyring whose active key is active. IDs must be unique
// and match [A-Za-z0-9._-]{1,64}; all-zero keys are refused as almost
// certainly unset.
func NewKeyring(active MasterKey, others ...MasterKey) (*Keyring, error) {
	k := &Keyring{active: active.ID, keys: make(map[string][KeySize]byte, 1+len(others))}
	for _, m := range append([]MasterKey{active}, others...) {
		if err := checkID(m.ID); err != nil {
			return nil, fmt.Errorf("seal: keyring: master key ID %q: %w", m.ID, err)
		}
		if _, dup := k.keys[m.ID]; dup {
			return nil, fmt.Errorf("seal: keyring: duplicate master key ID %q: %w", m.ID, ErrFormat)
		}
		if isZero(m.Key[:]) {
			return nil, fmt.Errorf("seal: keyring: master key %q is all zeros: %w", m.ID, ErrFormat)
		}
		k.keys[m.ID] = m.Key
		k.ids = append(k.ids, m.ID)
	}
	return k, nil
}

// ParseKeyringFile parses a key file: one key per line as "ID HEX", HEX being
// 64 hex digits (32 bytes), fields separated by spaces or tabs. Lines whose
// first non-blank character is '#' and blank lines are ignored. The first key
// is the active one. Errors give the line number and never quote the line, so
// no key material ends up in logs.
func ParseKeyringFile(data []byte) (*Keyring, error) {
	var keys []MasterKey
	firstLine := map[string]int{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		s := strings.TrimSpace(string(line))
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 2 {
			return nil, fmt.Errorf("seal: key file line %d: want \"ID HEX\", got %d fields: %w", n, len(f), ErrFormat)
		}
		id, hx := f[0], f[1]
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("seal: key file line %d: key ID: %w", n, err)
		}
		if prev, dup := firstLine[id]; dup {
			return nil, fmt.Errorf("seal: key file line %d: key ID already used on line %d: %w", n, prev, ErrFormat)
		}
		m := MasterKey{ID: id}
		if err := decodeKeyHex(m.Key[:], hx); err != nil {
			return nil, fmt.Errorf("seal: key file line %d: %w", n, err)
		}
		firstLine[id] = n
		keys = append(keys, m)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("seal: key file has no keys: %w", ErrFormat)
	}
	k, err := NewKeyring(keys[0], keys[1:]...)
	if err != nil {
		// Only the all-zero check can fail here; name the line, not the ID.
		for _, m := range keys {
			if isZero(m.Key[:]) {
				return nil, fmt.Errorf("seal: key file line %d: key is all zeros: %w", firstLine[m.ID], ErrFormat)
			}
		}
		return nil, err
	}
	return k, nil
}

// decodeKeyHex decodes exactly 2*len(dst) hex digits into dst. Unlike
// encoding/hex its errors name a position, never the offending character.
func decodeKeyHex(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("key must be %d hex digits, got %d characters: %w", 2*len(dst), len(s), ErrFormat)
	}
	for i := range dst {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			pos := 2*i + 1
			if ok1 {
				pos++
			}
			clear(dst)
			return fmt.Errorf("key has a non-hex character at position %d: %w", pos, ErrFormat)
		}
		dst[i] = hi<<4 | lo
	}
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// checkID reports whether id matches [A-Za-z0-9._-]{1,64}.
func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("must be 1 to %d characters: %w", maxIDLen, ErrFormat)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("may hold only A-Z a-z 0-9 . _ -: %w", ErrFormat)
		}
	}
	return nil
}

func isZero(b []byte) bool {
	var zero [KeySize]byte
	return len(b) == KeySize && subtle.ConstantTimeCompare(b, zero[:]) == 1
}

// Active returns the ID of the active master key, the one Wrap uses.
func (k *Keyring) Active() string { return k.active }

// IDs returns the IDs of every key held, the active one first.
func (k *Keyring) IDs() []string { return slices.Clone(k.ids) }

// Has reports whether the keyring holds the master key id.
func (k *Keyring) Has(id string) bool {
	_, ok := k.keys[id]
	return ok
}

// String lists key IDs, never key bytes.
func (k *Keyring) String() string {
	return fmt.Sprintf("seal.Keyring{active: %s, ids: %v}", k.active, k.ids)
}

// GoString is String, so %#v does not print key bytes either.
func (k *Keyring) GoString() string { return k.String() }
