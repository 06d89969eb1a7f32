package cas

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Sentinel errors. Store implementations wrap them; test with errors.Is.
var (
	// ErrNotFound: no object with that CID is stored.
	ErrNotFound = errors.New("cas: not found")
	// ErrCorrupt: content does not hash to the CID it was stored or expected under.
	ErrCorrupt = errors.New("cas: corrupt content")
	// ErrInvalidCID: not a CIDv1 with codec raw and a SHA2-256 multihash.
	ErrInvalidCID = errors.New("cas: invalid cid")
)

// Ref names stored content: its CID, the hex SHA-256 of the bytes (the same
// digest the CID carries, so `sha256sum` can check a download) and its size in
// bytes.
type Ref struct {
	CID    cid.Cid
	SHA256 string // lowercase hex of the content's SHA-256
	Size   int64  // bytes
}

type refJSON struct {
	CID    string `json:"cid"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// MarshalJSON writes {"cid":"bafk...","sha256":"<hex>","size":N}. The zero Ref
// has an empty cid and sha256.
func (r Ref) MarshalJSON() ([]byte, error) {
	j := refJSON{SHA256: r.SHA256, Size: r.Size}
	if r.CID.Defined() {
		j.CID = r.CID.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the form MarshalJSON writes. The cid must be valid (see
// ParseCID) and agree with sha256 when both are given; a missing sha256 is
// derived from the cid and a missing cid from the sha256. An object with
// neither yields the zero Ref.
func (r *Ref) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var j refJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("cas: ref: %w", err)
	}
	if j.Size < 0 {
		return fmt.Errorf("cas: ref: negative size %d", j.Size)
	}
	var out Ref
	switch {
	case j.CID == "" && j.SHA256 == "":
		if j.Size != 0 {
			return fmt.Errorf("cas: ref: size without cid: %w", ErrInvalidCID)
		}
	case j.CID == "":
		c, err := CIDFromSHA256(j.SHA256)
		if err != nil {
			return fmt.Errorf("cas: ref: %w", err)
		}
		out = Ref{CID: c, SHA256: digestHex(c), Size: j.Size}
	default:
		c, err := ParseCID(j.CID)
		if err != nil {
			return fmt.Errorf("cas: ref: %w", err)
		}
		out = Ref{CID: c, SHA256: digestHex(c), Size: j.Size}
		if j.SHA256 != "" {
			want, err := CIDFromSHA256(j.SHA256)
			if err != nil {
				return fmt.Errorf("cas: ref: %w", err)
			}
			if !want.Equals(c) {
				return fmt.Errorf("cas: ref: sha256 %s does not match cid %s: %w", j.SHA256, j.CID, ErrInvalidCID)
			}
		}
	}
	*r = out
	return nil
}

// String returns the CID's string, or "" for the zero Ref.
func (r Ref) String() string {
	if !r.CID.Defined() {
		return ""
	}
	return r.CID.String()
}

// Hasher computes a Ref while content streams through it (an io.Writer).
// Store implementations use it to hash while writing.
type Hasher struct {
	h hash.Hash
	n int64
}

// NewHasher returns an empty Hasher.
func NewHasher() *Hasher { return &Hasher{h: sha256.New()} }

// Write hashes p; it never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.h.Write(p)
}

// Ref names the bytes written so far.
func (h *Hasher) Ref() Ref { return refFromDigest(h.h.Sum(nil), h.n) }

// SumBytes names b.
func SumBytes(b []byte) Ref {
	d := sha256.Sum256(b)
	return refFromDigest(d[:], int64(len(b)))
}

// Sum names everything r yields until io.EOF, streaming.
func Sum(r io.Reader) (Ref, error) {
	h := NewHasher()
	if _, err := io.Copy(h, r); err != nil {
		return Ref{}, fmt.Errorf("cas: sum: %w", err)
	}
	return h.Ref(), nil
}

// refFromDigest builds the Ref of content whose SHA-256 is d (32 bytes).
func refFromDigest(d []byte, size int64) Ref {
	m, err := mh.Encode(d, mh.SHA2_256)
	if err != nil {
		// Unreachable: SHA2_256 is a known code and d has its length.
		panic(fmt.Sprintf("cas: encode multihash: %v", err))
	}
	return Ref{CID: cid.NewCidV1(cid.Raw, m), SHA256: hex.EncodeToString(d), Size: size}
}

// ParseCID parses s and accepts only the CIDs this package makes: CIDv1,
// codec raw, multihash SHA2-256 with a 32-byte digest. Anything else (CIDv0,
// other codecs or hashes, junk) yields an error wrapping ErrInvalidCID. Any
// multibase is accepted; String prints base32.
func ParseCID(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("%w %q: %w", ErrInvalidCID, s, err)
	}
	if err := ValidateCID(c); err != nil {
		return cid.Undef, err
	}
	return c, nil
}

// ValidateCID reports whether c is a CID this package makes (see ParseCID);
// its error wraps ErrInvalidCID. Store implementations call it on every CID
// they are handed.
func ValidateCID(c cid.Cid) error {
	if !c.Defined() {
		return fmt.Errorf("%w: undefined", ErrInvalidCID)
	}
	if c.Version() != 1 {
		return fmt.Errorf("%w %s: version %d, want 1", ErrInvalidCID, c, c.Version())
	}
	if c.Type() != cid.Raw {
		return fmt.Errorf("%w %s: codec 0x%x, want raw (0x55)", ErrInvalidCID, c, c.Type())
	}
	d, err := mh.Decode(c.Hash())
	if err != nil {
		return fmt.Errorf("%w %s: %w", ErrInvalidCID, c, err)
	}
	if d.Code != mh.SHA2_256 || len(d.Digest) != sha256.Size {
		return fmt.Errorf("%w %s: multihash 0x%x/%d, want sha2-256/32", ErrInvalidCID, c, d.Code, len(d.Digest))
	}
	return nil
}

// CIDFromSHA256 returns the CID of content whose SHA-256 is hexsum (64 hex
// digits, either case).
func CIDFromSHA256(hexsum string) (cid.Cid, error) {
	d, err := hex.DecodeString(hexsum)
	if err != nil || len(d) != sha256.Size {
		return cid.Undef, fmt.Errorf("%w: sha256 %q is not 64 hex digits", ErrInvalidCID, hexsum)
	}
	return refFromDigest(d, 0).CID, nil
}

// SHA256Hex returns the hex SHA-256 digest a valid CID carries.
func SHA256Hex(c cid.Cid) (string, error) {
	if err := ValidateCID(c); err != nil {
		return "", err
	}
	return digestHex(c), nil
}

// digestHex assumes ValidateCID(c) == nil.
func digestHex(c cid.Cid) string {
	h := c.Hash()
	return hex.EncodeToString(h[len(h)-sha256.Size:])
}
