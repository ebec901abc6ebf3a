// Package cborlite is hand-written CBOR (RFC 8949) for the few shapes on the
// path of every call: heads, integers, floats, strings, byte strings, and
// the split of an array into its items. It exists for guests: in wasm,
// reflection-driven encoding costs 5-10 µs for a task spec where these
// functions cost well under one. Anything beyond these shapes is left to
// github.com/fxamacker/cbor/v2, and every encoding here decodes there to
// the same value (tested).
package cborlite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Major types.
const (
	MajorUint   = 0
	MajorNegInt = 1
	MajorBytes  = 2
	MajorText   = 3
	MajorArray  = 4
	MajorMap    = 5
	MajorTag    = 6
	MajorSimple = 7
)

// MaxDepth bounds the nesting Skip follows, as the host's decoder does.
const MaxDepth = 64

// Errors returned by the readers.
var (
	// ErrMalformed reports bytes that are not well-formed CBOR.
	ErrMalformed = errors.New("cborlite: malformed CBOR")
	// ErrType reports a well-formed item of another type than asked for;
	// callers fall back to a general decoder to get its precise error.
	ErrType = errors.New("cborlite: unexpected CBOR type")
	// ErrTooDeep reports items nested deeper than MaxDepth.
	ErrTooDeep = errors.New("cborlite: CBOR nested too deep")
)

// AppendHead appends the head of an item of major type major with argument n.
func AppendHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= math.MaxUint8:
		return append(dst, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, m|27), n)
	}
}

// AppendInt appends a signed integer.
func AppendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return AppendHead(dst, MajorUint, uint64(v))
	}
	return AppendHead(dst, MajorNegInt, uint64(-(v + 1)))
}

// AppendUint appends an unsigned integer.
func AppendUint(dst []byte, v uint64) []byte { return AppendHead(dst, MajorUint, v) }

// AppendFloat64 appends a double-precision float.
func AppendFloat64(dst []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, 0xfb), math.Float64bits(v))
}

// AppendFloat32 appends a single-precision float.
func AppendFloat32(dst []byte, v float32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, 0xfa), math.Float32bits(v))
}

// AppendString appends a text string. s must be valid UTF-8.
func AppendString(dst []byte, s string) []byte {
	return append(AppendHead(dst, MajorText, uint64(len(s))), s...)
}

// AppendBytes appends a byte string.
func AppendBytes(dst []byte, b []byte) []byte {
	return append(AppendHead(dst, MajorBytes, uint64(len(b))), b...)
}

// AppendBool appends true or false.
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 0xf5)
	}
	return append(dst, 0xf4)
}

// AppendNull appends null.
func AppendNull(dst []byte) []byte { return append(dst, 0xf6) }

// Head is a parsed item head.
type Head struct {
	Major      byte
	Info       byte   // the low five bits of the initial byte
	Arg        uint64 // the argument: a value, a length or a count
	Indefinite bool   // an indefinite-length string, array or map
	Len        int    // bytes the head takes
}

// ReadHead parses the head at the start of b.
func ReadHead(b []byte) (Head, error) {
	if len(b) == 0 {
		return Head{}, fmt.Errorf("%w: unexpected end of data", ErrMalformed)
	}
	h := Head{Major: b[0] >> 5, Info: b[0] & 0x1f, Len: 1}
	switch {
	case h.Info < 24:
		h.Arg = uint64(h.Info)
	case h.Info == 24:
		if len(b) < 2 {
			return Head{}, fmt.Errorf("%w: unexpected end of data", ErrMalformed)
		}
		h.Arg, h.Len = uint64(b[1]), 2
	case h.Info == 25:
		if len(b) < 3 {
			return Head{}, fmt.Errorf("%w: unexpected end of data", ErrMalformed)
		}
		h.Arg, h.Len = uint64(binary.BigEndian.Uint16(b[1:])), 3
	case h.Info == 26:
		if len(b) < 5 {
			return Head{}, fmt.Errorf("%w: unexpected end of data", ErrMalformed)
		}
		h.Arg, h.Len = uint64(binary.BigEndian.Uint32(b[1:])), 5
	case h.Info == 27:
		if len(b) < 9 {
			return Head{}, fmt.Errorf("%w: unexpected end of data", ErrMalformed)
		}
		h.Arg, h.Len = binary.BigEndian.Uint64(b[1:]), 9
	case h.Info == 31:
		switch h.Major {
		case MajorBytes, MajorText, MajorArray, MajorMap:
			h.Indefinite = true
		default:
			return Head{}, fmt.Errorf("%w: indefinite length in major type %d", ErrMalformed, h.Major)
		}
	default:
		return Head{}, fmt.Errorf("%w: reserved additional information %d", ErrMalformed, h.Info)
	}
	return h, nil
}

