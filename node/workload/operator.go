package workload

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"math/rand/v2"
	"strconv"
)

// PRNG stream identifiers, one per use of a seed, so that the phantom, the
// noise, the bootstrap and the operator never share random numbers.
const (
	streamOperator  = 0x6f70657261746f72 // "operator"
	streamPower     = 0x706f776572697465 // "powerite"
	streamPhantom   = 0x7068616e746f6d00 // "phantom"
	streamNoise     = 0x6e6f697365000000 // "noise"
	streamBootstrap = 0x626f6f7473747270 // "bootstrp"
)

// powerIterations is how many power iterations of AᵀA estimate L.
const powerIterations = 20

// Operator is the compiled measurement operator: the M×N matrix A with entries
// ±1/√N, stored as sign bits (bit set = +1), and L, the Lipschitz constant of
// the gradient of ½‖Ax − y‖² (the largest eigenvalue of AᵀA, estimated by
// power iteration). It depends only on (Version, Size, Sampling, Seed).
//
// Products with A and Aᵀ use the "four Russians" trick: for every group of 8
// columns (or rows) a 256-entry table holds all ±-combinations of the 8 input
// values, so a product costs M·N/8 table look-ups instead of M·N
// multiply-adds. Summation order is fixed, so results are bit-identical from
// run to run. An Operator is safe for concurrent use once built.
type Operator struct {
	M, N     int     // rows (measurements) and columns (pixels)
	Size     int     // image side; N = Size²
	Sampling float64 // requested M/N
	Seed     int64   // operator seed
	L        float64 // Lipschitz constant estimate of AᵀA

	rowBytes int    // ceil(N/8)
	fwd      []byte // fwd[c*M+i], bit k = entry (i, 8c+k), for A·x; the canonical form
	adj      []byte // adj[r*N+j], bit k = entry (8r+k, j), for Aᵀ·y; derived from fwd
}

// rowsFor is the number of measurements for an image side and sampling ratio.
func rowsFor(size int, sampling float64) int {
	n := size * size
	m := int(math.Round(sampling * float64(n)))
	return min(max(m, 1), n)
}

// OperatorBytes is the size of the compiled operator of an image side and
// a sampling ratio: its M×N sign bits, M·⌈N/8⌉ bytes (the stored form adds
// a header of under 64 bytes; in memory it is held twice, for A and Aᵀ).
// Bounds on operators (Request.MaxOperatorBytes) are on this. size and
// sampling must be valid (see ParseParams).
func OperatorBytes(size int, sampling float64) int64 {
	n := size * size
	return int64(rowsFor(size, sampling)) * int64((n+7)/8)
}

// ErrOperatorTooLarge: the job's compiled operator would pass the bound its
// request set (Request.MaxOperatorBytes); nothing was built.
var ErrOperatorTooLarge = errors.New("workload: compiled operator too large")

