package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// sampleValues holds a valid value of every params key, so that a key
// added to a type's Spec without its parsing, defaults or bounds fails
// TestRegistry.
var sampleValues = map[string]string{
	"size": "16", "sampling": "0.5", "seed": "1", "operator_seed": "2", "severity": `"mild"`,
	"gain": "1.1", "bias": "0.1", "noise": "0.02", "iterations": "5", "lambda": "0.02",
	"matrix": "256", "repeats": "1",
}

// TestRegistry checks every registered job type: its entry is complete,
// its defaults validate, each of its params parses alone, keys of other
// types are refused, and (where cheap) it runs on a tiny size.
func TestRegistry(t *testing.T) {
	t.Parallel()
	if len(Types()) == 0 || !slices.Equal(Names(), []string{TypeGenerateDataset, TypeCalibrate, TypeReconstruct, TypeCalibrateAndReconstruct, TypeGPUSelfTest}) {
		t.Fatalf("registry names %v", Names())
	}
	seen := map[string]bool{}
	for _, s := range Types() {
		if seen[s.Name] {
			t.Errorf("job type %q registered twice", s.Name)
		}
		seen[s.Name] = true
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			if s.Name == "" || s.Summary == "" || s.SpecID == "" || s.run == nil || len(s.Params) == 0 {
				t.Fatalf("incomplete entry %+v", s)
			}
			if s.NeedsDataset && s.NeedsGPU {
				t.Errorf("%s both needs a dataset and refuses one (NeedsGPU)", s.Name)
			}
			if got, ok := Lookup(s.Name); !ok || got.Name != s.Name || !ValidType(s.Name) {
				t.Errorf("Lookup(%q) = %v", s.Name, ok)
			}
			def, err := ParseParams(s.Name, nil)
			if err != nil {
				t.Fatalf("defaults do not parse: %v", err)
			}
			if err := def.Validate(s.Name); err != nil {
				t.Errorf("defaults do not validate: %v", err)
			}
			if err := DefaultParams(s.Name).Validate(s.Name); err != nil {
				t.Errorf("DefaultParams do not validate: %v", err)
			}
			for _, k := range s.Params {
				v, ok := sampleValues[k]
				if !ok {
					t.Errorf("param %q has no sample value in this test: add one", k)
					continue
				}
				if _, err := ParseParams(s.Name, json.RawMessage(fmt.Sprintf(`{%q:%s}`, k, v))); err != nil {
					t.Errorf("param %s=%s: %v", k, v, err)
				}
			}
			for k, v := range sampleValues {
				if slices.Contains(s.Params, k) {
					continue
				}
				_, err := ParseParams(s.Name, json.RawMessage(fmt.Sprintf(`{%q:%s}`, k, v)))
				if !errors.Is(err, ErrInvalidParams) || !strings.Contains(err.Error(), "does not apply") {
					t.Errorf("param %s of another type: %v, want refused", k, err)
				}
			}
			if s.NeedsGPU {
				return // runs in TestSelfTest* with a stand-in python3
			}
			req := Request{Type: s.Name}
			raw := `{"size":16}`
			if s.NeedsDataset {
				req.Dataset = genDataset(t, 16, "mild", 1)
				raw = `{}`
				if slices.Contains(s.Params, "iterations") {
					raw = `{"iterations":5}`
				}
			}
			req.Params = mustParams(t, s.Name, raw)
			res, err := Run(context.Background(), req)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if res.SpecID != s.SpecID || len(res.Metrics) == 0 || len(res.Artifacts) == 0 {
				t.Errorf("result: spec %q, %d metrics, %d artifacts", res.SpecID, len(res.Metrics), len(res.Artifacts))
			}
			if (res.Dataset != nil) != (s.Name == TypeGenerateDataset) {
				t.Errorf("dataset output: %d bytes", len(res.Dataset))
			}
		})
	}
	if _, ok := Lookup("train"); ok || ValidType("train") {
		t.Error("an unknown type was found")
	}
	if _, err := ParseParams("train", nil); err == nil || !strings.Contains(err.Error(), namesText()) {
		t.Errorf("unknown type: %v, want the list of types", err)
	}
}
