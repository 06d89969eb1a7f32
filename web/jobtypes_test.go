package web_test

import "github.com/pwmesh/pwmesh/web"

// testJobTypes stand in for the workload registry that node wires into
// Deps.JobTypes (node's TestJobTypesFromRegistry checks that wiring).
var testJobTypes = map[string]web.JobType{
	"generate_dataset":          {},
	"calibrate":                 {NeedsDataset: true},
	"reconstruct":               {NeedsDataset: true},
	"calibrate_and_reconstruct": {NeedsDataset: true},
	"gpu_selftest":              {NeedsGPU: true},
}