// OperatorKeyFor is the compiled-operator cache key: the hex SHA-256 of the
// code version and the inputs A and L depend on.
func OperatorKeyFor(size int, sampling float64, operatorSeed int64) string {
	s := "pwmesh-operator\x00" + Version + "\x00" + strconv.Itoa(size) + "\x00" +
		strconv.FormatFloat(sampling, 'g', -1, 64) + "\x00" + strconv.FormatInt(operatorSeed, 10)
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Key returns the cache key of o.
func (o *Operator) Key() string { return OperatorKeyFor(o.Size, o.Sampling, o.Seed) }

// BuildOperator draws A from a PCG generator seeded with seed and estimates L
// with 20 power iterations of AᵀA. size and sampling must be valid (see
// ParseParams); it panics on nonsense dimensions.
func BuildOperator(size int, sampling float64, seed int64) *Operator {
	op, err := buildOperator(context.Background(), size, sampling, seed)
	if err != nil {
		panic(err) // unreachable: Background is never cancelled
	}
	return op
}

func buildOperator(ctx context.Context, size int, sampling float64, seed int64) (*Operator, error) {
	if size < 1 || !(sampling > 0 && sampling <= 1) {
		panic(fmt.Sprintf("workload: BuildOperator(%d, %v): bad dimensions", size, sampling))
	}
	n := size * size
	m := rowsFor(size, sampling)
	o := &Operator{M: m, N: n, Size: size, Sampling: sampling, Seed: seed, rowBytes: (n + 7) / 8}
	// Row by row, 64 entries per draw; bits past column N stay zero.
	o.fwd = make([]byte, o.rowBytes*m)
	rng := rand.New(rand.NewPCG(uint64(seed), streamOperator))
	var lastMask byte = 0xff
	if r := n % 8; r != 0 {
		lastMask = byte(1)<<r - 1
	}
	for i := range m {
		for c := 0; c < o.rowBytes; c += 8 {
			u := rng.Uint64()
			for k := 0; k < 8 && c+k < o.rowBytes; k++ {
				o.fwd[(c+k)*m+i] = byte(u >> (8 * k))
			}
		}
		o.fwd[(o.rowBytes-1)*m+i] &= lastMask
	}
	o.derive()
	l, err := o.powerIteration(ctx)
	if err != nil {
		return nil, err
	}
	o.L = l
	return o, nil
}

// derive fills the Aᵀ layout from the canonical one: each 8×8 block of signs
// (8 rows from one byte plane of fwd, 8 columns) is bit-transposed.
func (o *Operator) derive() {
	m, rb, n := o.M, o.rowBytes, o.N
	rc := (m + 7) / 8
	o.adj = make([]byte, rc*n)
	var tail [8]byte
	for r := range rc {
		out := o.adj[r*n : (r+1)*n]
		for c := range rb {
			plane := o.fwd[c*m : (c+1)*m]
			var x uint64
			if 8*r+8 <= m {
				x = binary.LittleEndian.Uint64(plane[8*r:])
			} else {
				tail = [8]byte{}
				copy(tail[:], plane[8*r:])
				x = binary.LittleEndian.Uint64(tail[:])
			}
			x = transpose8(x)
			if 8*c+8 <= n {
				binary.LittleEndian.PutUint64(out[8*c:], x)
				continue
			}
			for t := 0; 8*c+t < n; t++ {
				out[8*c+t] = byte(x >> (8 * t))
			}
		}
	}
}

// transpose8 transposes an 8×8 bit matrix held in a uint64 (byte k = row k,
// bit t of a byte = column t): bit 8k+t moves to bit 8t+k.
func transpose8(x uint64) uint64 {
	t := (x ^ (x >> 7)) & 0x00AA00AA00AA00AA
	x = x ^ t ^ (t << 7)
	t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCC
	x = x ^ t ^ (t << 14)
	t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0
	return x ^ t ^ (t << 28)
}

// signTable fills t[b] = Σₖ (bit k of b ? +v[k] : −v[k]) in a fixed order.
func signTable(t *[256]float64, v *[8]float64) {
	s := -v[0]
	for k := 1; k < 8; k++ {
		s -= v[k]
	}
	t[0] = s
	var v2 [8]float64
	for k := range v2 {
		v2[k] = 2 * v[k]
	}
	for b := 1; b < 256; b++ {
		t[b] = t[b&(b-1)] + v2[bits.TrailingZeros(uint(b))]
	}
}

// chunk copies in[8c:8c+8] into v, padding past the end with zeros.
func chunk(v *[8]float64, in []float64, c int) {
	if 8*c+8 <= len(in) {
		copy(v[:], in[8*c:8*c+8])
		return
	}
	*v = [8]float64{}
	copy(v[:], in[8*c:])
}

// lookupSum adds, for four byte-planes, tables indexed by the planes into dst.
func lookupSum4(dst []float64, t *[4][256]float64, b0, b1, b2, b3 []byte) {
	b0 = b0[:len(dst)]
	b1 = b1[:len(dst)]
	b2 = b2[:len(dst)]
	b3 = b3[:len(dst)]
	t0, t1, t2, t3 := &t[0], &t[1], &t[2], &t[3]
	for i := range dst {
		dst[i] += (t0[b0[i]] + t1[b1[i]]) + (t2[b2[i]] + t3[b3[i]])
	}
}

func lookupSum1(dst []float64, t *[256]float64, b []byte) {
	b = b[:len(dst)]
	for i := range dst {
		dst[i] += t[b[i]]
	}
}

// product computes dst = s·B·in where B's sign bytes are laid out as planes of
// length len(dst), one plane per 8 entries of in.
func product(dst, in []float64, planes []byte, scale float64) {
	clear(dst)
	n := len(dst)
	nc := (len(in) + 7) / 8
	var tabs [4][256]float64
	var v [8]float64
	c := 0
	for ; c+4 <= nc; c += 4 {
		for k := range 4 {
			chunk(&v, in, c+k)
			signTable(&tabs[k], &v)
		}
		lookupSum4(dst, &tabs, planes[c*n:], planes[(c+1)*n:], planes[(c+2)*n:], planes[(c+3)*n:])
	}
	for ; c < nc; c++ {
		chunk(&v, in, c)
		signTable(&tabs[0], &v)
		lookupSum1(dst, &tabs[0], planes[c*n:])
	}
	for i := range dst {
		dst[i] *= scale
	}
}

// Apply sets dst = A·x (len(dst) = M, len(x) = N).
func (o *Operator) Apply(dst, x []float64) {
	if len(dst) != o.M || len(x) != o.N {
		panic("workload: Operator.Apply: dimension mismatch")
	}
	product(dst, x, o.fwd, 1/math.Sqrt(float64(o.N)))
}

// ApplyT sets dst = Aᵀ·y (len(dst) = N, len(y) = M).
func (o *Operator) ApplyT(dst, y []float64) {
	if len(dst) != o.N || len(y) != o.M {
		panic("workload: Operator.ApplyT: dimension mismatch")
	}
	product(dst, y, o.adj, 1/math.Sqrt(float64(o.N)))
}

// powerIteration estimates the largest eigenvalue of AᵀA.
func (o *Operator) powerIteration(ctx context.Context) (float64, error) {
	rng := rand.New(rand.NewPCG(uint64(o.Seed), streamPower))
	v := make([]float64, o.N)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	scaleTo(v, 1/norm(v))
	av := make([]float64, o.M)
	w := make([]float64, o.N)
	var l float64
	for range powerIterations {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		o.Apply(av, v)
		o.ApplyT(w, av)
		l = norm(w)
		if l == 0 {
			return 1, nil
		}
		v, w = w, v
		scaleTo(v, 1/l)
	}
	return l, nil
}

func norm(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func scaleTo(v []float64, s float64) {
	for i := range v {
		v[i] *= s
	}
}

// Serialised form (all integers little-endian):
//
//	magic "PWMSPCOP" | format u16 = 1 | len u8 + Version | size u32 | M u32 |
//	N u32 | sampling f64 | seed i64 | L f64 | sign bits (ceil(N/8)·M bytes,
//	byte c·M+i holding the signs of row i, columns 8c..8c+7, bit set = +1) |
//	CRC-32C (Castagnoli) of everything before it, u32
const (
	opMagic  = "PWMSPCOP"
	opFormat = 1
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt is wrapped by every UnmarshalOperator error.
var errCorrupt = errors.New("workload: corrupt compiled operator")

// MarshalBinary encodes o compactly (about M·N/8 bytes) with a versioned
// header and a checksum.
func (o *Operator) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+len(o.fwd))
	b = append(b, opMagic...)
	b = binary.LittleEndian.AppendUint16(b, opFormat)
	b = append(b, byte(len(Version)))
	b = append(b, Version...)
	b = binary.LittleEndian.AppendUint32(b, uint32(o.Size))
	b = binary.LittleEndian.AppendUint32(b, uint32(o.M))
	b = binary.LittleEndian.AppendUint32(b, uint32(o.N))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(o.Sampling))
	b = binary.LittleEndian.AppendUint64(b, uint64(o.Seed))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(o.L))
	b = append(b, o.fwd...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable)), nil
}

