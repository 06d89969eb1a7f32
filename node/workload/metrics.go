package workload

import (
	"bytes"
	"image"
	"image/png"
	"math"
)

// maxPSNR caps the PSNR of an exact reconstruction, so metrics stay finite.
const maxPSNR = 100

// PSNR is the peak signal-to-noise ratio in dB for data range 1.
func PSNR(x, ref []float64) float64 {
	mse := 0.0
	for i := range x {
		d := x[i] - ref[i]
		mse += d * d
	}
	mse /= float64(len(x))
	if mse == 0 {
		return maxPSNR
	}
	return min(10*math.Log10(1/mse), maxPSNR)
}

// SSIM is the structural similarity of Wang et al. (2004) for data range 1:
// an 11×11 Gaussian window with σ = 1.5 (shrunk to the largest odd size that
// fits images smaller than 11), K1 = 0.01, K2 = 0.03, averaged over the
// positions where the window lies wholly inside the image ("valid").
func SSIM(x, ref []float64, h, w int) float64 {
	win := min(11, h, w)
	if win%2 == 0 {
		win--
	}
	g := make([]float64, win)
	s := 0.0
	for i := range g {
		d := float64(i - win/2)
		g[i] = math.Exp(-d * d / (2 * 1.5 * 1.5))
		s += g[i]
	}
	for i := range g {
		g[i] /= s
	}
	xx := make([]float64, len(x))
	yy := make([]float64, len(x))
	xy := make([]float64, len(x))
	for i := range x {
		xx[i], yy[i], xy[i] = x[i]*x[i], ref[i]*ref[i], x[i]*ref[i]
	}
	mx, my := filterValid(x, h, w, g), filterValid(ref, h, w, g)
	sxx, syy, sxy := filterValid(xx, h, w, g), filterValid(yy, h, w, g), filterValid(xy, h, w, g)
	const c1, c2 = 0.01 * 0.01, 0.03 * 0.03
	total := 0.0
	for i := range mx {
		vx, vy, cxy := sxx[i]-mx[i]*mx[i], syy[i]-my[i]*my[i], sxy[i]-mx[i]*my[i]
		total += ((2*mx[i]*my[i] + c1) * (2*cxy + c2)) / ((mx[i]*mx[i] + my[i]*my[i] + c1) * (vx + vy + c2))
	}
	return total / float64(len(mx))
}

// filterValid applies the separable window g in "valid" mode.
func filterValid(x []float64, h, w int, g []float64) []float64 {
	k := len(g)
	oh, ow := h-k+1, w-k+1
	tmp := make([]float64, h*ow)
	for r := range h {
		for c := range ow {
			s := 0.0
			for j, gj := range g {
				s += gj * x[r*w+c+j]
			}
			tmp[r*ow+c] = s
		}
	}
	out := make([]float64, oh*ow)
	for r := range oh {
		for c := range ow {
			s := 0.0
			for j, gj := range g {
				s += gj * tmp[(r+j)*ow+c]
			}
			out[r*ow+c] = s
		}
	}
	return out
}

// grayPNG encodes a size×size image in [0,1] as an 8-bit grayscale PNG.
func grayPNG(x []float64, size int) []byte {
	img := image.NewGray(image.Rect(0, 0, size, size))
	for i, v := range x {
		img.Pix[i] = uint8(math.Round(clip01(v) * 255))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // unreachable: writing to a bytes.Buffer
	}
	return buf.Bytes()
}
