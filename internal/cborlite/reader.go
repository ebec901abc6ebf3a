package cborlite

import (
	"encoding/binary"
	"math"
	"unicode/utf8"
	"unsafe"
)

// Reader reads the items of a CBOR encoding one after another, for
// hand-written decoders of fixed shapes. Every method returns ok=false,
// and leaves the reader where it was, when the next item is not what it
// reads: a decoder then gives up, and its caller falls back to a general
// decoder. Indefinite lengths, tags, null and half-precision floats are
// never read. Byte strings alias the input.
type Reader struct {
	b   []byte
	off int
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Done reports whether all of the input was read.
func (r *Reader) Done() bool { return r.off == len(r.b) }

// Head reads a definite head of the major type and returns its argument.
func (r *Reader) Head(major byte) (uint64, bool) {
	if r.off < len(r.b) { // most heads are one byte
		if c := r.b[r.off]; c>>5 == major && c&0x1f < 24 {
			r.off++
			return uint64(c & 0x1f), true
		}
	}
	h, err := ReadHead(r.b[r.off:])
	if err != nil || h.Indefinite || h.Major != major {
		return 0, false
	}
	r.off += h.Len
	return h.Arg, true
}

// Count reads an array or map head whose count is at most max and could
// fit in what is left of the input (each element takes a byte at least).
func (r *Reader) Count(major byte, max int) (int, bool) {
	start := r.off
	n, ok := r.Head(major)
	if !ok || n > uint64(len(r.b)-r.off) || n > uint64(max) {
		r.off = start
		return 0, false
	}
	return int(n), true
}

func (r *Reader) payload(n uint64) ([]byte, bool) {
	if n > uint64(len(r.b)-r.off) {
		return nil, false
	}
	out := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return out, true
}

// Text reads a text string of valid UTF-8.
func (r *Reader) Text() (string, bool) {
	i, j, ok := r.TextSpan()
	if !ok {
		return "", false
	}
	return string(r.b[i:j]), true
}

// TextAlias reads a text string of valid UTF-8 that aliases the input,
// without a copy: the input must not change while the string is used.
func (r *Reader) TextAlias() (string, bool) {
	i, j, ok := r.TextSpan()
	if !ok || i == j {
		return "", ok
	}
	return unsafe.String(&r.b[i], j-i), true
}

// TextSpan reads a text string of valid UTF-8 and returns where its
// bytes are in the input (Text copies them, TextAlias does not).
func (r *Reader) TextSpan() (start, end int, ok bool) {
	begin := r.off
	n, ok := r.Head(MajorText)
	if !ok {
		return 0, 0, false
	}
	body, ok := r.payload(n)
	if !ok || !utf8.Valid(body) {
		r.off = begin
		return 0, 0, false
	}
	return r.off - len(body), r.off, true
}

// Bytes reads a byte string; the result aliases the input.
func (r *Reader) Bytes() ([]byte, bool) {
	start := r.off
	n, ok := r.Head(MajorBytes)
	if !ok {
		return nil, false
	}
	b, ok := r.payload(n)
	if !ok {
		r.off = start
	}
	return b, ok
}

// Int64 reads an integer that fits an int64.
func (r *Reader) Int64() (int64, bool) {
	h, err := ReadHead(r.b[r.off:])
	if err != nil || h.Indefinite || h.Arg > math.MaxInt64 {
		return 0, false
	}
	var v int64
	switch h.Major {
	case MajorUint:
		v = int64(h.Arg)
	case MajorNegInt:
		v = -1 - int64(h.Arg)
	default:
		return 0, false
	}
	r.off += h.Len
	return v, true
}

// Uint64 reads a non-negative integer.
func (r *Reader) Uint64() (uint64, bool) { return r.Head(MajorUint) }

// Float64 reads a single- or double-precision float.
func (r *Reader) Float64() (float64, bool) {
	rest := r.b[r.off:]
	switch {
	case len(rest) >= 9 && rest[0] == 0xfb:
		r.off += 9
		return math.Float64frombits(binary.BigEndian.Uint64(rest[1:])), true
	case len(rest) >= 5 && rest[0] == 0xfa:
		r.off += 5
		return float64(math.Float32frombits(binary.BigEndian.Uint32(rest[1:]))), true
	}
	return 0, false
}

// Bool reads true or false.
func (r *Reader) Bool() (bool, bool) {
	if r.off < len(r.b) && (r.b[r.off] == 0xf4 || r.b[r.off] == 0xf5) {
		r.off++
		return r.b[r.off-1] == 0xf5, true
	}
	return false, false
}

// Raw reads one well-formed item of any kind and returns its encoding
// (aliasing the input).
func (r *Reader) Raw() ([]byte, bool) {
	n, err := Skip(r.b[r.off:])
	if err != nil {
		return nil, false
	}
	out := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return out, true
}

// Null reads null, if it comes next.
func (r *Reader) Null() bool {
	if r.off < len(r.b) && r.b[r.off] == 0xf6 {
		r.off++
		return true
	}
	return false
}

// Fields reads the head of an array of exactly n items: a struct encoded
// as an array of its fields.
func (r *Reader) Fields(n int) bool {
	start := r.off
	m, ok := r.Count(MajorArray, n)
	if !ok || m != n {
		r.off = start
		return false
	}
	return true
}

// BytesCopy reads a byte string into a slice of its own, or null as nil.
func (r *Reader) BytesCopy() ([]byte, bool) {
	if r.Null() {
		return nil, true
	}
	b, ok := r.Bytes()
	return append([]byte{}, b...), ok
}
