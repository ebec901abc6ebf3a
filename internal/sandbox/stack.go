package sandbox

import (
	"errors"
	"fmt"
)

// This file bounds the stack one instance can make its host grow. wazero
// runs compiled guest code on a stack it allocates per call chain and
// doubles as calls nest, up to about 84 MiB (168 MiB for the moment both
// copies live); nothing in its configuration lowers that. A recursion
// that never ends in each of a worker's instances would take that much
// per instance out of the one process they share, and its memory limit
// would then end all of them. So the rewrite in instrument.go keeps a
// second budget beside the fuel, in bytes of stack:
//
//   - One more mutable i32 global starts at StackBudget.
//   - Before a call of a function that itself calls (or of a call_indirect)
//     the caller takes the callee's frame from it, and calls the imported
//     fabric.stack_exhausted when too little is left; after the call it
//     puts the frame back. A trap discards the instance, so a call that
//     does not return never needs to put anything back.
//   - A call of a function that calls nothing is not counted: its frame
//     is bounded by its size, and only one such frame is ever on top of
//     the counted ones.
//
// A frame's size is an upper bound of what wazero's compiler can spill:
// every parameter, result and local, and every value the operand stack
// can hold at once (frameSize). Measured against wazero v1.12's stacks, it
// is 1.2-3.5x what a frame really takes (RATIONALE.md, "A stack budget
// per instance").

// StackBudget is the stack, in bytes as frameSize counts them, that one
// instance's nested calls may hold at once.
const StackBudget = 16 << 20

// stackExhaustedImport is the host function the inserted code calls when
// a call would take the stack past StackBudget.
const stackExhaustedImport = "stack_exhausted"

// ErrStackExhausted is the error of a call whose calls nested past the
// instance's StackBudget. The instance is discarded, as after any trap.
var ErrStackExhausted = errors.New("sandbox: guest stack exhausted")

// errStackBudget is the value the host function panics with.
var errStackBudget = fmt.Errorf("%w: calls nested past the instance's stack budget of %d MiB (a recursion that does not end?)",
	ErrStackExhausted, StackBudget>>20)

// Sizes frameSize counts, in bytes.
const (
	frameBase  = 96 // return address, frame pointer, saved registers, call_indirect's checks
	slotSize   = 8  // a spilled i32, i64, f32, f64 or reference
	v128Size   = 16 // a spilled v128
	stackValue = 16 // a value on the operand stack, whatever its type
)

// valueSize is the stack a value of type t takes when spilled.
func valueSize(t byte) uint64 {
	if t == 0x7b {
		return v128Size
	}
	return slotSize
}

// sigInfo is what the stack budget needs of a function type.
type sigInfo struct {
	params, results uint32
	bytes           uint64 // spill size of the parameters and results
	key             string // the signature, for call_indirect's type check
}

// stackDepth bounds the operand stack of a function body from above: the
// most values it can hold at once. Every instruction that can leave more
// values than it took is counted as doing so; those that take more than
// they leave are counted only where it is certain (numeric operators,
// stores, sets, drops, branches on a condition), and others as neutral.
// Unreachable code may pop values that are not there: the depth never
// goes below that of its block's entry.
type stackDepth struct {
	d, max int64
	blocks []depthBlock
}

// depthBlock is an open block: the depth below its parameters, and its
// parameter and result counts.
type depthBlock struct{ entry, params, results int64 }

func (s *stackDepth) add(n int64) {
	s.d += n
	floor := int64(0)
	if k := len(s.blocks); k > 0 {
		floor = s.blocks[k-1].entry
	}
	s.d = max(s.d, floor)
	s.max = max(s.max, s.d)
}

// blockArity returns a block type's parameter and result counts; r is
// at the block type.
func (in *instrumenter) blockArity(r *wreader) (params, results int64) {
	c := r.peek()
	if c == 0x40 {
		return 0, 0
	}
	if c >= 0x6f && c <= 0x7f {
		return 0, 1
	}
	v, n := sleb32(r.b[r.p:])
	if n == 0 || v < 0 || int(v) >= len(in.sigs) {
		return 0, 0 // skipInstr reports it
	}
	return int64(in.sigs[v].params), int64(in.sigs[v].results)
}

// funcType returns the type index of function f (as uploaded).
func (in *instrumenter) funcType(f uint32) (uint32, bool) {
	if f < in.importedFuncs {
		return in.importTypes[f], true
	}
	if d := f - in.importedFuncs; d < uint32(len(in.funcTypes)) {
		return in.funcTypes[d], true
	}
	return 0, false
}

// binaryNumeric reports whether op takes two values and leaves one:
// comparisons and arithmetic of two operands.
func binaryNumeric(op byte) bool {
	switch {
	case op >= 0x46 && op <= 0x4f, op >= 0x51 && op <= 0x66, op >= 0x6a && op <= 0x78,
		op >= 0x7c && op <= 0x8a, op >= 0x92 && op <= 0x98, op >= 0xa0 && op <= 0xa6:
		return true
	}
	return false
}

