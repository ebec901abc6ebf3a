package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file holds a small, self-contained parser of the WebAssembly binary
// format that checks a guest module before it is handed to the compiler. It
// reads only what the guest ABI and the resource limits need (imports,
// exports, tables, memory, section layout) and skips the rest by size. It is
// written for hostile input: every length and count is checked against the
// bytes that remain before it is used, nothing is allocated in proportion to
// a claimed count, and it never panics.

// Limits bounds what a module may declare. A zero field takes its default.
type Limits struct {
	// MaxMemoryPages is the number of 64 KiB pages a memory may ever grow
	// to; 0 means 65536 (4 GiB, the wasm32 maximum). Validate rejects a
	// memory whose declared minimum is above it, but accepts a missing or
	// larger declared maximum, because the runtime caps growth.
	MaxMemoryPages uint32
	// MaxTableSize is the number of elements a table may ever hold, so
	// its minimum and any declared maximum must be at most this (a table
	// without a maximum is capped at its minimum when compiled).
	// 0 means 100000.
	MaxTableSize uint32
	// MaxModuleSize is the largest module accepted, in bytes. 0 (or a
	// negative value) means 256 MiB.
	MaxModuleSize int
}

// ModuleInfo is what validation learned about a module.
type ModuleInfo struct {
	// Imports lists the module's imports in declaration order.
	Imports []Import
	// Exports lists the module's exports in declaration order.
	Exports []Export
	// MemoryMin is the initial size, in 64 KiB pages, of the module's
	// single memory.
	MemoryMin uint32
	// MemoryMax is the declared maximum size in pages; meaningful only
	// when MemoryHasMax is true. It may exceed Limits.MaxMemoryPages.
	MemoryMax uint32
	// MemoryHasMax reports whether the memory declares a maximum.
	MemoryHasMax bool
	// Tables describes the module's defined tables in index order.
	Tables []TableInfo
	// HasStart reports whether the module has a start section, that is, a
	// function that runs during instantiation.
	HasStart bool
}

// Import is one entry of a module's import section.
type Import struct {
	// Module is the module name imported from ("fabric" or
	// "wasi_snapshot_preview1" in a valid guest).
	Module string
	// Name is the field name within Module.
	Name string
	// Kind is what is imported.
	Kind ExternKind
}

// Export is one entry of a module's export section.
type Export struct {
	// Name is the export's name, unique within the module.
	Name string
	// Kind is what is exported.
	Kind ExternKind
}

// TableInfo describes one table that a module defines.
type TableInfo struct {
	// Min is the table's initial number of elements.
	Min uint32
	// Max is the table's maximum number of elements; meaningful only when
	// HasMax is true; a table without one is capped at its minimum when compiled.
	Max uint32
	// HasMax reports whether the table declares a maximum.
	HasMax bool
}

// ExternKind is the kind of an import or export, as encoded in the binary
// format.
type ExternKind byte

// The kinds of imports and exports.
const (
	// ExternFunc is a function.
	ExternFunc ExternKind = 0
	// ExternTable is a table.
	ExternTable ExternKind = 1
	// ExternMemory is a linear memory.
	ExternMemory ExternKind = 2
	// ExternGlobal is a global variable.
	ExternGlobal ExternKind = 3
	// ExternTag is an exception tag.
	ExternTag ExternKind = 4
)

// String returns the kind's name as the text format spells it: "func",
// "table", "memory", "global" or "tag".
func (k ExternKind) String() string {
	switch k {
	case ExternFunc:
		return "func"
	case ExternTable:
		return "table"
	case ExternMemory:
		return "memory"
	case ExternGlobal:
		return "global"
	case ExternTag:
		return "tag"
	}
	return "ExternKind(" + strconv.Itoa(int(k)) + ")"
}

// ErrInvalidModule is wrapped by every validation failure.
var ErrInvalidModule = errors.New("sandbox: invalid module")

// ValidationError is the error Validate returns: it says why a module was
// rejected and wraps ErrInvalidModule.
type ValidationError struct {
	// Reason says what is wrong, in words a guest author can act on. Names
	// taken from the module are truncated and quoted when they are not
	// plain printable text.
	Reason string
	// Missing lists the required exports the module lacks, if that is
	// why it was rejected.
	Missing []string
}

