package sdk

import (
	"bytes"
	"encoding/binary"
	"unsafe"

	"github.com/wasmfabric/fabric/internal/abi"
)

// Numeric slices travel as RFC 8746 typed arrays (a CBOR tag around a byte
// string of little-endian elements), so encoding and decoding them is a
// memory copy instead of one CBOR item per element. Wasm is little-endian,
// so the slice's memory is the encoding.
const (
	tagUint32LE  = 70
	tagUint64LE  = 71
	tagInt32LE   = 78
	tagInt64LE   = 79
	tagFloat32LE = 85
	tagFloat64LE = 86
)

func rawBytes[E any](s []E) []byte {
	if len(s) == 0 {
		return nil
	}
	var e E
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(e)))
}

func typedArray(tag byte, data []byte) []byte {
	head := typedHeader(tag, len(data))
	return append(append(make([]byte, 0, len(head)+len(data)), head...), data...)
}

// typedHeader returns the CBOR head of a typed array of n bytes.
func typedHeader(tag byte, size int) []byte {
	b := make([]byte, 0, 11)
	b = append(b, 0xd8, tag)
	n := uint64(size)
	switch {
	case n < 24:
		b = append(b, 0x40|byte(n))
	case n < 256:
		b = append(b, 0x58, byte(n))
	case n < 65536:
		b = binary.BigEndian.AppendUint16(append(b, 0x59), uint16(n))
	case n < 1<<32:
		b = binary.BigEndian.AppendUint32(append(b, 0x5a), uint32(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x5b), n)
	}
	return b
}

// typedArrayBody returns the byte string inside tag, or ok=false.
func typedArrayBody(b []byte, tag byte) ([]byte, bool) {
	if len(b) < 3 || b[0] != 0xd8 || b[1] != tag {
		return nil, false
	}
	return byteStringBody(b[2:])
}

// byteStringBody returns the contents of b when b is exactly one definite
// CBOR byte string.
func byteStringBody(b []byte) ([]byte, bool) {
	if len(b) < 1 || b[0]>>5 != 2 {
		return nil, false
	}
	info := b[0] & 0x1f
	p := 1
	var n uint64
	switch {
	case info < 24:
		n = uint64(info)
	case info == 24 && len(b) >= 2:
		n, p = uint64(b[1]), 2
	case info == 25 && len(b) >= 3:
		n, p = uint64(binary.BigEndian.Uint16(b[1:])), 3
	case info == 26 && len(b) >= 5:
		n, p = uint64(binary.BigEndian.Uint32(b[1:])), 5
	case info == 27 && len(b) >= 9:
		n, p = binary.BigEndian.Uint64(b[1:]), 9
	default:
		return nil, false
	}
	if uint64(len(b)-p) != n {
		return nil, false
	}
	return b[p:], true
}

// typedParts returns the head and the body (the slice's own memory, not a
// copy) of v's typed-array encoding when v is a numeric slice.
func typedParts(v any) (head, body []byte, ok bool) {
	var tag byte
	switch x := v.(type) {
	case []byte: // a plain CBOR byte string: its head, then the bytes themselves
		return typedHeader(0, len(x))[2:], x, true
	case []float64:
		tag, body = tagFloat64LE, rawBytes(x)
	case []float32:
		tag, body = tagFloat32LE, rawBytes(x)
	case []int64:
		tag, body = tagInt64LE, rawBytes(x)
	case []int:
		tag, body = tagInt64LE, rawBytes(x)
	case []int32:
		tag, body = tagInt32LE, rawBytes(x)
	case []uint64:
		tag, body = tagUint64LE, rawBytes(x)
	case []uint32:
		tag, body = tagUint32LE, rawBytes(x)
	default:
		return nil, nil, false
	}
	return typedHeader(tag, len(body)), body, true
}

// encodeTyped returns the typed-array encoding of v when it is a numeric slice.
func encodeTyped(v any) ([]byte, bool) {
	switch x := v.(type) {
	case Response:
		return abi.ServeResponse(x).AppendCBOR(nil), true
	case []float64:
		return typedArray(tagFloat64LE, rawBytes(x)), true
	case []float32:
		return typedArray(tagFloat32LE, rawBytes(x)), true
	case []int64:
		return typedArray(tagInt64LE, rawBytes(x)), true
	case []int:
		return typedArray(tagInt64LE, rawBytes(x)), true // int is 64-bit on wasm
	case []int32:
		return typedArray(tagInt32LE, rawBytes(x)), true
	case []uint64:
		return typedArray(tagUint64LE, rawBytes(x)), true
	case []uint32:
		return typedArray(tagUint32LE, rawBytes(x)), true
	}
	return nil, false
}

func decodeInto[E any](b []byte, tag byte, dst *[]E) bool {
	body, ok := typedArrayBody(b, tag)
	var e E
	size := int(unsafe.Sizeof(e))
	if !ok || len(body)%size != 0 {
		return false
	}
	s := make([]E, len(body)/size)
	copy(rawBytes(s), body)
	*dst = s
	return true
}

// decodeTyped decodes a typed array into a pointer to a numeric slice, or
// a byte string into a *[]byte. b must be a fresh buffer the caller owns:
// a []byte result shares its memory instead of copying it.
func decodeTyped(b []byte, v any) bool {
	switch p := v.(type) {
	case *Request:
		// b is the call's, reused after it: one copy, which the
		// request's strings and body alias.
		r, ok := abi.ParseServeRequest(bytes.Clone(b))
		if ok {
			*p = Request(r)
		}
		return ok
	case *[]byte:
		body, ok := byteStringBody(b)
		if ok {
			*p = body
		}
		return ok
	case *[]float64:
		return decodeInto(b, tagFloat64LE, p)
	case *[]float32:
		return decodeInto(b, tagFloat32LE, p)
	case *[]int64:
		return decodeInto(b, tagInt64LE, p)
	case *[]int:
		return decodeInto(b, tagInt64LE, p)
	case *[]int32:
		return decodeInto(b, tagInt32LE, p)
	case *[]uint64:
		return decodeInto(b, tagUint64LE, p)
	case *[]uint32:
		return decodeInto(b, tagUint32LE, p)
	}
	return false
}
