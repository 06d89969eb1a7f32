package cas

import (
	"context"
	"io"

	"github.com/ipfs/go-cid"
)

// File is stored content opened for reading. It is seekable and knows its
// size, so http.ServeContent can serve it with Range support.
type File interface {
	io.ReadSeekCloser
	// Size is the content's length in bytes.
	Size() int64
}

// Store keeps immutable content named by CID. Implementations are safe for
// concurrent use, reject CIDs that fail ValidateCID with ErrInvalidCID, and
// honour ctx cancellation while streaming. cas/castest holds the behavioural
// suite every implementation runs.
type Store interface {
	// Put stores everything r yields, hashing while it streams (content is
	// never held whole in memory), and returns its Ref. Putting content that
	// is already stored succeeds and returns the same Ref.
	Put(ctx context.Context, r io.Reader) (Ref, error)
	// PutExpected is Put that refuses, with ErrCorrupt and storing nothing,
	// content that does not hash to want.
	PutExpected(ctx context.Context, r io.Reader, want cid.Cid) (Ref, error)
	// Open returns the content, or ErrNotFound. The caller closes it.
	Open(ctx context.Context, c cid.Cid) (File, error)
	// Stat returns the content's Ref, or ErrNotFound.
	Stat(ctx context.Context, c cid.Cid) (Ref, error)
	// Has reports whether the content is stored.
	Has(ctx context.Context, c cid.Cid) (bool, error)
	// Delete removes the content, or returns ErrNotFound.
	Delete(ctx context.Context, c cid.Cid) error
	// List calls fn for every stored object, in no particular order, and
	// stops at the first error fn returns, returning it (wrapped).
	List(ctx context.Context, fn func(Ref) error) error
	// Verify re-hashes the stored content: ErrCorrupt when it no longer
	// matches its CID, ErrNotFound when absent.
	Verify(ctx context.Context, c cid.Cid) error
}
