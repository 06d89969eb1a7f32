package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// wrapLabel starts the GCM additional data of every wrapped key; it keeps a
// wrapped key from ever authenticating as anything else.
const wrapLabel = "pwmesh wrapped data key v1\x00"

const (
	gcmNonceSize = 12
	gcmTagSize   = 16
	// wrappedSize is len(WrappedKey.Sealed): nonce, sealed data key, tag.
	wrappedSize = gcmNonceSize + KeySize + gcmTagSize
)

// WrappedKey is a tenant data key encrypted under a master key, as stored.
// Sealed is a random 12-byte nonce followed by the AES-256-GCM ciphertext and
// tag of the 32-byte data key; the GCM additional data binds Version, Master
// and the caller's aad, so none of them can be swapped.
type WrappedKey struct {
	Version uint32 `json:"version"`
	Master  string `json:"master"`
	Sealed  []byte `json:"sealed"`
}

// NewDataKey generates a data key from crypto/rand and wraps it with the
// active master key. aad binds the key to its owner (e.g. "tenant:<name>") and
// must be passed again to Unwrap.
func (k *Keyring) NewDataKey(version uint32, aad []byte) (plain [KeySize]byte, w WrappedKey, err error) {
	rand.Read(plain[:]) // never returns an error; crashes the program if it cannot read
	w, err = k.Wrap(plain, version, aad)
	if err != nil {
		clear(plain[:])
		return plain, WrappedKey{}, err
	}
	return plain, w, nil
}

// Wrap encrypts the data key plain, of the given version, with the active
// master key.
func (k *Keyring) Wrap(plain [KeySize]byte, version uint32, aad []byte) (WrappedKey, error) {
	aead, err := k.aead(k.active)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("seal: wrap: %w", err)
	}
	sealed := make([]byte, gcmNonceSize, wrappedSize)
	rand.Read(sealed)
	sealed = aead.Seal(sealed, sealed[:gcmNonceSize], plain[:], wrapAD(version, k.active, aad))
	return WrappedKey{Version: version, Master: k.active, Sealed: sealed}, nil
}

// Unwrap decrypts w with the master key it names. It fails with
// ErrUnknownMaster (naming the ID) when the keyring lacks that key, ErrFormat
// when Sealed has the wrong size, and ErrAuth when w was altered, its version
// or master changed, or aad differs from the one given to Wrap.
func (k *Keyring) Unwrap(w WrappedKey, aad []byte) ([KeySize]byte, error) {
	var plain [KeySize]byte
	aead, err := k.aead(w.Master)
	if err != nil {
		return plain, fmt.Errorf("seal: unwrap version %d: %w", w.Version, err)
	}
	if len(w.Sealed) != wrappedSize {
		return plain, fmt.Errorf("seal: unwrap version %d: sealed key is %d bytes, want %d: %w", w.Version, len(w.Sealed), wrappedSize, ErrFormat)
	}
	out, err := aead.Open(nil, w.Sealed[:gcmNonceSize], w.Sealed[gcmNonceSize:], wrapAD(w.Version, w.Master, aad))
	if err != nil {
		return plain, fmt.Errorf("%w: unwrap version %d under master key %q", ErrAuth, w.Version, w.Master)
	}
	copy(plain[:], out)
	clear(out)
	return plain, nil
}

// Rewrap unwraps w with whichever master key it names and wraps it again with
// the active one, keeping its Version. It is the per-key step of a master-key
// rotation; see the package documentation.
func (k *Keyring) Rewrap(w WrappedKey, aad []byte) (WrappedKey, error) {
	plain, err := k.Unwrap(w, aad)
	if err != nil {
		return WrappedKey{}, err
	}
	defer clear(plain[:])
	return k.Wrap(plain, w.Version, aad)
}

// aead returns AES-256-GCM under master key id.
func (k *Keyring) aead(id string) (cipher.AEAD, error) {
	key, ok := k.keys[id]
	if !ok {
		return nil, fmt.Errorf("master key %q: %w", id, ErrUnknownMaster)
	}
	return newGCM(key[:])
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: aes: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("seal: gcm: %w", err)
	}
	return g, nil
}

// wrapAD is the GCM additional data of a wrapped key: the label, the version
// (4 bytes big-endian), the master ID preceded by its length (1 byte; IDs
// are at most 64 bytes), then the caller's aad. Only the last field has no
// length, so the encoding is unambiguous.
func wrapAD(version uint32, master string, aad []byte) []byte {
	ad := make([]byte, 0, len(wrapLabel)+4+1+len(master)+len(aad))
	ad = append(ad, wrapLabel...)
	ad = binary.BigEndian.AppendUint32(ad, version)
	ad = append(ad, byte(len(master)))
	ad = append(ad, master...)
	return append(ad, aad...)
}
