package cborlite

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

var decMode, _ = cbor.DecOptions{MaxNestedLevels: MaxDepth + 1, MaxArrayElements: 1 << 20, MaxMapPairs: 1 << 20}.DecMode()

func TestAppendDecodesLikeFxamacker(t *testing.T) {
	ints := []int64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64, -1, -24, -25, -256, -257, -65537, math.MinInt64}
	for _, v := range ints {
		b := AppendInt(nil, v)
		var got int64
		if err := cbor.Unmarshal(b, &got); err != nil || got != v {
			t.Errorf("AppendInt(%d) = %x: fxamacker reads %d, %v", v, b, got, err)
		}
		if got, err := Int64(b); err != nil || got != v {
			t.Errorf("Int64(AppendInt(%d)) = %d, %v", v, got, err)
		}
		want, _ := cbor.Marshal(v)
		if !bytes.Equal(b, want) {
			t.Errorf("AppendInt(%d) = %x, fxamacker writes %x", v, b, want)
		}
	}
	for _, v := range []uint64{0, 24, math.MaxUint64} {
		b := AppendUint(nil, v)
		if got, err := Uint64(b); err != nil || got != v {
			t.Errorf("Uint64(AppendUint(%d)) = %d, %v", v, got, err)
		}
	}
	for _, v := range []float64{0, -1.5, math.Inf(1), math.MaxFloat64, math.SmallestNonzeroFloat64} {
		b := AppendFloat64(nil, v)
		var got float64
		if err := cbor.Unmarshal(b, &got); err != nil || got != v {
			t.Errorf("AppendFloat64(%v): fxamacker reads %v, %v", v, got, err)
		}
		if got, err := Float64(b); err != nil || got != v {
			t.Errorf("Float64(AppendFloat64(%v)) = %v, %v", v, got, err)
		}
	}
	if got, err := Float64(AppendFloat32(nil, 2.5)); err != nil || got != 2.5 {
		t.Errorf("Float64(AppendFloat32(2.5)) = %v, %v", got, err)
	}
	for _, s := range []string{"", "a", "héllo", string(make([]byte, 300))} {
		b := AppendString(nil, s)
		var got string
		if err := cbor.Unmarshal(b, &got); err != nil || got != s {
			t.Errorf("AppendString(%q): fxamacker reads %q, %v", s, got, err)
		}
		if got, err := String(b); err != nil || got != s {
			t.Errorf("String(AppendString(%q)) = %q, %v", s, got, err)
		}
	}
	for _, v := range [][]byte{{}, {1, 2, 3}, make([]byte, 70000)} {
		b := AppendBytes(nil, v)
		var got []byte
		if err := cbor.Unmarshal(b, &got); err != nil || !bytes.Equal(got, v) {
			t.Errorf("AppendBytes(%d bytes): fxamacker reads %d bytes, %v", len(v), len(got), err)
		}
		if got, err := Bytes(b); err != nil || !bytes.Equal(got, v) {
			t.Errorf("Bytes(AppendBytes(%d bytes)) = %d bytes, %v", len(v), len(got), err)
		}
	}
	for _, v := range []bool{true, false} {
		if got, err := Bool(AppendBool(nil, v)); err != nil || got != v {
			t.Errorf("Bool(AppendBool(%v)) = %v, %v", v, got, err)
		}
	}
	var p *int
	if err := cbor.Unmarshal(AppendNull(nil), &p); err != nil || p != nil {
		t.Errorf("AppendNull: fxamacker reads %v, %v", p, err)
	}
}

func TestReadersRejectOtherTypes(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		read func([]byte) error
	}{
		{"int from text", AppendString(nil, "1"), func(b []byte) error { _, err := Int64(b); return err }},
		{"int with trailing byte", []byte{0x01, 0x02}, func(b []byte) error { _, err := Int64(b); return err }},
		{"int beyond int64", AppendUint(nil, math.MaxUint64), func(b []byte) error { _, err := Int64(b); return err }},
		{"uint from negative", AppendInt(nil, -1), func(b []byte) error { _, err := Uint64(b); return err }},
		{"float from int", AppendInt(nil, 1), func(b []byte) error { _, err := Float64(b); return err }},
		{"float16", []byte{0xf9, 0x3c, 0x00}, func(b []byte) error { _, err := Float64(b); return err }},
		{"string from bytes", AppendBytes(nil, []byte("x")), func(b []byte) error { _, err := String(b); return err }},
		{"string of bad UTF-8", AppendString(nil, "\xff"), func(b []byte) error { _, err := String(b); return err }},
		{"indefinite string", []byte{0x7f, 0x61, 'a', 0xff}, func(b []byte) error { _, err := String(b); return err }},
		{"short string", []byte{0x63, 'a'}, func(b []byte) error { _, err := String(b); return err }},
		{"bytes from null", AppendNull(nil), func(b []byte) error { _, err := Bytes(b); return err }},
		{"bool from null", AppendNull(nil), func(b []byte) error { _, err := Bool(b); return err }},
		{"empty", nil, func(b []byte) error { _, err := Int64(b); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.read(c.in); err == nil {
				t.Fatalf("read %x: no error", c.in)
			}
		})
	}
}

