package sdk

import (
	"math"
	"unicode/utf8"

	"github.com/wasmfabric/fabric/internal/cborlite"
)

// encodeScalar encodes the common scalar types by hand: reflection-driven
// encoding costs microseconds per value in wasm. The bytes are what
// github.com/fxamacker/cbor/v2 writes for the same value. ok is false for
// every other type.
func encodeScalar(v any) (b []byte, ok bool) {
	switch x := v.(type) {
	case nil:
		return cborlite.AppendNull(nil), true
	case int:
		return cborlite.AppendInt(nil, int64(x)), true
	case int64:
		return cborlite.AppendInt(nil, x), true
	case int32:
		return cborlite.AppendInt(nil, int64(x)), true
	case uint64:
		return cborlite.AppendUint(nil, x), true
	case uint32:
		return cborlite.AppendUint(nil, uint64(x)), true
	case uint:
		return cborlite.AppendUint(nil, uint64(x)), true
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, false // fxamacker writes these as half-precision floats
		}
		return cborlite.AppendFloat64(nil, x), true
	case bool:
		return cborlite.AppendBool(nil, x), true
	case string:
		if !utf8.ValidString(x) {
			return nil, false
		}
		return cborlite.AppendString(make([]byte, 0, len(x)+9), x), true
	}
	return nil, false
}

// decodeScalar decodes b into the common scalar pointer types by hand. It
// reports false, leaving v alone, for other types and for any value that
// is not the plain encoding of that type (an overflow, a tag, a float
// into an int): the general decoder then decides, with its own errors.
func decodeScalar(b []byte, v any) bool {
	switch p := v.(type) {
	case *int:
		n, err := cborlite.Int64(b)
		if err != nil || n < math.MinInt || n > math.MaxInt {
			return false
		}
		*p = int(n)
	case *int64:
		n, err := cborlite.Int64(b)
		if err != nil {
			return false
		}
		*p = n
	case *int32:
		n, err := cborlite.Int64(b)
		if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
			return false
		}
		*p = int32(n)
	case *uint64:
		n, err := cborlite.Uint64(b)
		if err != nil {
			return false
		}
		*p = n
	case *uint32:
		n, err := cborlite.Uint64(b)
		if err != nil || n > math.MaxUint32 {
			return false
		}
		*p = uint32(n)
	case *uint:
		n, err := cborlite.Uint64(b)
		if err != nil || n > math.MaxUint {
			return false
		}
		*p = uint(n)
	case *float64:
		f, err := cborlite.Float64(b)
		if err != nil {
			return false
		}
		*p = f
	case *bool:
		x, err := cborlite.Bool(b)
		if err != nil {
			return false
		}
		*p = x
	case *string:
		s, err := cborlite.String(b)
		if err != nil {
			return false
		}
		*p = s
	default:
		return false
	}
	return true
}
