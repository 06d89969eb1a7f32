package workload

import "encoding/json"

// JobOperatorKey names the compiled operator a job will use: from the params
// for generate_dataset, from the dataset's spec.json otherwise ("" when a
// job has no dataset). Workers look it up in the shared cache before a job
// starts.
func JobOperatorKey(jobType string, params json.RawMessage, dataset []byte) (string, error) {
	if jobType == TypeGenerateDataset {
		p, err := ParseParams(jobType, params)
		if err != nil {
			return "", err
		}
		return OperatorKeyFor(p.Size, p.Sampling, p.OperatorSeed), nil
	}
	if dataset == nil {
		return "", nil
	}
	return DatasetOperatorKey(dataset)
}
