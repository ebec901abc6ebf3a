package sandbox

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// This file inserts interruption points into a validated module before it
// is compiled: a guest then calls the host at least every so many
// instructions it runs, by itself, with no help from another goroutine.
//
// Why the guest must count by itself: compiled Wasm cannot be preempted by
// Go. A flag that a host goroutine sets (wasmtime's epoch) does not help
// when it matters most: while Go's garbage collector stops the world, the
// goroutine that would set the flag cannot run, and a looping guest that
// never reaches the host keeps the world from stopping. So the rewrite
// keeps a budget, fuel, that the guest spends and refills itself:
//
//   - One mutable i32 global, the module's fuel, starts at fuelBudget.
//   - A function with loops copies it into a local of its own at entry,
//     spends from the local at the head of every loop iteration (a
//     subtraction and a branch on a register), and writes it back before
//     every call and every return, reloading it after each call.
//   - A function without loops that calls others spends from the global at
//     entry (recursion has no loops to count).
//   - A function without loops or calls runs in time bounded by its size:
//     it spends nothing itself; its callers count its size.
//
// Each point spends the number of instructions it covers (a loop's body,
// not counting nested loops; a function's straight-line code), so fuel
// measures instructions run. When the fuel would go below zero the guest
// refills it and calls the imported host function fabric.yield, where the
// host stops an instance that must stop (a deadline, a cancel) and lets
// Go's scheduler and collector preempt the goroutine.
//
// The same pass counts the stack that nested calls hold (stack.go), with
// a second global and a second import, fabric.stack_exhausted.
//
// The new imports come after the module's own imports, so every defined
// function's index grows by two: calls, ref.func, exports, the start
// function, element segments and the name section are renumbered. The
// globals come after the module's own, so no global index changes. Guest
// code cannot name the new globals or functions: validation checked every
// index against the module as uploaded.

// fuelBudget is the fuel a guest spends between two calls of yield: about
// a million instructions, 0.1 to 1 ms of guest code (see RATIONALE.md).
const fuelBudget = 1 << 20

// maxCost caps the fuel one point spends. A point covers code that runs at
// most once per visit, but in a large body with many branches (Go's
// compiler makes every function one loop around a jump table) little of it
// runs: counting all of it made a Go guest yield every 7 us.
const maxCost = 256

// yieldImport is the host function the inserted code calls.
const yieldImport = "yield"

// errInstrument wraps every reason a module could not be instrumented.
var errInstrument = errors.New("sandbox: cannot insert interruption points")

func instrumentErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInstrument, fmt.Sprintf(format, args...))
}

// section is one section of a module: its id and contents.
type section struct {
	id   byte
	body []byte
}

// splitSections splits a module (after the 8-byte header) into sections.
func splitSections(wasm []byte) ([]section, error) {
	if len(wasm) < 8 {
		return nil, instrumentErrorf("module too short")
	}
	var secs []section
	pos := 8
	for pos < len(wasm) {
		id := wasm[pos]
		size, n := uleb(wasm[pos+1:])
		if n == 0 {
			return nil, instrumentErrorf("malformed section header")
		}
		start := pos + 1 + n
		end := start + int(size)
		if end > len(wasm) || end < start {
			return nil, instrumentErrorf("section past the end of the module")
		}
		secs = append(secs, section{id: id, body: wasm[start:end]})
		pos = end
	}
	return secs, nil
}

// funcInfo is what the rewrite learns about a defined function in a
// first pass over the code.
type funcInfo struct {
	loops, calls bool
	// size counts its instructions; for a function without loops or
	// calls it is the fuel its callers spend for it.
	size uint32
	// frame is the stack a call of it takes from the stack budget
	// (stack.go).
	frame uint32
}

// instrumenter holds what the rewrite needs across sections.
type instrumenter struct {
	importedFuncs uint32
	types         uint32
	globals       uint32    // imported and defined
	sigs          []sigInfo // of each type
	importTypes   []uint32  // type of each imported function
	funcTypes     []uint32  // type of each defined function
	funcs         []funcInfo
	// indirectFrames is, per signature, the largest frame of a defined
	// function a call_indirect of that signature can reach.
	indirectFrames map[string]uint32
	yieldType      uint32 // the type index of () -> ()
	yieldFunc      uint32 // the new imports' function indices
	exhaustedFunc  uint32
	fuel           uint32 // the new globals' indices
	stack          uint32
	// The sections the module has of those the rewrite adds to.
	hasType, hasImport, hasGlobal bool
}

// addedImports is the number of functions the rewrite imports.
const addedImports = 2

// shift renumbers a function index of the module as uploaded.
func (in *instrumenter) shift(f uint32) uint32 {
	if f >= in.importedFuncs {
		return f + addedImports
	}
	return f
}

