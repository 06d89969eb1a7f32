package workload

import (
	"context"
	"testing"
)

// BenchmarkCalibrateAndReconstruct64 is one full 64×64, 25 % job (calibration
// plus the oracle, wrong and calibrated reconstructions) with a cached operator.
func BenchmarkCalibrateAndReconstruct64(b *testing.B) {
	ds := genDataset(b, 64, "moderate", 0)
	op := testOperator(b, 64)
	p := DefaultParams(TypeCalibrateAndReconstruct)
	var r *Result
	for b.Loop() {
		var err error
		r, err = Run(context.Background(), Request{Type: TypeCalibrateAndReconstruct, Params: p, Dataset: ds, Operator: op})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(r.Metrics["psnr_calibrated_db"].(float64), "psnr_dB")
}

// BenchmarkOperatorBuild is a compiled-operator cache miss at 64×64.
func BenchmarkOperatorBuild(b *testing.B) {
	for b.Loop() {
		BuildOperator(64, 0.25, 7)
	}
}

// BenchmarkOperatorCacheHit is a compiled-operator cache hit at 64×64: decoding
// and checking the cached bytes.
func BenchmarkOperatorCacheHit(b *testing.B) {
	op := testOperator(b, 64)
	b.SetBytes(int64(len(op)))
	for b.Loop() {
		if _, err := UnmarshalOperator(op); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply64 is one product with A and one with Aᵀ at 64×64.
func BenchmarkApply64(b *testing.B) {
	o := BuildOperator(64, 0.25, 7)
	x, y, z := make([]float64, o.N), make([]float64, o.M), make([]float64, o.N)
	for i := range x {
		x[i] = float64(i%17) / 17
	}
	for b.Loop() {
		o.Apply(y, x)
		o.ApplyT(z, y)
	}
}
