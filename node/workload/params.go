package workload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
)

// Version is part of the compiled-operator cache key; bump it when the
// operator maths changes.
const Version = "spc-v1"

// ErrInvalidParams is wrapped by every error caused by the job's type, params
// or dataset, as opposed to a failure of the workload itself.
var ErrInvalidParams = errors.New("workload: invalid params")

// Job types.
const (
	TypeCalibrate               = "calibrate"
	TypeReconstruct             = "reconstruct"
	TypeCalibrateAndReconstruct = "calibrate_and_reconstruct"
	TypeGenerateDataset         = "generate_dataset"
	// TypeGPUSelfTest multiplies matrices on the job's GPU with PyTorch and
	// checks the result: a burn-in and health check for GPU nodes.
	TypeGPUSelfTest = "gpu_selftest"
)

// Parameter bounds.
const (
	minSize, maxSize = 8, 256
	maxIterations    = 2000
	maxGain          = 10
)

// Defaults (WORKLOAD.md).
const (
	DefaultSize         = 64
	DefaultSampling     = 0.25
	DefaultOperatorSeed = 7
	DefaultNoise        = 0.01
	DefaultIterations   = 150
	DefaultLambda       = 0.01
	DefaultSeverity     = "moderate"
	DefaultMatrix       = 4096
	DefaultRepeats      = 20
)

// Bounds of gpu_selftest.
const (
	minMatrix, maxMatrix = 256, 16384
	maxRepeats           = 1000
)

// Params are a job's workload parameters. Only the fields that apply to the
// job type are meaningful (see ParseParams); for dataset-consuming jobs the
// image size, sampling, operator seed and noise come from the dataset.
type Params struct {
	Size         int     `json:"size,omitempty"`
	Sampling     float64 `json:"sampling,omitempty"`
	Seed         int64   `json:"seed"`
	OperatorSeed int64   `json:"operator_seed,omitempty"`
	// Severity is "", "mild", "moderate" or "severe" (generate_dataset).
	Severity string `json:"severity,omitempty"`
	// Gain and Bias are the true θ for generate_dataset, or the θ to correct
	// with for reconstruct; nil means not given.
	Gain       *float64 `json:"gain,omitempty"`
	Bias       *float64 `json:"bias,omitempty"`
	Noise      float64  `json:"noise,omitempty"`
	Iterations int      `json:"iterations,omitempty"`
	Lambda     float64  `json:"lambda,omitempty"`
	// Matrix and Repeats size gpu_selftest's matrix product.
	Matrix  int `json:"matrix,omitempty"`
	Repeats int `json:"repeats,omitempty"`
}

// Severity presets: the true (gain, bias) of each mismatch level.
var severities = map[string][2]float64{
	"mild":     {1.05, 0.01},
	"moderate": {1.15, 0.05},
	"severe":   {1.40, 0.12},
}

// SeverityTheta returns the true (gain, bias) of a severity preset.
func SeverityTheta(s string) (gain, bias float64, ok bool) {
	t, ok := severities[s]
	return t[0], t[1], ok
}

// allKeys are the params keys of every job type.
var allKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, s := range registry {
		for _, k := range s.Params {
			m[k] = true
		}
	}
	return m
}()

// applicable returns the params keys jobType accepts (none for an
// unknown type).
func applicable(jobType string) []string {
	s, _ := Lookup(jobType)
	return s.Params
}

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrInvalidParams)...)
}

// DefaultParams returns the defaults of the params that apply to jobType.
func DefaultParams(jobType string) Params {
	var p Params
	for _, k := range applicable(jobType) {
		switch k {
		case "size":
			p.Size = DefaultSize
		case "sampling":
			p.Sampling = DefaultSampling
		case "operator_seed":
			p.OperatorSeed = DefaultOperatorSeed
		case "noise":
			p.Noise = DefaultNoise
		case "iterations":
			p.Iterations = DefaultIterations
		case "lambda":
			p.Lambda = DefaultLambda
		case "matrix":
			p.Matrix = DefaultMatrix
		case "repeats":
			p.Repeats = DefaultRepeats
		}
	}
	return p
}