// callCost is the fuel a call spends in its caller (body[p:] is its
// function index): the size of a callee that spends none itself, and 1
// otherwise.
func (in *instrumenter) callCost(body []byte, p int) uint32 {
	f, n := uleb(body[p:])
	if n == 0 || f > 0xffffffff {
		return 1
	}
	if uint32(f) < in.importedFuncs || uint32(f)-in.importedFuncs >= uint32(len(in.funcs)) {
		return 1
	}
	fi := in.funcs[uint32(f)-in.importedFuncs]
	if fi.loops || fi.calls {
		return 1
	}
	return fi.size
}

// Code the rewrite inserts. Opcodes: 0x20 local.get, 0x21 local.set,
// 0x22 local.tee, 0x23 global.get, 0x24 global.set, 0x41 i32.const,
// 0x6b i32.sub, 0x48 i32.lt_s, 0x04 0x40 if (no result), 0x10 call,
// 0x0b end.

// spendLocal spends cost from the local fuel and yields when it runs out.
func (in *instrumenter) spendLocal(dst []byte, local, cost uint32) []byte {
	dst = append(dst, 0x20)
	dst = appendULEB(dst, uint64(local))
	return in.spendTail(dst, local, cost)
}

// spendTail subtracts cost from the i32 on the stack, keeps it in local,
// and yields when it went below zero.
func (in *instrumenter) spendTail(dst []byte, local, cost uint32) []byte {
	dst = append(dst, 0x41)
	dst = appendCost(dst, cost)
	dst = append(dst, 0x6b, 0x22)
	dst = appendULEB(dst, uint64(local))
	dst = append(dst, 0x41, 0x00, 0x48, 0x04, 0x40, 0x41)
	dst = appendSLEB(dst, fuelBudget)
	dst = append(dst, 0x21)
	dst = appendULEB(dst, uint64(local))
	dst = append(dst, 0x10)
	dst = appendULEB(dst, uint64(in.yieldFunc))
	return append(dst, 0x0b)
}

// spendGlobal spends cost from the global fuel and yields when it runs out.
func (in *instrumenter) spendGlobal(dst []byte, cost uint32) []byte {
	dst = append(dst, 0x23)
	dst = appendULEB(dst, uint64(in.fuel))
	dst = append(dst, 0x41)
	dst = appendSLEB(dst, int64(min(cost, maxCost)))
	dst = append(dst, 0x6b, 0x24)
	dst = appendULEB(dst, uint64(in.fuel))
	dst = append(dst, 0x23)
	dst = appendULEB(dst, uint64(in.fuel))
	dst = append(dst, 0x41, 0x00, 0x48, 0x04, 0x40, 0x41)
	dst = appendSLEB(dst, fuelBudget)
	dst = append(dst, 0x24)
	dst = appendULEB(dst, uint64(in.fuel))
	dst = append(dst, 0x10)
	dst = appendULEB(dst, uint64(in.yieldFunc))
	return append(dst, 0x0b)
}

// store writes the local fuel back to the global.
func (in *instrumenter) store(dst []byte, local uint32) []byte {
	dst = append(dst, 0x20)
	dst = appendULEB(dst, uint64(local))
	dst = append(dst, 0x24)
	return appendULEB(dst, uint64(in.fuel))
}

// load reads the global fuel into the local.
func (in *instrumenter) load(dst []byte, local uint32) []byte {
	dst = append(dst, 0x23)
	dst = appendULEB(dst, uint64(in.fuel))
	dst = append(dst, 0x21)
	return appendULEB(dst, uint64(local))
}

