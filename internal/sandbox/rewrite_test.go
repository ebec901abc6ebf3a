package sandbox

import (
	"bytes"
	"context"
	"testing"
)

// dataGuest is a valid guest with the given active data segments (offset,
// bytes) in one page of memory.
func dataGuest(segs ...dataSegment) []byte {
	body := func(code ...byte) []byte {
		b := valCat([]byte{0}, code)
		return valCat(valLEB(uint32(len(b))), b)
	}
	var entries [][]byte
	for _, s := range segs {
		entries = append(entries, valCat([]byte{0x00, 0x41}, appendSLEB(nil, int64(int32(s.off))), []byte{0x0b}, valLEB(uint32(len(s.data))), s.data))
	}
	return valMod(
		valSec(wasmSecType, valVec(
			[]byte{0x60, 0, 1, 0x7f},
			[]byte{0x60, 1, 0x7f, 1, 0x7f},
			[]byte{0x60, 1, 0x7f, 0},
			[]byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f},
		)),
		valSec(wasmSecFunction, valVec([]byte{0}, []byte{1}, []byte{2}, []byte{3})),
		valSec(wasmSecMemory, valVec(valLimits(0x00, 8))),
		valSec(wasmSecExport, valVec(
			valExp("fabric_abi_version", ExternFunc, 0),
			valExp("fabric_alloc", ExternFunc, 1),
			valExp("fabric_free", ExternFunc, 2),
			valExp("fabric_call", ExternFunc, 3),
			valExp("memory", ExternMemory, 0),
		)),
		valSec(wasmSecCode, valVec(body(0x41, 0x01, 0x0b), body(0x41, 0x10, 0x0b), body(0x0b), body(0x41, 0x00, 0x0b))),
		valSec(11, valVec(entries...)),
	)
}

func TestMergeDataAndImage(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 300<<10) // large enough to be mapped, not copied
	cases := []struct {
		name      string
		segs      []dataSegment
		mergeSame bool // mergeData must leave the module as it is
		imageSame bool // dataImage must refuse it
	}{
		{"adjacent and near", []dataSegment{{off: 100, data: []byte("abc")}, {off: 103, data: []byte("def")}, {off: 2000, data: []byte("xyz")}}, false, false},
		{"far apart", []dataSegment{{off: 10, data: []byte("a")}, {off: 100000, data: []byte("b")}}, true, false}, // re-encoded as they were
		{"out of order", []dataSegment{{off: 5000, data: []byte("late")}, {off: 16, data: []byte("early")}}, false, false},
		{"overlapping", []dataSegment{{off: 16, data: []byte("aaaa")}, {off: 18, data: []byte("bb")}}, true, false},
		{"one segment", []dataSegment{{off: 16, data: []byte("only")}}, true, false},
		{"large", []dataSegment{{off: 64, data: big}, {off: 64 + uint32(len(big)) + 10, data: []byte("tail")}}, false, false},
		{"past the minimum memory", []dataSegment{{off: 8*WasmPageSize - 2, data: []byte("xy")}, {off: 8 * WasmPageSize, data: []byte("z")}}, false, true},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := dataGuest(c.segs...)
			want := make([]byte, 8*WasmPageSize)
			for _, s := range c.segs {
				if int(s.off)+len(s.data) <= len(want) {
					copy(want[s.off:], s.data)
				}
			}
			merged := mergeData(m)
			if same := bytes.Equal(merged, m); same != c.mergeSame {
				t.Errorf("mergeData changed the module: %v, want %v", !same, !c.mergeSame)
			}
			if _, err := Validate(merged, Limits{}); err != nil {
				t.Fatalf("merged module invalid: %v", err)
			}
			_, _, ok := dataImage(m, 8)
			if ok == c.imageSame {
				t.Errorf("dataImage ok = %v", ok)
			}
			if c.imageSame {
				return // instantiating it fails (segment out of bounds), as the original would
			}
			e, err := NewEngine(ctx, EngineConfig{MemoryLimit: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close(ctx)
			mod, err := e.Compile(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // two instances: the image is copy-on-write
				inst, err := mod.Instantiate(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := inst.mod.Memory().Read(0, uint32(len(want)))
				if !bytes.Equal(got, want) {
					t.Fatalf("memory after instantiation differs from the data segments")
				}
				inst.mod.Memory().Write(64, []byte("scribble"))
				_ = inst.Close(ctx)
			}
		})
	}
}

// FuzzRewrite: every rewrite of a module that passed validation is still a
// valid module, and no rewrite panics.
func FuzzRewrite(f *testing.F) {
	f.Add(dataGuest(dataSegment{off: 1, data: []byte("a")}, dataSegment{off: 9, data: []byte("b")}))
	f.Add(tableBomb())
	f.Add(valMinimal())
	f.Fuzz(func(t *testing.T, wasm []byte) {
		if _, err := Validate(wasm, Limits{}); err != nil {
			return
		}
		for _, out := range [][]byte{capTables(wasm), mergeData(wasm), mergeData(capTables(wasm))} {
			if _, err := Validate(out, Limits{}); err != nil {
				t.Fatalf("rewrite made a valid module invalid: %v", err)
			}
		}
		if stripped, _, ok := dataImage(wasm, 65536); ok {
			if _, err := Validate(stripped, Limits{}); err != nil {
				t.Fatalf("stripping the data made a valid module invalid: %v", err)
			}
		}
	})
}
