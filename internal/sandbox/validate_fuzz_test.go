package sandbox

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// FuzzValidate checks that Validate never panics, that every failure is a
// *ValidationError wrapping ErrInvalidModule with a short printable reason,
// and that whatever it accepts really is within the ABI and the limits.
func FuzzValidate(f *testing.F) {
	valid := valMinimal()
	rich := (&valGuest{
		imports:     [][]byte{valImp("fabric", "log", 0x00, 2), valImp("fabric", "g", 0x03, 0x7f, 0x00)},
		funcImports: 1,
		tables:      [][]byte{valCat([]byte{0x70}, valLimits(0x01, 1, 8))},
		mems:        [][]byte{valLimits(0x01, 2, 4)},
		start:       true,
		customs:     true,
		tag:         true,
	}).bytes()
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 256)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	seeds := [][]byte{
		valid,
		rich,
		valid[:len(valid)/2],
		valid[:9],
		random,
		valCat([]byte("\x00asm\x01\x00\x00\x00"), random),
		nil,
	}
	for _, s := range seeds {
		f.Add(s, uint32(0), uint32(0))
	}
	f.Add(rich, uint32(1), uint32(4))

	f.Fuzz(func(t *testing.T, wasm []byte, memPages, tableSize uint32) {
		lim := Limits{MaxMemoryPages: memPages, MaxTableSize: tableSize}
		info, err := Validate(wasm, lim)
		if err != nil {
			if info != nil {
				t.Fatalf("Validate returned info with error %v", err)
			}
			if !errors.Is(err, ErrInvalidModule) {
				t.Fatalf("error %v does not wrap ErrInvalidModule", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError", err)
			}
			valCheckReason(t, ve.Reason)
			return
		}
		if info == nil {
			t.Fatal("Validate returned neither info nor error")
		}
		if memPages == 0 {
			memPages = valDefaultMaxMemoryPages
		}
		if tableSize == 0 {
			tableSize = valDefaultMaxTableSize
		}
		if info.MemoryMin > memPages || (info.MemoryHasMax && info.MemoryMax < info.MemoryMin) {
			t.Errorf("accepted memory min %d max %d (hasMax %v) with limit %d", info.MemoryMin, info.MemoryMax, info.MemoryHasMax, memPages)
		}
		for i, tb := range info.Tables {
			if tb.Min > tableSize || tb.HasMax && (tb.Max > tableSize || tb.Min > tb.Max) {
				t.Errorf("accepted table %d %+v with limit %d", i, tb, tableSize)
			}
		}
		for _, im := range info.Imports {
			if im.Module != "fabric" && im.Module != "wasi_snapshot_preview1" {
				t.Errorf("accepted import %s.%s", im.Module, im.Name)
			}
			if im.Kind == ExternTable || im.Kind == ExternMemory {
				t.Errorf("accepted imported %s %s.%s", im.Kind, im.Module, im.Name)
			}
		}
		kinds := map[string]ExternKind{}
		for _, e := range info.Exports {
			if _, dup := kinds[e.Name]; dup {
				t.Errorf("accepted duplicate export %q", e.Name)
			}
			kinds[e.Name] = e.Kind
		}
		for _, req := range valRequiredExports {
			if k, ok := kinds[req.name]; !ok || k != req.kind {
				t.Errorf("accepted a module without %s export %q", req.kind, req.name)
			}
		}
	})
}
