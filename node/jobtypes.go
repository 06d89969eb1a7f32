package node

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/web"
)

// jobTypes hands the API the job types of the workload registry, with the
// size of the operator a job's params compile (the API bounds it by tier).
func jobTypes() map[string]web.JobType {
	m := map[string]web.JobType{}
	for _, s := range workload.Types() {
		name := s.Name
		m[name] = web.JobType{NeedsDataset: s.NeedsDataset, NeedsGPU: s.NeedsGPU,
			OperatorBytes: func(params json.RawMessage) (int64, bool) { return workload.JobOperatorBytes(name, params) }}
	}
	return m
}

// validateParams checks a job request's type and params against the
// workload registry.
func validateParams(jobType string, params json.RawMessage) error {
	if !workload.ValidType(jobType) {
		return fmt.Errorf("%w %q: want one of %s", web.ErrUnknownJobType, jobType, strings.Join(workload.Names(), ", "))
	}
	_, err := workload.ParseParams(jobType, params)
	return err
}
