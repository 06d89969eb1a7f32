package node

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/web"
)

// jobTypes hands the API the job types of the workload registry.
func jobTypes() map[string]web.JobType {
	m := map[string]web.JobType{}
	for _, s := range workload.Types() {
		m[s.Name] = web.JobType{NeedsDataset: s.NeedsDataset, NeedsGPU: s.NeedsGPU}
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
