package sdk

import (
	"bytes"
	"math"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestEncodeScalarMatchesFxamacker(t *testing.T) {
	values := []any{nil, 0, -1, math.MaxInt64, math.MinInt64, int64(-300), int32(70000), uint64(math.MaxUint64), uint32(7), uint(9),
		1.5, math.Copysign(0, -1), math.MaxFloat64, true, false, "", "héllo", string(make([]byte, 1000))}
	for _, v := range values {
		got, ok := encodeScalar(v)
		if !ok {
			t.Errorf("encodeScalar(%T) not handled", v)
			continue
		}
		want, err := encMode.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("encodeScalar(%#v) = %x, fxamacker writes %x", v, got, want)
		}
	}
	if _, ok := encodeScalar("\xff"); ok {
		t.Error("invalid UTF-8 took the fast path")
	}
	type myInt int
	if _, ok := encodeScalar(myInt(1)); ok {
		t.Error("a named type took the fast path")
	}
}

// FuzzDecodeScalar checks that whatever the fast path decodes, the general
// decoder decodes to the same value.
func FuzzDecodeScalar(f *testing.F) {
	for _, v := range []any{0, -1, 1 << 40, 2.5, "s", true, nil, []byte{1}, uint64(math.MaxUint64)} {
		b, _ := cbor.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		targets := []func() any{
			func() any { return new(int) }, func() any { return new(int64) }, func() any { return new(int32) },
			func() any { return new(uint64) }, func() any { return new(uint32) }, func() any { return new(uint) },
			func() any { return new(float64) }, func() any { return new(bool) }, func() any { return new(string) },
		}
		for _, mk := range targets {
			fast, slow := mk(), mk()
			if !decodeScalar(b, fast) {
				continue
			}
			if err := decMode.Unmarshal(b, slow); err != nil {
				t.Fatalf("fast path decoded %x into %T; fxamacker: %v", b, fast, err)
			}
			fv, sv := reflect.ValueOf(fast).Elem().Interface(), reflect.ValueOf(slow).Elem().Interface()
			if f, ok := fv.(float64); ok && math.IsNaN(f) && math.IsNaN(sv.(float64)) {
				continue
			}
			if fv != sv {
				t.Fatalf("%x into %T: fast %v, fxamacker %v", b, fast, fv, sv)
			}
		}
	})
}
