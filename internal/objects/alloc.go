package objects

import (
	"fmt"
	"slices"
)

// span is a range [off, off+size) of an Allocator's space.
type span struct {
	off, size int64
}

func (s span) end() int64 { return s.off + s.size }

// Allocator hands out aligned ranges of [0, capacity).
//
// It does no I/O and holds no memory of its own: it only does the
// bookkeeping of offsets, for an arena that someone else owns. Free ranges
// are kept in a slice sorted by offset and always fully coalesced; Alloc is
// first fit over that slice (O(free ranges)) and Free finds its neighbours
// by binary search. Every range handed out has an offset and a size that are
// multiples of the alignment.
//
// An Allocator is not safe for concurrent use; its owner serialises calls.
type Allocator struct {
	capacity int64
	align    int64
	used     int64
	free     []span          // sorted by off, disjoint, never adjacent
	live     map[int64]int64 // offset -> allocated size
}

// NewAllocator returns an allocator over [0, capacity) that hands out
// ranges aligned to align, which must be a power of two (64, a cache line,
// is a good choice). A capacity that is not a multiple of align is rounded
// down to one: the tail could never hold an aligned range. NewAllocator
// panics on a negative capacity or an align that is not a power of two.
func NewAllocator(capacity, align int64) *Allocator {
	if align <= 0 || align&(align-1) != 0 {
		panic(fmt.Sprintf("objects: NewAllocator: align %d is not a power of two", align))
	}
	if capacity < 0 {
		panic(fmt.Sprintf("objects: NewAllocator: negative capacity %d", capacity))
	}
	a := &Allocator{
		capacity: capacity &^ (align - 1),
		align:    align,
		live:     make(map[int64]int64),
	}
	if a.capacity > 0 {
		a.free = []span{{0, a.capacity}}
	}
	return a
}

// roundedSize is the number of bytes Alloc takes for a request of size
// bytes, and ok is false when no allocator of this capacity could ever
// satisfy it (or size is negative).
func (a *Allocator) roundedSize(size int64) (need int64, ok bool) {
	if size < 0 || size > a.capacity {
		return 0, false
	}
	need = (max(size, 1) + a.align - 1) &^ (a.align - 1)
	return need, need <= a.capacity
}

// Alloc reserves size bytes, rounded up to the alignment, and returns the
// offset of the range. A size of 0 is allowed and takes one alignment unit,
// so that every allocation has its own offset. ok is false when no free range
// is large enough (or size is negative).
func (a *Allocator) Alloc(size int64) (off int64, ok bool) {
	need, ok := a.roundedSize(size)
	if !ok {
		return 0, false
	}
	for i := range a.free {
		sp := &a.free[i]
		if sp.size < need {
			continue
		}
		off = sp.off
		if sp.size == need {
			a.free = slices.Delete(a.free, i, i+1)
		} else {
			sp.off += need
			sp.size -= need
		}
		a.live[off] = need
		a.used += need
		return off, true
	}
	return 0, false
}

// Free returns the range at off, which an earlier Alloc returned, and merges
// it with free neighbours. Freeing an offset that is not allocated (never
// was, or already freed) is a programming error and panics.
func (a *Allocator) Free(off int64) {
	size, ok := a.live[off]
	if !ok {
		panic(fmt.Sprintf("objects: Allocator.Free(%d): offset is not allocated", off))
	}
	delete(a.live, off)
	a.used -= size

	// i is the index of the first free range after off.
	i, _ := slices.BinarySearchFunc(a.free, off, func(s span, off int64) int {
		switch {
		case s.off < off:
			return -1
		case s.off > off:
			return 1
		}
		return 0
	})
	mergePrev := i > 0 && a.free[i-1].end() == off
	mergeNext := i < len(a.free) && a.free[i].off == off+size
	switch {
	case mergePrev && mergeNext:
		a.free[i-1].size += size + a.free[i].size
		a.free = slices.Delete(a.free, i, i+1)
	case mergePrev:
		a.free[i-1].size += size
	case mergeNext:
		a.free[i].off = off
		a.free[i].size += size
	default:
		a.free = slices.Insert(a.free, i, span{off, size})
	}
}

// SizeOf returns the number of bytes held by the allocation at off (its
// request rounded up to the alignment), and false if off is not allocated.
func (a *Allocator) SizeOf(off int64) (int64, bool) {
	size, ok := a.live[off]
	return size, ok
}

// FreeRanges calls f with each free range, in order of offset.
func (a *Allocator) FreeRanges(f func(off, size int64)) {
	for _, s := range a.free {
		f(s.off, s.size)
	}
}

// Used returns the number of bytes allocated, counting alignment padding.
func (a *Allocator) Used() int64 { return a.used }

// Capacity returns the number of bytes the allocator manages: the capacity
// given to NewAllocator rounded down to a multiple of the alignment.
func (a *Allocator) Capacity() int64 { return a.capacity }

// Align returns the alignment of every offset and size handed out.
func (a *Allocator) Align() int64 { return a.align }

// LargestFree returns the size of the largest free range: the largest
// request that Alloc would satisfy now.
func (a *Allocator) LargestFree() int64 {
	var largest int64
	for _, s := range a.free {
		largest = max(largest, s.size)
	}
	return largest
}
