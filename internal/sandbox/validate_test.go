package sandbox

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// A tiny module assembler for tests: each helper emits the bytes of one
// piece of the binary format.

// valLEB encodes v as unsigned LEB128.
func valLEB(v uint32) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, c|0x80)
			continue
		}
		return append(out, c)
	}
}

func valCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// valVec emits a vector: the item count, then the items.
func valVec(items ...[]byte) []byte {
	return valCat(valLEB(uint32(len(items))), valCat(items...))
}

// valStr emits a name: its length, then its bytes.
func valStr(s string) []byte { return valCat(valLEB(uint32(len(s))), []byte(s)) }

// valSec emits a section with the given id and contents.
func valSec(id byte, contents ...[]byte) []byte {
	c := valCat(contents...)
	return valCat([]byte{id}, valLEB(uint32(len(c))), c)
}

// valMod emits a module: the header, then the sections as given.
func valMod(sections ...[]byte) []byte {
	return valCat([]byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}, valCat(sections...))
}

// valLimits emits limits: flags, min and (for flags with bit 0) max.
func valLimits(flags byte, minMax ...uint32) []byte {
	out := []byte{flags}
	for _, v := range minMax {
		out = append(out, valLEB(v)...)
	}
	return out
}

// valImp emits an import entry with a raw descriptor.
func valImp(mod, name string, kind byte, desc ...byte) []byte {
	return valCat(valStr(mod), valStr(name), []byte{kind}, desc)
}

// valExp emits an export entry.
func valExp(name string, kind ExternKind, idx uint32) []byte {
	return valCat(valStr(name), []byte{byte(kind)}, valLEB(idx))
}

// valCustom emits a custom section.
func valCustom(name string, payload ...byte) []byte {
	return valSec(wasmSecCustom, valStr(name), payload)
}

// valGuest describes a guest module with five defined functions:
// fabric_abi_version () -> i32, fabric_alloc (i32) -> i32, fabric_free
// (i32), fabric_call (i32 x4) -> i32 and _initialize (). Defaults give a
// valid guest with one memory of one page.
type valGuest struct {
	imports     [][]byte // import entries; every one must be a func of type 2 for funcImports to hold
	funcImports uint32   // number of function imports, to offset export indices
	tables      [][]byte // table entries
	mems        [][]byte // memory entries; nil means the default one
	noMemSec    bool     // leave out the memory section
	exports     [][]byte // export entries; nil means the required ones
	start       bool     // add a start section calling _initialize
	customs     bool     // put custom sections before, between and after the others
	tag         bool     // add a tag section (exception handling)
}

// valFn returns the index of defined function i, counting imports.
func (g *valGuest) valFn(i uint32) uint32 { return g.funcImports + i }

func (g *valGuest) bytes() []byte {
	var secs [][]byte
	add := func(s []byte) {
		secs = append(secs, s)
		if g.customs {
			secs = append(secs, valCustom("between", 1, 2, 3))
		}
	}
	if g.customs {
		secs = append(secs, valCustom("first"))
	}
	add(valSec(wasmSecType, valVec(
		[]byte{0x60, 0, 1, 0x7f},                         // 0: () -> i32
		[]byte{0x60, 1, 0x7f, 1, 0x7f},                   // 1: (i32) -> i32
		[]byte{0x60, 1, 0x7f, 0},                         // 2: (i32) -> ()
		[]byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f}, // 3: (i32, i32, i32, i32) -> i32
		[]byte{0x60, 0, 0},                               // 4: () -> ()
	)))
	if g.imports != nil {
		add(valSec(wasmSecImport, valVec(g.imports...)))
	}
	add(valSec(wasmSecFunction, valVec([]byte{0}, []byte{1}, []byte{2}, []byte{3}, []byte{4})))
	if g.tables != nil {
		add(valSec(wasmSecTable, valVec(g.tables...)))
	}
	if !g.noMemSec {
		mems := g.mems
		if mems == nil {
			mems = [][]byte{valLimits(0x00, 1)}
		}
		add(valSec(wasmSecMemory, valVec(mems...)))
	}
	if g.tag {
		add(valSec(wasmSecTag, valVec([]byte{0x00, 4})))
	}
	exports := g.exports
	if exports == nil {
		exports = [][]byte{
			valExp("fabric_abi_version", ExternFunc, g.valFn(0)),
			valExp("fabric_alloc", ExternFunc, g.valFn(1)),
			valExp("fabric_free", ExternFunc, g.valFn(2)),
			valExp("fabric_call", ExternFunc, g.valFn(3)),
			valExp("_initialize", ExternFunc, g.valFn(4)),
			valExp("memory", ExternMemory, 0),
		}
	}
	add(valSec(wasmSecExport, valVec(exports...)))
	if g.start {
		add(valSec(wasmSecStart, valLEB(g.valFn(4))))
	}
	body := func(code ...byte) []byte {
		b := valCat([]byte{0}, code) // no locals
		return valCat(valLEB(uint32(len(b))), b)
	}
	add(valSec(wasmSecCode, valVec(
		body(0x41, 0x01, 0x0b), // i32.const 1
		body(0x20, 0x00, 0x0b), // local.get 0
		body(0x0b),
		body(0x41, 0x00, 0x0b), // i32.const 0
		body(0x0b),
	)))
	return valMod(secs...)
}