// Error returns "sandbox: invalid module: " followed by the reason.
func (e *ValidationError) Error() string {
	return "sandbox: invalid module: " + e.Reason
}

// Unwrap returns ErrInvalidModule, so errors.Is(err, ErrInvalidModule) holds.
func (e *ValidationError) Unwrap() error { return ErrInvalidModule }

const (
	valDefaultMaxMemoryPages = 65536
	valDefaultMaxTableSize   = 100000
	valDefaultMaxModuleSize  = 256 << 20

	// valMaxPages32 is the wasm32 bound on memory size, in pages (4 GiB).
	valMaxPages32 = 65536
	// valMaxImports and valMaxExports follow the limits browsers enforce
	// (the WebAssembly JS API's implementation limits).
	valMaxImports = 100000
	valMaxExports = 100000
	// valMaxTables bounds how many tables a module may define. Each table
	// is capped by Limits.MaxTableSize, so without this a module could
	// multiply that cap by declaring many tables. Real guests define one.
	valMaxTables = 100

	valNameShowMax = 64 // bytes of a module-supplied name shown in errors

	valFabricModule = "fabric"
	valWASIModule   = "wasi_snapshot_preview1"
)

// valRequiredExports are the exports every guest must have, in the order
// they are reported when missing.
var valRequiredExports = [...]struct {
	name string
	kind ExternKind
}{
	{"fabric_abi_version", ExternFunc},
	{"fabric_alloc", ExternFunc},
	{"fabric_free", ExternFunc},
	{"fabric_call", ExternFunc},
	{"memory", ExternMemory},
}

// Section ids of the binary format.
const (
	wasmSecCustom    = 0
	wasmSecType      = 1
	wasmSecImport    = 2
	wasmSecFunction  = 3
	wasmSecTable     = 4
	wasmSecMemory    = 5
	wasmSecGlobal    = 6
	wasmSecExport    = 7
	wasmSecStart     = 8
	wasmSecElement   = 9
	wasmSecCode      = 10
	wasmSecData      = 11
	wasmSecDataCount = 12
	wasmSecTag       = 13
)

// wasmSectionNames names each known section id for error messages.
var wasmSectionNames = [...]string{
	wasmSecCustom:    "custom",
	wasmSecType:      "type",
	wasmSecImport:    "import",
	wasmSecFunction:  "function",
	wasmSecTable:     "table",
	wasmSecMemory:    "memory",
	wasmSecGlobal:    "global",
	wasmSecExport:    "export",
	wasmSecStart:     "start",
	wasmSecElement:   "element",
	wasmSecCode:      "code",
	wasmSecData:      "data",
	wasmSecDataCount: "data count",
	wasmSecTag:       "tag",
}

// wasmSectionRank gives each known non-custom section id its position in
// the order the binary format requires. The tag section (exception
// handling) sits between memory and global, and data count between element
// and code.
var wasmSectionRank = [...]int{
	wasmSecType:      1,
	wasmSecImport:    2,
	wasmSecFunction:  3,
	wasmSecTable:     4,
	wasmSecMemory:    5,
	wasmSecTag:       6,
	wasmSecGlobal:    7,
	wasmSecExport:    8,
	wasmSecStart:     9,
	wasmSecElement:   10,
	wasmSecDataCount: 11,
	wasmSecCode:      12,
	wasmSecData:      13,
}

var wasmMagic = []byte{0x00, 'a', 's', 'm'}

// Validate parses the module and checks it against the guest ABI and
// limits. It returns what it learned, or a *ValidationError (which wraps
// ErrInvalidModule) naming the first problem found.
//
// It also reads the module's code the way the sandbox does before
// compiling it (instrument.go), so that a module the workers would refuse
// is refused at upload, in the same words.
func Validate(wasm []byte, lim Limits) (*ModuleInfo, error) {
	info, err := validate(wasm, lim)
	if err != nil {
		return nil, err
	}
	if _, err := instrument(capTables(wasm)); err != nil {
		return nil, valErrorf("%v", err)
	}
	return info, nil
}

// ValidateSections is Validate without reading the code: for a module
// whose code was read where it was uploaded (a node fetching it from
// another checks it against its own limits), and for Compile, which
// rewrites the code right after. Reading the code is most of Validate's
// time: 90 ms for a 5 MB Go guest, 1.2 s under the race detector.
func ValidateSections(wasm []byte, lim Limits) (*ModuleInfo, error) {
	return validate(wasm, lim)
}

