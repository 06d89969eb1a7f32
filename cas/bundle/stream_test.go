package bundle_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/pwmesh/pwmesh/cas/bundle"
)

// memFiles turns files into bundle.Files read from memory; change, when
// set, alters what the second open of a path yields.
func memFiles(files map[string][]byte, change map[string][]byte) []bundle.File {
	var out []bundle.File
	for p, b := range files {
		opens := 0
		out = append(out, bundle.File{Path: p, Size: int64(len(b)), Open: func() (io.ReadCloser, error) {
			opens++
			if c, ok := change[p]; ok && opens > 1 {
				return io.NopCloser(bytes.NewReader(c)), nil
			}
			return io.NopCloser(bytes.NewReader(b)), nil
		}})
	}
	return out
}

// TestWriteFilesMatchesWrite: streaming the files gives the very bytes
// and manifest that writing them from memory gives.
func TestWriteFilesMatchesWrite(t *testing.T) {
	t.Parallel()
	want, err := bundle.Build(sampleManifest(), sampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	m, err := bundle.WriteFiles(&got, sampleManifest(), memFiles(sampleFiles(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Data) {
		t.Fatalf("WriteFiles wrote %d bytes that differ from Write's %d", got.Len(), len(want.Data))
	}
	if _, err := bundle.Verify(bytes.NewReader(got.Bytes())); err != nil {
		t.Fatalf("the streamed bundle does not verify: %v", err)
	}
	if len(m.Hashes) != len(sampleFiles()) {
		t.Errorf("manifest hashes %v", m.Hashes)
	}
}

// TestWriteFilesRefusesChangedFile: content that differs between the hash
// and the copy, in bytes or in length, fails the write.
func TestWriteFilesRefusesChangedFile(t *testing.T) {
	t.Parallel()
	for name, changed := range map[string][]byte{
		"same length": []byte("\x93NUMPY\x01\x00fake array PAYLOAD"),
		"shorter":     []byte("\x93NUMPY"),
	} {
		_, err := bundle.WriteFiles(io.Discard, sampleManifest(), memFiles(sampleFiles(), map[string][]byte{"x_hat.npy": changed}))
		if !errors.Is(err, bundle.ErrChanged) {
			t.Errorf("%s: err = %v, want ErrChanged", name, err)
		}
	}
	files := memFiles(map[string][]byte{"a": []byte("x")}, nil)
	if _, err := bundle.WriteFiles(io.Discard, sampleManifest(), append(files, files...)); !errors.Is(err, bundle.ErrInvalid) {
		t.Errorf("a path twice: err = %v, want ErrInvalid", err)
	}
}
