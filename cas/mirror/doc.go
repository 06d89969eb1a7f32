// Package mirror is the object-storage mirror of the content-addressed store:
// a cas.Store in an S3, GCS or local-directory bucket (gocloud.dev/blob), and
// an Uploader that copies content into it in the background.
//
// # Layout
//
// Under a key prefix (default "pwmesh/"):
//
//	<prefix>blocks/<cid>    one object per CID, holding exactly that content
//	<prefix>tmp/<random>    uploads whose CID is not known yet
//
// # Content is never visible under a CID it does not hash to
//
// Object stores have no rename, and an upload whose CID is unknown cannot
// choose its final key. So Put streams the content to a temporary key while
// hashing it, then copies the finished object server-side to blocks/<cid>
// (S3 copies at most 5 GiB; a larger object is streamed through again and
// re-hashed) and deletes the temporary key. A temporary object a crash leaves
// behind is never listed or read; a lifecycle rule expiring <prefix>tmp/
// after a day removes it.
//
// PutExpected knows the CID, so it streams straight to blocks/<cid>, hashing
// as it goes. Object stores publish an object only when its upload completes,
// so when the hash turns out wrong, or reading fails, or the caller's
// context ends, the store cancels the upload's context before closing the
// writer: gocloud documents that as aborting the write, and the key never
// appears (S3 aborts the multipart upload, GCS the resumable one, fileblob
// removes its temporary file). An object already present is not sent again;
// the content is still read and checked.
//
// # Large objects
//
// Nothing holds a whole object in memory. Uploads go in parts of
// Options.PartSize: S3 multipart uploads with Options.Concurrency parts in
// flight, GCS resumable-upload chunks. Open returns a File that reads with
// range requests, so Seek+Read (http.ServeContent) fetches only what is read.
//
// # Uploader
//
// An Uploader takes CIDs (Enqueue never blocks, and ignores a CID already
// pending), copies each from a source store to the mirror with PutExpected
// (skipping those already there), and retries transient failures with
// jittered exponential backoff on an injected Clock until its context ends.
// Permanent failures (the source lost the content, or it is corrupt) end a
// CID's retries; OnDone reports every finished CID.
package mirror