func validate(wasm []byte, lim Limits) (*ModuleInfo, error) {
	v := valValidator{
		wasm:      wasm,
		memLimit:  lim.MaxMemoryPages,
		tblLimit:  lim.MaxTableSize,
		sizeLimit: lim.MaxModuleSize,
	}
	if v.memLimit == 0 {
		v.memLimit = valDefaultMaxMemoryPages
	}
	if v.tblLimit == 0 {
		v.tblLimit = valDefaultMaxTableSize
	}
	if v.sizeLimit <= 0 {
		v.sizeLimit = valDefaultMaxModuleSize
	}
	if err := v.run(); err != nil {
		return nil, err
	}
	return &v.info, nil
}

// validateLayout runs Validate's checks of the binary format and of
// counts with the default limits, but not those of the guest ABI (the
// required exports): for tests of modules that are not guests.
func validateLayout(wasm []byte) error {
	v := valValidator{wasm: wasm, memLimit: valDefaultMaxMemoryPages, tblLimit: valDefaultMaxTableSize,
		sizeLimit: valDefaultMaxModuleSize, layoutOnly: true}
	return v.run()
}

// valValidator holds the state of one Validate call.
type valValidator struct {
	wasm      []byte
	memLimit  uint32
	tblLimit  uint32
	sizeLimit int

	info ModuleInfo
	// layoutOnly skips the checks of the guest ABI (validateLayout).
	layoutOnly bool

	// Sizes of the index spaces, imports included, for checking export
	// and start indices. uint64 so sums of untrusted counts cannot wrap.
	funcs, tables, memories, globals, tags uint64
}

func valErrorf(format string, args ...any) *ValidationError {
	return &ValidationError{Reason: fmt.Sprintf(format, args...)}
}

func (v *valValidator) run() error {
	w := v.wasm
	if len(w) > v.sizeLimit {
		return valErrorf("module is %d bytes but the limit is %d bytes", len(w), v.sizeLimit)
	}
	if err := valCheckHeader(w); err != nil {
		return err
	}

	r := valReader{buf: w, pos: 8, end: len(w), what: "section header"}
	lastRank, lastID := 0, byte(0)
	for r.pos < r.end {
		at := r.pos
		id, _ := r.u8() // cannot fail: pos < end
		size, err := r.u32()
		if err != nil {
			return err
		}
		name := valSectionName(id)
		if uint64(size) > uint64(r.end-r.pos) {
			return valErrorf("%s section at byte offset %d declares %d bytes but only %d remain; the module is truncated or corrupt",
				name, at, size, r.end-r.pos)
		}
		sec := valReader{buf: w, pos: r.pos, end: r.pos + int(size), what: name + " section"}
		r.pos = sec.end

		if id == wasmSecCustom {
			// Custom sections may appear anywhere; only their name is
			// part of the format.
			if _, err := sec.name(); err != nil {
				return err
			}
			continue
		}
		if int(id) >= len(wasmSectionRank) || wasmSectionRank[id] == 0 {
			return valErrorf("unknown section id %d at byte offset %d; the module uses a WebAssembly feature Fabric does not support, or is corrupt", id, at)
		}
		rank := wasmSectionRank[id]
		switch {
		case rank == lastRank:
			return valErrorf("duplicate %s section at byte offset %d; each section may appear at most once", name, at)
		case rank < lastRank:
			return valErrorf("%s section at byte offset %d comes after the %s section; sections must be in the standard order",
				name, at, valSectionName(lastID))
		}
		lastRank, lastID = rank, id

		switch id {
		case wasmSecImport:
			err = v.importSection(&sec)
		case wasmSecFunction:
			err = v.countSection(&sec, "functions", 1, &v.funcs)
		case wasmSecTable:
			err = v.tableSection(&sec)
		case wasmSecMemory:
			err = v.memorySection(&sec)
		case wasmSecGlobal:
			err = v.countSection(&sec, "globals", 3, &v.globals)
		case wasmSecTag:
			err = v.countSection(&sec, "tags", 2, &v.tags)
		case wasmSecExport:
			err = v.exportSection(&sec)
		case wasmSecStart:
			err = v.startSection(&sec)
		case wasmSecDataCount:
			if _, err = sec.u32(); err == nil {
				err = sec.done()
			}
		default:
			// type, element, code, data: skipped by size, which is
			// already known to be in bounds.
		}
		if err != nil {
			return err
		}
	}
	return v.finish()
}