// valRequired returns the required exports for a guest without imports, in
// the order given, for building modules that leave some out.
func valRequired(names ...string) [][]byte {
	idx := map[string]uint32{"fabric_abi_version": 0, "fabric_alloc": 1, "fabric_free": 2, "fabric_call": 3}
	var out [][]byte
	for _, n := range names {
		if n == "memory" {
			out = append(out, valExp("memory", ExternMemory, 0))
		} else {
			out = append(out, valExp(n, ExternFunc, idx[n]))
		}
	}
	return out
}

// valMinimal is the smallest valid guest.
func valMinimal() []byte { return (&valGuest{}).bytes() }

// valRaw returns a module of just the given sections, which may be
// malformed on purpose.
func valRaw(sections ...[]byte) []byte { return valMod(sections...) }

func TestValidateMinimalGuest(t *testing.T) {
	info, err := Validate(valMinimal(), Limits{})
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	wantExports := []Export{
		{"fabric_abi_version", ExternFunc},
		{"fabric_alloc", ExternFunc},
		{"fabric_free", ExternFunc},
		{"fabric_call", ExternFunc},
		{"_initialize", ExternFunc},
		{"memory", ExternMemory},
	}
	if len(info.Exports) != len(wantExports) {
		t.Fatalf("Exports = %v, want %v", info.Exports, wantExports)
	}
	for i := range wantExports {
		if info.Exports[i] != wantExports[i] {
			t.Errorf("Exports[%d] = %v, want %v", i, info.Exports[i], wantExports[i])
		}
	}
	if len(info.Imports) != 0 || len(info.Tables) != 0 || info.HasStart {
		t.Errorf("unexpected imports/tables/start: %+v", info)
	}
	if info.MemoryMin != 1 || info.MemoryHasMax || info.MemoryMax != 0 {
		t.Errorf("memory = min %d max %d hasMax %v, want 1, 0, false", info.MemoryMin, info.MemoryMax, info.MemoryHasMax)
	}
}

func TestValidateRichGuest(t *testing.T) {
	g := &valGuest{
		imports: [][]byte{
			valImp("fabric", "return_value", 0x00, 2),
			valImp("wasi_snapshot_preview1", "proc_exit", 0x00, 2),
		},
		funcImports: 2,
		tables: [][]byte{
			valCat([]byte{0x70}, valLimits(0x01, 1, 1)),
			valCat([]byte{0x6f}, valLimits(0x01, 0, 100000)),
		},
		mems:    [][]byte{valLimits(0x01, 17, 65536)},
		start:   true,
		customs: true,
	}
	info, err := Validate(g.bytes(), Limits{MaxMemoryPages: 32})
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	wantImports := []Import{
		{"fabric", "return_value", ExternFunc},
		{"wasi_snapshot_preview1", "proc_exit", ExternFunc},
	}
	if len(info.Imports) != 2 || info.Imports[0] != wantImports[0] || info.Imports[1] != wantImports[1] {
		t.Errorf("Imports = %v, want %v", info.Imports, wantImports)
	}
	wantTables := []TableInfo{{1, 1, true}, {0, 100000, true}}
	if len(info.Tables) != 2 || info.Tables[0] != wantTables[0] || info.Tables[1] != wantTables[1] {
		t.Errorf("Tables = %v, want %v", info.Tables, wantTables)
	}
	if info.MemoryMin != 17 || info.MemoryMax != 65536 || !info.MemoryHasMax {
		t.Errorf("memory = min %d max %d hasMax %v, want 17, 65536, true (a max above the limit is recorded)",
			info.MemoryMin, info.MemoryMax, info.MemoryHasMax)
	}
	if !info.HasStart {
		t.Error("HasStart = false, want true")
	}
	if len(info.Exports) != 6 {
		t.Errorf("Exports = %v, want 6", info.Exports)
	}
}