// Skip returns the length of the one well-formed item at the start of b.
func Skip(b []byte) (int, error) { return skip(b, 0) }

func skip(b []byte, depth int) (int, error) {
	if depth > MaxDepth {
		return 0, fmt.Errorf("%w: deeper than %d", ErrTooDeep, MaxDepth)
	}
	// Most items are small integers and short strings: a byte or two of
	// head, read here without a Head.
	if len(b) > 0 {
		switch c := b[0]; {
		case c < 0x18, c >= 0x20 && c < 0x38: // an integer below 24
			return 1, nil
		case c >= 0x40 && c < 0x58, c >= 0x60 && c < 0x78: // a string shorter than 24 bytes
			if n := 1 + int(c&0x1f); n <= len(b) {
				return n, nil
			}
		case (c == 0x58 || c == 0x78) && len(b) > 1: // a string shorter than 256 bytes
			if n := 2 + int(b[1]); n <= len(b) {
				return n, nil
			}
		}
	}
	h, err := ReadHead(b)
	if err != nil {
		return 0, err
	}
	off := h.Len
	switch h.Major {
	case MajorUint, MajorNegInt:
		return off, nil
	case MajorBytes, MajorText:
		if !h.Indefinite {
			return payload(b, off, h.Arg)
		}
		for {
			if off >= len(b) {
				return 0, fmt.Errorf("%w: unterminated indefinite string", ErrMalformed)
			}
			if b[off] == 0xff {
				return off + 1, nil
			}
			c, err := ReadHead(b[off:])
			if err != nil {
				return 0, err
			}
			if c.Major != h.Major || c.Indefinite {
				return 0, fmt.Errorf("%w: bad chunk in indefinite string", ErrMalformed)
			}
			if off, err = payload(b, off+c.Len, c.Arg); err != nil {
				return 0, err
			}
		}
	case MajorArray, MajorMap:
		per := uint64(1)
		if h.Major == MajorMap {
			per = 2
		}
		if !h.Indefinite {
			// Each item takes at least one byte: a count beyond the rest
			// of b is malformed, and the check bounds the loop.
			if h.Arg > uint64(len(b)-off) || h.Arg*per > uint64(len(b)-off) {
				return 0, fmt.Errorf("%w: %d items do not fit in %d bytes", ErrMalformed, h.Arg*per, len(b)-off)
			}
			for i := uint64(0); i < h.Arg*per; i++ {
				n, err := skip(b[off:], depth+1)
				if err != nil {
					return 0, err
				}
				off += n
			}
			return off, nil
		}
		for count := uint64(0); ; count++ {
			if off >= len(b) {
				return 0, fmt.Errorf("%w: unterminated indefinite container", ErrMalformed)
			}
			if b[off] == 0xff {
				if count%per != 0 {
					return 0, fmt.Errorf("%w: map with a key and no value", ErrMalformed)
				}
				return off + 1, nil
			}
			n, err := skip(b[off:], depth+1)
			if err != nil {
				return 0, err
			}
			off += n
		}
	case MajorTag:
		n, err := skip(b[off:], depth+1)
		if err != nil {
			return 0, err
		}
		return off + n, nil
	default: // MajorSimple
		if h.Info == 24 && h.Arg < 32 {
			return 0, fmt.Errorf("%w: simple value %d in two bytes", ErrMalformed, h.Arg)
		}
		return off, nil
	}
}

