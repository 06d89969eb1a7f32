package workload

import (
	"math"
	"math/rand/v2"
)

// calCaptures is K, the number of flat-field calibration captures.
const calCaptures = 5

// calLevels returns the flat-field levels (i+1)/K.
func calLevels() []float64 {
	l := make([]float64, calCaptures)
	for i := range l {
		l[i] = float64(i+1) / calCaptures
	}
	return l
}

// Phantom returns the size×size test image of a seed, row-major in [0,1]:
// background 0.1, a disc of 0.8 (radius size/4) at the centre, a disc of 0.6
// (radius size/8) centred at (size/3, 2·size/3), a rectangle of 0.9 over rows
// [3/4, 15/16) and columns [1/16, 5/16) of the image, each painted over the
// previous, plus 0.05·U[0,1) texture, clipped to [0,1].
func Phantom(size int, seed int64) []float64 {
	h := float64(size)
	x := make([]float64, size*size)
	rng := rand.New(rand.NewPCG(uint64(seed), streamPhantom))
	inDisc := func(r, c int, cy, cx, rad float64) bool {
		dy, dx := float64(r)+0.5-cy, float64(c)+0.5-cx
		return dy*dy+dx*dx <= rad*rad
	}
	for r := range size {
		for c := range size {
			v := 0.1
			if inDisc(r, c, h/2, h/2, h/4) {
				v = 0.8
			}
			if inDisc(r, c, h/3, 2*h/3, h/8) {
				v = 0.6
			}
			if fr, fc := float64(r)/h, float64(c)/h; fr >= 0.75 && fr < 15.0/16 && fc >= 1.0/16 && fc < 5.0/16 {
				v = 0.9
			}
			v += 0.05 * rng.Float64()
			x[r*size+c] = min(max(v, 0), 1)
		}
	}
	return x
}

// simulation is one generated sample.
type simulation struct {
	x, y, yCal, levels []float64
}

// simulate measures the phantom of seed and the flat-field captures with the
// true θ = (gain, bias) and noise σ: y = g·(A x) + b + n.
func simulate(op *Operator, seed int64, gain, bias, sigma float64) simulation {
	s := simulation{x: Phantom(op.Size, seed), levels: calLevels()}
	rng := rand.New(rand.NewPCG(uint64(seed), streamNoise))
	ax := make([]float64, op.M)
	op.Apply(ax, s.x)
	s.y = make([]float64, op.M)
	for i, v := range ax {
		s.y[i] = gain*v + bias + sigma*rng.NormFloat64()
	}
	a1 := onesResponse(op)
	s.yCal = make([]float64, len(s.levels)*op.M)
	for k, l := range s.levels {
		for i, v := range a1 {
			s.yCal[k*op.M+i] = gain*(l*v) + bias + sigma*rng.NormFloat64()
		}
	}
	return s
}

// onesResponse is A·1, the response to a unit flat field.
func onesResponse(op *Operator) []float64 {
	ones := make([]float64, op.N)
	for i := range ones {
		ones[i] = 1
	}
	a1 := make([]float64, op.M)
	op.Apply(a1, ones)
	return a1
}

func clip01(v float64) float64 { return min(max(v, 0), 1) }

func finite(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}
