// Package npy reads and writes NumPy .npy arrays (format version 1.0 on write;
// 1.0, 2.0 and 3.0 on read) and .npz archives of them, for float64 data in C
// order. It is the array format of datasets and RunBundles (CONTRACT.md §4), so
// numpy.load must read everything it writes and it must refuse, without
// panicking, anything malformed that a user uploads.
package npy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrFormat is wrapped by every decoding error.
var ErrFormat = errors.New("npy: malformed data")

// Array is an N-dimensional float64 array in C (row-major) order.
// A zero-length Shape is a scalar holding one element.
type Array struct {
	Shape []int
	Data  []float64
}

// New returns an array of the given shape viewing data; it does not copy.
func New(data []float64, shape ...int) Array {
	return Array{Shape: shape, Data: data}
}

// Len is the number of elements the shape declares.
func (a Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

const magic = "\x93NUMPY"

// maxHeader bounds the header of a file we accept; numpy itself refuses
// headers above 10000 bytes by default.
const maxHeader = 1 << 16

// Encode writes a as a version 1.0 .npy file with dtype '<f8'.
func Encode(a Array) ([]byte, error) {
	for _, d := range a.Shape {
		if d < 0 {
			return nil, fmt.Errorf("npy: negative dimension %d", d)
		}
	}
	n, ok := elements(a.Shape)
	if !ok || n != len(a.Data) {
		return nil, fmt.Errorf("npy: shape %v does not hold %d elements", a.Shape, len(a.Data))
	}
	hdr := header("<f8", a.Shape)
	if len(hdr) > math.MaxUint16 {
		return nil, fmt.Errorf("npy: header too long")
	}
	out := make([]byte, 0, len(magic)+4+len(hdr)+8*len(a.Data))
	out = append(out, magic...)
	out = append(out, 1, 0)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(hdr)))
	out = append(out, hdr...)
	for _, v := range a.Data {
		out = binary.LittleEndian.AppendUint64(out, math.Float64bits(v))
	}
	return out, nil
}

// header returns the padded header dict, newline-terminated, such that the
// data starts at a multiple of 64 bytes (10 = magic + version + length).
func header(descr string, shape []int) string {
	var sb strings.Builder
	sb.WriteString("{'descr': '")
	sb.WriteString(descr)
	sb.WriteString("', 'fortran_order': False, 'shape': (")
	for i, d := range shape {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(strconv.Itoa(d))
	}
	if len(shape) == 1 {
		sb.WriteByte(',')
	}
	sb.WriteString("), }")
	total := 10 + sb.Len() + 1
	if pad := (64 - total%64) % 64; pad > 0 {
		sb.WriteString(strings.Repeat(" ", pad))
	}
	sb.WriteByte('\n')
	return sb.String()
}

// Decode parses a .npy file holding '<f8' or '<f4' data in C order and returns
// it as float64. The data must be exactly as long as the shape declares.
func Decode(b []byte) (Array, error) {
	if len(b) < len(magic)+4 || string(b[:len(magic)]) != magic {
		return Array{}, fmt.Errorf("%w: not a .npy file (bad magic)", ErrFormat)
	}
	major := b[6]
	var hlen, off int
	switch major {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(b[8:10])), 10
	case 2, 3:
		if len(b) < 12 {
			return Array{}, fmt.Errorf("%w: truncated header", ErrFormat)
		}
		h := binary.LittleEndian.Uint32(b[8:12])
		if h > maxHeader {
			return Array{}, fmt.Errorf("%w: header of %d bytes is too long", ErrFormat, h)
		}
		hlen, off = int(h), 12
	default:
		return Array{}, fmt.Errorf("%w: unsupported format version %d.%d", ErrFormat, b[6], b[7])
	}
	if len(b)-off < hlen {
		return Array{}, fmt.Errorf("%w: truncated header", ErrFormat)
	}
	descr, fortran, shape, err := parseHeader(string(b[off : off+hlen]))
	if err != nil {
		return Array{}, err
	}
	if fortran {
		return Array{}, fmt.Errorf("%w: fortran_order True is not supported", ErrFormat)
	}
	var size int
	switch descr {
	case "<f8":
		size = 8
	case "<f4":
		size = 4
	default:
		return Array{}, fmt.Errorf("%w: unsupported dtype %q (want '<f8' or '<f4')", ErrFormat, descr)
	}
	data := b[off+hlen:]
	n, ok := elements(shape)
	// Bound the declared size by the bytes actually present before allocating.
	if !ok || n > len(data)/size || n*size != len(data) {
		return Array{}, fmt.Errorf("%w: shape %v needs %s bytes of data, have %d", ErrFormat, shape, needBytes(shape, size), len(data))
	}
	out := make([]float64, n)
	if size == 8 {
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))
		}
	} else {
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:])))
		}
	}
	return Array{Shape: shape, Data: out}, nil
}

