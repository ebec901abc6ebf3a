//go:build linux

package objects

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Errors returned by SharedMemory (besides ErrInvalidSize, for a size that
// cannot be mapped: zero, negative, or larger than the file). They are
// wrapped with context; test for them with errors.Is.
var (
	// ErrOutOfRange is returned for a range that is not inside the mapping.
	ErrOutOfRange = errors.New("objects: range outside shared memory")
	// ErrClosed is returned by methods of a SharedMemory after Close.
	ErrClosed = errors.New("objects: shared memory closed")
)

// SharedMemory is a memfd mapped MAP_SHARED, passed to worker processes as a file.
//
// The agent creates it with CreateSharedMemory and hands File to each worker
// through exec.Cmd.ExtraFiles; a worker maps the inherited descriptor with
// OpenSharedMemory. Both then see the same pages, so object bytes move
// between them without copies through a socket.
//
// Bytes, File, Size and Release may be called from several goroutines at
// once; Close must not run concurrently with any other method or with use of
// the slice from Bytes.
type SharedMemory struct {
	f    *os.File
	fd   int
	data []byte
	size int64
}

// CreateSharedMemory creates an anonymous memory file of size bytes (memfd,
// close-on-exec; the name is only for /proc and debugging) and maps it
// read-write and shared. Its pages are allocated lazily, on first touch.
func CreateSharedMemory(name string, size int64) (*SharedMemory, error) {
	if err := checkMapSize(size); err != nil {
		return nil, fmt.Errorf("objects: create shared memory %q: %w", name, err)
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("objects: create shared memory %q: memfd_create: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if err := unix.Ftruncate(fd, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("objects: create shared memory %q: ftruncate to %d bytes: %w", name, size, err)
	}
	m, err := mapShared(f, fd, size)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("objects: create shared memory %q: %w", name, err)
	}
	return m, nil
}

// OpenSharedMemory maps size bytes of f, a memory file inherited from the
// agent (in a worker, os.NewFile(3, "arena") for the first of ExtraFiles).
// The SharedMemory takes ownership of f: Close closes it. It fails, without
// closing f, when f is smaller than size, since touching pages past the end
// of the file would kill the process with SIGBUS.
func OpenSharedMemory(f *os.File, size int64) (*SharedMemory, error) {
	if f == nil {
		return nil, fmt.Errorf("objects: open shared memory: %w", os.ErrInvalid)
	}
	if err := checkMapSize(size); err != nil {
		return nil, fmt.Errorf("objects: open shared memory %s: %w", f.Name(), err)
	}
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("objects: open shared memory %s: fstat: %w", f.Name(), err)
	}
	if st.Size < size {
		return nil, fmt.Errorf("objects: open shared memory %s: file has %d bytes, want %d: %w", f.Name(), st.Size, size, ErrInvalidSize)
	}
	m, err := mapShared(f, fd, size)
	if err != nil {
		return nil, fmt.Errorf("objects: open shared memory %s: %w", f.Name(), err)
	}
	return m, nil
}

func checkMapSize(size int64) error {
	if size <= 0 || int64(int(size)) != size {
		return fmt.Errorf("%d bytes: %w", size, ErrInvalidSize)
	}
	return nil
}

func mapShared(f *os.File, fd int, size int64) (*SharedMemory, error) {
	data, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	return &SharedMemory{f: f, fd: fd, data: data, size: size}, nil
}

// Bytes returns the mapping. Its length and capacity are Size(). It is
// invalid (nil) after Close.
func (m *SharedMemory) Bytes() []byte {
	if m.data == nil {
		return nil
	}
	return m.data[:m.size:m.size]
}

// File returns the memory file, to pass to a worker via exec.Cmd.ExtraFiles.
// It stays owned by m: do not close it.
func (m *SharedMemory) File() *os.File { return m.f }

// Size returns the size of the mapping in bytes.
func (m *SharedMemory) Size() int64 { return m.size }

// Release gives the pages wholly inside [off, off+size) back to the OS
// (fallocate with FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE): they read as
// zeros afterwards, in every process that maps the file, and take no memory
// until written again. Partial pages at either end are left alone, so a
// range smaller than a page is a no-op. The caller must be done with the
// bytes of the range.
func (m *SharedMemory) Release(off, size int64) error {
	if m.data == nil {
		return fmt.Errorf("objects: release [%d, +%d): %w", off, size, ErrClosed)
	}
	if off < 0 || size < 0 || off > m.size || size > m.size-off {
		return fmt.Errorf("objects: release [%d, +%d) of %d bytes: %w", off, size, m.size, ErrOutOfRange)
	}
	page := int64(os.Getpagesize())
	start := (off + page - 1) &^ (page - 1)
	end := (off + size) &^ (page - 1)
	if end <= start {
		return nil
	}
	if err := unix.Fallocate(m.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, start, end-start); err != nil {
		return fmt.Errorf("objects: release [%d, %d): fallocate: %w", start, end, err)
	}
	return nil
}

// Close unmaps the memory and closes the file. Slices from Bytes must not
// be used afterwards. Other processes that map the same file keep their
// mappings; the memory is freed when the last of them goes.
func (m *SharedMemory) Close() error {
	if m.data == nil {
		return fmt.Errorf("objects: close shared memory: %w", ErrClosed)
	}
	errUnmap := unix.Munmap(m.data)
	m.data = nil
	errClose := m.f.Close()
	if errUnmap != nil {
		return fmt.Errorf("objects: close shared memory: munmap: %w", errUnmap)
	}
	if errClose != nil {
		return fmt.Errorf("objects: close shared memory: %w", errClose)
	}
	return nil
}
