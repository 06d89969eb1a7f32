package web_test

import (
	"encoding/json"

	"github.com/pwmesh/pwmesh/web"
)

// testJobTypes stand in for the workload registry that node wires into
// Deps.JobTypes (node's TestJobTypesFromRegistry checks that wiring).
var testJobTypes = map[string]web.JobType{
	"generate_dataset":          {OperatorBytes: testOperatorBytes},
	"calibrate":                 {NeedsDataset: true},
	"reconstruct":               {NeedsDataset: true},
	"calibrate_and_reconstruct": {NeedsDataset: true},
	"gpu_selftest":              {NeedsGPU: true},
}

// testOperatorBytes stands in for the workload's size of the operator a
// generate_dataset's params compile: M×N sign bits, M = sampling·N,
// N = size² (defaults 64 and 0.25).
func testOperatorBytes(params json.RawMessage) (int64, bool) {
	p := struct {
		Size     int64   `json:"size"`
		Sampling float64 `json:"sampling"`
	}{64, 0.25}
	if len(params) > 0 && json.Unmarshal(params, &p) != nil {
		return 0, false
	}
	n := p.Size * p.Size
	return int64(p.Sampling*float64(n)+0.5) * ((n + 7) / 8), true
}
