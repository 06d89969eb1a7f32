// Package fsstore is the local on-disk cas.Store.
//
// Layout under the store's directory:
//
//	blocks/<last two chars of cid>/<cid>   one read-only file per object
//	tmp/                                   in-flight writes
//
// Put streams into a temp file in tmp/ while hashing, fsyncs it, and renames
// it to its CID name, so a crash never leaves a partial object under a CID;
// New removes any temp files a crash left behind. A directory belongs to one
// Store at a time.
package fsstore