func TestSplitArray(t *testing.T) {
	items := []any{1, "two", []byte{3}, []any{4, map[string]int{"five": 5}}, nil, 6.5, cbor.Tag{Number: 1717658226, Content: []byte("x")}}
	b, err := cbor.Marshal(items)
	if err != nil {
		t.Fatal(err)
	}
	got, err := SplitArray(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(items) {
		t.Fatalf("%d items, want %d", len(got), len(items))
	}
	for i, it := range items {
		want, _ := cbor.Marshal(it)
		if !bytes.Equal(got[i], want) {
			t.Errorf("item %d = %x, want %x", i, got[i], want)
		}
	}
	// Indefinite-length arrays, as other encoders may write them.
	got, err = SplitArray([]byte{0x9f, 0x01, 0x7f, 0x61, 'a', 0xff, 0xff})
	if err != nil || len(got) != 2 || !bytes.Equal(got[1], []byte{0x7f, 0x61, 'a', 0xff}) {
		t.Fatalf("indefinite: %x, %v", got, err)
	}
	bad := map[string][]byte{
		"not an array":      {0x01},
		"short":             {0x82, 0x01},
		"trailing":          {0x81, 0x01, 0x01},
		"huge count":        {0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"unterminated":      {0x9f, 0x01},
		"reserved info":     {0x81, 0x1c},
		"break as item":     {0x81, 0xff},
		"string too long":   {0x81, 0x5a, 0xff, 0xff, 0xff, 0xff},
		"two-byte simple 1": {0x81, 0xf8, 0x01},
	}
	for name, b := range bad {
		if _, err := SplitArray(b); err == nil {
			t.Errorf("%s: SplitArray(%x) accepted", name, b)
		}
	}
	deep := append(bytes.Repeat([]byte{0x81}, MaxDepth+2), 0x01)
	if _, err := SplitArray(deep); !errors.Is(err, ErrTooDeep) {
		t.Errorf("nesting of %d: %v, want ErrTooDeep", MaxDepth+2, err)
	}
}

// FuzzSkip checks Skip against fxamacker's well-formedness check: whatever
// fxamacker accepts as one item, Skip measures whole, and Skip never reads
// past the end.
func FuzzSkip(f *testing.F) {
	for _, v := range []any{1, -1, "s", []byte{1}, []any{1, []any{2}}, map[string]any{"a": 1.5}, nil, true} {
		b, _ := cbor.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte{0x9f, 0x01, 0xff})
	f.Add([]byte{0x5f, 0x41, 0x00, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Skip(b)
		if err == nil && (n <= 0 || n > len(b)) {
			t.Fatalf("Skip(%x) = %d", b, n)
		}
		if decMode.Wellformed(b) == nil && !errors.Is(err, ErrTooDeep) && (err != nil || n != len(b)) {
			t.Fatalf("fxamacker accepts %x; Skip = %d, %v", b, n, err)
		}
		if items, err := SplitArray(b); err == nil {
			var raw []cbor.RawMessage
			if decMode.Unmarshal(b, &raw) == nil {
				if len(raw) != len(items) {
					t.Fatalf("SplitArray(%x): %d items, fxamacker %d", b, len(items), len(raw))
				}
				for i := range raw {
					if !bytes.Equal(raw[i], items[i]) {
						t.Fatalf("SplitArray(%x) item %d = %x, fxamacker %x", b, i, items[i], raw[i])
					}
				}
			}
		}
		if v, err := Int64(b); err == nil {
			var w int64
			if err := cbor.Unmarshal(b, &w); err != nil || w != v {
				t.Fatalf("Int64(%x) = %d; fxamacker %d, %v", b, v, w, err)
			}
		}
		if v, err := String(b); err == nil {
			var w string
			if err := cbor.Unmarshal(b, &w); err != nil || w != v {
				t.Fatalf("String(%x) = %q; fxamacker %q, %v", b, v, w, err)
			}
		}
		if v, err := Float64(b); err == nil {
			var w float64
			if err := cbor.Unmarshal(b, &w); err != nil || (w != v && !(math.IsNaN(w) && math.IsNaN(v))) {
				t.Fatalf("Float64(%x) = %v; fxamacker %v, %v", b, v, w, err)
			}
		}
	})
}

func BenchmarkSplitArray(b *testing.B) {
	in, _ := cbor.Marshal([]any{1, "two", []byte{3}})
	for range b.N {
		if _, err := SplitArray(in); err != nil {
			b.Fatal(err)
		}
	}
}
