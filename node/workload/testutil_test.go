package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
)

// Operators shared by the tests, built once (they depend only on their key).
var (
	opOnce  sync.Mutex
	opCache = map[int][]byte{}
)

// testOperator returns the marshalled default operator of an image size.
func testOperator(t testing.TB, size int) []byte {
	t.Helper()
	opOnce.Lock()
	defer opOnce.Unlock()
	if b, ok := opCache[size]; ok {
		return b
	}
	b, err := BuildOperator(size, DefaultSampling, DefaultOperatorSeed).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	opCache[size] = b
	return b
}

func mustParams(t testing.TB, jobType, raw string) Params {
	t.Helper()
	p, err := ParseParams(jobType, json.RawMessage(raw))
	if err != nil {
		t.Fatalf("ParseParams(%s, %s): %v", jobType, raw, err)
	}
	return p
}

// genDataset runs generate_dataset at the default sampling and operator seed.
func genDataset(t testing.TB, size int, severity string, seed int64) []byte {
	t.Helper()
	p := mustParams(t, TypeGenerateDataset, fmt.Sprintf(`{"size":%d,"severity":%q,"seed":%d}`, size, severity, seed))
	r, err := Run(context.Background(), Request{Type: TypeGenerateDataset, Params: p, Operator: testOperator(t, size)})
	if err != nil {
		t.Fatal(err)
	}
	return r.Dataset
}

func metric(t testing.TB, r *Result, name string) float64 {
	t.Helper()
	v, ok := r.Metrics[name].(float64)
	if !ok {
		t.Fatalf("metric %s missing or not a float64: %#v", name, r.Metrics[name])
	}
	return v
}

func interval(t testing.TB, r *Result, name string) [2]float64 {
	t.Helper()
	v, ok := r.Metrics[name].([2]float64)
	if !ok {
		t.Fatalf("metric %s missing or not a [2]float64: %#v", name, r.Metrics[name])
	}
	return v
}