// instrument returns the module with interruption points inserted. wasm
// must already have passed Validate; an error means the module uses
// something the rewrite does not know (it is then refused, never run
// without them).
func instrument(wasm []byte) ([]byte, error) {
	secs, err := splitSections(wasm)
	if err != nil {
		return nil, err
	}
	in, err := scanModule(secs)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(wasm)+len(wasm)/4+64)
	out = append(out, wasm[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendULEB(out, uint64(len(body)))
		out = append(out, body...)
	}
	typeSec := func(old []byte) []byte { // old: nil when the module has none
		body := appendULEB(nil, uint64(in.types+1))
		if old != nil {
			_, n := uleb(old)
			body = append(body, old[n:]...)
		}
		return append(body, 0x60, 0x00, 0x00) // () -> ()
	}
	importSec := func(old []byte) []byte {
		count := uint64(0)
		var rest []byte
		if old != nil {
			c, n := uleb(old)
			count, rest = c, old[n:]
		}
		body := appendULEB(nil, count+addedImports)
		body = append(body, rest...)
		for _, name := range []string{yieldImport, stackExhaustedImport} {
			body = appendName(body, "fabric")
			body = appendName(body, name)
			body = append(body, 0x00)
			body = appendULEB(body, uint64(in.yieldType))
		}
		return body
	}
	globalSec := func(old []byte) ([]byte, error) {
		var body []byte
		if old != nil {
			r := &wreader{b: old}
			c := r.u32()
			body = appendULEB(body, uint64(c)+2)
			for i := uint32(0); i < c && r.err == nil; i++ {
				body = append(body, r.bytes(2)...) // value type, mutability
				var err error
				if body, err = in.constExpr(r, body); err != nil {
					return nil, err
				}
			}
			if r.err != nil || r.p != len(old) {
				return nil, instrumentErrorf("malformed global section")
			}
		} else {
			body = appendULEB(body, 2)
		}
		body = append(body, 0x7f, 0x01, 0x41) // mut i32 = fuelBudget
		body = appendSLEB(body, fuelBudget)
		body = append(body, 0x0b, 0x7f, 0x01, 0x41) // mut i32 = StackBudget
		body = appendSLEB(body, StackBudget)
		return append(body, 0x0b), nil
	}
	exportSec := func(old []byte) ([]byte, error) {
		r := &wreader{b: old}
		c := r.u32()
		body := appendULEB(nil, uint64(c))
		for i := uint32(0); i < c && r.err == nil; i++ {
			name := r.name()
			kind := r.byte()
			idx := r.u32()
			if kind == 0x00 {
				idx = in.shift(idx)
			}
			body = appendName(body, name)
			body = append(body, kind)
			body = appendULEB(body, uint64(idx))
		}
		if r.err != nil || r.p != len(old) {
			return nil, instrumentErrorf("malformed export section")
		}
		return body, nil
	}

	// Sections the module lacks go before the first section that ranks
	// after them.
	pendingType, pendingImport, pendingGlobal := !in.hasType, !in.hasImport, !in.hasGlobal
	flushBelow := func(rank int) {
		if pendingType && rank > wasmSectionRank[wasmSecType] {
			emit(wasmSecType, typeSec(nil))
			pendingType = false
		}
		if pendingImport && rank > wasmSectionRank[wasmSecImport] {
			emit(wasmSecImport, importSec(nil))
			pendingImport = false
		}
		if pendingGlobal && rank > wasmSectionRank[wasmSecGlobal] {
			g, _ := globalSec(nil)
			emit(wasmSecGlobal, g)
			pendingGlobal = false
		}
	}
	for _, s := range secs {
		if int(s.id) < len(wasmSectionRank) && wasmSectionRank[s.id] > 0 {
			flushBelow(wasmSectionRank[s.id])
		}
		var body []byte
		var err error
		switch s.id {
		case wasmSecType:
			body = typeSec(s.body)
		case wasmSecImport:
			body = importSec(s.body)
		case wasmSecGlobal:
			body, err = globalSec(s.body)
		case wasmSecExport:
			body, err = exportSec(s.body)
		case wasmSecStart:
			r := &wreader{b: s.body}
			f := r.u32()
			if r.err != nil {
				return nil, instrumentErrorf("malformed start section")
			}
			body = appendULEB(nil, uint64(in.shift(f)))
		case wasmSecElement:
			body, err = in.elementSection(s.body)
		case wasmSecCode:
			body, err = in.codeSection(s.body)
		case wasmSecCustom:
			body, err = in.customSection(s.body)
			if body == nil && err == nil {
				continue // dropped
			}
		default:
			body = s.body
		}
		if err != nil {
			return nil, err
		}
		emit(s.id, body)
	}
	flushBelow(1 << 30)
	return out, nil
}

