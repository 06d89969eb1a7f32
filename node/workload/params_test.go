package workload

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestValidType(t *testing.T) {
	t.Parallel()
	for _, ty := range []string{TypeCalibrate, TypeReconstruct, TypeCalibrateAndReconstruct, TypeGenerateDataset} {
		if !ValidType(ty) {
			t.Errorf("ValidType(%q) = false", ty)
		}
	}
	for _, ty := range []string{"", "train", "Calibrate"} {
		if ValidType(ty) {
			t.Errorf("ValidType(%q) = true", ty)
		}
	}
}

func TestParseParamsDefaults(t *testing.T) {
	t.Parallel()
	gen := Params{Size: 64, Sampling: 0.25, Seed: 0, OperatorSeed: 7, Severity: "moderate", Noise: 0.01}
	want := map[string]Params{
		TypeGenerateDataset:         gen,
		TypeCalibrate:               {},
		TypeReconstruct:             {Iterations: 150, Lambda: 0.01},
		TypeCalibrateAndReconstruct: {Iterations: 150, Lambda: 0.01},
	}
	for ty, w := range want {
		for _, raw := range []string{"", "null", "{}", "  { } "} {
			p, err := ParseParams(ty, json.RawMessage(raw))
			if err != nil {
				t.Fatalf("%s %q: %v", ty, raw, err)
			}
			if !reflect.DeepEqual(p, w) {
				t.Errorf("%s %q: got %+v, want %+v", ty, raw, p, w)
			}
		}
	}
	p, err := ParseParams(TypeGenerateDataset, nil)
	if err != nil || !reflect.DeepEqual(p, gen) {
		t.Errorf("nil params: got %+v, %v", p, err)
	}
}

func TestParseParamsValues(t *testing.T) {
	t.Parallel()
	p := mustParams(t, TypeGenerateDataset, `{"size":3.2e1,"sampling":0.5,"seed":12,"operator_seed":3,"gain":1.2,"noise":0}`)
	if p.Size != 32 || p.Sampling != 0.5 || p.Seed != 12 || p.OperatorSeed != 3 || p.Noise != 0 || p.Severity != "" || p.Gain == nil || *p.Gain != 1.2 || p.Bias != nil {
		t.Fatalf("got %+v", p)
	}
	if g, b := p.theta(); g != 1.2 || b != 0 {
		t.Errorf("theta = %v, %v; want 1.2, 0", g, b)
	}
	p = mustParams(t, TypeReconstruct, `{"iterations":10,"lambda":0,"gain":1.1,"bias":-0.2}`)
	if p.Iterations != 10 || p.Lambda != 0 || *p.Gain != 1.1 || *p.Bias != -0.2 {
		t.Fatalf("got %+v", p)
	}
	p = mustParams(t, TypeGenerateDataset, `{"severity":"severe"}`)
	if g, b := p.theta(); g != 1.4 || b != 0.12 {
		t.Errorf("severe theta = %v, %v", g, b)
	}
}

func TestParseParamsErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ty, raw, want string
	}{
		{"train", `{}`, `unknown job type "train"`},
		{TypeGenerateDataset, `{"foo":1}`, `unknown parameter "foo"`},
		{TypeGenerateDataset, `{"iterations":5}`, `parameter "iterations" does not apply to generate_dataset jobs`},
		{TypeReconstruct, `{"size":64}`, `parameter "size" does not apply to reconstruct jobs`},
		{TypeCalibrate, `{"lambda":0.1}`, `does not apply`},
		{TypeCalibrateAndReconstruct, `{"gain":1}`, `does not apply`},
		{TypeReconstruct, `{"severity":"mild"}`, `does not apply`},
		{TypeGenerateDataset, `[1]`, `params must be a JSON object`},
		{TypeGenerateDataset, `"x"`, `params must be a JSON object`},
		{TypeGenerateDataset, `{"size":7}`, `size must be between 8 and 256`},
		{TypeGenerateDataset, `{"size":257}`, `size must be between 8 and 256`},
		{TypeGenerateDataset, `{"size":64.5}`, `size must be an integer`},
		{TypeGenerateDataset, `{"size":"64"}`, `size must be an integer`},
		{TypeGenerateDataset, `{"size":null}`, `size must be an integer`},
		{TypeGenerateDataset, `{"size":1e400}`, `size must be an integer`},
		{TypeGenerateDataset, `{"sampling":0}`, `sampling must be greater than 0 and at most 1`},
		{TypeGenerateDataset, `{"sampling":1.01}`, `sampling`},
		{TypeGenerateDataset, `{"sampling":true}`, `sampling must be a number`},
		{TypeGenerateDataset, `{"noise":-0.1}`, `noise must be between 0 and 1`},
		{TypeGenerateDataset, `{"noise":2}`, `noise must be between 0 and 1`},
		{TypeGenerateDataset, `{"seed":-1}`, `seed must be >= 0`},
		{TypeGenerateDataset, `{"operator_seed":-1}`, `operator_seed must be >= 0`},
		{TypeGenerateDataset, `{"severity":"extreme"}`, `severity must be one of mild, moderate, severe`},
		{TypeGenerateDataset, `{"severity":3}`, `severity must be a string`},
		{TypeGenerateDataset, `{"severity":"mild","gain":1.1}`, `either severity or gain/bias`},
		{TypeGenerateDataset, `{"gain":0}`, `gain must be greater than 0 and at most 10`},
		{TypeReconstruct, `{"gain":10.5}`, `gain must be greater than 0 and at most 10`},
		{TypeReconstruct, `{"bias":"x"}`, `bias must be a number`},
		{TypeReconstruct, `{"iterations":0}`, `iterations must be between 1 and 2000`},
		{TypeReconstruct, `{"iterations":2001}`, `iterations must be between 1 and 2000`},
		{TypeReconstruct, `{"iterations":1.5}`, `iterations must be an integer`},
		{TypeReconstruct, `{"lambda":-1}`, `lambda must be a finite number >= 0`},
		{TypeCalibrate, `{"seed":99999999999999999999}`, `seed must be an integer`},
	}
	for _, c := range cases {
		_, err := ParseParams(c.ty, json.RawMessage(c.raw))
		if !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%s %s: got %v, want ErrInvalidParams", c.ty, c.raw, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s: message %q does not contain %q", c.ty, c.raw, err, c.want)
		}
	}
}

func TestValidateHandBuiltParams(t *testing.T) {
	t.Parallel()
	if err := (Params{}).Validate(TypeGenerateDataset); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("zero Params for generate_dataset: got %v", err)
	}
	if err := DefaultParams(TypeCalibrateAndReconstruct).Validate(TypeCalibrateAndReconstruct); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
