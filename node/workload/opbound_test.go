package workload

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/node/workload/npy"
)

func TestOperatorBytes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		size     int
		sampling float64
		want     int64
	}{
		{256, 1, 512 << 20},
		{128, 1, 32 << 20},
		{128, 0.5, 16 << 20},
		{DefaultSize, DefaultSampling, 512 << 10},
		{9, 0.5, 41 * 11}, // M = round(40.5) = 41 rows of ⌈81/8⌉ bytes
	} {
		if got := OperatorBytes(c.size, c.sampling); got != c.want {
			t.Errorf("OperatorBytes(%d, %v) = %d, want %d", c.size, c.sampling, got, c.want)
		}
	}
	// What a built operator holds is what OperatorBytes says.
	op := BuildOperator(9, 0.5, 1)
	if got := int64(len(op.fwd)); got != OperatorBytes(9, 0.5) {
		t.Errorf("built operator holds %d bytes of signs, OperatorBytes says %d", got, OperatorBytes(9, 0.5))
	}
}

func TestJobOperatorBytes(t *testing.T) {
	t.Parallel()
	if n, ok := JobOperatorBytes(TypeGenerateDataset, json.RawMessage(`{"size":256,"sampling":1}`)); !ok || n != 512<<20 {
		t.Errorf("generate_dataset 256 at 1: %d %v", n, ok)
	}
	if n, ok := JobOperatorBytes(TypeGenerateDataset, nil); !ok || n != OperatorBytes(DefaultSize, DefaultSampling) {
		t.Errorf("generate_dataset defaults: %d %v", n, ok)
	}
	for _, c := range []struct{ typ, params string }{
		{TypeReconstruct, `{}`},             // from its dataset
		{TypeGPUSelfTest, `{}`},             // none
		{TypeGenerateDataset, `{"size":1}`}, // refused params
	} {
		if n, ok := JobOperatorBytes(c.typ, json.RawMessage(c.params)); ok {
			t.Errorf("%s %s: %d, want none", c.typ, c.params, n)
		}
	}
}

// A job whose operator passes its bound fails before anything is built,
// whether its size comes from params or from a dataset, and whether or not
// a cached copy is at hand; at or under the bound it runs.
func TestMaxOperatorBytes(t *testing.T) {
	t.Parallel()
	big := mustParams(t, TypeGenerateDataset, `{"size":128,"sampling":1}`)
	_, err := Run(context.Background(), Request{Type: TypeGenerateDataset, Params: big, MaxOperatorBytes: 16 << 20})
	if !errors.Is(err, ErrOperatorTooLarge) || errors.Is(err, ErrInvalidParams) {
		t.Fatalf("generate 128 at 1 under a 16 MiB bound: %v", err)
	}
	for _, want := range []string{"32 MiB", "16 MiB", "16384×16384"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}

	// A dataset that claims size 128 at sampling 1 (only its y is needed).
	y := make([]float64, 128*128)
	ds, err := npy.WriteNPZ(map[string]npy.Array{"y": npy.New(y, len(y))},
		map[string][]byte{"spec.json": []byte(`{"size":128,"sampling":1,"operator_seed":7}`)})
	if err != nil {
		t.Fatal(err)
	}
	rec := mustParams(t, TypeReconstruct, `{"iterations":1}`)
	_, err = Run(context.Background(), Request{Type: TypeReconstruct, Params: rec, Dataset: ds, MaxOperatorBytes: 16 << 20})
	if !errors.Is(err, ErrOperatorTooLarge) {
		t.Fatalf("reconstruct of a 128-at-1 dataset under a 16 MiB bound: %v", err)
	}

	// A cached copy does not lift the bound.
	small := genDataset(t, 16, "mild", 0)
	op := testOperator(t, 16)
	cal := mustParams(t, TypeCalibrate, `{}`)
	_, err = Run(context.Background(), Request{Type: TypeCalibrate, Params: cal, Dataset: small, Operator: op, MaxOperatorBytes: OperatorBytes(16, DefaultSampling) - 1})
	if !errors.Is(err, ErrOperatorTooLarge) {
		t.Fatalf("cached operator one byte over the bound: %v", err)
	}
	r, err := Run(context.Background(), Request{Type: TypeCalibrate, Params: cal, Dataset: small, Operator: op, MaxOperatorBytes: OperatorBytes(16, DefaultSampling)})
	if err != nil {
		t.Fatalf("operator at its bound: %v", err)
	}
	if r.Metrics["operator_cache"] != "hit" {
		t.Errorf("operator_cache %v, want hit", r.Metrics["operator_cache"])
	}
}