// step accounts the instruction at r.p, before it is skipped.
func (in *instrumenter) step(s *stackDepth, r *wreader) {
	op := r.peek()
	imm := &wreader{b: r.b, p: r.p + 1}
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		p, res := in.blockArity(imm)
		if op == 0x04 {
			s.add(-1)
		}
		s.blocks = append(s.blocks, depthBlock{entry: max(s.d-p, 0), params: p, results: res})
	case op == 0x05: // else
		if k := len(s.blocks); k > 0 {
			s.d = s.blocks[k-1].entry + s.blocks[k-1].params
		}
	case op == 0x0b: // end
		if k := len(s.blocks); k > 0 {
			s.d = s.blocks[k-1].entry + s.blocks[k-1].results
			s.blocks = s.blocks[:k-1]
			s.add(0)
		}
	case op == 0x20 || op == 0x23 || (op >= 0x41 && op <= 0x44) || op == 0x3f || op == 0xd0 || op == 0xd2:
		s.add(1) // local.get, global.get, constants, memory.size, ref.null, ref.func
	case op == 0x21 || op == 0x24 || op == 0x1a || op == 0x0d || op == 0x26:
		s.add(-1) // local.set, global.set, drop, br_if, table.set (takes two)
	case op == 0x1b || op == 0x1c || (op >= 0x36 && op <= 0x3e):
		s.add(-2) // select, stores
	case op == 0x10 || op == 0x12: // call, return_call
		if t, ok := in.funcType(imm.u32()); ok && imm.err == nil {
			s.add(int64(in.sigs[t].results) - int64(in.sigs[t].params))
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		if t := imm.u32(); imm.err == nil && int(t) < len(in.sigs) {
			s.add(int64(in.sigs[t].results) - int64(in.sigs[t].params) - 1)
		}
	case op >= 0x45 && op <= 0xc4:
		if binaryNumeric(op) {
			s.add(-1)
		}
	case op == 0xfd: // SIMD: only v128.const leaves more than it takes
		if imm.u32() == 12 {
			s.add(1)
		}
	case op == 0xfc: // table.size
		if imm.u32() == 16 {
			s.add(1)
		}
	}
}

// frameSize bounds the stack a call of a function with signature sig,
// locals of localBytes and an operand stack of depth values takes.
func frameSize(sig sigInfo, localBytes uint64, depth int64) uint32 {
	n := frameBase + sig.bytes + localBytes + uint64(depth)*stackValue
	return uint32(min(n, StackBudget+1))
}

// chargeStack takes w bytes from the stack budget before a call, calling
// fabric.stack_exhausted when fewer are left. Opcodes: 0x23 global.get,
// 0x24 global.set, 0x41 i32.const, 0x49 i32.lt_u, 0x6a i32.add, 0x6b
// i32.sub, 0x04 0x40 if, 0x10 call, 0x0b end.
func (in *instrumenter) chargeStack(dst []byte, w uint32) []byte {
	dst = append(dst, 0x23)
	dst = appendULEB(dst, uint64(in.stack))
	dst = append(dst, 0x41)
	dst = appendSLEB(dst, int64(w))
	dst = append(dst, 0x49, 0x04, 0x40, 0x10)
	dst = appendULEB(dst, uint64(in.exhaustedFunc))
	dst = append(dst, 0x0b, 0x23)
	dst = appendULEB(dst, uint64(in.stack))
	dst = append(dst, 0x41)
	dst = appendSLEB(dst, int64(w))
	dst = append(dst, 0x6b, 0x24)
	return appendULEB(dst, uint64(in.stack))
}

// releaseStack puts w bytes back after the call returned.
func (in *instrumenter) releaseStack(dst []byte, w uint32) []byte {
	dst = append(dst, 0x23)
	dst = appendULEB(dst, uint64(in.stack))
	dst = append(dst, 0x41)
	dst = appendSLEB(dst, int64(w))
	dst = append(dst, 0x6a, 0x24)
	return appendULEB(dst, uint64(in.stack))
}

// callFrame is the stack a call instruction (op, with immediate x: a
// function index, or a type index for call_indirect) takes from the
// budget: none for an import or a function that calls nothing.
func (in *instrumenter) callFrame(op byte, x uint32) uint32 {
	if op == 0x11 || op == 0x13 {
		if int(x) < len(in.sigs) {
			return in.indirectFrames[in.sigs[x].key]
		}
		return 0
	}
	if x < in.importedFuncs || x-in.importedFuncs >= uint32(len(in.funcs)) {
		return 0
	}
	fi := in.funcs[x-in.importedFuncs]
	if !fi.calls {
		return 0
	}
	return fi.frame
}
