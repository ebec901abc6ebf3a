package sandbox

import (
	"os"
	"unsafe"

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

// memImage is a module's initial memory in a memfd, mapped copy-on-write
// into each new instance: instantiation copies nothing, and pages the guest
// never touches are shared by all instances of the module.
type memImage struct {
	f    *os.File
	size int64  // rounded up to the page size
	data []byte // the image, for the fallback when mapping fails
}

func newMemImage(image []byte) (*memImage, error) {
	fd, err := unix.MemfdCreate("fabric-image", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "fabric-image")
	page := int64(os.Getpagesize())
	size := (int64(len(image)) + page - 1) / page * page
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt(image, 0); err != nil {
		f.Close()
		return nil, err
	}
	return &memImage{f: f, size: size, data: image}, nil
}

func (im *memImage) close() { _ = im.f.Close() }

// allocator returns a MemoryAllocator whose memories start as private
// (copy-on-write) mappings of the image.
func (im *memImage) allocator() experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory {
		if max < capacity {
			max = capacity
		}
		if uint64(im.size) > capacity {
			return im.copied(capacity)
		}
		buf, err := unix.Mmap(-1, 0, int(max), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return im.copied(capacity)
		}
		if _, err := unix.MmapPtr(int(im.f.Fd()), 0, unsafe.Pointer(&buf[0]), uintptr(im.size),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
			_ = unix.Munmap(buf)
			return im.copied(capacity)
		}
		m := &mmapMemory{buf: buf, committed: uint64(im.size)}
		if m.Reallocate(capacity) == nil {
			m.Free()
			return im.copied(capacity)
		}
		return m
	})
}

// copied is the fallback when the image cannot be mapped: a plain memory
// holding a copy of it.
func (im *memImage) copied(capacity uint64) experimental.LinearMemory {
	buf := make([]byte, max(capacity, uint64(len(im.data))))
	copy(buf, im.data)
	return &sliceMemory{buf: buf}
}