// scanModule is the rewrite's first pass: types, imports, functions,
// globals, and what each function body does.
func scanModule(secs []section) (*instrumenter, error) {
	in := &instrumenter{}
	for _, s := range secs {
		r := &wreader{b: s.body}
		switch s.id {
		case wasmSecType:
			in.hasType = true
			in.types = r.u32()
			for i := uint32(0); i < in.types && r.err == nil; i++ {
				if form := r.byte(); form != 0x60 {
					return nil, instrumentErrorf("type %d is not a function type (0x%02x)", i, form)
				}
				np := r.u32()
				ps := r.bytes(int(np))
				nr := r.u32()
				rs := r.bytes(int(nr))
				sig := sigInfo{params: np, results: nr, key: string(ps) + "/" + string(rs)}
				for _, t := range ps {
					sig.bytes += valueSize(t)
				}
				for _, t := range rs {
					sig.bytes += valueSize(t)
				}
				in.sigs = append(in.sigs, sig)
			}
		case wasmSecImport:
			in.hasImport = true
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				r.name()
				r.name()
				kind := r.byte()
				switch kind {
				case 0x00:
					t := r.u32()
					if r.err == nil && t >= uint32(len(in.sigs)) {
						return nil, instrumentErrorf("imported function %d has type %d, which does not exist", in.importedFuncs, t)
					}
					in.importTypes = append(in.importTypes, t)
					in.importedFuncs++
				case 0x01:
					r.byte()
					r.limits()
				case 0x02:
					r.limits()
				case 0x03:
					r.byte()
					r.byte()
					in.globals++
				case 0x04: // a tag (exception handling): attribute, type
					r.byte()
					r.u32()
				default:
					return nil, instrumentErrorf("import of unknown kind %d", kind)
				}
			}
		case wasmSecFunction:
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				t := r.u32()
				if t >= uint32(len(in.sigs)) {
					return nil, instrumentErrorf("function %d has type %d, which does not exist", i, t)
				}
				in.funcTypes = append(in.funcTypes, t)
			}
		case wasmSecGlobal:
			in.hasGlobal = true
			in.globals += r.u32()
		case wasmSecData:
			// Copied as it is, but read through first: wazero allocates
			// as many segments as the section claims before reading them.
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				switch flags := r.u32(); flags {
				case 0, 2:
					if flags == 2 {
						r.u32() // memory index
					}
					if _, err := in.constExpr(r, nil); err != nil {
						return nil, err
					}
				case 1:
				default:
					return nil, instrumentErrorf("data segment with flags %d", flags)
				}
				size := r.u32()
				r.bytes(int(size))
			}
			if r.err == nil && r.p != len(s.body) {
				return nil, instrumentErrorf("malformed data section")
			}
		case wasmSecCode:
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				size := r.u32()
				if int(i) >= len(in.funcTypes) {
					return nil, instrumentErrorf("more function bodies than functions")
				}
				fi, err := in.scanFunction(r.bytes(int(size)), in.sigs[in.funcTypes[i]], &indexLimits{globals: in.globals, types: in.types})
				if err != nil {
					return nil, fmt.Errorf("%w (function %d)", err, in.importedFuncs+i)
				}
				in.funcs = append(in.funcs, fi)
			}
		}
		if r.err != nil {
			return nil, instrumentErrorf("section %d: %v", s.id, r.err)
		}
	}
	if len(in.funcs) != len(in.funcTypes) {
		return nil, instrumentErrorf("%d function bodies for %d functions", len(in.funcs), len(in.funcTypes))
	}
	in.yieldType = in.types
	in.yieldFunc = in.importedFuncs
	in.exhaustedFunc = in.importedFuncs + 1
	in.fuel = in.globals
	in.stack = in.globals + 1
	in.indirectFrames = make(map[string]uint32)
	for i, fi := range in.funcs {
		k := in.sigs[in.funcTypes[i]].key
		in.indirectFrames[k] = max(in.indirectFrames[k], fi.frame)
	}

	return in, nil
}

func appendName(dst []byte, s string) []byte {
	dst = appendULEB(dst, uint64(len(s)))
	return append(dst, s...)
}

// constExpr copies a constant expression up to and including its end,
// renumbering ref.func.
func (in *instrumenter) constExpr(r *wreader, dst []byte) ([]byte, error) {
	r.lim = &indexLimits{globals: in.globals, types: in.types}
	defer func() { r.lim = nil }()
	for r.err == nil {
		start := r.p
		op := r.byte()
		switch op {
		case 0x0b:
			return append(dst, 0x0b), nil
		case 0xd2: // ref.func
			f := r.u32()
			dst = append(dst, 0xd2)
			dst = appendULEB(dst, uint64(in.shift(f)))
			continue
		}
		r.p = start
		if err := r.skipInstr(); err != nil {
			return nil, err
		}
		dst = append(dst, r.b[start:r.p]...)
	}
	return nil, instrumentErrorf("malformed constant expression: %v", r.err)
}

// elementSection renumbers the function indices of element segments.
func (in *instrumenter) elementSection(sec []byte) ([]byte, error) {
	r := &wreader{b: sec}
	n := r.u32()
	body := appendULEB(nil, uint64(n))
	var err error
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		if flags > 7 {
			return nil, instrumentErrorf("element segment with flags %d", flags)
		}
		body = appendULEB(body, uint64(flags))
		if flags&0x02 != 0 && flags&0x01 == 0 { // explicit table index
			body = appendULEB(body, uint64(r.u32()))
		}
		if flags&0x01 == 0 { // active: an offset expression
			if body, err = in.constExpr(r, body); err != nil {
				return nil, err
			}
		}
		exprs := flags&0x04 != 0
		if flags&0x03 != 0 { // an element kind or a reference type
			body = append(body, r.byte())
		}
		count := r.u32()
		body = appendULEB(body, uint64(count))
		for j := uint32(0); j < count && r.err == nil; j++ {
			if exprs {
				if body, err = in.constExpr(r, body); err != nil {
					return nil, err
				}
				continue
			}
			body = appendULEB(body, uint64(in.shift(r.u32())))
		}
	}
	if r.err != nil || r.p != len(sec) {
		return nil, instrumentErrorf("malformed element section")
	}
	return body, nil
}

