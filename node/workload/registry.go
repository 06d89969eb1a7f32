package workload

import (
	"slices"
	"strings"
)

// Spec is one job type of the built-in workload, the one entry that the
// API (through node), the worker and the CLI read: adding a job type is
// adding an entry here, and TestRegistry runs every entry.
type Spec struct {
	// Name is the job type of CONTRACT.md §3 ("calibrate", ...).
	Name string
	// Summary is one line for help texts.
	Summary string
	// Params are the params keys the type accepts; their defaults and
	// bounds are DefaultParams' and Params.Validate's.
	Params []string
	// NeedsDataset: a job of this type reads a dataset and is refused
	// without one.
	NeedsDataset bool
	// NeedsGPU: a job of this type must ask for at least one GPU and names
	// no dataset.
	NeedsGPU bool
	// SpecID is the RunBundle manifest's spec_id.
	SpecID string

	run func(*job) error
}

// registry holds every job type, in the order help texts list them.
var registry = []Spec{
	{
		Name:    TypeGenerateDataset,
		Summary: "simulate a single-pixel-camera measurement with a gain/bias mismatch; its output is a new dataset",
		Params:  []string{"size", "sampling", "seed", "operator_seed", "severity", "gain", "bias", "noise"},
		SpecID:  "spc_gain_bias_" + TypeGenerateDataset,
		run:     (*job).generate,
	},
	{
		Name:         TypeCalibrate,
		Summary:      "estimate the detector's gain and bias from a dataset",
		Params:       []string{"seed"},
		NeedsDataset: true,
		SpecID:       "spc_gain_bias_" + TypeCalibrate,
		run:          (*job).calibrate,
	},
	{
		Name:         TypeReconstruct,
		Summary:      "reconstruct the image of a dataset (FISTA-TV) with a given or nominal gain and bias",
		Params:       []string{"iterations", "lambda", "gain", "bias"},
		NeedsDataset: true,
		SpecID:       "spc_gain_bias_" + TypeReconstruct,
		run:          (*job).reconstruct,
	},
	{
		Name:         TypeCalibrateAndReconstruct,
		Summary:      "calibrate, then reconstruct with the estimated gain and bias",
		Params:       []string{"seed", "iterations", "lambda"},
		NeedsDataset: true,
		SpecID:       "spc_gain_bias_" + TypeCalibrateAndReconstruct,
		run:          (*job).calibrateAndReconstruct,
	},
	{
		Name:     TypeGPUSelfTest,
		Summary:  "a checked PyTorch matrix product on the job's GPU (needs --gpus 1 or more)",
		Params:   []string{"matrix", "repeats"},
		NeedsGPU: true,
		SpecID:   "gpu_selftest_matmul",
		run:      (*job).gpuSelfTest,
	},
}

// Types returns every job type's Spec, in the order help texts list them.
func Types() []Spec { return slices.Clone(registry) }

// Lookup returns the Spec of a job type.
func Lookup(name string) (Spec, bool) {
	i := slices.IndexFunc(registry, func(s Spec) bool { return s.Name == name })
	if i < 0 {
		return Spec{}, false
	}
	return registry[i], true
}

// Names returns the job types, in the order help texts list them.
func Names() []string {
	names := make([]string, len(registry))
	for i, s := range registry {
		names[i] = s.Name
	}
	return names
}

// ValidType reports whether t is a job type of the registry.
func ValidType(t string) bool {
	_, ok := Lookup(t)
	return ok
}

// namesText lists the job types for messages: "a, b or c".
func namesText() string {
	n := Names()
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}