// ParseParams decodes a job's params JSON object (nil, empty or null means all
// defaults). It refuses unknown keys and keys that do not apply to jobType,
// checks ranges, and fills the defaults of the keys that apply. For
// generate_dataset, the severity defaults to "moderate" when neither severity
// nor gain/bias is given; severity and gain/bias exclude each other, and a
// gain or bias given alone leaves the other nominal (1 or 0).
func ParseParams(jobType string, raw json.RawMessage) (Params, error) {
	if !ValidType(jobType) {
		return Params{}, invalid("unknown job type %q (want %s)", jobType, namesText())
	}
	p := DefaultParams(jobType)
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return Params{}, invalid("params must be a JSON object")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the first bad key deterministically
	for _, k := range keys {
		if !allKeys[k] {
			return Params{}, invalid("unknown parameter %q", k)
		}
		if !slices.Contains(applicable(jobType), k) {
			return Params{}, invalid("parameter %q does not apply to %s jobs", k, jobType)
		}
		v := m[k]
		var err error
		switch k {
		case "size":
			var n int64
			n, err = intValue(k, v)
			p.Size = int(min(max(n, math.MinInt32), math.MaxInt32))
		case "seed":
			p.Seed, err = intValue(k, v)
		case "operator_seed":
			p.OperatorSeed, err = intValue(k, v)
		case "iterations":
			var n int64
			n, err = intValue(k, v)
			p.Iterations = int(min(max(n, math.MinInt32), math.MaxInt32))
		case "matrix":
			var n int64
			n, err = intValue(k, v)
			p.Matrix = int(min(max(n, math.MinInt32), math.MaxInt32))
		case "repeats":
			var n int64
			n, err = intValue(k, v)
			p.Repeats = int(min(max(n, math.MinInt32), math.MaxInt32))
		case "sampling":
			p.Sampling, err = floatValue(k, v)
		case "noise":
			p.Noise, err = floatValue(k, v)
		case "lambda":
			p.Lambda, err = floatValue(k, v)
		case "gain", "bias":
			var f float64
			if f, err = floatValue(k, v); err == nil {
				if k == "gain" {
					p.Gain = &f
				} else {
					p.Bias = &f
				}
			}
		case "severity":
			if err = json.Unmarshal(v, &p.Severity); err != nil {
				err = invalid("severity must be a string")
			}
		}
		if err != nil {
			return Params{}, err
		}
	}
	if jobType == TypeGenerateDataset {
		if p.Severity != "" && (p.Gain != nil || p.Bias != nil) {
			return Params{}, invalid("give either severity or gain/bias, not both")
		}
		if p.Severity == "" && p.Gain == nil && p.Bias == nil {
			p.Severity = DefaultSeverity
		}
	}
	if err := p.Validate(jobType); err != nil {
		return Params{}, err
	}
	return p, nil
}

// number returns a bare JSON number (not a quoted one, not null).
func number(v json.RawMessage) (json.Number, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return "", false
	}
	var num json.Number
	if err := json.Unmarshal(v, &num); err != nil {
		return "", false
	}
	return num, true
}

// intValue decodes an integral JSON number (1, 1.0 and 1e3 are accepted).
func intValue(k string, v json.RawMessage) (int64, error) {
	num, ok := number(v)
	if !ok {
		return 0, invalid("%s must be an integer", k)
	}
	if n, err := strconv.ParseInt(string(num), 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) >= 1<<53 {
		return 0, invalid("%s must be an integer", k)
	}
	return int64(f), nil
}

func floatValue(k string, v json.RawMessage) (float64, error) {
	num, ok := number(v)
	if !ok {
		return 0, invalid("%s must be a number", k)
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, invalid("%s must be a finite number", k)
	}
	return f, nil
}

// Validate checks the ranges of the params that apply to jobType. Run calls
// it, so Params built by hand are held to the same rules as parsed ones.
func (p Params) Validate(jobType string) error {
	if !ValidType(jobType) {
		return invalid("unknown job type %q (want %s)", jobType, namesText())
	}
	for _, k := range applicable(jobType) {
		switch k {
		case "size":
			if p.Size < minSize || p.Size > maxSize {
				return invalid("size must be between %d and %d", minSize, maxSize)
			}
		case "sampling":
			if !(p.Sampling > 0 && p.Sampling <= 1) {
				return invalid("sampling must be greater than 0 and at most 1")
			}
		case "seed":
			if p.Seed < 0 {
				return invalid("seed must be >= 0")
			}
		case "operator_seed":
			if p.OperatorSeed < 0 {
				return invalid("operator_seed must be >= 0")
			}
		case "noise":
			if !(p.Noise >= 0 && p.Noise <= 1) {
				return invalid("noise must be between 0 and 1")
			}
		case "iterations":
			if p.Iterations < 1 || p.Iterations > maxIterations {
				return invalid("iterations must be between 1 and %d", maxIterations)
			}
		case "matrix":
			if p.Matrix < minMatrix || p.Matrix > maxMatrix {
				return invalid("matrix must be between %d and %d", minMatrix, maxMatrix)
			}
		case "repeats":
			if p.Repeats < 1 || p.Repeats > maxRepeats {
				return invalid("repeats must be between 1 and %d", maxRepeats)
			}
		case "lambda":
			if !(p.Lambda >= 0) || math.IsInf(p.Lambda, 0) {
				return invalid("lambda must be a finite number >= 0")
			}
		case "severity":
			if _, ok := severities[p.Severity]; p.Severity != "" && !ok {
				return invalid("severity must be one of mild, moderate, severe")
			}
		case "gain":
			if p.Gain != nil && !(*p.Gain > 0 && *p.Gain <= maxGain) {
				return invalid("gain must be greater than 0 and at most %d", maxGain)
			}
		case "bias":
			if p.Bias != nil && (math.IsNaN(*p.Bias) || math.IsInf(*p.Bias, 0)) {
				return invalid("bias must be a finite number")
			}
		}
	}
	if jobType == TypeGenerateDataset && p.Severity != "" && (p.Gain != nil || p.Bias != nil) {
		return invalid("give either severity or gain/bias, not both")
	}
	return nil
}

// theta resolves the true (gain, bias) of a generate_dataset job, or the θ a
// reconstruct job corrects with (nominal when not given).
func (p Params) theta() (gain, bias float64) {
	if g, b, ok := SeverityTheta(p.Severity); ok {
		return g, b
	}
	gain, bias = 1, 0
	if p.Gain != nil {
		gain = *p.Gain
	}
	if p.Bias != nil {
		bias = *p.Bias
	}
	return gain, bias
}
