package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pwmesh/pwmesh/cas/bundle"
)

// The job directory. A process child gets its path; a container sees it
// mounted at /pwm.
const (
	JobFile     = "job.json"    // the job request, with its ID
	InputDir    = "input"       // dataset.npz and, on a cache hit, operator.bin
	OutputDir   = "output"      // everything here is packed into the RunBundle
	ExportDir   = "export"      // side outputs: a generated dataset, a built operator
	ErrorFile   = "error.json"  // written by a child that fails: {"code","message"}
	DatasetFile = "dataset.npz" // in input/ and export/
	OperatorBin = "operator.bin"
	// OperatorKeyFile in export/ names the key of a built operator.
	OperatorKeyFile = "operator.key"
	// DatasetNameFile in export/ holds a generated dataset's suggested name.
	DatasetNameFile = "dataset.name"
)

// JobSpec is job.json.
type JobSpec struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Params  json.RawMessage `json:"params,omitempty"`
	Dataset string          `json:"dataset,omitempty"`
	Attempt int             `json:"attempt"`
	GPUs    []string        `json:"gpus,omitempty"`
	// MaxOperatorBytes bounds the compiled operator the job may use
	// (workload.Request.MaxOperatorBytes), by its tenant's tier
	// (scheduler.MaxOperatorBytes); 0: no bound.
	MaxOperatorBytes int64 `json:"max_operator_bytes,omitempty"`
}

// ChildError is error.json.
type ChildError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// CodeOperatorTooLarge is the error code of a job whose compiled operator
// passes its bound (JobSpec.MaxOperatorBytes).
const CodeOperatorTooLarge = "operator_too_large"

// Exit codes of a child process.
const (
	ExitOK           = 0
	ExitFailed       = 1
	ExitInvalidInput = 2
)

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func readChildError(root string) *ChildError {
	b, err := os.ReadFile(filepath.Join(root, ErrorFile))
	if err != nil {
		return nil
	}
	var ce ChildError
	if json.Unmarshal(b, &ce) != nil || ce.Message == "" {
		return nil
	}
	return &ce
}

// maxManifestBytes bounds the runbundle_manifest.json a job writes: it is
// read into memory and merged into the bundle's manifest.
const maxManifestBytes = 16 << 20

// errOutputTooLarge: a job wrote more than the node takes (MaxOutputBytes).
var errOutputTooLarge = errors.New("output too large")

// outputFiles lists every regular file under dir (the job's output/) as a
// bundle member that is read from disk only while the bundle streams into
// the store, and returns the manifest the job wrote there, if any (at most
// maxManifestBytes), apart. Symlinks and other special files are refused:
// a job must not smuggle host files into its bundle. More than limit bytes
// in all is errOutputTooLarge, found from the sizes before any content is
// read. Errors name paths relative to dir, never the host's.
func outputFiles(dir string, limit int64) (files []bundle.File, manifest []byte, total int64, err error) {
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, rerr := filepath.Rel(dir, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && rel == "." {
				return fs.SkipAll // no output/ at all: an empty bundle
			}
			return fmt.Errorf("output %s: %w", rel, pathless(err))
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("output %s is not a regular file", rel)
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("output %s: %w", rel, pathless(err))
		}
		total += info.Size()
		if total > limit {
			return fmt.Errorf("%w: the job wrote more than this node's limit of %d bytes (max_output_bytes)", errOutputTooLarge, limit)
		}
		if rel == bundle.ManifestName {
			if manifest, err = readLimited(p, maxManifestBytes); err != nil {
				return fmt.Errorf("output %s: %w", rel, err)
			}
			return nil
		}
		files = append(files, bundle.File{Path: rel, Size: info.Size(), Open: func() (io.ReadCloser, error) {
			f, err := openRegular(p)
			if err != nil {
				return nil, fmt.Errorf("output %s is not a regular file", rel)
			}
			return f, nil
		}})
		return nil
	})
	if err != nil {
		return nil, nil, 0, err
	}
	return files, manifest, total, nil
}

// pathless drops the host path from a file system error.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readLimited reads a regular file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, errors.New("not a regular file")
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

// sideOutputBytes is the size of the side outputs in export/ that the
// worker stores (a generated dataset, a built operator): they count
// toward MaxOutputBytes with output/.
func sideOutputBytes(exp string) int64 {
	var n int64
	for _, name := range []string{DatasetFile, OperatorBin} {
		if st, err := os.Lstat(filepath.Join(exp, name)); err == nil && st.Mode().IsRegular() {
			n += st.Size()
		}
	}
	return n
}
