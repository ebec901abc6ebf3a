package sandbox

import (
	"errors"
	"fmt"
)

// This file reads the instructions of the binary format for the rewrite
// in instrument.go: every opcode of WebAssembly 2.0, SIMD (relaxed SIMD
// included), tail calls and threads, and the length of its immediates.

// wreader reads the binary format; the first error sticks, and reads
// after it return zeros.
type wreader struct {
	b   []byte
	p   int
	err error
	// lim, when set, bounds the global and type indices instructions
	// name: the rewrite adds a global and a type, which would make an
	// index one past the module's own valid (validation does not read
	// code).
	lim *indexLimits
}

// indexLimits are the sizes of the index spaces of a module as uploaded.
type indexLimits struct{ globals, types uint32 }

func (r *wreader) checkIndex(idx, limit uint32, what string) {
	if r.lim != nil && r.err == nil && idx >= limit {
		r.err = fmt.Errorf("%s index %d out of range", what, idx)
		r.p = len(r.b)
	}
}

var errTruncated = errors.New("truncated")

func (r *wreader) fail() {
	if r.err == nil {
		r.err = errTruncated
	}
	r.p = len(r.b)
}

func (r *wreader) byte() byte {
	if r.err != nil || r.p >= len(r.b) {
		r.fail()
		return 0
	}
	c := r.b[r.p]
	r.p++
	return c
}

func (r *wreader) peek() byte {
	if r.p >= len(r.b) {
		return 0
	}
	return r.b[r.p]
}

func (r *wreader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b)-r.p {
		r.fail()
		return nil
	}
	b := r.b[r.p : r.p+n]
	r.p += n
	return b
}

// u32 reads an unsigned LEB128 of at most 32 bits.
func (r *wreader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	v, n := uleb(r.b[r.p:])
	if n == 0 || v > 0xffffffff {
		r.fail()
		return 0
	}
	r.p += n
	return uint32(v)
}

// sleb skips a signed LEB128 of at most maxBytes bytes.
func (r *wreader) sleb(maxBytes int) {
	for i := 0; i < maxBytes; i++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.fail()
}

func (r *wreader) name() string {
	n := r.u32()
	return string(r.bytes(int(n)))
}

func (r *wreader) limits() {
	flags := r.byte()
	r.u32()
	if flags&0x01 != 0 {
		r.u32()
	}
}

// blockType skips a block type: empty, a value type or a type index.
func (r *wreader) blockType() {
	c := r.peek()
	if c == 0x40 || (c >= 0x6f && c <= 0x7f) {
		r.byte()
		return
	}
	v, n := sleb32(r.b[r.p:])
	if n == 0 || v < 0 {
		r.fail()
		return
	}
	r.p += n
	if r.lim != nil {
		r.checkIndex(uint32(v), r.lim.types, "type")
	}
}

func (r *wreader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.u32()
}

// skipInstr skips one instruction and its immediates.
func (r *wreader) skipInstr() error {
	op := r.byte()
	if r.err != nil {
		return instrumentErrorf("truncated instruction")
	}
	switch immediates[op] {
	case immNone:
	case immBlock: // block, loop, if
		r.blockType()
	case immU32: // branches, calls, locals, tables, memory.size/grow, ref.func
		r.u32()
	case immGlobal: // global.get, global.set
		g := r.u32()
		if r.lim != nil {
			r.checkIndex(g, r.lim.globals, "global")
		}
	case immBrTable:
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case immCallIndirect: // call_indirect, return_call_indirect
		t := r.u32()
		if r.lim != nil {
			r.checkIndex(t, r.lim.types, "type")
		}
		r.u32()
	case immSelect: // select with types
		n := r.u32()
		r.bytes(int(n))
	case immMemarg: // loads and stores
		r.memarg()
	case immS32:
		r.sleb(5)
	case immS64:
		r.sleb(10)
	case immF32:
		r.bytes(4)
	case immF64:
		r.bytes(8)
	case immByte: // ref.null
		r.byte()
	case immFC:
		r.skipFC()
	case immSIMD:
		r.skipSIMD()
	case immAtomic:
		if sub := r.u32(); sub == 0x03 { // atomic.fence
			r.byte()
		} else {
			r.memarg()
		}
	default:
		return instrumentErrorf("unknown opcode 0x%02x", op)
	}
	if r.err != nil {
		return instrumentErrorf("truncated instruction 0x%02x", op)
	}
	return nil
}

// The kinds of immediates an opcode takes, by its first byte.
const (
	immInvalid = iota
	immNone
	immBlock
	immU32
	immGlobal
	immBrTable
	immCallIndirect
	immSelect
	immMemarg
	immS32
	immS64
	immF32
	immF64
	immByte
	immFC
	immSIMD
	immAtomic
)

// immediates gives each opcode's kind of immediates (a table, since the
// rewrite reads every instruction of a module: a 5 MB Go guest has
// millions).
var immediates = func() (t [256]uint8) {
	set := func(kind uint8, ops ...byte) {
		for _, op := range ops {
			t[op] = kind
		}
	}
	set(immNone, 0x00, 0x01, 0x05, 0x0b, 0x0f, 0x1a, 0x1b, 0xd1)
	for op := 0x45; op <= 0xc4; op++ {
		t[op] = immNone
	}
	set(immBlock, 0x02, 0x03, 0x04)
	set(immU32, 0x0c, 0x0d, 0x10, 0x12, 0x20, 0x21, 0x22, 0x25, 0x26, 0x3f, 0x40, 0xd2)
	set(immGlobal, 0x23, 0x24)
	set(immBrTable, 0x0e)
	set(immCallIndirect, 0x11, 0x13)
	set(immSelect, 0x1c)
	for op := 0x28; op <= 0x3e; op++ {
		t[op] = immMemarg
	}
	set(immS32, 0x41)
	set(immS64, 0x42)
	set(immF32, 0x43)
	set(immF64, 0x44)
	set(immByte, 0xd0)
	set(immFC, 0xfc)
	set(immSIMD, 0xfd)
	set(immAtomic, 0xfe)
	return t
}()

func (r *wreader) skipFC() {
	switch sub := r.u32(); {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init
		r.u32()
		r.u32()
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		r.u32()
	case sub == 10, sub == 12, sub == 14: // memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	default:
		r.err = fmt.Errorf("unknown 0xfc instruction %d", sub)
	}
}

func (r *wreader) skipSIMD() {
	switch sub := r.u32(); {
	case sub <= 11, sub == 92, sub == 93: // loads and stores
		r.memarg()
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract and replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load and store lane
		r.memarg()
		r.byte()
	case sub <= 0x113: // the rest, relaxed SIMD included: no immediates
	default:
		r.err = fmt.Errorf("unknown SIMD instruction %d", sub)
	}
}