// customSection renumbers the function names of the name section and
// drops DWARF sections (their code offsets no longer hold). It returns
// nil, nil for a section to drop.
//
// The name section is also cleaned: only the subsections wazero reads
// (module, function and local names) are kept, and only when every count
// in them matches the entries that follow. wazero v1.12 allocates a local
// name map as large as the count a module claims, so a 228-byte module
// claiming 2^31 locals made it allocate 24 GiB (found by FuzzInstrument).
func (in *instrumenter) customSection(sec []byte) ([]byte, error) {
	r := &wreader{b: sec}
	name := r.name()
	if r.err != nil {
		return nil, nil // custom sections are optional: drop a malformed one
	}
	if len(name) >= 7 && name[:7] == ".debug_" {
		return nil, nil
	}
	if name != "name" {
		return sec, nil
	}
	out := appendName(nil, name)
	for r.p < len(sec) && r.err == nil {
		id := r.byte()
		size := r.u32()
		sub := r.bytes(int(size))
		if r.err != nil {
			return nil, nil
		}
		sr := &wreader{b: sub}
		valid := true // every name is UTF-8, or wazero refuses the module
		readName := func() string {
			n := sr.name()
			valid = valid && utf8.ValidString(n)
			return n
		}
		var nb []byte
		switch id {
		case 0: // the module's name
			nb = appendName(nil, readName())
		case 1, 2: // function names, local names
			count := sr.u32()
			nb = appendULEB(nil, uint64(count))
			for i := uint32(0); i < count && sr.err == nil; i++ {
				nb = appendULEB(nb, uint64(in.shift(sr.u32())))
				if id == 1 {
					nb = appendName(nb, readName())
					continue
				}
				locals := sr.u32()
				nb = appendULEB(nb, uint64(locals))
				for j := uint32(0); j < locals && sr.err == nil; j++ {
					nb = appendULEB(nb, uint64(sr.u32()))
					nb = appendName(nb, readName())
				}
			}
		default:
			continue // wazero does not read it
		}
		if sr.err != nil || sr.p != len(sub) || !valid {
			return nil, nil // a malformed name section only names things: drop it
		}
		out = append(out, id)
		out = appendULEB(out, uint64(len(nb)))
		out = append(out, nb...)
	}
	return out, nil
}

// scanFunction learns whether a body (of signature sig) has loops and
// calls, its size, and its frame.
func (in *instrumenter) scanFunction(body []byte, sig sigInfo, lim *indexLimits) (funcInfo, error) {
	var fi funcInfo
	r := &wreader{b: body, lim: lim}
	groups := r.u32()
	var localBytes uint64
	for i := uint32(0); i < groups && r.err == nil; i++ {
		n := r.u32()
		localBytes += uint64(n) * valueSize(r.byte())
	}
	if r.err != nil {
		return fi, instrumentErrorf("malformed locals")
	}
	var depth stackDepth
	for r.p < len(body) {
		switch r.peek() {
		case 0x03:
			fi.loops = true
		case 0x10, 0x11, 0x12, 0x13:
			fi.calls = true
		}
		in.step(&depth, r)
		if err := r.skipInstr(); err != nil {
			return fi, err
		}
		fi.size++
	}
	fi.frame = frameSize(sig, localBytes, depth.max)
	return fi, nil
}

// codeSection rewrites every function body.
func (in *instrumenter) codeSection(sec []byte) ([]byte, error) {
	r := &wreader{b: sec}
	n := r.u32()
	out := make([]byte, 0, len(sec)+len(sec)/4+16)
	out = appendULEB(out, uint64(n))
	var fn []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil || int(i) >= len(in.funcs) {
			break
		}
		var err error
		fn, err = in.function(i, body, fn[:0])
		if err != nil {
			return nil, fmt.Errorf("%w (function %d)", err, in.importedFuncs+i)
		}
		out = appendULEB(out, uint64(len(fn)))
		out = append(out, fn...)
	}
	if r.err != nil || r.p != len(sec) {
		return nil, instrumentErrorf("malformed code section")
	}
	return out, nil
}

// block is an open block of a body being rewritten.
type block struct {
	loop bool
	// wrapped is set for a loop given blocks around it (wrapLoop): a
	// branch from inside it to a label outside it moves out by
	// wrapLabels.
	wrapped bool
	// at is where the fuel spent at a loop's head is patched in, in the
	// output; cost accumulates the size of the loop's own code.
	at   int
	cost uint32
}

// A loop that is not unrolled spends at its head and, when the fuel runs
// out, branches out of itself to a yield placed after it, and back in:
//
//	block $after (the loop's type)
//	  loop $retry
//	    block $out
//	      loop $L (the loop's type)
//	        spend; br_if $out when the fuel ran out
//	        the body (labels outside the loop move out by wrapLabels)
//	      end
//	      br $after
//	    end
//	    refill; call yield
//	    br $retry
//	  end
//	  unreachable
//	end
//
// With the call out of the loop, the compiler need not keep the loop's
// values where a call would not clobber them: a call at the head cost a
// Go guest's matmul 12% more than the spend itself. Loops that take
// parameters (a block type by index) keep the call at their head.
const wrapLabels = 3

