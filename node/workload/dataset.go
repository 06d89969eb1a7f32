package workload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/pwmesh/pwmesh/node/workload/npy"
)

// DatasetSpec is the spec.json member of a dataset: what the operator and the
// simulation were. Gain and Bias (the true θ) are absent for measured data.
type DatasetSpec struct {
	Workload     string   `json:"workload,omitempty"`
	Size         int      `json:"size"`
	Sampling     float64  `json:"sampling"`
	OperatorSeed int64    `json:"operator_seed"`
	Seed         *int64   `json:"seed,omitempty"`
	Noise        *float64 `json:"noise,omitempty"`
	Gain         *float64 `json:"gain,omitempty"`
	Bias         *float64 `json:"bias,omitempty"`
	Severity     string   `json:"severity,omitempty"`
}

// dataset is a parsed, validated dataset.
type dataset struct {
	spec         DatasetSpec
	y            []float64 // M
	yCal, levels []float64 // K×M, K
	xGT          []float64 // Size×Size or nil
	hasY, hasCal bool
	trueG, trueB float64
	hasTrue      bool
}

// encodeDataset writes a simulation as a dataset .npz.
func encodeDataset(spec DatasetSpec, s simulation, m int) ([]byte, error) {
	js, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	return npy.WriteNPZ(map[string]npy.Array{
		"y":          npy.New(s.y, m),
		"y_cal":      npy.New(s.yCal, len(s.levels), m),
		"cal_levels": npy.New(s.levels, len(s.levels)),
		"x_gt":       npy.New(s.x, spec.Size, spec.Size),
	}, map[string][]byte{"spec.json": append(js, '\n')})
}

func badData(format string, args ...any) error {
	return invalid("dataset: "+format, args...)
}

// parseDataset decodes and validates a dataset .npz. needY and needCal say
// which measurements the job requires.
func parseDataset(b []byte, needY, needCal bool) (*dataset, error) {
	if len(b) == 0 {
		return nil, badData("empty (a dataset is a .npz archive)")
	}
	arrays, other, err := npy.ReadNPZ(b)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w: %w", err, ErrInvalidParams)
	}
	raw, ok := other["spec.json"]
	if !ok {
		return nil, badData("missing spec.json")
	}
	spec, err := parseSpec(raw)
	if err != nil {
		return nil, err
	}
	d := &dataset{spec: spec}
	m := rowsFor(spec.Size, spec.Sampling)
	want := func(name string, data npy.Array, shape ...int) ([]float64, error) {
		if !slices.Equal(data.Shape, shape) {
			return nil, badData("%s.npy has shape %v, want %v for size %d and sampling %v", name, data.Shape, shape, spec.Size, spec.Sampling)
		}
		if !finite(data.Data) {
			return nil, badData("%s.npy holds NaN or infinite values", name)
		}
		return data.Data, nil
	}
	if a, ok := arrays["y"]; ok {
		if d.y, err = want("y", a, m); err != nil {
			return nil, err
		}
		d.hasY = true
	} else if needY {
		return nil, badData("missing y.npy")
	}
	yc, okC := arrays["y_cal"]
	lv, okL := arrays["cal_levels"]
	switch {
	case okC && okL:
		if len(lv.Shape) != 1 || lv.Shape[0] < 1 {
			return nil, badData("cal_levels.npy has shape %v, want [K] with K >= 1", lv.Shape)
		}
		k := lv.Shape[0]
		if d.levels, err = want("cal_levels", lv, k); err != nil {
			return nil, err
		}
		if d.yCal, err = want("y_cal", yc, k, m); err != nil {
			return nil, err
		}
		d.hasCal = true
	case needCal && !okC:
		return nil, badData("missing y_cal.npy")
	case needCal && !okL:
		return nil, badData("missing cal_levels.npy")
	}
	if a, ok := arrays["x_gt"]; ok {
		if d.xGT, err = want("x_gt", a, spec.Size, spec.Size); err != nil {
			return nil, err
		}
	}
	if spec.Gain != nil && spec.Bias != nil {
		d.trueG, d.trueB, d.hasTrue = *spec.Gain, *spec.Bias, true
	}
	return d, nil
}

// parseSpec decodes and validates spec.json. Unknown keys are allowed.
func parseSpec(raw []byte) (DatasetSpec, error) {
	var s DatasetSpec
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&s); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return s, badData("spec.json: %s has the wrong type", te.Field)
		}
		return s, badData("spec.json is not a valid JSON object")
	}
	if dec.More() {
		return s, badData("spec.json has trailing data")
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(raw, &keys)
	for _, k := range []string{"size", "sampling", "operator_seed"} {
		if _, ok := keys[k]; !ok {
			return s, badData("spec.json lacks %q", k)
		}
	}
	switch {
	case s.Size < minSize || s.Size > maxSize:
		return s, badData("spec.json: size must be between %d and %d", minSize, maxSize)
	case !(s.Sampling > 0 && s.Sampling <= 1):
		return s, badData("spec.json: sampling must be greater than 0 and at most 1")
	case s.OperatorSeed < 0:
		return s, badData("spec.json: operator_seed must be >= 0")
	case (s.Gain == nil) != (s.Bias == nil):
		return s, badData("spec.json: gain and bias must be given together")
	case s.Gain != nil && !(*s.Gain > 0 && *s.Gain <= maxGain):
		return s, badData("spec.json: gain must be greater than 0 and at most %d", maxGain)
	case s.Bias != nil && (math.IsNaN(*s.Bias) || math.IsInf(*s.Bias, 0)):
		return s, badData("spec.json: bias must be finite")
	}
	return s, nil
}

// DatasetOperatorKey returns the compiled-operator key a dataset-consuming job
// will use, read from the dataset's spec.json after the same validation Run
// applies (errors wrap ErrInvalidParams). The worker can look the operator up
// in the cache before the job starts.
func DatasetOperatorKey(dataset []byte) (string, error) {
	d, err := parseDataset(dataset, false, false)
	if err != nil {
		return "", err
	}
	return OperatorKeyFor(d.spec.Size, d.spec.Sampling, d.spec.OperatorSeed), nil
}