// valCheckHeader checks the magic bytes and the version.
func valCheckHeader(w []byte) error {
	if len(w) == 0 {
		return valErrorf("module is empty (0 bytes); build it with `fabric build`")
	}
	head := w[:min(4, len(w))]
	if !bytes.Equal(head, wasmMagic[:len(head)]) {
		trimmed := bytes.TrimLeft(w[:min(64, len(w))], " \t\r\n")
		if bytes.HasPrefix(trimmed, []byte("(module")) || bytes.HasPrefix(trimmed, []byte("(component")) {
			return valErrorf("not a WebAssembly module (bad magic bytes %q); this looks like WebAssembly text (.wat), which must be compiled to the binary format; build it with `fabric build`", head)
		}
		return valErrorf("not a WebAssembly module (bad magic bytes %q); build it with `fabric build`", head)
	}
	if len(w) < 8 {
		return valErrorf("module is truncated: %d bytes, but the header alone is 8", len(w))
	}
	switch version := uint32(w[4]) | uint32(w[5])<<8 | uint32(w[6])<<16 | uint32(w[7])<<24; version {
	case 1:
		return nil
	case 0x0001000d:
		return valErrorf("this is a WebAssembly component (binary version 0x0d, layer 1), but Fabric runs core modules (version 1); build a core module with `fabric build`")
	default:
		return valErrorf("unsupported WebAssembly binary version %d (0x%08x); only version 1 is supported", version, version)
	}
}

// countSection reads the entry count of a section that is otherwise skipped,
// adding it to *n, an index space size. Each entry takes at least minEntry
// bytes, which bounds a plausible count.
func (v *valValidator) countSection(sec *valReader, what string, minEntry int, n *uint64) error {
	c, err := sec.count(what, minEntry, 0)
	if err != nil {
		return err
	}
	*n += uint64(c)
	return nil
}

func (v *valValidator) importSection(sec *valReader) error {
	// Smallest import: two empty names, a kind and a one-byte descriptor.
	count, err := sec.count("imports", 4, valMaxImports)
	if err != nil {
		return err
	}
	v.info.Imports = make([]Import, 0, count)
	for range count {
		modB, err := sec.name()
		if err != nil {
			return err
		}
		nameB, err := sec.name()
		if err != nil {
			return err
		}
		kindAt := sec.pos
		kind, err := sec.u8()
		if err != nil {
			return err
		}
		var mod string
		switch string(modB) {
		case valFabricModule:
			mod = valFabricModule
		case valWASIModule:
			mod = valWASIModule
		default:
			return valErrorf("imports %s.%s, but guests may import only from %q and %q",
				valShow(modB), valShow(nameB), valFabricModule, valWASIModule)
		}
		switch ExternKind(kind) {
		case ExternFunc:
			if _, err := sec.u32(); err != nil { // type index
				return err
			}
			v.funcs++
		case ExternTable:
			return valErrorf("imports table %s.%s, but guests may not import tables; define the table in the module instead",
				valShow(modB), valShow(nameB))
		case ExternMemory:
			return valErrorf("imports memory %s.%s, but a guest must define its own memory (and export it as \"memory\") rather than import one",
				valShow(modB), valShow(nameB))
		case ExternGlobal:
			if err := valReadGlobalType(sec, modB, nameB); err != nil {
				return err
			}
			v.globals++
		case ExternTag:
			attrAt := sec.pos
			attr, err := sec.u8()
			if err != nil {
				return err
			}
			if attr != 0 {
				return valErrorf("import %s.%s has invalid tag attribute 0x%02x at byte offset %d (must be 0)",
					valShow(modB), valShow(nameB), attr, attrAt)
			}
			if _, err := sec.u32(); err != nil { // type index
				return err
			}
			v.tags++
		default:
			return valErrorf("import %s.%s has unknown kind 0x%02x at byte offset %d",
				valShow(modB), valShow(nameB), kind, kindAt)
		}
		v.info.Imports = append(v.info.Imports, Import{Module: mod, Name: string(nameB), Kind: ExternKind(kind)})
	}
	return sec.done()
}