// UnmarshalOperator decodes MarshalBinary output, checking the header, the
// code version, the dimensions and the checksum.
func UnmarshalOperator(b []byte) (*Operator, error) {
	bad := func(why string) (*Operator, error) { return nil, fmt.Errorf("%w: %s", errCorrupt, why) }
	if len(b) < len(opMagic)+2+1+4 || string(b[:len(opMagic)]) != opMagic {
		return bad("bad magic")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return bad("checksum mismatch")
	}
	p := body[len(opMagic):]
	if f := binary.LittleEndian.Uint16(p); f != opFormat {
		return bad(fmt.Sprintf("unknown format %d", f))
	}
	p = p[2:]
	vl := int(p[0])
	if len(p) < 1+vl+4*3+8*3 {
		return bad("truncated header")
	}
	if v := string(p[1 : 1+vl]); v != Version {
		return bad(fmt.Sprintf("built by workload version %q, this is %q", v, Version))
	}
	p = p[1+vl:]
	size := int(binary.LittleEndian.Uint32(p))
	m := int(binary.LittleEndian.Uint32(p[4:]))
	n := int(binary.LittleEndian.Uint32(p[8:]))
	sampling := math.Float64frombits(binary.LittleEndian.Uint64(p[12:]))
	seed := int64(binary.LittleEndian.Uint64(p[20:]))
	l := math.Float64frombits(binary.LittleEndian.Uint64(p[28:]))
	p = p[36:]
	if size < minSize || size > maxSize || n != size*size || !(sampling > 0 && sampling <= 1) || m != rowsFor(size, sampling) {
		return bad("inconsistent dimensions")
	}
	if !(l > 0) || math.IsInf(l, 0) {
		return bad("bad Lipschitz constant")
	}
	o := &Operator{M: m, N: n, Size: size, Sampling: sampling, Seed: seed, L: l, rowBytes: (n + 7) / 8}
	if len(p) != m*o.rowBytes {
		return bad("sign bits have the wrong length")
	}
	o.fwd = append([]byte(nil), p...)
	o.derive()
	return o, nil
}