func needBytes(shape []int, size int) string {
	n, ok := elements(shape)
	if !ok || n > math.MaxInt/size {
		return "too many"
	}
	return strconv.Itoa(n * size)
}

// elements multiplies the dimensions, reporting false on overflow.
func elements(shape []int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxInt32/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// parseHeader parses the Python dict literal of a .npy header. It accepts
// exactly the keys descr, fortran_order and shape.
func parseHeader(h string) (descr string, fortran bool, shape []int, err error) {
	bad := func(why string) error { return fmt.Errorf("%w: header %s", ErrFormat, why) }
	if !strings.HasSuffix(h, "\n") {
		return "", false, nil, bad("is not terminated by a newline")
	}
	p := &parser{s: strings.TrimRight(h, " \n")}
	if !p.eat('{') {
		return "", false, nil, bad("is not a dict")
	}
	seen := map[string]bool{}
	for {
		p.space()
		if p.eat('}') {
			break
		}
		key, ok := p.str()
		if !ok {
			return "", false, nil, bad("has a malformed key")
		}
		if seen[key] {
			return "", false, nil, bad(fmt.Sprintf("repeats key %q", key))
		}
		seen[key] = true
		p.space()
		if !p.eat(':') {
			return "", false, nil, bad("lacks ':'")
		}
		p.space()
		switch key {
		case "descr":
			if descr, ok = p.str(); !ok {
				return "", false, nil, bad("has a malformed descr")
			}
		case "fortran_order":
			switch {
			case p.word("True"):
				fortran = true
			case p.word("False"):
				fortran = false
			default:
				return "", false, nil, bad("has a malformed fortran_order")
			}
		case "shape":
			if shape, ok = p.tuple(); !ok {
				return "", false, nil, bad("has a malformed shape")
			}
		default:
			return "", false, nil, bad(fmt.Sprintf("has unexpected key %q", key))
		}
		p.space()
		if p.eat(',') {
			continue
		}
		p.space()
		if !p.eat('}') {
			return "", false, nil, bad("lacks ',' or '}'")
		}
		break
	}
	p.space()
	if p.i != len(p.s) {
		return "", false, nil, bad("has trailing characters")
	}
	if !seen["descr"] || !seen["fortran_order"] || !seen["shape"] {
		return "", false, nil, bad("lacks descr, fortran_order or shape")
	}
	return descr, fortran, shape, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n') {
		p.i++
	}
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) word(w string) bool {
	if strings.HasPrefix(p.s[p.i:], w) {
		p.i += len(w)
		return true
	}
	return false
}

// str parses a quoted string without escapes.
func (p *parser) str() (string, bool) {
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", false
	}
	q := p.s[p.i]
	j := strings.IndexByte(p.s[p.i+1:], q)
	if j < 0 {
		return "", false
	}
	v := p.s[p.i+1 : p.i+1+j]
	if strings.ContainsRune(v, '\\') {
		return "", false
	}
	p.i += j + 2
	return v, true
}

// tuple parses a Python tuple of non-negative ints: (), (3,), (3, 4), (3, 4,).
func (p *parser) tuple() ([]int, bool) {
	if !p.eat('(') {
		return nil, false
	}
	var shape []int
	for {
		p.space()
		if p.eat(')') {
			break
		}
		j := p.i
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		if j == p.i || j-p.i > 12 {
			return nil, false
		}
		d, err := strconv.Atoi(p.s[p.i:j])
		if err != nil {
			return nil, false
		}
		p.i = j
		shape = append(shape, d)
		if len(shape) > 32 {
			return nil, false
		}
		p.space()
		if p.eat(',') {
			continue
		}
		p.space()
		if !p.eat(')') {
			return nil, false
		}
		break
	}
	// A one-element tuple must have its trailing comma in Python, but numpy
	// only writes it that way; being lenient here costs nothing.
	return shape, true
}