// valReadGlobalType reads a global type (value type and mutability) of an
// imported global.
func valReadGlobalType(sec *valReader, modB, nameB []byte) error {
	at := sec.pos
	vt, err := sec.u8()
	if err != nil {
		return err
	}
	switch vt {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f: // i32 i64 f32 f64 v128 funcref externref
	default:
		return valErrorf("import %s.%s is a global of unsupported value type 0x%02x at byte offset %d",
			valShow(modB), valShow(nameB), vt, at)
	}
	at = sec.pos
	mut, err := sec.u8()
	if err != nil {
		return err
	}
	if mut > 1 {
		return valErrorf("import %s.%s has invalid global mutability 0x%02x at byte offset %d (must be 0 or 1)",
			valShow(modB), valShow(nameB), mut, at)
	}
	return nil
}

func (v *valValidator) tableSection(sec *valReader) error {
	// Smallest table: element type, limits flags, minimum.
	count, err := sec.count("tables", 3, valMaxTables)
	if err != nil {
		return err
	}
	v.info.Tables = make([]TableInfo, 0, count)
	for i := range count {
		idx := v.tables + uint64(i)
		at := sec.pos
		rt, err := sec.u8()
		if err != nil {
			return err
		}
		switch rt {
		case 0x70, 0x6f: // funcref, externref
		case 0x40:
			return valErrorf("table %d at byte offset %d uses the typed function references encoding (0x40), which is not supported; use a funcref or externref table", idx, at)
		default:
			return valErrorf("table %d at byte offset %d has unsupported element type 0x%02x; only funcref and externref tables are supported", idx, at, rt)
		}
		at = sec.pos
		flags, err := sec.u8()
		if err != nil {
			return err
		}
		switch {
		case flags <= 0x01:
		case flags == 0x02 || flags == 0x03:
			return valErrorf("table %d at byte offset %d has limits flags 0x%02x (shared), which tables may not use", idx, at, flags)
		case flags >= 0x04 && flags <= 0x07:
			return valErrorf("table %d at byte offset %d is a 64-bit table (limits flags 0x%02x), which is not supported; use 32-bit tables", idx, at, flags)
		default:
			return valErrorf("table %d at byte offset %d has invalid limits flags 0x%02x", idx, at, flags)
		}
		t := TableInfo{HasMax: flags == 0x01}
		if t.Min, err = sec.u32(); err != nil {
			return err
		}
		if t.HasMax {
			if t.Max, err = sec.u32(); err != nil {
				return err
			}
		}
		switch {
		case t.HasMax && t.Min > t.Max:
			return valErrorf("table %d has minimum size %d larger than its maximum %d", idx, t.Min, t.Max)
		case t.Min > v.tblLimit:
			return valErrorf("table %d needs at least %d elements but the limit is %d", idx, t.Min, v.tblLimit)
		case t.HasMax && t.Max > v.tblLimit:
			return valErrorf("table %d may grow to %d elements but the limit is %d; declare a maximum of at most %d", idx, t.Max, v.tblLimit, v.tblLimit)
		}
		v.info.Tables = append(v.info.Tables, t)
	}
	v.tables += uint64(count)
	return sec.done()
}