// function rewrites body, the i-th defined function, into dst.
func (in *instrumenter) function(i uint32, body, dst []byte) ([]byte, error) {
	fi := in.funcs[i]
	r := &wreader{b: body}
	groups := r.u32()
	locals := uint64(in.sigs[in.funcTypes[i]].params)
	for g := uint32(0); g < groups && r.err == nil; g++ {
		locals += uint64(r.u32())
		r.byte()
	}
	if r.err != nil {
		return nil, instrumentErrorf("malformed locals")
	}
	if !fi.loops {
		dst = append(dst, body[:r.p]...)
		if fi.calls {
			dst = in.spendGlobal(dst, fi.size)
		}
		return in.copyCode(r, dst)
	}
	if locals >= 1<<31 {
		return nil, instrumentErrorf("too many locals to add one")
	}
	fuel := uint32(locals) // the new local
	dst = appendULEB(dst, uint64(groups)+1)
	_, n := uleb(body)
	dst = append(dst, body[n:r.p]...)
	dst = append(dst, 0x01, 0x7f) // one i32
	// Entry: the local takes the global, less this function's own code
	// outside loops (counted below, patched at the end of the body).
	dst = append(dst, 0x23)
	dst = appendULEB(dst, uint64(in.fuel))
	entry := len(dst)
	dst = in.spendTail(dst, fuel, 0)
	stack := []block{{}} // the function's own block
	// relabel turns a label seen at the top of the stack into the label
	// in the output: wrapped loops between here and the target add blocks.
	relabel := func(l uint32) uint32 {
		top := len(stack) - 1
		out := l
		for k := top; k > top-int(l) && k >= 0; k-- {
			if stack[k].wrapped {
				out += wrapLabels
			}
		}
		return out
	}
	for r.p < len(body) {
		start := r.p
		op := r.byte()
		top := &stack[len(stack)-1]
		top.cost++
		switch op {
		case 0x10, 0x11, 0x12, 0x13: // call, call_indirect, return_call(_indirect)
			dst = in.store(dst, fuel)
			if op == 0x10 || op == 0x12 {
				top.cost += in.callCost(body, r.p)
			}
			var err error
			if dst, err = in.call(r, op, dst); err != nil {
				return nil, err
			}
			if op == 0x10 || op == 0x11 {
				dst = in.load(dst, fuel)
			}
			continue
		case 0xd2: // ref.func
			f := r.u32()
			if r.err != nil {
				return nil, instrumentErrorf("truncated ref.func")
			}
			dst = append(dst, op)
			dst = appendULEB(dst, uint64(in.shift(f)))
			continue
		case 0x0f: // return
			dst = in.store(dst, fuel)
		case 0x0c, 0x0d, 0x0e: // br, br_if, br_table
			funcLabel := uint32(len(stack) - 1)
			var err error
			if dst, err = in.branch(r, op, dst, fuel, func(l uint32) bool { return l == funcLabel }, relabel); err != nil {
				return nil, err
			}
			continue
		case 0x0b: // end
			if len(stack) == 1 {
				if r.p != len(body) {
					return nil, instrumentErrorf("code after the end of the body")
				}
				dst = in.store(dst, fuel)
				dst = append(dst, 0x0b)
				// The cost of the function's own code, spent at entry.
				patchCost(dst, entry, top.cost)
				return dst, nil
			}
			b := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if !b.loop {
				stack[len(stack)-1].cost += b.cost
				break
			}
			patchCost(dst, b.at, b.cost)
			if b.wrapped {
				dst = append(dst, 0x0b, 0x0c, 0x02, 0x0b, 0x41) // end $L; br $after; end $out; i32.const
				dst = appendSLEB(dst, fuelBudget)
				dst = append(dst, 0x21) // local.set
				dst = appendULEB(dst, uint64(fuel))
				dst = append(dst, 0x10) // call yield
				dst = appendULEB(dst, uint64(in.yieldFunc))
				dst = append(dst, 0x0c, 0x00, 0x0b, 0x00, 0x0b) // br $retry; end $retry; unreachable; end $after
				continue
			}
		}
		r.p = start
		if err := r.skipInstr(); err != nil {
			return nil, err
		}
		dst = append(dst, body[start:r.p]...)
		switch op {
		case 0x02, 0x04: // block, if: their code counts in the enclosing loop
			stack = append(stack, block{})
		case 0x03:
			head := body[start:r.p]
			dst = dst[:len(dst)-len(head)] // written below
			if end, ok := unrollable(body, start, r.p); ok {
				var err error
				dst, err = in.unroll(dst, head, body[r.p:end], fuel, len(stack), relabel)
				if err != nil {
					return nil, err
				}
				r.p = end + 1 // past the loop's end
				continue
			}
			if bt := head[1]; bt == 0x40 || (bt >= 0x6f && bt <= 0x7f) {
				dst = append(dst, 0x02, bt, 0x03, 0x40, 0x02, 0x40, 0x03, bt) // $after, $retry, $out, $L
				stack = append(stack, block{loop: true, wrapped: true, at: len(dst)})
				dst = in.spendLocalOut(dst, fuel)
				continue
			}
			dst = append(dst, head...)
			stack = append(stack, block{loop: true, at: len(dst)})
			dst = in.spendLocal(dst, fuel, 0)
		}
	}
	return nil, instrumentErrorf("body without an end")
}

