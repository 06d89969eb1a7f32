package node

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/web"
)

// TestJobTypesFromRegistry: the API knows exactly the workload registry's
// job types, with their dataset and GPU needs, and accepts their defaults.
func TestJobTypesFromRegistry(t *testing.T) {
	t.Parallel()
	got := jobTypes()
	if len(got) != len(workload.Types()) {
		t.Errorf("the API has %d job types, the registry %d", len(got), len(workload.Types()))
	}
	for _, s := range workload.Types() {
		jt, ok := got[s.Name]
		if !ok || jt.NeedsDataset != s.NeedsDataset || jt.NeedsGPU != s.NeedsGPU {
			t.Errorf("%s: API has %+v (%v), registry needs dataset %v GPU %v", s.Name, jt, ok, s.NeedsDataset, s.NeedsGPU)
		}
		if err := validateParams(s.Name, nil); err != nil {
			t.Errorf("%s: defaults refused: %v", s.Name, err)
		}
	}
	// The API learns the size of the operator a generate_dataset's params
	// compile, and of no other type's.
	for name, jt := range got {
		n, ok := jt.OperatorBytes(json.RawMessage(`{"size":256,"sampling":1}`))
		if name == workload.TypeGenerateDataset && (!ok || n != 512<<20) {
			t.Errorf("%s: operator of 256 at 1: %d %v, want 512 MiB", name, n, ok)
		}
		if name != workload.TypeGenerateDataset && ok {
			t.Errorf("%s: operator bytes %d from params; its dataset says", name, n)
		}
	}
	if err := validateParams("train", nil); !errors.Is(err, web.ErrUnknownJobType) {
		t.Errorf("unknown type: %v, want ErrUnknownJobType", err)
	}
}
