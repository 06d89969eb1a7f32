package workload

import (
	"context"
	"errors"
	"testing"
)

func TestJobOperatorKey(t *testing.T) {
	t.Parallel()
	k, err := JobOperatorKey(TypeGenerateDataset, []byte(`{"size":16,"operator_seed":3}`), nil)
	if err != nil || k != OperatorKeyFor(16, 0.25, 3) {
		t.Fatalf("generate key %q %v", k, err)
	}
	res, err := Run(context.Background(), Request{Type: TypeGenerateDataset, Params: mustParams(t, TypeGenerateDataset, `{"size":16,"operator_seed":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := JobOperatorKey(TypeCalibrate, nil, res.Dataset)
	if err != nil || k2 != k {
		t.Fatalf("dataset key %q %v, want %q", k2, err, k)
	}
	if k, err := JobOperatorKey(TypeCalibrate, nil, nil); k != "" || err != nil {
		t.Fatalf("no dataset: %q %v", k, err)
	}
	if _, err := JobOperatorKey(TypeCalibrate, nil, []byte("junk")); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("junk dataset: %v", err)
	}
}
