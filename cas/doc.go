// Package cas defines pwmesh's content-addressed store: how content is named
// (Ref, and CIDs that are always CIDv1, codec raw, multihash SHA2-256, printed
// in base32), the Store interface every implementation satisfies, and the
// package's sentinel errors.
//
// Implementations live in sub-packages (cas/fsstore for the local disk) and
// all run the behavioural suite in cas/castest. This package imports no other
// pwmesh package.
package cas
