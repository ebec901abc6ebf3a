//go:build linux

package objects

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// reopen maps the same memory file a second time through a duplicated
// descriptor, as a worker process would map the one it inherits.
func reopen(t *testing.T, m *SharedMemory, size int64) *SharedMemory {
	t.Helper()
	fd, err := unix.Dup(int(m.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "dup")
	m2, err := OpenSharedMemory(f, size)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	return m2
}

func TestSharedMemoryTwoMappings(t *testing.T) {
	const size = 1 << 20
	m, err := CreateSharedMemory("test-arena", size)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Size() != size || len(m.Bytes()) != size || cap(m.Bytes()) != size {
		t.Fatalf("Size %d, len %d, cap %d; want %d", m.Size(), len(m.Bytes()), cap(m.Bytes()), size)
	}
	m2 := reopen(t, m, size)
	defer m2.Close()

	msg := []byte("hello from the agent")
	copy(m.Bytes()[4096:], msg)
	if got := m2.Bytes()[4096 : 4096+len(msg)]; !bytes.Equal(got, msg) {
		t.Fatalf("second mapping reads %q, want %q", got, msg)
	}
	copy(m2.Bytes()[size-3:], "end")
	if got := string(m.Bytes()[size-3:]); got != "end" {
		t.Fatalf("first mapping reads %q, want %q", got, "end")
	}
}

func TestSharedMemoryRelease(t *testing.T) {
	page := int64(os.Getpagesize())
	size := 8 * page
	m, err := CreateSharedMemory("release", size)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m2 := reopen(t, m, size)
	defer m2.Close()

	fill := func() {
		for i := range m.Bytes() {
			m.Bytes()[i] = 0xAB
		}
	}
	zeroed := func(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }
	full := func(b []byte) bool { return bytes.Count(b, []byte{0xAB}) == len(b) }

	tests := []struct {
		name      string
		off, size int64
		// zero is the range expected to read as zeros: the page-aligned
		// inner part of [off, off+size).
		zeroFrom, zeroTo int64
	}{
		{"aligned", 2 * page, 3 * page, 2 * page, 5 * page},
		{"unaligned ends", page + 100, 3 * page, 2 * page, 4 * page},
		{"smaller than a page", page + 10, page - 20, 0, 0},
		{"spans one boundary only", page + 10, page, 0, 0},
		{"empty", 3 * page, 0, 0, 0},
		{"whole", 0, size, 0, size},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fill()
			if err := m.Release(tt.off, tt.size); err != nil {
				t.Fatal(err)
			}
			for _, b := range [][]byte{m.Bytes(), m2.Bytes()} {
				if !zeroed(b[tt.zeroFrom:tt.zeroTo]) {
					t.Fatalf("[%d, %d) not zeroed", tt.zeroFrom, tt.zeroTo)
				}
				if !full(b[:tt.zeroFrom]) || !full(b[tt.zeroTo:]) {
					t.Fatalf("bytes outside [%d, %d) changed", tt.zeroFrom, tt.zeroTo)
				}
			}
		})
	}
}

func TestSharedMemoryErrors(t *testing.T) {
	for _, size := range []int64{0, -1} {
		if _, err := CreateSharedMemory("bad", size); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("CreateSharedMemory(%d) error %v, want ErrInvalidSize", size, err)
		}
	}
	m, err := CreateSharedMemory("errors", 4096)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int64{{-1, 10}, {0, -1}, {0, 4097}, {4097, 0}, {4000, 100}, {1, 1 << 62}} {
		if err := m.Release(r[0], r[1]); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Release(%d, %d) error %v, want ErrOutOfRange", r[0], r[1], err)
		}
	}

	// Mapping more than the file holds would SIGBUS on touch: refused.
	fd, err := unix.Dup(int(m.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "dup")
	if _, err := OpenSharedMemory(f, 8192); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("OpenSharedMemory past the end: error %v, want ErrInvalidSize", err)
	}
	f.Close()
	if _, err := OpenSharedMemory(nil, 4096); err == nil {
		t.Error("OpenSharedMemory(nil) succeeded")
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if m.Bytes() != nil {
		t.Error("Bytes after Close is not nil")
	}
	if err := m.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close error %v, want ErrClosed", err)
	}
	if err := m.Release(0, 4096); !errors.Is(err, ErrClosed) {
		t.Errorf("Release after Close error %v, want ErrClosed", err)
	}
}

// TestStoreOnSharedMemory runs a Store over a real arena, with Release as
// its releaser, and checks the bytes through a second mapping, as a worker
// would see them.
func TestStoreOnSharedMemory(t *testing.T) {
	const size = 1 << 20
	m, err := CreateSharedMemory("store", size)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	worker := reopen(t, m, size)
	defer worker.Close()

	s := NewStore(m.Bytes(), t.TempDir())
	defer s.Close()
	var releaseErr error
	s.SetReleaser(func(off, size int64) {
		if size >= 64*1024 {
			if err := m.Release(off, size); err != nil && releaseErr == nil {
				releaseErr = err
			}
		}
	})
	const objSize = 300 * 1024
	for n := range 5 { // the fourth and fifth spill the first and second
		mustPut(t, s, n, objSize)
	}
	loc, err := s.Pin(testID(4))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(worker.Bytes()[loc.Offset:loc.Offset+loc.Size], payload(testID(4), objSize)) {
		t.Fatal("the worker's mapping does not show the object")
	}
	s.Unpin(testID(4))
	for n := range 5 {
		mustRead(t, s, n, objSize)
	}

	// A worker writes an object in place.
	id := testID(9)
	off, err := s.Create(id, 1000)
	if err != nil {
		t.Fatal(err)
	}
	copy(worker.Bytes()[off:], payload(id, 1000))
	if err := s.Seal(id); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, 9, 1000)

	// Trimming after a Delete gives the object's whole pages back: they
	// read as zeros.
	loc, err = s.Pin(testID(4))
	if err != nil {
		t.Fatal(err)
	}
	s.Unpin(testID(4))
	s.Delete(testID(4))
	s.Trim()
	page := int64(os.Getpagesize())
	start := (loc.Offset + page - 1) &^ (page - 1)
	end := (loc.Offset + loc.Size) &^ (page - 1)
	if b := worker.Bytes()[start:end]; bytes.Count(b, []byte{0}) != len(b) {
		t.Fatal("released pages of a deleted object are not zero")
	}
	if releaseErr != nil {
		t.Fatal(releaseErr)
	}
}
