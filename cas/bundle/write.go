package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/pwmesh/pwmesh/cas"
)

// entryModTime is every member's mtime, so output depends only on content.
var entryModTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Write writes the bundle tar to w: the manifest first, then files (relative
// path -> content) in sorted path order. Every entry is a regular file with
// mode 0644, uid/gid 0, empty user and group names and mtime
// 2000-01-01T00:00:00Z, in USTAR format (PAX where a path needs it), with no
// compression, so the same inputs always give the same bytes.
//
// It returns m as written: Version set (an empty one becomes Version),
// Artifacts completed (see the package doc for names), Hashes recomputed, nil
// maps and slices made empty, execution times in UTC. The caller's maps are
// not modified. Unsafe or duplicate paths, a file named ManifestName, an
// artifact naming a path not in files, or a manifest that cannot be encoded
// (e.g. a NaN metric) give an error wrapping ErrInvalid, before anything is
// written.
func Write(w io.Writer, m Manifest, files map[string][]byte) (Manifest, error) {
	m, paths, err := prepare(m, files)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle: write: %w", err)
	}
	mb, err := encodeManifest(m)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle: write: %w", err)
	}
	tw := tar.NewWriter(w)
	if err := writeEntry(tw, ManifestName, mb); err != nil {
		return Manifest{}, fmt.Errorf("bundle: write %s: %w", ManifestName, err)
	}
	for _, p := range paths {
		if err := writeEntry(tw, p, files[p]); err != nil {
			return Manifest{}, fmt.Errorf("bundle: write %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("bundle: write: %w", err)
	}
	return m, nil
}

// Built is a bundle made in memory by Build.
type Built struct {
	Data     []byte   // the tar
	Manifest Manifest // as written
	Ref      cas.Ref  // cas.SumBytes(Data): the bundle's CID, sha256 and size
}

// Build is Write into memory, also naming the result.
func Build(m Manifest, files map[string][]byte) (Built, error) {
	var buf bytes.Buffer
	m, err := Write(&buf, m, files)
	if err != nil {
		return Built{}, err
	}
	return Built{Data: buf.Bytes(), Manifest: m, Ref: cas.SumBytes(buf.Bytes())}, nil
}

func writeEntry(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     int64(len(data)),
		Mode:     0o644,
		ModTime:  entryModTime,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func encodeManifest(m Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrInvalid, err)
	}
	return append(b, '\n'), nil
}

// prepare validates the inputs and returns the manifest to write and the
// sorted file paths.
func prepare(m Manifest, files map[string][]byte) (Manifest, []string, error) {
	sums := make(map[string][sha256.Size]byte, len(files))
	for p, b := range files {
		sums[p] = sha256.Sum256(b)
	}
	return prepareSums(m, sums)
}

// prepareSums is prepare given each file's SHA-256 instead of its bytes.
func prepareSums(m Manifest, files map[string][sha256.Size]byte) (Manifest, []string, error) {
	switch m.Version {
	case "":
		m.Version = Version
	case Version:
	default:
		return Manifest{}, nil, fmt.Errorf("%w: manifest version %q, want %q", ErrInvalid, m.Version, Version)
	}
	if m.Timestamp != "" {
		if _, err := time.Parse(time.RFC3339, m.Timestamp); err != nil {
			return Manifest{}, nil, fmt.Errorf("%w: timestamp %q is not RFC 3339", ErrInvalid, m.Timestamp)
		}
	}
	paths := slices.Sorted(maps.Keys(files))
	for _, p := range paths {
		if err := checkPath(p); err != nil {
			return Manifest{}, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if p == ManifestName {
			return Manifest{}, nil, fmt.Errorf("%w: %s is reserved for the manifest", ErrInvalid, p)
		}
	}
	if err := checkTree(paths); err != nil {
		return Manifest{}, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	// Names the caller chose, then the path itself for the rest.
	nameOf := make(map[string]string, len(files))
	artifacts := make(map[string]string, len(files))
	for _, name := range slices.Sorted(maps.Keys(m.Artifacts)) {
		p := m.Artifacts[name]
		if name == "" {
			return Manifest{}, nil, fmt.Errorf("%w: artifact with an empty name (path %q)", ErrInvalid, p)
		}
		if _, ok := files[p]; !ok {
			return Manifest{}, nil, fmt.Errorf("%w: artifact %q names %q, which is not among the files", ErrInvalid, name, p)
		}
		if other, dup := nameOf[p]; dup {
			return Manifest{}, nil, fmt.Errorf("%w: artifacts %q and %q both name %q", ErrInvalid, other, name, p)
		}
		nameOf[p] = name
		artifacts[name] = p
	}
	hashes := make(map[string]string, len(files))
	for _, p := range paths {
		name, ok := nameOf[p]
		if !ok {
			name = p
			if other, taken := artifacts[name]; taken {
				return Manifest{}, nil, fmt.Errorf("%w: artifact name %q is taken by %q", ErrInvalid, name, other)
			}
			artifacts[name] = p
		}
		sum := files[p]
		hashes[name] = hashPrefix + hex.EncodeToString(sum[:])
	}
	m.Artifacts, m.Hashes = artifacts, hashes

	if m.Metrics == nil {
		m.Metrics = map[string]any{}
	}
	if m.Provenance.Seeds == nil {
		m.Provenance.Seeds = map[string]int64{}
	}
	if m.Execution.GPUs == nil {
		m.Execution.GPUs = []string{}
	}
	m.Execution.StartedAt = m.Execution.StartedAt.UTC()
	m.Execution.FinishedAt = m.Execution.FinishedAt.UTC()
	return m, paths, nil
}
