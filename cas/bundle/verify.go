package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/pwmesh/pwmesh/cas"
)

// Report describes a verified bundle.
type Report struct {
	Manifest Manifest
	Ref      cas.Ref // the whole stream's CID, sha256 and size
	Files    int     // artifact files checked (the manifest not counted)
}

// endMarkerSize is the two zero blocks that end a tar archive.
const endMarkerSize = 2 * 512

// Verify reads a whole bundle from r and checks it: the first entry is the
// manifest, of Version; every artifact in the manifest has a hash and every
// hash an artifact; every listed file is present once with that SHA-256; no
// regular file is unlisted; no path is unsafe or duplicated; no entry is a
// link or device; the archive ends with its end-of-archive marker, followed
// by nothing but zero padding. Errors about the content wrap ErrInvalid and
// name the offending member; an error reading r is returned as such.
func Verify(r io.Reader) (Report, error) {
	cr := &hashingReader{r: r, h: cas.NewHasher()}
	rep, err := verify(cr)
	if err != nil {
		if cr.err != nil {
			return Report{}, fmt.Errorf("bundle: verify: read: %w", cr.err)
		}
		return Report{}, fmt.Errorf("bundle: verify: %w", err)
	}
	rep.Ref = cr.h.Ref()
	return rep, nil
}

