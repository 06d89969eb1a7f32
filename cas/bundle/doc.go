// Package bundle owns the RunBundle format (CONTRACT.md §4): one
// uncompressed POSIX tar, written deterministically, whose first entry is
// runbundle_manifest.json (PWM RunBundle v0.3.0 plus pwmesh's execution
// record) followed by the artifact files in sorted path order.
//
// Write and Build produce bundles; Verify checks one (first entry, every
// listed hash, no unlisted, unsafe or duplicate member) and names it by CID;
// ReadFile and ReadManifest extract members.
//
// Artifact names: Write keeps the names the caller put in Manifest.Artifacts
// (name -> relative path, e.g. "x_hat": "x_hat.npy"); any file not named
// there gets its relative path as its name ("x_hat.png": "x_hat.png").
// Manifest.Hashes is always recomputed, keyed by the same names.
package bundle
