package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"time"
)

const (
	// ManifestName is the bundle's first entry.
	ManifestName = "runbundle_manifest.json"
	// Version is the RunBundle manifest version written and accepted.
	Version = "0.3.0"
	// hashPrefix starts every value of Manifest.Hashes.
	hashPrefix = "sha256:"
	// maxManifestSize bounds the manifest a reader will hold in memory.
	maxManifestSize = 16 << 20
	// maxPathLen bounds a member's path, in bytes.
	maxPathLen = 1024
)

// Sentinel errors; test with errors.Is.
var (
	// ErrInvalid: the bundle, or what was asked to be written, breaks the
	// format. The message names the offending member.
	ErrInvalid = errors.New("bundle: invalid")
	// ErrNotFound: ReadFile found no such member. It wraps fs.ErrNotExist.
	ErrNotFound = fmt.Errorf("bundle: member %w", fs.ErrNotExist)
)

// Provenance says what produced the results (PWM RunBundle v0.3.0).
type Provenance struct {
	GitHash    string           `json:"git_hash"`
	Seeds      map[string]int64 `json:"seeds"`
	Platform   string           `json:"platform"`
	PWMVersion string           `json:"pwm_version"`
}

// Execution is pwmesh's record of the run (our extension to the PWM manifest).
type Execution struct {
	JobID        string    `json:"job_id"`
	JobType      string    `json:"job_type"`
	Tenant       string    `json:"tenant"`
	Node         string    `json:"node"`
	GPUs         []string  `json:"gpus"`
	Image        string    `json:"image"`
	Executor     string    `json:"executor"`
	Attempts     int       `json:"attempts"`
	FencingToken uint64    `json:"fencing_token"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"`
}

// Manifest is runbundle_manifest.json.
type Manifest struct {
	Version    string            `json:"version"` // Version
	SpecID     string            `json:"spec_id"`
	Timestamp  string            `json:"timestamp"` // RFC 3339 UTC; stamped by the caller
	Provenance Provenance        `json:"provenance"`
	Metrics    map[string]any    `json:"metrics"`   // psnr_db, ssim, runtime_s, ...
	Artifacts  map[string]string `json:"artifacts"` // name -> relative path
	Hashes     map[string]string `json:"hashes"`    // name -> "sha256:<hex of the file>"
	Execution  Execution         `json:"execution"`
}