func verify(cr *hashingReader) (Report, error) {
	tr := tar.NewReader(cr)
	m, err := readManifest(tr)
	if err != nil {
		return Report{}, err
	}
	type want struct{ name, sum string }
	expected := make(map[string]want, len(m.Artifacts))
	for _, name := range slices.Sorted(maps.Keys(m.Artifacts)) {
		p := m.Artifacts[name]
		if err := checkPath(p); err != nil {
			return Report{}, fmt.Errorf("%w: artifact %q: %w", ErrInvalid, name, err)
		}
		if p == ManifestName {
			return Report{}, fmt.Errorf("%w: artifact %q names the manifest", ErrInvalid, name)
		}
		if other, dup := expected[p]; dup {
			return Report{}, fmt.Errorf("%w: artifacts %q and %q both name %q", ErrInvalid, other.name, name, p)
		}
		h, ok := m.Hashes[name]
		if !ok {
			return Report{}, fmt.Errorf("%w: %s: artifact %q has no hash", ErrInvalid, p, name)
		}
		sum, ok := strings.CutPrefix(h, hashPrefix)
		if d, err := hex.DecodeString(sum); !ok || err != nil || len(d) != sha256.Size || sum != strings.ToLower(sum) {
			return Report{}, fmt.Errorf("%w: %s: hash %q is not \"sha256:<64 lowercase hex>\"", ErrInvalid, p, h)
		}
		expected[p] = want{name, sum}
	}
	for _, name := range slices.Sorted(maps.Keys(m.Hashes)) {
		if _, ok := m.Artifacts[name]; !ok {
			return Report{}, fmt.Errorf("%w: hash %q has no artifact", ErrInvalid, name)
		}
	}
	if err := checkTree(slices.Sorted(maps.Keys(expected))); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	seen := make(map[string]bool, len(expected))
	last := ManifestName
	for {
		before := cr.n
		hdr, err := tr.Next()
		if err == io.EOF {
			// tar.Reader also reports a clean io.EOF when the input simply
			// stops between entries; only the marker proves nothing is lost.
			if cr.n-before < endMarkerSize {
				return Report{}, fmt.Errorf("%w: truncated after %s: no end-of-archive marker", ErrInvalid, last)
			}
			break
		}
		if err != nil {
			return Report{}, fmt.Errorf("%w: after %s: %w", ErrInvalid, last, err)
		}
		name := hdr.Name
		switch hdr.Typeflag {
		case tar.TypeReg:
		case tar.TypeDir:
			if err := checkPath(strings.TrimSuffix(name, "/")); err != nil {
				return Report{}, fmt.Errorf("%w: directory entry: %w", ErrInvalid, err)
			}
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return Report{}, fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
			}
			last = name
			continue
		default:
			return Report{}, fmt.Errorf("%w: %q: entry type %q is not a regular file", ErrInvalid, name, hdr.Typeflag)
		}
		if err := checkPath(name); err != nil {
			return Report{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if name == ManifestName || seen[name] {
			return Report{}, fmt.Errorf("%w: %s: duplicate entry", ErrInvalid, name)
		}
		seen[name] = true
		exp, ok := expected[name]
		if !ok {
			return Report{}, fmt.Errorf("%w: %s: not listed in the manifest", ErrInvalid, name)
		}
		h := sha256.New()
		if _, err := io.Copy(h, tr); err != nil {
			return Report{}, fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != exp.sum {
			return Report{}, fmt.Errorf("%w: %s: sha256 %s, manifest says %s", ErrInvalid, name, got, exp.sum)
		}
		last = name
	}
	for _, p := range slices.Sorted(maps.Keys(expected)) {
		if !seen[p] {
			return Report{}, fmt.Errorf("%w: %s: listed in the manifest (artifact %q) but missing", ErrInvalid, p, expected[p].name)
		}
	}
	if err := onlyZeros(cr); err != nil {
		return Report{}, err
	}
	return Report{Manifest: m, Files: len(seen)}, nil
}

// readManifest reads and decodes the first entry, which must be the manifest.
func readManifest(tr *tar.Reader) (Manifest, error) {
	hdr, err := tr.Next()
	if err == io.EOF {
		return Manifest{}, fmt.Errorf("%w: empty archive, no %s", ErrInvalid, ManifestName)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: not a tar archive: %w", ErrInvalid, err)
	}
	if hdr.Name != ManifestName || hdr.Typeflag != tar.TypeReg {
		return Manifest{}, fmt.Errorf("%w: first entry is %q, want %s", ErrInvalid, hdr.Name, ManifestName)
	}
	if hdr.Size > maxManifestSize {
		return Manifest{}, fmt.Errorf("%w: %s: %d bytes, more than %d", ErrInvalid, ManifestName, hdr.Size, maxManifestSize)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %w", ErrInvalid, ManifestName, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %w", ErrInvalid, ManifestName, err)
	}
	if m.Version != Version {
		return Manifest{}, fmt.Errorf("%w: %s: version %q, want %q", ErrInvalid, ManifestName, m.Version, Version)
	}
	return m, nil
}

// onlyZeros drains r, failing on any non-zero byte (data after the archive).
func onlyZeros(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if slices.ContainsFunc(buf[:n], func(b byte) bool { return b != 0 }) {
			return fmt.Errorf("%w: data after the end of the archive", ErrInvalid)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ReadManifest reads only the manifest, the first entry; it checks no hashes.
func ReadManifest(r io.Reader) (Manifest, error) {
	m, err := readManifest(tar.NewReader(r))
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle: read manifest: %w", err)
	}
	return m, nil
}

// ReadFile returns the content of the regular-file member at path name (use
// ManifestName for the manifest). It checks no hashes: Verify does. A missing
// member gives ErrNotFound; a broken archive an error wrapping ErrInvalid.
func ReadFile(r io.Reader, name string) ([]byte, error) {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("bundle: read %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("bundle: read %s: %w: %w", name, ErrInvalid, err)
		}
		if hdr.Name != name || hdr.Typeflag != tar.TypeReg {
			continue
		}
		var buf bytes.Buffer
		if hdr.Size > 0 && hdr.Size < 64<<20 {
			buf.Grow(int(hdr.Size))
		}
		if _, err := io.Copy(&buf, tr); err != nil {
			return nil, fmt.Errorf("bundle: read %s: %w: %w", name, ErrInvalid, err)
		}
		return buf.Bytes(), nil
	}
}

// hashingReader hashes and counts what passes through it and remembers the
// first error of the underlying reader other than io.EOF, so Verify can tell
// a failing source from a bad bundle. It must not implement io.Seeker: the
// tar reader would then skip padding unread and unhashed.
type hashingReader struct {
	r   io.Reader
	h   *cas.Hasher
	n   int64
	err error
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && hr.err == nil {
		hr.err = err
	}
	return n, err
}