func (v *valValidator) memorySection(sec *valReader) error {
	// Smallest memory: limits flags and minimum.
	count, err := sec.count("memories", 2, 0)
	if err != nil {
		return err
	}
	if v.memories+uint64(count) > 1 {
		return valErrorf("module declares %d memories, but a guest must have exactly one", v.memories+uint64(count))
	}
	if count == 0 {
		return sec.done()
	}
	at := sec.pos
	flags, err := sec.u8()
	if err != nil {
		return err
	}
	switch {
	case flags <= 0x01:
	case flags == 0x02 || flags == 0x03:
		return valErrorf("shared memories are not supported (memory limits flags 0x%02x at byte offset %d); build the guest without threads or shared memory", flags, at)
	case flags >= 0x04 && flags <= 0x07:
		return valErrorf("64-bit memories (memory64, limits flags 0x%02x at byte offset %d) are not supported; build the guest for wasm32", flags, at)
	default:
		return valErrorf("memory has invalid limits flags 0x%02x at byte offset %d", flags, at)
	}
	hasMax := flags == 0x01
	minPages, err := sec.u32()
	if err != nil {
		return err
	}
	var maxPages uint32
	if hasMax {
		if maxPages, err = sec.u32(); err != nil {
			return err
		}
	}
	switch {
	case minPages > valMaxPages32:
		return valErrorf("memory minimum of %d pages exceeds the wasm32 maximum of %d pages (4 GiB)", minPages, valMaxPages32)
	case hasMax && maxPages > valMaxPages32:
		return valErrorf("memory maximum of %d pages exceeds the wasm32 maximum of %d pages (4 GiB)", maxPages, valMaxPages32)
	case hasMax && minPages > maxPages:
		return valErrorf("memory minimum of %d pages is larger than its maximum of %d pages", minPages, maxPages)
	case minPages > v.memLimit:
		return valErrorf("memory needs at least %d pages (%s MiB) but the limit is %d pages (%s MiB)",
			minPages, valMiB(minPages), v.memLimit, valMiB(v.memLimit))
	}
	v.memories = 1
	v.info.MemoryMin, v.info.MemoryMax, v.info.MemoryHasMax = minPages, maxPages, hasMax
	return sec.done()
}

func (v *valValidator) exportSection(sec *valReader) error {
	// Smallest export: an empty name, a kind and an index.
	count, err := sec.count("exports", 3, valMaxExports)
	if err != nil {
		return err
	}
	v.info.Exports = make([]Export, 0, count)
	seen := make(map[string]struct{}, count)
	for range count {
		nameB, err := sec.name()
		if err != nil {
			return err
		}
		at := sec.pos
		kind, err := sec.u8()
		if err != nil {
			return err
		}
		idx, err := sec.u32()
		if err != nil {
			return err
		}
		var space uint64
		switch ExternKind(kind) {
		case ExternFunc:
			space = v.funcs
		case ExternTable:
			space = v.tables
		case ExternMemory:
			space = v.memories
		case ExternGlobal:
			space = v.globals
		case ExternTag:
			space = v.tags
		default:
			return valErrorf("export %s has unknown kind 0x%02x at byte offset %d", valShow(nameB), kind, at)
		}
		if uint64(idx) >= space {
			return valErrorf("export %s refers to %s %d, but the module has only %d", valShow(nameB), ExternKind(kind), idx, space)
		}
		if _, dup := seen[string(nameB)]; dup {
			return valErrorf("export name %s is used more than once; export names must be unique", valShow(nameB))
		}
		name := string(nameB)
		seen[name] = struct{}{}
		v.info.Exports = append(v.info.Exports, Export{Name: name, Kind: ExternKind(kind)})
	}
	return sec.done()
}

func (v *valValidator) startSection(sec *valReader) error {
	idx, err := sec.u32()
	if err != nil {
		return err
	}
	if uint64(idx) >= v.funcs {
		return valErrorf("start section refers to function %d, but the module has only %d", idx, v.funcs)
	}
	v.info.HasStart = true
	return sec.done()
}

// finish runs the checks that need the whole module.
func (v *valValidator) finish() error {
	if v.layoutOnly {
		return nil
	}
	kinds := make(map[string]ExternKind, len(valRequiredExports))
	for _, e := range v.info.Exports {
		for _, req := range valRequiredExports {
			if e.Name == req.name {
				kinds[req.name] = e.Kind
			}
		}
	}
	var missing []string
	for _, req := range valRequiredExports {
		if _, ok := kinds[req.name]; !ok {
			missing = append(missing, req.name)
		}
	}
	if len(missing) > 0 {
		e := valErrorf("missing required exports: %s; is this a Fabric guest? Build it with `fabric build` or see docs/ABI.md",
			strings.Join(missing, ", "))
		e.Missing = missing
		return e
	}
	for _, req := range valRequiredExports {
		if k := kinds[req.name]; k != req.kind {
			article := "a function"
			if req.kind == ExternMemory {
				article = "a memory"
			}
			return valErrorf("export %q must be %s, but it is a %s; see docs/ABI.md", req.name, article, k)
		}
	}
	if v.memories != 1 { // unreachable while "memory" must be exported; kept as a guard
		return valErrorf("module has no memory; a guest must define one and export it as \"memory\"")
	}
	return nil
}

