package workload

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestTranspose8(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		x := rng.Uint64()
		y := transpose8(x)
		for k := range 8 {
			for c := range 8 {
				if (x>>(8*k+c))&1 != (y>>(8*c+k))&1 {
					t.Fatalf("transpose8(%#x): bit (%d,%d) wrong", x, k, c)
				}
			}
		}
	}
}

// dense expands the sign bits into the M×N matrix A.
func dense(o *Operator) []float64 {
	a := make([]float64, o.M*o.N)
	s := 1 / math.Sqrt(float64(o.N))
	for i := range o.M {
		for j := range o.N {
			if o.fwd[(j/8)*o.M+i]>>(j%8)&1 == 1 {
				a[i*o.N+j] = s
			} else {
				a[i*o.N+j] = -s
			}
		}
	}
	return a
}

func TestOperatorMatchesDense(t *testing.T) {
	t.Parallel()
	// 9×9 at 0.3 has N = 81 and M = 24: neither a multiple of 8 nor of 32.
	for _, c := range []struct {
		size     int
		sampling float64
	}{{8, 0.25}, {9, 0.3}, {11, 0.77}, {16, 1}} {
		o := BuildOperator(c.size, c.sampling, 3)
		a := dense(o)
		rng := rand.New(rand.NewPCG(5, 6))
		x := make([]float64, o.N)
		for i := range x {
			x[i] = rng.Float64()
		}
		y := make([]float64, o.M)
		for i := range y {
			y[i] = rng.NormFloat64()
		}
		ax := make([]float64, o.M)
		aty := make([]float64, o.N)
		o.Apply(ax, x)
		o.ApplyT(aty, y)
		for i := range o.M {
			want := 0.0
			for j := range o.N {
				want += a[i*o.N+j] * x[j]
			}
			if math.Abs(ax[i]-want) > 1e-12 {
				t.Fatalf("size %d: (Ax)[%d] = %v, want %v", c.size, i, ax[i], want)
			}
		}
		for j := range o.N {
			want := 0.0
			for i := range o.M {
				want += a[i*o.N+j] * y[i]
			}
			if math.Abs(aty[j]-want) > 1e-12 {
				t.Fatalf("size %d: (Aᵀy)[%d] = %v, want %v", c.size, j, aty[j], want)
			}
		}
		// L estimates the top eigenvalue of AᵀA from below, and closely.
		if !(o.L > 0 && o.L < float64(o.M)) {
			t.Errorf("size %d: L = %v", c.size, o.L)
		}
	}
}

func TestOperatorDimensions(t *testing.T) {
	t.Parallel()
	o := BuildOperator(64, 0.25, 7)
	if o.M != 1024 || o.N != 4096 || o.Size != 64 {
		t.Fatalf("M, N = %d, %d", o.M, o.N)
	}
	// For a ±1/√N matrix with M/N = 1/4 the top eigenvalue of AᵀA is near
	// (1 + √(M/N))² = 2.25; 20 power iterations get within a few percent.
	if o.L < 2 || o.L > 2.3 {
		t.Errorf("L = %v, want about 2.25", o.L)
	}
}

func TestOperatorMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	o := BuildOperator(32, 0.25, 11)
	b, err := o.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := 32*32/4*32*32/8 + 64; len(b) > want {
		t.Errorf("marshalled size %d, want at most %d", len(b), want)
	}
	u, err := UnmarshalOperator(b)
	if err != nil {
		t.Fatal(err)
	}
	if u.M != o.M || u.N != o.N || u.Size != o.Size || u.Sampling != o.Sampling || u.Seed != o.Seed || u.L != o.L || u.Key() != o.Key() {
		t.Fatalf("header mismatch: %+v vs %+v", u, o)
	}
	if !reflect.DeepEqual(u.fwd, o.fwd) || !reflect.DeepEqual(u.adj, o.adj) {
		t.Fatal("sign bits differ after round trip")
	}
	b2, _ := u.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatal("re-marshalled bytes differ")
	}
	again, _ := BuildOperator(32, 0.25, 11).MarshalBinary()
	if !bytes.Equal(b, again) {
		t.Fatal("BuildOperator is not deterministic")
	}
}

func TestUnmarshalOperatorCorrupt(t *testing.T) {
	t.Parallel()
	good, _ := BuildOperator(8, 0.25, 1).MarshalBinary()
	reseal := func(b []byte) []byte {
		b = bytes.Clone(b[:len(b)-4])
		return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	otherVersion := bytes.Clone(good)
	copy(otherVersion[11:], "spc-v0")
	badDims := bytes.Clone(good)
	binary.LittleEndian.PutUint32(badDims[11+len(Version):], 300)
	cases := map[string][]byte{
		"empty":         nil,
		"garbage":       []byte("not an operator, just some bytes"),
		"truncated":     good[:len(good)-10],
		"header only":   good[:20],
		"bit flip":      flipped,
		"other version": reseal(otherVersion),
		"bad size":      reseal(badDims),
		"short bits":    reseal(append(bytes.Clone(good[:len(good)-8]), 0, 0, 0, 0)),
	}
	for name, b := range cases {
		if _, err := UnmarshalOperator(b); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: got %v, want a corrupt-operator error", name, err)
		}
	}
}

func TestOperatorKey(t *testing.T) {
	t.Parallel()
	k := OperatorKeyFor(64, 0.25, 7)
	if len(k) != 64 || k != OperatorKeyFor(64, 0.25, 7) {
		t.Fatalf("key %q not a stable hex SHA-256", k)
	}
	for _, other := range []string{OperatorKeyFor(32, 0.25, 7), OperatorKeyFor(64, 0.3, 7), OperatorKeyFor(64, 0.25, 8)} {
		if other == k {
			t.Fatal("different inputs give the same key")
		}
	}
	if got := BuildOperator(8, 0.25, 7).Key(); got != OperatorKeyFor(8, 0.25, 7) {
		t.Fatalf("Key() = %s", got)
	}
}

func TestBuildOperatorCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := buildOperator(ctx, 16, 0.25, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
