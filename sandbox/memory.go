package sandbox

import (
	"golang.org/x/sys/unix"

	"github.com/tetratelabs/wazero/experimental"
)

// mmapMemory is a guest's linear memory reserved at its maximum size in
// address space only (PROT_NONE) and made accessible as it grows, so that
// growing never copies: wazero's default allocator grows a Go slice and
// copies the whole memory each time (it dominated the profile of a 100 MB
// Put). Pages are committed by the kernel when first touched.
type mmapMemory struct {
	buf       []byte // the whole reservation
	committed uint64 // bytes made readable and writable
}

// mmapAllocator allocates mmapMemory; on failure it falls back to nil so
// that wazero reports the failed allocation as a failed grow.
var mmapAllocator = experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory {
	if max == 0 {
		max = WasmPageSize
	}
	buf, err := unix.Mmap(-1, 0, int(max), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return &sliceMemory{}
	}
	m := &mmapMemory{buf: buf}
	if capacity > 0 && m.Reallocate(capacity) == nil {
		m.Free()
		return &sliceMemory{}
	}
	return m
})

// Reallocate makes the first size bytes accessible and returns them.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	if size > m.committed {
		if err := unix.Mprotect(m.buf[m.committed:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return nil
		}
		m.committed = size
	}
	return m.buf[:size:size]
}

// Free releases the reservation.
func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = unix.Munmap(m.buf)
		m.buf = nil
	}
}

// sliceMemory is the fallback when the reservation fails: a plain slice.
type sliceMemory struct{ buf []byte }

func (s *sliceMemory) Reallocate(size uint64) []byte {
	if size <= uint64(cap(s.buf)) {
		return s.buf[:size]
	}
	nb := make([]byte, size)
	copy(nb, s.buf)
	s.buf = nb
	return nb
}

func (s *sliceMemory) Free() { s.buf = nil }
