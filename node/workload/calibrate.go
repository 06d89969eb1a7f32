package workload

import (
	"context"
	"math"
	"math/rand/v2"
)

// Bootstrap settings: 20 resamples; the 95 % interval is θ̂ ± t·sd, with sd the
// standard deviation of the resampled estimates and t the 97.5 % quantile of
// Student's t with 19 degrees of freedom (a normal-approximation bootstrap
// interval that accounts for estimating sd from only 20 resamples; with 20
// resamples the 2.5/97.5 percentiles would be little more than the extremes).
const (
	bootstrapResamples = 20
	bootstrapT         = 2.093
)

// Calibration is the fitted detector θ and its bootstrap intervals.
type Calibration struct {
	Gain      float64    `json:"gain"`
	Bias      float64    `json:"bias"`
	GainCI    [2]float64 `json:"gain_ci"`
	BiasCI    [2]float64 `json:"bias_ci"`
	Resamples int        `json:"bootstrap_resamples"`
	Method    string     `json:"method"`
}

const calibrationMethod = "least squares of y_cal against A·x_cal over all captures; 95% interval = estimate ± t(19)·sd of 20 bootstrap resamples of measurement indices"

// calibrate fits y_cal[k,i] ≈ g·(level_k·(A·1)_i) + b by least squares over all
// K·M points, and bootstraps by resampling measurement indices i (each with
// all K captures) with a PCG generator seeded from seed.
func calibrate(ctx context.Context, op *Operator, yCal, levels []float64, seed int64) (Calibration, error) {
	m := op.M
	a1 := onesResponse(op)
	idx := make([]int, m)
	for i := range idx {
		idx[i] = i
	}
	g, b, ok := fitTheta(a1, yCal, levels, idx)
	if !ok {
		return Calibration{}, invalid("dataset: the calibration captures do not determine gain and bias")
	}
	rng := rand.New(rand.NewPCG(uint64(seed), streamBootstrap))
	gs := make([]float64, 0, bootstrapResamples)
	bs := make([]float64, 0, bootstrapResamples)
	for range bootstrapResamples {
		if err := ctx.Err(); err != nil {
			return Calibration{}, err
		}
		for i := range idx {
			idx[i] = rng.IntN(m)
		}
		if gr, br, ok := fitTheta(a1, yCal, levels, idx); ok {
			gs = append(gs, gr)
			bs = append(bs, br)
		}
	}
	c := Calibration{Gain: g, Bias: b, Resamples: bootstrapResamples, Method: calibrationMethod}
	sg, sb := stddev(gs), stddev(bs)
	c.GainCI = [2]float64{g - bootstrapT*sg, g + bootstrapT*sg}
	c.BiasCI = [2]float64{b - bootstrapT*sb, b + bootstrapT*sb}
	return c, nil
}

// fitTheta is the least-squares line through the points
// (levels[k]·a1[i], yCal[k·M+i]) for i in idx and every k.
func fitTheta(a1, yCal, levels []float64, idx []int) (g, b float64, ok bool) {
	m := len(a1)
	var sa, sy float64
	for k, l := range levels {
		row := yCal[k*m : (k+1)*m]
		for _, i := range idx {
			sa += l * a1[i]
			sy += row[i]
		}
	}
	cnt := float64(len(levels) * len(idx))
	ma, my := sa/cnt, sy/cnt
	var saa, say float64
	for k, l := range levels {
		row := yCal[k*m : (k+1)*m]
		for _, i := range idx {
			da := l*a1[i] - ma
			saa += da * da
			say += da * (row[i] - my)
		}
	}
	if !(saa > 0) {
		return 0, 0, false
	}
	g = say / saa
	b = my - g*ma
	return g, b, !math.IsNaN(g) && !math.IsNaN(b) && !math.IsInf(g, 0) && !math.IsInf(b, 0)
}

func stddev(v []float64) float64 {
	if len(v) < 2 {
		return 0
	}
	s := v
	mean := 0.0
	for _, x := range s {
		mean += x
	}
	mean /= float64(len(s))
	ss := 0.0
	for _, x := range s {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss / float64(len(s)-1))
}