// branch copies a br, br_if or br_table (op, already read from r) with
// its labels relabelled, writing the local fuel back first when one of
// them leaves the function (toFunction, on the label as written).
func (in *instrumenter) branch(r *wreader, op byte, dst []byte, fuel uint32, toFunction func(uint32) bool, relabel func(uint32) uint32) ([]byte, error) {
	cnt := uint32(0) // br_table: the labels beside the default
	if op == 0x0e {
		cnt = r.u32()
	}
	labels := make([]uint32, 0, min(cnt+1, 1024))
	store := false
	for i := uint32(0); i <= cnt && r.err == nil; i++ {
		l := r.u32()
		store = store || toFunction(l)
		labels = append(labels, relabel(l))
	}
	if r.err != nil {
		return nil, instrumentErrorf("truncated branch 0x%02x", op)
	}
	if store {
		dst = in.store(dst, fuel)
	}
	dst = append(dst, op)
	if op == 0x0e {
		dst = appendULEB(dst, uint64(cnt))
	}
	for _, l := range labels {
		dst = appendULEB(dst, uint64(l))
	}
	return dst, nil
}

// spendLocalOut spends from the local fuel at the head of a wrapped loop
// and branches out of the loop when it ran out. The cost is patched later.
func (in *instrumenter) spendLocalOut(dst []byte, local uint32) []byte {
	dst = append(dst, 0x20)
	dst = appendULEB(dst, uint64(local))
	dst = append(dst, 0x41)
	dst = appendCost(dst, 0)
	dst = append(dst, 0x6b, 0x22)
	dst = appendULEB(dst, uint64(local))
	return append(dst, 0x41, 0x00, 0x48, 0x0d, 0x01) // i32.const 0; i32.lt_s; br_if $out
}

// Small innermost loops are unrolled, so that the fuel is spent once per
// unrollCopies iterations: in a tight loop a spend every iteration cost
// 16-20% (a 256x256 float64 matmul in a C guest), every fourth about a
// quarter of that. A copy runs the body once; where the body would
// continue the loop it goes on to the next copy, where it would leave the
// loop it leaves all of them:
//
//	block $exit (the loop's type)
//	  loop $L (the loop's type)
//	    spend (unrollCopies times the body's size)
//	    block $C3
//	      block $C2
//	        block $C1
//	          copy 0: continue is br $C1, falling off the end is br $exit
//	        end
//	        copy 1: continue is br $C2, ...
//	      end
//	      copy 2: continue is br $C3, ...
//	    end
//	    copy 3: continue is br $L, falling off the end leaves $L and $exit
//	  end
//	end
//
// Labels outside the loop move out by the blocks added around each copy.
const (
	unrollCopies  = 4
	unrollMaxSize = 200 // instructions in the body of a loop unrolled
)

// unrollable reports whether the loop whose instruction spans
// body[start:p] (p: after its block type) can be unrolled, and where its
// end is: no loops or calls inside, no parameters, and a small body.
func unrollable(body []byte, start, p int) (end int, ok bool) {
	if bt := body[start+1]; bt != 0x40 && (bt < 0x6f || bt > 0x7f) {
		return 0, false // a type index: the loop may take parameters
	}
	r := &wreader{b: body, p: p}
	depth, n := 0, 0
	for r.p < len(body) && n <= unrollMaxSize {
		at := r.p
		switch r.peek() {
		case 0x03, 0x10, 0x11, 0x12, 0x13:
			return 0, false
		case 0x02, 0x04:
			depth++
		case 0x0b:
			if depth == 0 {
				return at, true
			}
			depth--
		}
		if r.skipInstr() != nil {
			return 0, false
		}
		n++
	}
	return 0, false
}

// unroll writes the unrolled form of a loop: head is its instruction
// (with its block type), loopBody its instructions up to its end. outer
// counts the blocks around it, the function's own included.
func (in *instrumenter) unroll(dst, head, loopBody []byte, fuel uint32, outer int, relabelOuter func(uint32) uint32) ([]byte, error) {
	dst = append(dst, 0x02) // block $exit, of the loop's type
	dst = append(dst, head[1:]...)
	dst = append(dst, 0x03) // loop $L, of the loop's type: the last copy falls off its end
	dst = append(dst, head[1:]...)
	spend := len(dst)
	dst = in.spendLocal(dst, fuel, 0)
	for range unrollCopies - 1 {
		dst = append(dst, 0x02, 0x40) // block $Ci
	}
	var size uint32
	for i := range unrollCopies {
		var n uint32
		var err error
		// Blocks added between a copy's body and the loop: the $C
		// blocks still open around it.
		added := uint32(unrollCopies - 1 - i)
		dst, n, err = in.copyLoopBody(dst, loopBody, fuel, added, outer, relabelOuter)
		if err != nil {
			return nil, err
		}
		size = n
		if i < unrollCopies-1 {
			dst = append(dst, 0x0c) // falling off the end leaves the loop: br $exit
			dst = appendULEB(dst, uint64(added+1))
			dst = append(dst, 0x0b) // end $C(i+1)
		}
	}
	dst = append(dst, 0x0b, 0x0b) // end $L, end $exit
	patchCost(dst, spend, unrollCopies*min(size+1, maxCost/unrollCopies))
	return dst, nil
}

