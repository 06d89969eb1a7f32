package npy

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// MaxMemberSize bounds the uncompressed size of one .npz member that ReadNPZ
// accepts, so that a small crafted archive cannot claim gigabytes.
const MaxMemberSize = 256 << 20

// maxMembers bounds how many members an archive may have.
const maxMembers = 1024

// zipTime is the fixed modification time WriteNPZ stamps on every member
// (the zip epoch numpy's own savez uses is 1980-01-01).
var zipTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// ReadNPZ parses an .npz archive. Members whose names end in ".npy" are decoded
// and returned keyed by the name without that suffix (as numpy.load does);
// every other member is returned raw, keyed by its full name. Any malformed
// input gives an error wrapping ErrFormat.
func ReadNPZ(b []byte) (arrays map[string]Array, other map[string][]byte, err error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil && zr == nil {
		return nil, nil, fmt.Errorf("%w: not a zip archive: %v", ErrFormat, err)
	}
	if len(zr.File) > maxMembers {
		return nil, nil, fmt.Errorf("%w: archive has %d members (limit %d)", ErrFormat, len(zr.File), maxMembers)
	}
	arrays = map[string]Array{}
	other = map[string][]byte{}
	seen := map[string]bool{}
	var total int64
	for _, f := range zr.File {
		if seen[f.Name] {
			return nil, nil, fmt.Errorf("%w: duplicate member %q", ErrFormat, f.Name)
		}
		seen[f.Name] = true
		if strings.HasSuffix(f.Name, "/") {
			continue // a directory entry
		}
		data, err := readMember(f)
		if err != nil {
			return nil, nil, err
		}
		total += int64(len(data))
		if total > 4*MaxMemberSize {
			return nil, nil, fmt.Errorf("%w: archive expands to more than %d bytes", ErrFormat, 4*MaxMemberSize)
		}
		if key, ok := strings.CutSuffix(f.Name, ".npy"); ok {
			a, err := Decode(data)
			if err != nil {
				return nil, nil, fmt.Errorf("member %s: %w", f.Name, err)
			}
			arrays[key] = a
			continue
		}
		other[f.Name] = data
	}
	return arrays, other, nil
}

func readMember(f *zip.File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: member %s: %v", ErrFormat, f.Name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, MaxMemberSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: member %s: %v", ErrFormat, f.Name, err)
	}
	if len(data) > MaxMemberSize {
		return nil, fmt.Errorf("%w: member %s is larger than %d bytes", ErrFormat, f.Name, MaxMemberSize)
	}
	return data, nil
}

// WriteNPZ writes arrays (each as "<key>.npy", '<f8') and other members (under
// their own names) into a deflated zip archive. The output depends only on the
// inputs: members are sorted by name and carry a fixed modification time.
func WriteNPZ(arrays map[string]Array, other map[string][]byte) ([]byte, error) {
	members := make(map[string][]byte, len(arrays)+len(other))
	for k, a := range arrays {
		e, err := Encode(a)
		if err != nil {
			return nil, fmt.Errorf("npz: %s: %w", k, err)
		}
		members[k+".npy"] = e
	}
	for k, v := range other {
		if _, dup := members[k]; dup {
			return nil, fmt.Errorf("npz: member %q given twice", k)
		}
		members[k] = v
	}
	names := make([]string, 0, len(members))
	for k := range members {
		if k == "" || strings.HasSuffix(k, "/") {
			return nil, fmt.Errorf("npz: bad member name %q", k)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range names {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: zipTime}
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, fmt.Errorf("npz: %s: %w", name, err)
		}
		if _, err := w.Write(members[name]); err != nil {
			return nil, fmt.Errorf("npz: %s: %w", name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("npz: %w", err)
	}
	return buf.Bytes(), nil
}
