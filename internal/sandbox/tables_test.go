package sandbox

import (
	"context"
	"runtime"
	"strings"
	"testing"
)

func valSLEB(v int64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && b&0x40 == 0) || (v == -1 && b&0x40 != 0) {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}

// tableBomb is a guest whose fabric_call grows its table (declared without
// a maximum) by 100 million elements and returns what table.grow returned.
func tableBomb() []byte {
	body := func(code ...byte) []byte {
		b := valCat([]byte{0}, code)
		return valCat(valLEB(uint32(len(b))), b)
	}
	grow := valCat([]byte{0xd0, 0x70, 0x41}, valSLEB(100_000_000), []byte{0xfc, 0x0f, 0x00, 0x0b})
	return valMod(
		valSec(wasmSecType, valVec(
			[]byte{0x60, 0, 1, 0x7f},
			[]byte{0x60, 1, 0x7f, 1, 0x7f},
			[]byte{0x60, 1, 0x7f, 0},
			[]byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f},
		)),
		valSec(wasmSecFunction, valVec([]byte{0}, []byte{1}, []byte{2}, []byte{3})),
		valSec(wasmSecTable, valVec(valCat([]byte{0x70}, valLimits(0x00, 1)))),
		valSec(wasmSecMemory, valVec(valLimits(0x00, 1))),
		valSec(wasmSecExport, valVec(
			valExp("fabric_abi_version", ExternFunc, 0),
			valExp("fabric_alloc", ExternFunc, 1),
			valExp("fabric_free", ExternFunc, 2),
			valExp("fabric_call", ExternFunc, 3),
			valExp("memory", ExternMemory, 0),
		)),
		valSec(wasmSecCode, valVec(
			body(0x41, 0x01, 0x0b), // abi version 1
			body(0x41, 0x10, 0x0b), // alloc: a fixed buffer at 16
			body(0x0b),
			body(grow...),
		)),
	)
}

func TestCapTables(t *testing.T) {
	m := tableBomb()
	capped := capTables(m)
	info, err := Validate(capped, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Tables) != 1 || !info.Tables[0].HasMax || info.Tables[0].Max != 1 {
		t.Fatalf("tables after capping: %+v", info.Tables)
	}
	if again := capTables(capped); string(again) != string(capped) {
		t.Error("capping a capped module changed it")
	}
	if got := capTables(valMinimal()); string(got) != string(valMinimal()) {
		t.Error("a module without tables changed")
	}
}

// TestTableGrowthBomb runs the bomb: table.grow fails inside the guest and
// host memory stays bounded.
func TestTableGrowthBomb(t *testing.T) {
	ctx := context.Background()
	e, err := NewEngine(ctx, EngineConfig{MemoryLimit: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	mod, err := e.Compile(ctx, tableBomb())
	if err != nil {
		t.Fatal(err)
	}
	inst, err := mod.Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, err := inst.Call(ctx, nil, "x", ArgSource{}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if res.OK || !strings.Contains(res.Error, "returned -1") {
		t.Errorf("table.grow should have failed (-1), got %+v", res)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<20 {
		t.Errorf("host heap grew by %d MiB", grew>>20)
	}
}

// TestRunawayRecursion runs a guest whose fabric_call calls itself forever:
// the call ends with the instance's stack budget exhausted, the host
// survives, and the memory the host took for the guest's call stack stays
// within a few budgets.
func TestRunawayRecursion(t *testing.T) {
	body := func(code ...byte) []byte {
		b := valCat([]byte{0}, code)
		return valCat(valLEB(uint32(len(b))), b)
	}
	m := valMod(
		valSec(wasmSecType, valVec(
			[]byte{0x60, 0, 1, 0x7f},
			[]byte{0x60, 1, 0x7f, 1, 0x7f},
			[]byte{0x60, 1, 0x7f, 0},
			[]byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f},
		)),
		valSec(wasmSecFunction, valVec([]byte{0}, []byte{1}, []byte{2}, []byte{3})),
		valSec(wasmSecMemory, valVec(valLimits(0x00, 1))),
		valSec(wasmSecExport, valVec(
			valExp("fabric_abi_version", ExternFunc, 0),
			valExp("fabric_alloc", ExternFunc, 1),
			valExp("fabric_free", ExternFunc, 2),
			valExp("fabric_call", ExternFunc, 3),
			valExp("memory", ExternMemory, 0),
		)),
		valSec(wasmSecCode, valVec(
			body(0x41, 0x01, 0x0b),
			body(0x41, 0x10, 0x0b),
			body(0x0b),
			// local.get 0..3; call 3 (itself); end
			body(0x20, 0, 0x20, 1, 0x20, 2, 0x20, 3, 0x10, 3, 0x0b),
		)),
	)
	ctx := context.Background()
	e, err := NewEngine(ctx, EngineConfig{MemoryLimit: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	mod, err := e.Compile(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := mod.Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, err := inst.Call(ctx, nil, "x", ArgSource{}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if res.OK || res.Kind != "trap" || !strings.Contains(res.Error, ErrStackExhausted.Error()) || !inst.Broken() {
		t.Errorf("want a stack-exhausted trap and a broken instance, got %+v", res)
	}
	grew := int64(after.Sys) - int64(before.Sys)
	t.Logf("host memory obtained from the OS during the call: %d MiB", grew>>20)
	if grew > 4*StackBudget {
		t.Errorf("host took %d MiB for one runaway call", grew>>20)
	}
}