func payload(b []byte, off int, n uint64) (int, error) {
	if n > uint64(len(b)-off) {
		return 0, fmt.Errorf("%w: string of %d bytes, %d left", ErrMalformed, n, len(b)-off)
	}
	return off + int(n), nil
}

// SplitArray returns the items of the one array that b holds, each a
// subslice of b.
func SplitArray(b []byte) ([][]byte, error) {
	h, err := ReadHead(b)
	if err != nil {
		return nil, err
	}
	if h.Major != MajorArray {
		return nil, fmt.Errorf("%w: major type %d, not an array", ErrType, h.Major)
	}
	off := h.Len
	var items [][]byte
	if !h.Indefinite {
		if h.Arg > uint64(len(b)-off) {
			return nil, fmt.Errorf("%w: %d items do not fit in %d bytes", ErrMalformed, h.Arg, len(b)-off)
		}
		items = make([][]byte, 0, h.Arg)
	}
	for i := uint64(0); h.Indefinite || i < h.Arg; i++ {
		if h.Indefinite {
			if off >= len(b) {
				return nil, fmt.Errorf("%w: unterminated indefinite array", ErrMalformed)
			}
			if b[off] == 0xff {
				off++
				break
			}
		}
		n, err := skip(b[off:], 1)
		if err != nil {
			return nil, err
		}
		items = append(items, b[off:off+n:off+n])
		off += n
	}
	if off != len(b) {
		return nil, fmt.Errorf("%w: %d bytes after the array", ErrMalformed, len(b)-off)
	}
	return items, nil
}

// whole parses b as exactly one item with a definite head and no payload
// beyond that head's argument.
func whole(b []byte) (Head, error) {
	h, err := ReadHead(b)
	if err != nil {
		return h, err
	}
	if h.Indefinite {
		return h, ErrType
	}
	return h, nil
}

// Int64 decodes b, exactly one integer item, into an int64.
func Int64(b []byte) (int64, error) {
	h, err := whole(b)
	if err != nil {
		return 0, err
	}
	if h.Len != len(b) || h.Arg > math.MaxInt64 {
		return 0, ErrType
	}
	switch h.Major {
	case MajorUint:
		return int64(h.Arg), nil
	case MajorNegInt:
		return -1 - int64(h.Arg), nil
	}
	return 0, ErrType
}

// Uint64 decodes b, exactly one non-negative integer item.
func Uint64(b []byte) (uint64, error) {
	h, err := whole(b)
	if err != nil {
		return 0, err
	}
	if h.Len != len(b) || h.Major != MajorUint {
		return 0, ErrType
	}
	return h.Arg, nil
}

// Float64 decodes b, exactly one double- or single-precision float item.
func Float64(b []byte) (float64, error) {
	switch {
	case len(b) == 9 && b[0] == 0xfb:
		return math.Float64frombits(binary.BigEndian.Uint64(b[1:])), nil
	case len(b) == 5 && b[0] == 0xfa:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b[1:]))), nil
	}
	return 0, ErrType
}

// Bool decodes b, exactly one true or false.
func Bool(b []byte) (bool, error) {
	if len(b) == 1 && (b[0] == 0xf4 || b[0] == 0xf5) {
		return b[0] == 0xf5, nil
	}
	return false, ErrType
}

func definite(b []byte, major byte) ([]byte, error) {
	h, err := whole(b)
	if err != nil {
		return nil, err
	}
	if h.Major != major || h.Arg != uint64(len(b)-h.Len) {
		return nil, ErrType
	}
	return b[h.Len:], nil
}

// String decodes b, exactly one definite text string of valid UTF-8.
func String(b []byte) (string, error) {
	body, err := definite(b, MajorText)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(body) {
		return "", ErrType
	}
	return string(body), nil
}

// Bytes decodes b, exactly one definite byte string; the result aliases b.
func Bytes(b []byte) ([]byte, error) { return definite(b, MajorBytes) }
