// Package seal encrypts content at rest (datasets, RunBundles) with
// AES-256-GCM: the key hierarchy (cluster master keys wrapping per-tenant
// data keys) and a streaming format for content of any size. It imports no
// other pwmesh package; callers store wrapped keys and sealed objects
// wherever they like.
//
// # Key hierarchy
//
// A cluster has one or more master keys (MasterKey: an ID and 32 bytes),
// loaded into a Keyring from a key file (ParseKeyringFile: one "ID HEX64" per
// line, the first line active) or, for clusters without a key file, derived
// from the cluster secret (DeriveMasterKey, HKDF-SHA256). Master keys encrypt
// only data keys.
//
// Each tenant has a data key: 32 random bytes with a version number. A data
// key is stored only wrapped (WrappedKey): AES-256-GCM under a master key,
// whose ID the WrappedKey names, with the version, the master ID and a
// caller-chosen aad such as "tenant:<name>" as additional data, so a wrapped
// key cannot be moved to another tenant or relabelled with another version.
//
// Each sealed object gets its own subkey, HKDF-SHA256 of the data key with
// the object's random 16-byte salt, so nonces never repeat under one key even
// across very many objects.
//
// # Format
//
// A sealed object is a 28-byte header followed by segments:
//
//	header   = "PWMSEAL1" | key version (uint32, big-endian) | salt (16 random bytes)
//	okm      = HKDF-SHA256(ikm = data key, salt = salt, info = "pwmesh seal stream v1"), 39 bytes
//	subkey   = okm[0:32], prefix = okm[32:39]
//	segment  = AES-256-GCM(subkey, nonce, plaintext, ad = header | aad): ciphertext | 16-byte tag
//	nonce    = prefix (7) | segment number (uint32, big-endian) | 0x01 on the last segment, else 0x00
//
// Every segment holds 64 KiB of plaintext except the last, which holds 1 to
// 64 KiB, or 0 when the whole plaintext is empty: an object always has
// exactly one final segment. This is the STREAM construction: the counter
// in the nonce detects reordered or dropped segments, the last-segment flag
// detects truncation at a segment boundary and anything appended after the
// end, and the header in the additional data binds version and salt.
// SealedSize gives the exact sealed length: 28 + n + 16 per segment. An object
// holds at most 2^32 segments (256 TiB).
//
// NewWriter and NewReader stream with one segment of memory; NewSeekReader
// also seeks, reading and authenticating only the segment that holds the
// offset (the plaintext length follows from the sealed one: PlainSize). The reader
// returns a segment's plaintext only after its tag checks out and fails with
// ErrAuth on any tampering. It learns the data-key version from the header
// (KeyVersion reads it alone) and asks its caller for that version's key.
//
// # Key rotation
//
// Master-key rotation, with no sealed object re-encrypted:
//
//  1. Generate a new master key and add it as the FIRST line of every node's
//     key file, keeping the old key below it, and load the file on each node.
//     Nodes then wrap with the new key and still unwrap with both. While
//     nodes are updated one by one, a node already wrapping with the new key
//     writes wrapped keys that the others cannot yet unwrap
//     (ErrUnknownMaster); to close that window, first add the new key on a
//     later line everywhere, then move it to the first line.
//  2. Rewrap every tenant's stored data keys (Keyring.Rewrap: unwrap with the
//     master the WrappedKey names, wrap with the active one, same version)
//     and store the results. A WrappedKey whose Master is not
//     Keyring.Active still needs it.
//  3. When none is left, remove the old key from every key file.
//
// Data-key rotation: give the tenant a new data key with the next version
// (Keyring.NewDataKey) and seal new content with it. Old content stays
// readable, because each object's header names its version and the reader
// fetches that version's key, so old versions must be kept while content
// sealed with them exists. Re-encrypting old content (open with the old
// version, seal with the new) is optional and lets an old version be retired.
package seal