// copyLoopBody copies one copy of a loop body. A branch to the loop (a
// continue) goes to the block added blocks out instead (the next copy;
// added is 0 for the last, whose continue goes to the loop itself); a
// branch past the loop moves out by added+1 (the $C blocks and $exit),
// and by what relabelOuter adds for the blocks outside the loop. It
// returns the number of instructions copied.
func (in *instrumenter) copyLoopBody(dst, body []byte, fuel, added uint32, outer int, relabelOuter func(uint32) uint32) ([]byte, uint32, error) {
	r := &wreader{b: body}
	var depth, n uint32 // depth: blocks open inside the body
	relabel := func(l uint32) uint32 {
		if l <= depth {
			return l // inside the body, or the loop: the next copy is as far
		}
		// l-depth-1 counts from the loop's enclosing block.
		return depth + 1 + added + 1 + relabelOuter(l-depth-1)
	}
	// A branch that leaves the function writes the fuel back first.
	toFunction := func(l uint32) bool { return l == depth+uint32(outer) }
	for r.p < len(body) {
		start := r.p
		op := r.byte()
		n++
		switch op {
		case 0x0c, 0x0d, 0x0e: // br, br_if, br_table
			var err error
			if dst, err = in.branch(r, op, dst, fuel, toFunction, relabel); err != nil {
				return nil, 0, err
			}
			continue
		case 0xd2: // ref.func
			f := r.u32()
			if r.err != nil {
				return nil, 0, instrumentErrorf("truncated ref.func")
			}
			dst = append(dst, op)
			dst = appendULEB(dst, uint64(in.shift(f)))
			continue
		case 0x0f: // return
			dst = in.store(dst, fuel)
		case 0x02, 0x04:
			depth++
		case 0x0b:
			depth--
		}
		r.p = start
		if err := r.skipInstr(); err != nil {
			return nil, 0, err
		}
		dst = append(dst, body[start:r.p]...)
	}
	return dst, n, nil
}

// appendCost appends a cost as a signed LEB128 padded to five bytes, so
// that patchCost can rewrite it in place once the code it covers is known.
func appendCost(dst []byte, cost uint32) []byte {
	return append(dst, byte(cost)|0x80, byte(cost>>7)|0x80, byte(cost>>14)|0x80, byte(cost>>21)|0x80, byte(cost>>28)&0x07)
}

// patchCost sets the cost of the spend at dst[at:], written by spendLocal
// or spendTail. Costs are capped at fuelBudget.
func patchCost(dst []byte, at int, cost uint32) {
	p := at
	if dst[p] == 0x20 { // spendLocal: local.get first
		p++
		_, n := uleb(dst[p:])
		p += n
	}
	appendCost(dst[:p+1], min(cost, maxCost))
}

// copyCode copies the rest of a body, renumbering calls and ref.func.
func (in *instrumenter) copyCode(r *wreader, dst []byte) ([]byte, error) {
	body := r.b
	for r.p < len(body) {
		start := r.p
		switch op := r.byte(); op {
		case 0x10, 0x11, 0x12, 0x13: // calls
			var err error
			if dst, err = in.call(r, op, dst); err != nil {
				return nil, err
			}
			continue
		case 0xd2: // ref.func
			f := r.u32()
			if r.err != nil {
				return nil, instrumentErrorf("truncated instruction 0x%02x", op)
			}
			dst = append(dst, op)
			dst = appendULEB(dst, uint64(in.shift(f)))
			continue
		}
		r.p = start
		if err := r.skipInstr(); err != nil {
			return nil, err
		}
		dst = append(dst, body[start:r.p]...)
	}
	return dst, nil
}

// call copies a call instruction (op, already read from r), renumbering
// a direct call's function and taking the callee's frame from the stack
// budget around it.
func (in *instrumenter) call(r *wreader, op byte, dst []byte) ([]byte, error) {
	x := r.u32()
	table := uint32(0)
	indirect := op == 0x11 || op == 0x13
	if indirect {
		table = r.u32()
	}
	if r.err != nil {
		return nil, instrumentErrorf("truncated call 0x%02x", op)
	}
	if indirect && x >= uint32(len(in.sigs)) {
		return nil, instrumentErrorf("call_indirect of type %d, which does not exist", x)
	}
	w := uint32(0)
	if op == 0x10 || op == 0x11 { // a tail call replaces its caller's frame
		w = in.callFrame(op, x)
	}
	if w > 0 {
		dst = in.chargeStack(dst, w)
	}
	dst = append(dst, op)
	if indirect {
		dst = appendULEB(dst, uint64(x))
		dst = appendULEB(dst, uint64(table))
	} else {
		dst = appendULEB(dst, uint64(in.shift(x)))
	}
	if w > 0 {
		dst = in.releaseStack(dst, w)
	}
	return dst, nil
}