func TestValidateAcceptsOtherValidShapes(t *testing.T) {
	cases := map[string][]byte{
		"imported global and tag": (&valGuest{imports: [][]byte{
			valImp("fabric", "g", 0x03, 0x7f, 0x00),
			valImp("fabric", "mg", 0x03, 0x6f, 0x01),
			valImp("fabric", "t", 0x04, 0x00, 4),
		}}).bytes(),
		"tag section between memory and global": (&valGuest{tag: true}).bytes(),
		"memory at exactly the limit":           (&valGuest{mems: [][]byte{valLimits(0x00, 16)}}).bytes(),
		"memory max above the limit":            (&valGuest{mems: [][]byte{valLimits(0x01, 1, 65536)}}).bytes(),
		"table at exactly the limit": (&valGuest{tables: [][]byte{
			valCat([]byte{0x70}, valLimits(0x01, 100000, 100000)),
		}}).bytes(),
		"data count section": valInsertBeforeSection(t, valMinimal(), wasmSecCode, valSec(wasmSecDataCount, valLEB(0))),
		// A padded LEB128 (5 bytes for a small value) is legal.
		"padded section size": valCat(valMinimal(), []byte{0, 0x85, 0x80, 0x80, 0x80, 0x00}, valStr("pad"), []byte{9}),
		"empty data section":  valCat(valMinimal(), valSec(wasmSecData, valVec())),
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Validate(m, Limits{MaxMemoryPages: 16}); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// valInsertBeforeSection inserts sec in front of the first section with
// the given id in module m.
func valInsertBeforeSection(t *testing.T, m []byte, id byte, sec []byte) []byte {
	t.Helper()
	pos := 8
	for pos < len(m) {
		r := valReader{buf: m, pos: pos + 1, end: len(m), what: "test"}
		size, err := r.u32()
		if err != nil {
			t.Fatal(err)
		}
		if m[pos] == id {
			return valCat(m[:pos], sec, m[pos:])
		}
		pos = r.pos + int(size)
	}
	t.Fatalf("no section %d", id)
	return nil
}

func TestValidateRejects(t *testing.T) {
	minimal := valMinimal()
	typeSec := valSec(wasmSecType, valVec([]byte{0x60, 0, 0}))
	manyTables := make([][]byte, 101)
	for i := range manyTables {
		manyTables[i] = valCat([]byte{0x70}, valLimits(0x01, 0, 1))
	}
	longName := strings.Repeat("a", 10000)

	cases := []struct {
		name string
		wasm []byte
		lim  Limits
		want string // substring of the error message
	}{
		// Header.
		{"empty", nil, Limits{}, "module is empty"},
		{"ELF binary", []byte("\x7fELF\x02\x01\x01\x00"), Limits{},
			"not a WebAssembly module (bad magic bytes \"\\x7fELF\"); build it with `fabric build`"},
		{"short bad magic", []byte("ab"), Limits{}, `bad magic bytes "ab"`},
		{"short good magic", []byte("\x00as"), Limits{}, "truncated"},
		{"text format", []byte("  (module (memory 1))"), Limits{}, "WebAssembly text"},
		{"header only magic", []byte("\x00asm"), Limits{}, "module is truncated: 4 bytes"},
		{"wrong version", []byte("\x00asm\x02\x00\x00\x00"), Limits{}, "unsupported WebAssembly binary version 2"},
		{"component", []byte("\x00asm\x0d\x00\x01\x00"), Limits{}, "WebAssembly component"},
		{"too big", minimal, Limits{MaxModuleSize: 10}, "bytes but the limit is 10 bytes"},

		// Section framing.
		{"section size past end", valCat(minimal, []byte{wasmSecCustom, 10, 1, 'x'}), Limits{}, "declares 10 bytes but only 2 remain"},
		{"truncated section header", valCat(minimal, []byte{wasmSecCustom}), Limits{}, "section header is truncated"},
		{"truncated section size LEB", valCat(minimal, []byte{wasmSecCustom, 0x80}), Limits{}, "section header is truncated"},
		{"LEB overflow high bits", valCat(minimal, []byte{wasmSecCustom, 0x80, 0x80, 0x80, 0x80, 0x10}), Limits{}, "overflows 32 bits"},
		{"LEB overflow six bytes", valCat(minimal, []byte{wasmSecCustom, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}), Limits{}, "overflows 32 bits"},
		{"duplicate section", valRaw(typeSec, typeSec), Limits{}, "duplicate type section"},
		{"out of order", valRaw(valSec(wasmSecMemory, valVec(valLimits(0, 1))), typeSec), Limits{}, "type section at byte offset 13 comes after the memory section"},
		{"tag after global", valRaw(valSec(wasmSecGlobal, valVec()), valSec(wasmSecTag, valVec())), Limits{}, "tag section at byte offset 11 comes after the global section"},
		{"data count after code", valRaw(valSec(wasmSecCode, valVec()), valSec(wasmSecDataCount, valLEB(0))), Limits{}, "data count section at byte offset 11 comes after the code section"},
		{"unknown section id", valRaw(valSec(14)), Limits{}, "unknown section id 14"},
		{"custom name past section", valRaw([]byte{wasmSecCustom, 2, 5, 'a'}), Limits{}, "declares 5 bytes but only 1 remain"},
		{"custom name not UTF-8", valRaw(valSec(wasmSecCustom, valStr("\xff\xfe"))), Limits{}, "not valid UTF-8"},
		{"empty custom section", valRaw(valSec(wasmSecCustom)), Limits{}, "custom section is truncated"},
		{"section contents too long", valRaw(valSec(wasmSecFunction, valVec([]byte{0})), valSec(wasmSecStart, valLEB(0), []byte{0})), Limits{}, "start section has 1 unexpected bytes"},
		{"data count trailing", valRaw(valSec(wasmSecDataCount, valLEB(0), []byte{0})), Limits{}, "data count section has 1 unexpected bytes"},
		{"function count implausible", valRaw(valSec(wasmSecFunction, valLEB(1000), []byte{0})), Limits{}, "declares 1000 functions, but only 1 bytes remain"},

		// Imports.
		{"import from env", (&valGuest{imports: [][]byte{valImp("env", "foo", 0, 2)}}).bytes(), Limits{},
			`imports env.foo, but guests may import only from "fabric" and "wasi_snapshot_preview1"`},
		{"import with escape sequence", (&valGuest{imports: [][]byte{valImp("\x1b[31mevil", "x", 0, 2)}}).bytes(), Limits{},
			`imports "\x1b[31mevil".x, but`},
		{"import with long name", (&valGuest{imports: [][]byte{valImp(longName, "x", 0, 2)}}).bytes(), Limits{},
			"imports " + strings.Repeat("a", 64) + "....x, but"},
		{"imported table", (&valGuest{imports: [][]byte{valImp("fabric", "t", 1, 0x70, 0x01, 0, 1)}}).bytes(), Limits{},
			"imports table fabric.t, but guests may not import tables"},
		{"imported memory", (&valGuest{imports: [][]byte{valImp("fabric", "memory", 2, 0x00, 1)}}).bytes(), Limits{},
			"must define its own memory"},
		{"imported global bad type", (&valGuest{imports: [][]byte{valImp("fabric", "g", 3, 0x40, 0)}}).bytes(), Limits{},
			"unsupported value type 0x40"},
		{"imported global bad mutability", (&valGuest{imports: [][]byte{valImp("fabric", "g", 3, 0x7f, 2)}}).bytes(), Limits{},
			"invalid global mutability 0x02"},
		{"imported tag bad attribute", (&valGuest{imports: [][]byte{valImp("fabric", "t", 4, 1, 0)}}).bytes(), Limits{},
			"invalid tag attribute 0x01"},
		{"unknown import kind", (&valGuest{imports: [][]byte{valImp("fabric", "x", 5, 0)}}).bytes(), Limits{},
			"import fabric.x has unknown kind 0x05"},
		{"import name not UTF-8", (&valGuest{imports: [][]byte{valImp("fabric", "\xc3", 0, 2)}}).bytes(), Limits{},
			"not valid UTF-8"},
		{"import truncated", valRaw(valSec(wasmSecImport, valVec(valCat(valStr("fabric"), valStr("x"))))), Limits{},
			"import section is truncated"},
		{"import descriptor truncated", valRaw(valSec(wasmSecImport, valLEB(1), valStr("fabric"), []byte{1, 'x', 0})), Limits{},
			"import section is truncated"},
		{"import count huge", valRaw(valSec(wasmSecImport, valLEB(0xffffffff), make([]byte, 8))), Limits{},
			"declares 4294967295 imports, but only 8 bytes remain"},
		{"too many imports", valRaw(valSec(wasmSecImport, valLEB(100001), make([]byte, 400004))), Limits{},
			"module declares 100001 imports, but at most 100000 are allowed"},

		// Exports.
		{"no exports at all", (&valGuest{exports: [][]byte{}}).bytes(), Limits{},
			"missing required exports: fabric_abi_version, fabric_alloc, fabric_free, fabric_call, memory; is this a Fabric guest? Build it with `fabric build` or see docs/ABI.md"},
		{"two missing", (&valGuest{exports: valRequired("fabric_alloc", "fabric_free", "memory")}).bytes(), Limits{},
			"missing required exports: fabric_abi_version, fabric_call; is this a Fabric guest?"},
		{"memory not exported", (&valGuest{exports: valRequired("fabric_abi_version", "fabric_alloc", "fabric_free", "fabric_call")}).bytes(), Limits{},
			"missing required exports: memory;"},
		{"memory exported as function", (&valGuest{exports: append(valRequired("fabric_abi_version", "fabric_alloc", "fabric_free", "fabric_call"),
			valExp("memory", ExternFunc, 0))}).bytes(), Limits{},
			`export "memory" must be a memory, but it is a func`},
		{"function exported as memory", (&valGuest{exports: append(valRequired("fabric_abi_version", "fabric_alloc", "fabric_call", "memory"),
			valExp("fabric_free", ExternMemory, 0))}).bytes(), Limits{},
			`export "fabric_free" must be a function, but it is a memory`},
		{"duplicate export", (&valGuest{exports: append(valRequired("fabric_abi_version", "fabric_alloc", "fabric_free", "fabric_call", "memory"),
			valExp("fabric_alloc", ExternFunc, 2))}).bytes(), Limits{},
			"export name fabric_alloc is used more than once"},
		{"export name not UTF-8", (&valGuest{exports: append(valRequired("fabric_abi_version"), valExp("bad\xff", ExternFunc, 0))}).bytes(), Limits{},
			`name "bad\xff" at byte offset`},
		{"export unknown kind", (&valGuest{exports: [][]byte{valCat(valStr("x"), []byte{7, 0})}}).bytes(), Limits{},
			"export x has unknown kind 0x07"},
		{"export function out of range", (&valGuest{exports: [][]byte{valExp("fabric_call", ExternFunc, 99)}}).bytes(), Limits{},
			"export fabric_call refers to func 99, but the module has only 5"},
		{"export memory without memory", (&valGuest{noMemSec: true}).bytes(), Limits{},
			"export memory refers to memory 0, but the module has only 0"},
		{"export count huge", valRaw(valSec(wasmSecExport, valLEB(0x7fffffff))), Limits{},
			"declares 2147483647 exports, but only 0 bytes remain"},
		{"export section trailing bytes", valRaw(valSec(wasmSecExport, valVec(), []byte{0xaa})), Limits{},
			"export section has 1 unexpected bytes at byte offset 11; section size mismatch"},

		// Memory.
		{"no memory", (&valGuest{noMemSec: true, exports: valRequired("fabric_abi_version", "fabric_alloc", "fabric_free", "fabric_call")}).bytes(), Limits{},
			"missing required exports: memory"},
		{"two memories", (&valGuest{mems: [][]byte{valLimits(0, 1), valLimits(0, 1)}}).bytes(), Limits{},
			"module declares 2 memories, but a guest must have exactly one"},
		{"memory over limit", (&valGuest{mems: [][]byte{valLimits(0x00, 17)}}).bytes(), Limits{MaxMemoryPages: 16},
			"memory needs at least 17 pages (1.0625 MiB) but the limit is 16 pages"},
		{"memory over default limit", (&valGuest{mems: [][]byte{valLimits(0x00, 65537)}}).bytes(), Limits{},
			"memory minimum of 65537 pages exceeds the wasm32 maximum of 65536 pages"},
		{"memory max over wasm32", (&valGuest{mems: [][]byte{valLimits(0x01, 1, 65537)}}).bytes(), Limits{},
			"memory maximum of 65537 pages exceeds the wasm32 maximum"},
		{"memory min above max", (&valGuest{mems: [][]byte{valLimits(0x01, 3, 2)}}).bytes(), Limits{},
			"memory minimum of 3 pages is larger than its maximum of 2 pages"},
		{"shared memory", (&valGuest{mems: [][]byte{valLimits(0x03, 1, 2)}}).bytes(), Limits{}, "shared memories are not supported"},
		{"shared memory no max", (&valGuest{mems: [][]byte{valLimits(0x02, 1)}}).bytes(), Limits{}, "shared memories are not supported"},
		{"memory64", (&valGuest{mems: [][]byte{valLimits(0x04, 1)}}).bytes(), Limits{}, "64-bit memories (memory64, limits flags 0x04"},
		{"memory64 with max", (&valGuest{mems: [][]byte{valLimits(0x05, 1, 2)}}).bytes(), Limits{}, "64-bit memories"},
		{"shared memory64", (&valGuest{mems: [][]byte{valLimits(0x07, 1, 2)}}).bytes(), Limits{}, "64-bit memories"},
		{"memory flags invalid", (&valGuest{mems: [][]byte{valLimits(0x08, 1)}}).bytes(), Limits{}, "memory has invalid limits flags 0x08"},
		{"memory truncated", valRaw(valSec(wasmSecMemory, valLEB(1), []byte{0x01, 0x01})), Limits{}, "memory section is truncated"},
		{"memory min LEB overflow", valRaw(valSec(wasmSecMemory, valLEB(1), []byte{0x00, 0xff, 0xff, 0xff, 0xff, 0x7f})), Limits{}, "overflows 32 bits"},

		// Tables.
		{"table max over limit", (&valGuest{tables: [][]byte{valCat([]byte{0x70}, valLimits(0x01, 1, 100001))}}).bytes(), Limits{},
			"table 0 may grow to 100001 elements but the limit is 100000"},
		{"table min over limit", (&valGuest{tables: [][]byte{valCat([]byte{0x70}, valLimits(0x01, 11, 11))}}).bytes(), Limits{MaxTableSize: 10},
			"table 0 needs at least 11 elements but the limit is 10"},
		{"table min above max", (&valGuest{tables: [][]byte{valCat([]byte{0x70}, valLimits(0x01, 5, 4))}}).bytes(), Limits{},
			"table 0 has minimum size 5 larger than its maximum 4"},
		{"table64", (&valGuest{tables: [][]byte{valCat([]byte{0x70}, valLimits(0x05, 1, 2))}}).bytes(), Limits{},
			"64-bit table"},
		{"shared table", (&valGuest{tables: [][]byte{valCat([]byte{0x70}, valLimits(0x03, 1, 2))}}).bytes(), Limits{},
			"(shared), which tables may not use"},
		{"table flags invalid", (&valGuest{tables: [][]byte{valCat([]byte{0x70}, valLimits(0x10, 1))}}).bytes(), Limits{},
			"invalid limits flags 0x10"},
		{"table bad element type", (&valGuest{tables: [][]byte{valCat([]byte{0x7f}, valLimits(0x01, 1, 1))}}).bytes(), Limits{},
			"unsupported element type 0x7f"},
		{"table with initializer", (&valGuest{tables: [][]byte{valCat([]byte{0x40, 0x00, 0x70}, valLimits(0x01, 1, 1), []byte{0xd0, 0x70, 0x0b})}}).bytes(), Limits{},
			"typed function references encoding"},
		{"too many tables", (&valGuest{tables: manyTables}).bytes(), Limits{},
			"module declares 101 tables, but at most 100 are allowed"},
		{"table truncated", valRaw(valSec(wasmSecTable, valLEB(1), []byte{0x70, 0x01, 0x01})), Limits{}, "table section is truncated"},

		// Start.
		{"start out of range", valRaw(valSec(wasmSecStart, valLEB(3))), Limits{}, "start section refers to function 3, but the module has only 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Validate(tc.wasm, tc.lim)
			if err == nil {
				t.Fatalf("Validate succeeded (%+v), want error containing %q", info, tc.want)
			}
			if info != nil {
				t.Errorf("Validate returned info %+v with error", info)
			}
			if !errors.Is(err, ErrInvalidModule) {
				t.Errorf("error %v does not wrap ErrInvalidModule", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant it to contain %q", err.Error(), tc.want)
			}
			valCheckReason(t, ve.Reason)
		})
	}
}

// valCheckReason checks that a reason is short, printable text, whatever
// the module held.
func valCheckReason(t testing.TB, reason string) {
	t.Helper()
	if reason == "" {
		t.Error("empty reason")
	}
	if !utf8.ValidString(reason) {
		t.Errorf("reason is not valid UTF-8: %q", reason)
	}
	if i := strings.IndexFunc(reason, func(r rune) bool { return !unicode.IsPrint(r) }); i >= 0 {
		t.Errorf("reason has a non-printable character at %d: %q", i, reason)
	}
	if len(reason) > 600 {
		t.Errorf("reason is %d bytes long: %q", len(reason), reason)
	}
}

func TestValidateErrorType(t *testing.T) {
	_, err := Validate([]byte("nope"), Limits{})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *ValidationError", err)
	}
	want := "sandbox: invalid module: " + ve.Reason
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if errors.Unwrap(err) != ErrInvalidModule {
		t.Errorf("Unwrap() = %v, want ErrInvalidModule", errors.Unwrap(err))
	}
	if !strings.Contains(err.Error(), "not a WebAssembly module (bad magic bytes \"nope\"); build it with `fabric build`") {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestValidateExternKindString(t *testing.T) {
	for k, want := range map[ExternKind]string{
		ExternFunc: "func", ExternTable: "table", ExternMemory: "memory", ExternGlobal: "global", ExternTag: "tag",
		9: "ExternKind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("ExternKind(%d).String() = %q, want %q", byte(k), got, want)
		}
	}
}

func TestValidateDefaultLimits(t *testing.T) {
	// Zero limits mean 65536 pages, 100000 elements, 256 MiB.
	ok := (&valGuest{
		mems:   [][]byte{valLimits(0x00, 65536)},
		tables: [][]byte{valCat([]byte{0x70}, valLimits(0x01, 0, 100000))},
	}).bytes()
	if _, err := Validate(ok, Limits{}); err != nil {
		t.Errorf("Validate with default limits: %v", err)
	}
	if _, err := Validate(ok, Limits{MaxMemoryPages: 65535}); err == nil {
		t.Error("Validate with a memory limit of 65535 pages accepted a 65536-page memory")
	}
	if _, err := Validate(ok, Limits{MaxTableSize: 99999}); err == nil {
		t.Error("Validate with a table limit of 99999 accepted a 100000-element table")
	}
	if _, err := Validate(valMinimal(), Limits{MaxModuleSize: len(valMinimal())}); err != nil {
		t.Errorf("Validate at exactly MaxModuleSize: %v", err)
	}
}

// Claimed counts must be checked against the bytes that remain before
// anything is allocated for them.
func TestValidateHugeCountsDoNotAllocate(t *testing.T) {
	modules := [][]byte{
		valRaw(valSec(wasmSecImport, valLEB(0xffffffff), make([]byte, 64))),
		valRaw(valSec(wasmSecExport, valLEB(0xffffffff), make([]byte, 64))),
		valRaw(valSec(wasmSecTable, valLEB(0xffffffff), make([]byte, 64))),
		valRaw(valSec(wasmSecMemory, valLEB(0xffffffff), make([]byte, 64))),
		valRaw(valSec(wasmSecFunction, valLEB(0xffffffff), make([]byte, 64))),
		valRaw(valSec(wasmSecCustom, valLEB(0xffffffff), make([]byte, 64))),
		valRaw([]byte{wasmSecType, 0xff, 0xff, 0xff, 0xff, 0x0f}),
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 20 {
		for _, m := range modules {
			if _, err := Validate(m, Limits{}); err == nil {
				t.Fatal("Validate accepted a module with a huge claimed count")
			}
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("validating %d small hostile modules allocated %d bytes", 20*len(modules), d)
	}
}
