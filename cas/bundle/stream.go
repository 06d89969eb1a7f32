package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// File is one member of a bundle that WriteFiles reads as it writes: a
// job's output on disk, which may be larger than memory.
type File struct {
	Path string // relative, slash-separated
	Size int64  // bytes
	// Open returns the content; WriteFiles reads it twice (to hash it for
	// the manifest, then into the tar) and closes it each time.
	Open func() (io.ReadCloser, error)
}

// ErrChanged: a file's content differed between WriteFiles' two reads.
var ErrChanged = errors.New("bundle: a file changed while the bundle was written")

// WriteFiles is Write for content read from files rather than memory: the
// same bytes for the same content, and never more than a buffer of it
// held at once. The manifest comes first and names every file's hash, so
// each file is read twice: hashed, then copied into the tar and hashed
// again. A file whose size or hash differs the second time fails the
// write with ErrChanged (what was written by then is incomplete: the
// caller discards it).
func WriteFiles(w io.Writer, m Manifest, files []File) (Manifest, error) {
	sums := make(map[string][sha256.Size]byte, len(files))
	byPath := make(map[string]File, len(files))
	for _, f := range files {
		if _, dup := byPath[f.Path]; dup {
			return Manifest{}, fmt.Errorf("bundle: write: %w: %q appears twice", ErrInvalid, f.Path)
		}
		byPath[f.Path] = f
		sum, err := hashFile(f)
		if err != nil {
			return Manifest{}, fmt.Errorf("bundle: write %s: %w", f.Path, err)
		}
		sums[f.Path] = sum
	}
	m, paths, err := prepareSums(m, sums)
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
		if err := copyEntry(tw, byPath[p], sums[p]); err != nil {
			return Manifest{}, fmt.Errorf("bundle: write %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("bundle: write: %w", err)
	}
	return m, nil
}

// hashFile reads f whole, checking its size.
func hashFile(f File) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	r, err := f.Open()
	if err != nil {
		return sum, err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, f.Size+1))
	if err != nil {
		return sum, err
	}
	if n != f.Size {
		return sum, fmt.Errorf("%w: %d bytes, expected %d", ErrChanged, n, f.Size)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// copyEntry writes f as a tar member, hashing it again on the way.
func copyEntry(tw *tar.Writer, f File, want [sha256.Size]byte) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     f.Path,
		Size:     f.Size,
		Mode:     0o644,
		ModTime:  entryModTime,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	r, err := f.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(r, f.Size))
	if err != nil {
		return err
	}
	if n != f.Size || [sha256.Size]byte(h.Sum(nil)) != want {
		return ErrChanged
	}
	return nil
}
