package workload

import (
	"context"
	"fmt"
	"io"
	"math"
)

// tvInnerIterations is the number of Chambolle iterations per proximal step.
const tvInnerIterations = 10

// reconstruction settings.
type fistaConfig struct {
	iterations int
	lambda     float64
	gain, bias float64 // θ to correct the measurements with
	log        io.Writer
	label      string
}

// reconstruct solves min_x ½‖A x − y_c‖² + λ·TV(x) s.t. x ∈ [0,1]ᴺ with FISTA
// (step 1/L), where y_c = (y − b)/g, starting from x₀ = clip(Aᵀ y_c). The
// proximal step is Chambolle's dual projection (Beck & Teboulle's constrained
// variant) with 10 inner iterations, its dual variable warm-started from the
// previous outer iteration. It checks ctx every iteration.
func reconstruct(ctx context.Context, op *Operator, y []float64, cfg fistaConfig) ([]float64, error) {
	n := op.N
	yc := make([]float64, op.M)
	for i, v := range y {
		yc[i] = (v - cfg.bias) / cfg.gain
	}
	x := make([]float64, n)
	op.ApplyT(x, yc)
	for i, v := range x {
		x[i] = clip01(v)
	}
	xPrev := append([]float64(nil), x...)
	z := append([]float64(nil), x...)
	v := make([]float64, n)
	r := make([]float64, op.M)
	grad := make([]float64, n)
	prox := newTVProx(op.Size)
	step := 1 / op.L
	mu := cfg.lambda * step
	t := 1.0
	for it := range cfg.iterations {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		op.Apply(r, z)
		for i := range r {
			r[i] -= yc[i]
		}
		op.ApplyT(grad, r)
		for i := range v {
			v[i] = z[i] - step*grad[i]
		}
		xPrev, x = x, xPrev
		prox.apply(x, v, mu)
		tNext := (1 + math.Sqrt(1+4*t*t)) / 2
		beta := (t - 1) / tNext
		for i := range z {
			z[i] = x[i] + beta*(x[i]-xPrev[i])
		}
		t = tNext
		if cfg.log != nil && ((it+1)%50 == 0 || it+1 == cfg.iterations) {
			res := 0.0
			for _, e := range r {
				res += e * e
			}
			fmt.Fprintf(cfg.log, "fista %s: iteration %d/%d, residual %.6g\n", cfg.label, it+1, cfg.iterations, math.Sqrt(res))
		}
	}
	return x, nil
}

// tvProx computes the proximal operator of μ·TV (isotropic, Neumann boundary)
// plus the indicator of [0,1]ᴺ on a size×size image.
type tvProx struct {
	size           int
	px, py, div, w []float64
}

func newTVProx(size int) *tvProx {
	n := size * size
	return &tvProx{size: size, px: make([]float64, n), py: make([]float64, n), div: make([]float64, n), w: make([]float64, n)}
}

// apply sets x = argmin ½‖x − v‖² + μ·TV(x) over x ∈ [0,1]ᴺ, approximately.
func (p *tvProx) apply(x, v []float64, mu float64) {
	if mu <= 0 {
		for i, e := range v {
			x[i] = clip01(e)
		}
		return
	}
	s := p.size
	tau := 1 / (8 * mu)
	for range tvInnerIterations {
		p.primal(p.w, v, mu)
		w := p.w
		for r := range s {
			row := r * s
			for c := range s {
				i := row + c
				var gx, gy float64
				if c < s-1 {
					gx = w[i+1] - w[i]
				}
				if r < s-1 {
					gy = w[i+s] - w[i]
				}
				qx, qy := p.px[i]+tau*gx, p.py[i]+tau*gy
				if m := qx*qx + qy*qy; m > 1 {
					m = 1 / math.Sqrt(m)
					qx, qy = qx*m, qy*m
				}
				p.px[i], p.py[i] = qx, qy
			}
		}
	}
	p.primal(x, v, mu)
}

// primal sets out = clip(v + μ·div p), where div = −∇ᵀ for forward
// differences with a Neumann boundary.
func (p *tvProx) primal(out, v []float64, mu float64) {
	s := p.size
	px, py := p.px, p.py
	for r := range s {
		row := r * s
		for c := range s {
			i := row + c
			var d float64
			if c < s-1 {
				d = px[i]
			}
			if c > 0 {
				d -= px[i-1]
			}
			if r < s-1 {
				d += py[i]
			}
			if r > 0 {
				d -= py[i-s]
			}
			out[i] = clip01(v[i] + mu*d)
		}
	}
}
