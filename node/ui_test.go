package node

import (
	"testing"

	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/web/ui"
)

// Every parameter of every job type in the workload registry has a kind
// and a help text on the submit form, and the form lists every type.
func TestUIJobTypes(t *testing.T) {
	t.Parallel()
	got := uiJobTypes()
	specs := workload.Types()
	if len(got) != len(specs) {
		t.Fatalf("%d job types on the form, %d in the registry", len(got), len(specs))
	}
	for i, s := range specs {
		jt := got[i]
		if jt.Name != s.Name || jt.Summary != s.Summary || jt.NeedsDataset != s.NeedsDataset || jt.NeedsGPU != s.NeedsGPU || len(jt.Params) != len(s.Params) {
			t.Errorf("form type %+v does not match registry entry %s", jt, s.Name)
			continue
		}
		for j, p := range jt.Params {
			if p.Name != s.Params[j] {
				t.Errorf("%s: param %d is %q, want %q", s.Name, j, p.Name, s.Params[j])
			}
			if p.Kind != ui.ParamInt && p.Kind != ui.ParamFloat && p.Kind != ui.ParamChoice || p.Help == "" {
				t.Errorf("%s.%s: no kind or help (add it to uiParams)", s.Name, p.Name)
			}
			if p.Kind == ui.ParamChoice && len(p.Choices) == 0 {
				t.Errorf("%s.%s: a choice without choices", s.Name, p.Name)
			}
		}
	}
	want := map[string]string{"generate_dataset.size": "64", "generate_dataset.severity": "moderate", "reconstruct.iterations": "150", "generate_dataset.gain": ""}
	for _, jt := range got {
		for _, p := range jt.Params {
			if d, ok := want[jt.Name+"."+p.Name]; ok && p.Default != d {
				t.Errorf("%s.%s default %q, want %q", jt.Name, p.Name, p.Default, d)
			}
		}
	}
}
