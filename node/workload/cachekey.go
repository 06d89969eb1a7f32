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

// JobOperatorBytes is the size (OperatorBytes) of the compiled operator a
// job's params make, for the job types whose params name their operator
// (generate_dataset); ok is false for the others, whose operator comes from
// their dataset, and for params ParseParams refuses.
func JobOperatorBytes(jobType string, params json.RawMessage) (n int64, ok bool) {
	if jobType != TypeGenerateDataset {
		return 0, false
	}
	p, err := ParseParams(jobType, params)
	if err != nil {
		return 0, false
	}
	return OperatorBytes(p.Size, p.Sampling), true
}