// valSectionName names a section id for messages.
func valSectionName(id byte) string {
	if int(id) < len(wasmSectionNames) {
		return wasmSectionNames[id]
	}
	return "unknown (id " + strconv.Itoa(int(id)) + ")"
}

// valMiB formats a page count in MiB, exactly (a page is 1/16 MiB).
func valMiB(pages uint32) string {
	return strconv.FormatFloat(float64(pages)/16, 'f', -1, 64)
}

// valShow renders a name taken from the module for an error message: at
// most valNameShowMax bytes, and quoted unless it is plain printable text,
// so hostile names cannot inject control or escape sequences.
func valShow(b []byte) string {
	cut := false
	if len(b) > valNameShowMax {
		n := valNameShowMax
		for n > valNameShowMax-utf8.UTFMax && !utf8.RuneStart(b[n]) {
			n--
		}
		b, cut = b[:n], true
	}
	s := string(b)
	plain := s != "" && utf8.ValidString(s)
	if plain {
		for _, r := range s {
			if !unicode.IsPrint(r) || r == ' ' || r == '"' || r == '\\' {
				plain = false
				break
			}
		}
	}
	if !plain {
		s = strconv.Quote(s)
	}
	if cut {
		s += "..."
	}
	return s
}

// valReader reads the bytes buf[pos:end]; positions are offsets into the
// whole module, so they can be reported as they are.
type valReader struct {
	buf  []byte
	pos  int
	end  int
	what string // "import section", for messages
}

func (r *valReader) truncated() error {
	return valErrorf("%s is truncated at byte offset %d; the module is corrupt", r.what, r.pos)
}

func (r *valReader) u8() (byte, error) {
	if r.pos >= r.end {
		return 0, r.truncated()
	}
	b := r.buf[r.pos]
	r.pos++
	return b, nil
}

// u32 reads an unsigned LEB128 integer of at most 32 bits.
func (r *valReader) u32() (uint32, error) {
	start := r.pos
	var v uint32
	for i := 0; i < 5; i++ {
		if r.pos >= r.end {
			return 0, r.truncated()
		}
		c := r.buf[r.pos]
		r.pos++
		if i == 4 && c&0xf0 != 0 {
			// The fifth byte holds bits 28-31; anything above them,
			// or a continuation bit, overflows 32 bits.
			return 0, valErrorf("malformed LEB128 integer in %s at byte offset %d: overflows 32 bits", r.what, start)
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, valErrorf("malformed LEB128 integer in %s at byte offset %d", r.what, start) // not reached
}

// name reads a length-prefixed UTF-8 name. The bytes alias the module.
func (r *valReader) name() ([]byte, error) {
	at := r.pos
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(r.end-r.pos) {
		return nil, valErrorf("name at byte offset %d in %s declares %d bytes but only %d remain; the module is corrupt",
			at, r.what, n, r.end-r.pos)
	}
	b := r.buf[r.pos : r.pos+int(n)]
	r.pos += int(n)
	if !utf8.Valid(b) {
		return nil, valErrorf("name %s at byte offset %d in %s is not valid UTF-8", valShow(b), at, r.what)
	}
	return b, nil
}

// count reads a vector length, what is counted (plural), and checks it is
// plausible: each entry takes at least minEntry bytes of what remains, and
// there are at most max of them (0 means no cap beyond the bytes).
func (r *valReader) count(what string, minEntry, max int) (uint32, error) {
	at := r.pos
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if left := r.end - r.pos; uint64(n)*uint64(minEntry) > uint64(left) {
		return 0, valErrorf("%s at byte offset %d declares %d %s, but only %d bytes remain; the module is corrupt",
			r.what, at, n, what, left)
	}
	if max > 0 && uint64(n) > uint64(max) {
		return 0, valErrorf("module declares %d %s, but at most %d are allowed", n, what, max)
	}
	return n, nil
}

// done checks that a section's contents were consumed exactly.
func (r *valReader) done() error {
	if r.pos != r.end {
		return valErrorf("%s has %d unexpected bytes at byte offset %d; section size mismatch", r.what, r.end-r.pos, r.pos)
	}
	return nil
}
