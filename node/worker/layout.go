package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
}

// ChildError is error.json.
type ChildError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

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

// readOutput collects every regular file under dir by slash-separated
// relative path. Symlinks and other special files are refused: a job must
// not smuggle host files into its bundle.
func readOutput(dir string, limit int64) (map[string][]byte, error) {
	files := map[string][]byte{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("output %s is not a regular file", p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		if total > limit {
			return fmt.Errorf("outputs exceed %d bytes", limit)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return files, nil
	}
	return files, err
}
