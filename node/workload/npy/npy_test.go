package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestEncodeGolden(t *testing.T) {
	t.Parallel()
	// What numpy.save(f, numpy.arange(3.0)) writes.
	dict := "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"
	want := []byte("\x93NUMPY\x01\x00\x76\x00" + dict + strings.Repeat(" ", 127-10-len(dict)) + "\n")
	for _, v := range []float64{0, 1, 2} {
		want = binary.LittleEndian.AppendUint64(want, math.Float64bits(v))
	}
	got, err := Encode(New([]float64{0, 1, 2}, 3))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode:\n got %q\nwant %q", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []Array{
		New([]float64{1.5}),
		New([]float64{}, 0),
		New([]float64{1, -2, math.Inf(1)}, 3),
		New([]float64{1, 2, 3, 4, 5, 6}, 2, 3),
		New([]float64{1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 2),
		New(make([]float64, 4096), 64, 64),
	} {
		b, err := Encode(tc)
		if err != nil {
			t.Fatal(err)
		}
		hl := int(binary.LittleEndian.Uint16(b[8:10]))
		if (10+hl)%64 != 0 || b[10+hl-1] != '\n' {
			t.Errorf("shape %v: header length %d not padded to 64 or not newline-terminated", tc.Shape, hl)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("shape %v: %v", tc.Shape, err)
		}
		if !reflect.DeepEqual(got.Shape, tc.Shape) || !reflect.DeepEqual(got.Data, tc.Data) {
			t.Errorf("round trip: got %v %v, want %v %v", got.Shape, got.Data, tc.Shape, tc.Data)
		}
	}
}

func TestDecodeFloat32(t *testing.T) {
	t.Parallel()
	h := header("<f4", []int{2, 2})
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(h)), byte(len(h)>>8))
	b = append(b, h...)
	for _, v := range []float32{1, 0.5, -2, 3} {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	a, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Data, []float64{1, 0.5, -2, 3}) || !reflect.DeepEqual(a.Shape, []int{2, 2}) {
		t.Fatalf("got %v %v", a.Shape, a.Data)
	}
}

func TestDecodeVersion2(t *testing.T) {
	t.Parallel()
	h := "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n"
	b := append([]byte("\x93NUMPY\x02\x00"), binary.LittleEndian.AppendUint32(nil, uint32(len(h)))...)
	b = append(b, h...)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(7))
	a, err := Decode(b)
	if err != nil || len(a.Data) != 1 || a.Data[0] != 7 {
		t.Fatalf("got %v, %v", a, err)
	}
}

func mk(hdr string, data int) []byte {
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(hdr)), byte(len(hdr)>>8))
	b = append(b, hdr...)
	return append(b, make([]byte, data)...)
}

func TestDecodeMalformed(t *testing.T) {
	t.Parallel()
	good := "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n"
	cases := map[string][]byte{
		"empty":            nil,
		"bad magic":        []byte("\x93NUMPX\x01\x00\x00\x00"),
		"version 9":        []byte("\x93NUMPY\x09\x00\x00\x00"),
		"truncated header": mk(good, 16)[:30],
		"short data":       mk(good, 15),
		"long data":        mk(good, 17),
		"fortran":          mk("{'descr': '<f8', 'fortran_order': True, 'shape': (2,), }\n", 16),
		"int dtype":        mk("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }\n", 16),
		"big endian":       mk("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }\n", 16),
		"object dtype":     mk("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }\n", 16),
		"no newline":       mk("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16),
		"missing key":      mk("{'descr': '<f8', 'shape': (2,), }\n", 16),
		"extra key":        mk("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}\n", 16),
		"dup key":          mk("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", 16),
		"negative dim":     mk("{'descr': '<f8', 'fortran_order': False, 'shape': (-2,), }\n", 16),
		"huge shape":       mk("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000, 100000000000), }\n", 16),
		"huge 1d":          mk("{'descr': '<f8', 'fortran_order': False, 'shape': (999999999999,), }\n", 16),
		"overflow":         mk("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }\n", 16),
		"not a dict":       mk("['<f8', False, (2,)]\n", 16),
		"trailing":         mk("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), } x\n", 16),
		"shape not tuple":  mk("{'descr': '<f8', 'fortran_order': False, 'shape': [2], }\n", 16),
		"fortran garbage":  mk("{'descr': '<f8', 'fortran_order': Maybe, 'shape': (2,), }\n", 16),
		"unterminated str": mk("{'descr: <f8, 'fortran_order': False, 'shape': (2,), }\n", 16),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want ErrFormat", name, err)
		}
	}
}

func TestEncodeRejectsMismatch(t *testing.T) {
	t.Parallel()
	if _, err := Encode(New([]float64{1, 2, 3}, 2, 2)); err == nil {
		t.Fatal("want error for shape/data mismatch")
	}
	if _, err := Encode(New(nil, -1)); err == nil {
		t.Fatal("want error for negative dimension")
	}
}

func TestNPZRoundTripDeterministic(t *testing.T) {
	t.Parallel()
	arrays := map[string]Array{
		"y":     New([]float64{1, 2, 3}, 3),
		"y_cal": New([]float64{1, 2, 3, 4, 5, 6}, 2, 3),
	}
	other := map[string][]byte{"spec.json": []byte(`{"size":8}`)}
	b1, err := WriteNPZ(arrays, other)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := WriteNPZ(arrays, other)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatal("WriteNPZ is not deterministic")
	}
	ga, go_, err := ReadNPZ(b1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ga, arrays) || !reflect.DeepEqual(go_, other) {
		t.Fatalf("round trip mismatch: %v %v", ga, go_)
	}
	if _, err := WriteNPZ(map[string]Array{"a": New([]float64{1}, 1)}, map[string][]byte{"a.npy": nil}); err == nil {
		t.Fatal("want error for a member given twice")
	}
}

func TestReadNPZMalformed(t *testing.T) {
	t.Parallel()
	good, err := WriteNPZ(map[string]Array{"y": New([]float64{1, 2}, 2)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(good)
	// Flip bytes inside the compressed data (after the 30-byte local header and name).
	for i := 40; i < 60 && i < len(corrupt); i++ {
		corrupt[i] ^= 0xff
	}
	badMember, err := WriteNPZ(nil, map[string][]byte{"y.npy": []byte("garbage")})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":      nil,
		"garbage":    []byte("this is not a zip file at all"),
		"truncated":  good[:len(good)/2],
		"corrupt":    corrupt,
		"bad member": badMember,
	} {
		if _, _, err := ReadNPZ(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want ErrFormat", name, err)
		}
	}
}

func FuzzDecodeNPY(f *testing.F) {
	b, _ := Encode(New([]float64{1, 2, 3, 4}, 2, 2))
	f.Add(b)
	f.Add(mk("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 8))
	f.Add([]byte("\x93NUMPY\x02\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		if a.Len() != len(a.Data) {
			t.Fatalf("shape %v but %d elements", a.Shape, len(a.Data))
		}
	})
}

func FuzzReadNPZ(f *testing.F) {
	b, _ := WriteNPZ(map[string]Array{"y": New([]float64{1, 2}, 2)}, map[string][]byte{"spec.json": []byte("{}")})
	f.Add(b)
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, b []byte) {
		arrays, _, err := ReadNPZ(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		for k, a := range arrays {
			if a.Len() != len(a.Data) {
				t.Fatalf("%s: shape %v but %d elements", k, a.Shape, len(a.Data))
			}
		}
	})
}
