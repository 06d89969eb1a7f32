package node

import (
	"encoding/json"
	"fmt"

	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/node/workload/npy"
)

// operatorKey names the compiled operator a built-in job will use: from the
// params for generate_dataset, from the dataset's spec.json otherwise. The
// worker looks it up in the shared cache before the job starts.
func operatorKey(jobType string, params json.RawMessage, dataset []byte) (string, error) {
	if jobType == workload.TypeGenerateDataset {
		p, err := workload.ParseParams(jobType, params)
		if err != nil {
			return "", err
		}
		return workload.OperatorKeyFor(p.Size, p.Sampling, p.OperatorSeed), nil
	}
	if dataset == nil {
		return "", nil
	}
	_, other, err := npy.ReadNPZ(dataset)
	if err != nil {
		return "", err
	}
	raw, ok := other["spec.json"]
	if !ok {
		return "", fmt.Errorf("dataset has no spec.json")
	}
	var spec workload.DatasetSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return "", err
	}
	return workload.OperatorKeyFor(spec.Size, spec.Sampling, spec.OperatorSeed), nil
}
