package objects

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"testing"
)

const kib = 1024

// testID returns a distinct ID for n.
func testID(n int) ID {
	var id ID
	id[0] = byte(n)
	id[1] = byte(n >> 8)
	id[19] = 0x5a
	return id
}

// payload returns size bytes whose contents depend on id.
func payload(id ID, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7) ^ id[0] ^ id[1]<<3
	}
	return b
}

func newTestStore(t testing.TB, capacity int) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spill")
	s := NewStore(make([]byte, capacity), dir)
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func mustPut(t testing.TB, s *Store, n, size int) {
	t.Helper()
	id := testID(n)
	if err := s.Put(id, payload(id, size)); err != nil {
		t.Fatalf("Put(%d): %v", n, err)
	}
}

func mustRead(t testing.TB, s *Store, n, size int) {
	t.Helper()
	id := testID(n)
	got, err := s.Read(id)
	if err != nil {
		t.Fatalf("Read(%d): %v", n, err)
	}
	if !bytes.Equal(got, payload(id, size)) {
		t.Fatalf("Read(%d): wrong bytes (%d of them)", n, len(got))
	}
}

func spillFileExists(dir string, n int) bool {
	return spillFileOf(dir, testID(n)) != ""
}

// spillFileOf returns the path of id's spill file in dir, or "".
func spillFileOf(dir string, id ID) string {
	m, _ := filepath.Glob(filepath.Join(dir, id.String()+".[0-9]*"))
	if len(m) != 1 {
		return ""
	}
	return m[0]
}

func checkStats(t testing.TB, s *Store, want StoreStats) {
	t.Helper()
	got := s.Stats()
	got.Owners = nil // checked by the owner tests
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Stats() = %+v\n           want %+v", got, want)
	}
}

func TestStorePutReadDelete(t *testing.T) {
	tests := []struct {
		name string
		size int
		used int64
	}{
		{"empty", 0, 64},
		{"one byte", 1, 64},
		{"just under align", 63, 64},
		{"align", 64, 64},
		{"just over align", 65, 128},
		{"odd", 1000, 1024},
		{"whole arena", 4 * kib, 4 * kib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := newTestStore(t, 4*kib)
			id := testID(1)
			if s.Contains(id) {
				t.Fatal("Contains before Put")
			}
			mustPut(t, s, 1, tt.size)
			if !s.Contains(id) {
				t.Fatal("not Contains after Put")
			}
			checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: tt.used, Objects: 1})
			mustRead(t, s, 1, tt.size)
			loc, err := s.Pin(id)
			if err != nil || loc.Path != "" || loc.Offset != 0 || loc.Size != int64(tt.size) {
				t.Fatalf("Pin = %+v, %v", loc, err)
			}
			s.Unpin(id)

			s.Delete(id)
			if s.Contains(id) {
				t.Fatal("Contains after Delete")
			}
			if _, err := s.Read(id); !errors.Is(err, ErrObjectNotFound) {
				t.Fatalf("Read after Delete: %v, want ErrObjectNotFound", err)
			}
			if _, err := s.Pin(id); !errors.Is(err, ErrObjectNotFound) {
				t.Fatalf("Pin after Delete: %v, want ErrObjectNotFound", err)
			}
			s.Delete(id) // twice is fine
			checkStats(t, s, StoreStats{Capacity: 4 * kib})
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("spill dir made without a spill: %v", err)
			}
		})
	}
}

func TestStoreDuplicateAndBadArgs(t *testing.T) {
	s, _ := newTestStore(t, 4*kib)
	mustPut(t, s, 1, 100)
	if err := s.Put(testID(1), []byte("x")); !errors.Is(err, ErrObjectExists) {
		t.Errorf("second Put: %v, want ErrObjectExists", err)
	}
	if _, err := s.Create(testID(1), 10); !errors.Is(err, ErrObjectExists) {
		t.Errorf("Create of a present ID: %v, want ErrObjectExists", err)
	}
	if _, err := s.Create(testID(2), -1); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("Create(-1): %v, want ErrInvalidSize", err)
	}
	if _, err := s.Create(testID(2), 4*kib+1); !errors.Is(err, ErrObjectTooLarge) {
		t.Errorf("Create larger than the arena: %v, want ErrObjectTooLarge", err)
	}
	s.Unpin(testID(1)) // not pinned: no-op
	s.Unpin(testID(9)) // unknown: no-op
	mustRead(t, s, 1, 100)
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: 128, Objects: 1})
}

func TestStoreCreateSealAbort(t *testing.T) {
	s, _ := newTestStore(t, 4*kib)
	id := testID(1)
	off, err := s.Create(id, 300)
	if err != nil {
		t.Fatal(err)
	}
	if s.Contains(id) {
		t.Error("Contains before Seal")
	}
	if _, err := s.Pin(id); !errors.Is(err, ErrNotSealed) {
		t.Errorf("Pin before Seal: %v, want ErrNotSealed", err)
	}
	if _, err := s.Read(id); !errors.Is(err, ErrNotSealed) {
		t.Errorf("Read before Seal: %v, want ErrNotSealed", err)
	}
	s.Unpin(id) // must not drop the writer's pin
	copy(s.mem[off:], payload(id, 300))
	if err := s.Seal(id); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal(id); !errors.Is(err, ErrAlreadySealed) {
		t.Errorf("second Seal: %v, want ErrAlreadySealed", err)
	}
	mustRead(t, s, 1, 300)
	s.Abort(id) // sealed: no-op
	mustRead(t, s, 1, 300)

	if err := s.Seal(testID(2)); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("Seal of unknown: %v, want ErrObjectNotFound", err)
	}

	// Abort frees the reservation.
	if _, err := s.Create(testID(2), 1000); err != nil {
		t.Fatal(err)
	}
	s.Abort(testID(2))
	s.Abort(testID(2))
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: 320, Objects: 1})

	// Delete before Seal: the space goes at Seal, which reports it.
	if _, err := s.Create(testID(3), 1000); err != nil {
		t.Fatal(err)
	}
	s.Delete(testID(3))
	if _, err := s.Create(testID(3), 10); !errors.Is(err, ErrObjectExists) {
		t.Errorf("Create of a deleted, unsealed ID: %v, want ErrObjectExists", err)
	}
	if err := s.Seal(testID(3)); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("Seal after Delete: %v, want ErrObjectNotFound", err)
	}
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: 320, Objects: 1})
}

func TestStoreSpillAndRestore(t *testing.T) {
	s, dir := newTestStore(t, 4*kib)
	for n := range 4 {
		mustPut(t, s, n, kib)
	}
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: 4 * kib, Objects: 4})

	// A fifth object spills the oldest.
	mustPut(t, s, 4, kib)
	if !spillFileExists(dir, 0) || spillFileExists(dir, 1) {
		t.Fatal("expected object 0, and only it, in a spill file")
	}
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: 4 * kib, Objects: 5,
		SpilledObjects: 1, SpilledBytes: kib, SpillCount: 1})
	if !s.Contains(testID(0)) {
		t.Fatal("a spilled object is not Contained")
	}

	// Reading it back restores it (keeping its file for the next spill)
	// and spills the next oldest.
	mustRead(t, s, 0, kib)
	if !spillFileExists(dir, 0) || !spillFileExists(dir, 1) {
		t.Fatal("expected object 0 restored with its file kept, and object 1 spilled")
	}
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: 4 * kib, Objects: 5,
		SpilledObjects: 1, SpilledBytes: kib, SpillCount: 2, RestoreCount: 1})

	// Everything reads back, whatever moves meanwhile.
	for round := range 3 {
		for n := range 5 {
			mustRead(t, s, n, kib)
		}
		if st := s.Stats(); st.Objects != 5 || st.SpilledObjects != 1 {
			t.Fatalf("round %d: %+v", round, st)
		}
	}
	for n := range 5 {
		s.Delete(testID(n))
	}
	checkStats(t, s, StoreStats{Capacity: 4 * kib, SpillCount: 16, RestoreCount: 15})
	s.Sweep()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("spill files left after Delete: %v", entries)
	}
}

// TestStorePinInPlace: a spilled object pinned in place stays in its file
// (no restore, no spill of others), and one in the arena stays there.
func TestStorePinInPlace(t *testing.T) {
	s, dir := newTestStore(t, 2*kib)
	for n := range 3 {
		mustPut(t, s, n, kib) // object 0 spills
	}
	loc, err := s.PinInPlace(testID(0))
	if err != nil || loc.Path == "" || loc.Offset != -1 || loc.Size != kib {
		t.Fatalf("spilled object: %+v %v", loc, err)
	}
	if b, err := os.ReadFile(loc.Path); err != nil || !bytes.Equal(b, payload(testID(0), kib)) {
		t.Fatalf("its file: %v", err)
	}
	if !spillFileExists(dir, 0) || spillFileExists(dir, 1) {
		t.Fatal("PinInPlace moved objects")
	}
	loc, err = s.PinInPlace(testID(2))
	if err != nil || loc.Path != "" || loc.Offset < 0 {
		t.Fatalf("object in the arena: %+v %v", loc, err)
	}
	s.Delete(testID(0))
	if !spillFileExists(dir, 0) {
		t.Fatal("a pinned spill file was removed")
	}
	s.Unpin(testID(0))
	s.Unpin(testID(2))
	if s.Doomed() != 1 {
		t.Fatalf("%d files to sweep, want 1", s.Doomed())
	}
	s.Sweep()
	if spillFileExists(dir, 0) {
		t.Fatal("the spill file outlived its last pin after Delete")
	}
	if _, err := s.PinInPlace(testID(9)); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("unknown ID: %v", err)
	}
	if _, err := s.Create(testID(5), kib); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PinInPlace(testID(5)); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("unsealed: %v", err)
	}
}

// TestStoreSpillLimit: past the spill limit, neither spilling nor a Put
// larger than the arena may write to disk: they fail with ErrStoreFull,
// and room comes back as objects are deleted.
func TestStoreSpillLimit(t *testing.T) {
	s, _ := newTestStore(t, 2*kib)
	s.SetSpillLimit(2 * kib)
	for n := range 4 {
		mustPut(t, s, n, kib) // objects 0 and 1 spill: the limit is reached
	}
	if err := s.Put(testID(4), payload(testID(4), kib)); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("a put that needs a spill past the limit: %v", err)
	}
	if err := s.Put(testID(5), payload(testID(5), 3*kib)); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("a put larger than the arena past the limit: %v", err)
	}
	s.Delete(testID(0))
	mustPut(t, s, 4, kib) // a spill fits again
	for n := 1; n <= 4; n++ {
		mustRead(t, s, n, kib)
	}
}

func TestStoreLRUOrder(t *testing.T) {
	tests := []struct {
		name      string
		touch     []int // read after the first four Puts
		wantSpill []int // spilled by two more Puts
	}{
		{"insertion order", nil, []int{0, 1}},
		{"read makes recent", []int{0}, []int{1, 2}},
		{"read twice", []int{1, 0}, []int{2, 3}},
		{"read all", []int{3, 2, 1, 0}, []int{3, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := newTestStore(t, 4*kib)
			for n := range 4 {
				mustPut(t, s, n, kib)
			}
			for _, n := range tt.touch {
				mustRead(t, s, n, kib)
			}
			mustPut(t, s, 4, kib)
			mustPut(t, s, 5, kib)
			for n := range 6 {
				want := n == tt.wantSpill[0] || n == tt.wantSpill[1]
				if spillFileExists(dir, n) != want {
					t.Errorf("object %d spilled: %v, want %v", n, !want, want)
				}
			}
		})
	}
}

func TestStorePinnedNeverSpilled(t *testing.T) {
	s, dir := newTestStore(t, 4*kib)
	for n := range 4 {
		mustPut(t, s, n, kib)
	}
	pinned := map[int]Location{}
	for _, n := range []int{0, 2} {
		loc, err := s.Pin(testID(n))
		if err != nil {
			t.Fatal(err)
		}
		pinned[n] = loc
	}
	for n := 4; n < 20; n++ {
		mustPut(t, s, n, kib)
		for p, loc := range pinned {
			if spillFileExists(dir, p) {
				t.Fatalf("after Put(%d): pinned object %d was spilled", n, p)
			}
			if !bytes.Equal(s.mem[loc.Offset:loc.Offset+loc.Size], payload(testID(p), kib)) {
				t.Fatalf("after Put(%d): pinned object %d changed", n, p)
			}
		}
	}
	// Pinning again gives the same place.
	if loc, err := s.Pin(testID(0)); err != nil || loc != pinned[0] {
		t.Fatalf("Pin again = %+v, %v; want %+v", loc, err, pinned[0])
	}
	s.Unpin(testID(0))
	st := s.Stats()
	if st.Objects != 20 || st.SpilledObjects != 16 || st.SpillCount != 16 {
		t.Fatalf("Stats = %+v", st)
	}

	// Once unpinned, they are the most recently used, then spill in turn.
	s.Unpin(testID(0))
	s.Unpin(testID(2))
	mustPut(t, s, 20, kib) // spills 18
	mustPut(t, s, 21, kib) // spills 19
	mustPut(t, s, 22, kib) // spills 0
	if !spillFileExists(dir, 0) || spillFileExists(dir, 2) {
		t.Fatal("expected 0 spilled and 2 not, after unpinning")
	}
}

func TestStoreFull(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(t *testing.T, s *Store)
		size      int64
		wantSpill int64
	}{
		{"all pinned", func(t *testing.T, s *Store) {
			for n := range 4 {
				mustPut(t, s, n, kib)
				if _, err := s.Pin(testID(n)); err != nil {
					t.Fatal(err)
				}
			}
		}, 1, 0},
		{"all being written", func(t *testing.T, s *Store) {
			for n := range 4 {
				if _, err := s.Create(testID(n), kib); err != nil {
					t.Fatal(err)
				}
			}
		}, 0, 0},
		{"not enough unpinned: spills nothing", func(t *testing.T, s *Store) {
			for n := range 4 {
				mustPut(t, s, n, kib)
			}
			for _, n := range []int{0, 1, 3} {
				if _, err := s.Pin(testID(n)); err != nil {
					t.Fatal(err)
				}
			}
		}, 2 * kib, 0},
		{"fragmented: spills, then gives up", func(t *testing.T, s *Store) {
			for n := range 4 {
				mustPut(t, s, n, kib)
			}
			for _, n := range []int{1, 3} {
				if _, err := s.Pin(testID(n)); err != nil {
					t.Fatal(err)
				}
			}
		}, 2 * kib, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t, 4*kib)
			tt.setup(t, s)
			if _, err := s.Create(testID(100), tt.size); !errors.Is(err, ErrStoreFull) {
				t.Fatalf("Create: %v, want ErrStoreFull", err)
			}
			if got := s.Stats().SpillCount; got != tt.wantSpill {
				t.Fatalf("SpillCount = %d, want %d", got, tt.wantSpill)
			}
			// Put has the value in hand: with no room it goes to a file.
			if err := s.Put(testID(100), make([]byte, tt.size)); err != nil {
				t.Fatalf("Put: %v, want it written to a file", err)
			}
			if got := s.Stats().DirectCount; got != 1 {
				t.Fatalf("DirectCount = %d, want 1", got)
			}
			if b, err := s.Read(testID(100)); err != nil || int64(len(b)) != tt.size {
				t.Fatalf("Read: %d bytes, %v", len(b), err)
			}
		})
	}

	// With no spill directory, a full arena is full.
	s := NewStore(make([]byte, 4*kib), "")
	defer s.Close()
	for n := range 4 {
		mustPut(t, s, n, kib)
	}
	if err := s.Put(testID(4), []byte("x")); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Put with no spill dir: %v, want ErrStoreFull", err)
	}
	if err := s.Put(testID(4), make([]byte, 5*kib)); !errors.Is(err, ErrObjectTooLarge) {
		t.Fatalf("Put larger than the arena with no spill dir: %v, want ErrObjectTooLarge", err)
	}
	s.Delete(testID(0))
	mustPut(t, s, 4, kib)
}

func TestStoreLargerThanArena(t *testing.T) {
	s, dir := newTestStore(t, 4*kib)
	mustPut(t, s, 0, kib)
	id := testID(1)
	data := payload(id, 10*kib)
	if err := s.Put(id, data); err != nil {
		t.Fatal(err)
	}
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: kib, Objects: 2,
		SpilledObjects: 1, SpilledBytes: 10 * kib, DirectCount: 1})

	loc, err := s.Pin(id)
	if err != nil {
		t.Fatal(err)
	}
	want := Location{Offset: -1, Size: 10 * kib, Path: spillFileOf(dir, id)}
	if loc != want {
		t.Fatalf("Pin = %+v, want %+v", loc, want)
	}
	if b, err := os.ReadFile(loc.Path); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("spill file: %v", err)
	}
	s.Unpin(id)
	mustRead(t, s, 1, 10*kib)
	if st := s.Stats(); st.RestoreCount != 0 || st.Used != kib {
		t.Fatalf("a large object was restored: %+v", st)
	}
	if err := s.Put(id, data); !errors.Is(err, ErrObjectExists) {
		t.Fatalf("second Put: %v, want ErrObjectExists", err)
	}

	s.Delete(id)
	s.Sweep()
	if _, err := os.Stat(want.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("spill file after Delete: %v", err)
	}
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: kib, Objects: 1, DirectCount: 1})

	// An empty arena sends everything to files, even empty objects.
	s2, _ := newTestStore(t, 0)
	mustPut(t, s2, 5, 0)
	mustRead(t, s2, 5, 0)
}

func TestStorePinFallsBackToFile(t *testing.T) {
	s, dir := newTestStore(t, 2*kib)
	mustPut(t, s, 0, kib)
	mustPut(t, s, 1, kib)
	mustPut(t, s, 2, kib) // spills 0
	for _, n := range []int{1, 2} {
		if _, err := s.Pin(testID(n)); err != nil {
			t.Fatal(err)
		}
	}
	path := spillFileOf(dir, testID(0))
	loc, err := s.Pin(testID(0))
	if err != nil || loc != (Location{Offset: -1, Size: kib, Path: path}) {
		t.Fatalf("Pin with the arena all pinned = %+v, %v", loc, err)
	}
	mustRead(t, s, 0, kib) // from the file

	// Room appears, but object 0 is pinned in its file: it stays there.
	s.Unpin(testID(1))
	if loc, err := s.Pin(testID(0)); err != nil || loc.Path != path {
		t.Fatalf("Pin while pinned in its file = %+v, %v", loc, err)
	}
	s.Delete(testID(0)) // still pinned twice: the file stays
	if !spillFileExists(dir, 0) {
		t.Fatal("spill file of a pinned object removed by Delete")
	}
	s.Unpin(testID(0))
	if !spillFileExists(dir, 0) {
		t.Fatal("spill file removed before the last Unpin")
	}
	s.Unpin(testID(0))
	s.Sweep()
	if spillFileExists(dir, 0) {
		t.Fatal("spill file kept after the last Unpin of a deleted object")
	}

	// A spilled object nobody pins is restored once there is room.
	mustPut(t, s, 3, kib) // spills 1, the only unpinned one
	loc, err = s.Pin(testID(1))
	if err != nil || loc.Path != "" || loc.Offset < 0 {
		t.Fatalf("Pin of a spilled object with room = %+v, %v", loc, err)
	}
	if !errors.Is(func() error { _, err := s.Pin(testID(0)); return err }(), ErrObjectNotFound) {
		t.Fatal("deleted object still pinnable")
	}
}

func TestStoreDeleteWhilePinned(t *testing.T) {
	s, _ := newTestStore(t, 4*kib)
	id := testID(1)
	mustPut(t, s, 1, kib)
	loc, _ := s.Pin(id)
	s.Pin(id)
	s.Delete(id)
	if s.Contains(id) {
		t.Fatal("Contains after Delete")
	}
	if _, err := s.Read(id); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("Read: %v, want ErrObjectNotFound", err)
	}
	if err := s.Put(id, []byte("new")); !errors.Is(err, ErrObjectExists) {
		t.Fatalf("Put while the deleted object is pinned: %v, want ErrObjectExists", err)
	}
	// Its bytes stay put for the pinners, whatever else comes in.
	mustPut(t, s, 2, 3*kib)
	if !bytes.Equal(s.mem[loc.Offset:loc.Offset+loc.Size], payload(id, kib)) {
		t.Fatal("bytes of a pinned, deleted object changed")
	}
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: 4 * kib, Objects: 1})
	s.Unpin(id)
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: 4 * kib, Objects: 1})
	s.Unpin(id)
	checkStats(t, s, StoreStats{Capacity: 4 * kib, Used: 3 * kib, Objects: 1})
	s.Unpin(id) // extra: no-op
	mustPut(t, s, 1, kib)
	mustRead(t, s, 1, kib)
}

func TestStoreTrim(t *testing.T) {
	s, _ := newTestStore(t, 4*kib)
	var got [][2]int64
	s.SetReleaser(func(off, size int64) { got = append(got, [2]int64{off, size}) })
	mustPut(t, s, 0, 2*kib)
	mustPut(t, s, 1, 1000)
	mustPut(t, s, 2, 3*kib) // spills 0, then 1
	if len(got) != 0 {
		t.Fatalf("freeing called the releaser: %v", got)
	}
	s.Delete(testID(2))
	s.Trim()
	want := [][2]int64{{0, 4 * kib}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("releaser calls %v, want %v", got, want)
	}
	got = nil
	mustPut(t, s, 3, kib)
	s.Trim()
	if want := [][2]int64{{kib, 3 * kib}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("releaser calls %v, want %v", got, want)
	}
	s.SetReleaser(nil)
	s.Trim()
	mustRead(t, s, 0, 2*kib)
}

func TestStoreCorruptSpillFile(t *testing.T) {
	s, dir := newTestStore(t, 2*kib)
	mustPut(t, s, 0, kib)
	mustPut(t, s, 1, kib)
	mustPut(t, s, 2, kib) // spills 0
	path := spillFileOf(dir, testID(0))
	for _, content := range [][]byte{[]byte("short"), make([]byte, kib+1)} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(testID(0)); err == nil {
			t.Fatalf("Read of a %d-byte spill file for a %d-byte object succeeded", len(content), kib)
		}
	}
	// The failed restores left the store consistent.
	if err := os.WriteFile(path, payload(testID(0), kib), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, 0, kib)
	mustRead(t, s, 1, kib)
	mustRead(t, s, 2, kib)
}

func TestStoreClose(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill")
	s := NewStore(make([]byte, 2*kib), dir)
	for n := range 4 {
		mustPut(t, s, n, kib)
	}
	mustPut(t, s, 4, 5*kib)
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Fatalf("%d spill files, want 3", len(entries))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("spill dir after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Put(testID(9), nil); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if _, err := s.Create(testID(9), 1); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("Create after Close: %v", err)
	}
	if _, err := s.Pin(testID(3)); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("Pin after Close: %v", err)
	}
	if _, err := s.Read(testID(3)); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if s.Contains(testID(3)) {
		t.Error("Contains after Close")
	}

	// A directory the store did not make is left in place.
	dir2 := t.TempDir()
	s2 := NewStore(make([]byte, kib), dir2)
	mustPut(t, s2, 0, kib)
	mustPut(t, s2, 1, kib)
	s2.Close()
	if entries, err := os.ReadDir(dir2); err != nil || len(entries) != 0 {
		t.Fatalf("existing spill dir after Close: %v, %v", entries, err)
	}
}

func TestStoreNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, _ := newTestStore(t, 4*kib)
	for n := range 10 {
		mustPut(t, s, n, kib)
	}
	for n := range 10 {
		mustRead(t, s, n, kib)
	}
	mustPut(t, s, 10, 8*kib)
	s.Close()
	if after := runtime.NumGoroutine(); after > before { // fewer is fine: an earlier test's goroutines may still be ending
		t.Fatalf("goroutines: %d before, %d after", before, after)
	}
}

// TestStoreConcurrent runs Put, Pin, Read, Unpin and Delete from 8
// goroutines over a shared set of IDs in a 1 MiB arena, checking every byte
// read. Run it with -race.
func TestStoreConcurrent(t *testing.T) {
	const (
		arena      = 1 << 20
		goroutines = 8
		ids        = 64
	)
	steps := 400
	if testing.Short() {
		steps = 100
	}
	s, dir := newTestStore(t, arena)
	// Sizes depend on the ID only, so any Put of an ID writes the same bytes.
	sizeOf := func(n int) int {
		switch {
		case n == 0:
			return arena + arena/2 // larger than the arena: a file
		case n%16 == 1:
			return 0
		default:
			return (n * 7919) % (48 * kib)
		}
	}
	check := func(n int, b []byte) error {
		if !bytes.Equal(b, payload(testID(n), sizeOf(n))) {
			return fmt.Errorf("object %d: wrong bytes (%d of them)", n, len(b))
		}
		return nil
	}

	var wg sync.WaitGroup
	errc := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for range steps {
				n := r.Intn(ids)
				id := testID(n)
				var err error
				switch op := r.Intn(10); {
				case op < 4:
					err = s.Put(id, payload(id, sizeOf(n)))
					if errors.Is(err, ErrObjectExists) || errors.Is(err, ErrStoreFull) {
						err = nil
					}
				case op < 7:
					var loc Location
					loc, err = s.Pin(id)
					if err != nil {
						break
					}
					var b []byte
					if loc.Path == "" {
						b = s.mem[loc.Offset : loc.Offset+loc.Size]
					} else {
						b, err = os.ReadFile(loc.Path)
					}
					if err == nil {
						err = check(n, b)
					}
					s.Unpin(id)
				case op < 9:
					var b []byte
					b, err = s.Read(id)
					if err == nil {
						err = check(n, b)
					}
				default:
					s.Delete(id)
				}
				if errors.Is(err, ErrObjectNotFound) || errors.Is(err, ErrNotSealed) {
					err = nil
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}

	st := s.Stats()
	t.Logf("after: %+v", st)
	if st.Used > st.Capacity {
		t.Fatalf("used %d of %d", st.Used, st.Capacity)
	}
	for n := range ids {
		if s.Contains(testID(n)) {
			mustRead(t, s, n, sizeOf(n))
		}
		s.Delete(testID(n))
	}
	if st := s.Stats(); st.Used != 0 || st.Objects != 0 || st.SpilledObjects != 0 || st.SpilledBytes != 0 {
		t.Fatalf("after deleting everything: %+v", st)
	}
	s.Sweep()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("files left in the spill dir: %v", entries)
	}
}

func BenchmarkPutRead(b *testing.B) {
	const size = 1 << 20
	s := NewStore(make([]byte, 64<<20), b.TempDir())
	defer s.Close()
	data := payload(testID(1), size)
	b.SetBytes(2 * size) // one copy in, one out
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := testID(i)
		if err := s.Put(id, data); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Read(id); err != nil {
			b.Fatal(err)
		}
		s.Delete(id)
	}
}

func TestStoreSpillFailure(t *testing.T) {
	// The spill directory cannot be made: a file is in the way.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewStore(make([]byte, 2*kib), filepath.Join(file, "spill"))
	defer s.Close()
	mustPut(t, s, 0, kib)
	mustPut(t, s, 1, kib)
	for _, size := range []int{kib, 4 * kib} {
		err := s.Put(testID(2), make([]byte, size))
		if err == nil || errors.Is(err, ErrStoreFull) {
			t.Fatalf("Put(%d bytes) with a broken spill dir: %v, want an I/O error", size, err)
		}
		if s.Contains(testID(2)) {
			t.Fatal("failed Put left its object")
		}
	}
	// Nothing was lost.
	mustRead(t, s, 0, kib)
	mustRead(t, s, 1, kib)
	checkStats(t, s, StoreStats{Capacity: 2 * kib, Used: 2 * kib, Objects: 2})
}

// While Create writes a spill file, the store's lock is free: the calls an
// agent makes under its own lock (Seal, PinInPlace, Unpin, Delete) go on,
// and an object pinned or deleted meanwhile ends up right.
func TestStoreSpillsWithoutTheLock(t *testing.T) {
	for _, meanwhile := range []string{"pin", "delete"} {
		t.Run(meanwhile, func(t *testing.T) {
			s, dir := newTestStore(t, 2*kib)
			mustPut(t, s, 0, kib)
			mustPut(t, s, 1, kib)
			writing, done := make(chan ID), make(chan struct{})
			spillHook = func(id ID) { writing <- id; <-done }
			defer func() { spillHook = nil }()
			created := make(chan error, 1)
			go func() {
				_, err := s.Create(testID(2), kib)
				created <- err
			}()
			victim := <-writing // object 0, the least recently used
			if victim != testID(0) {
				t.Fatalf("spilling %v, want object 0", victim)
			}
			// The lock is free while the file is written.
			switch meanwhile {
			case "pin":
				loc, err := s.PinInPlace(victim)
				if err != nil || loc.Path != "" {
					t.Fatalf("PinInPlace during the spill: %+v %v", loc, err)
				}
			case "delete":
				s.Delete(victim)
			}
			if st := s.Stats(); st.Objects == 0 {
				t.Fatal("no stats during the spill")
			}
			spillHook = func(ID) {} // the next victim is written at once
			close(done)
			if err := <-created; err != nil {
				t.Fatal(err)
			}
			if err := s.Seal(testID(2)); err != nil {
				t.Fatal(err)
			}
			switch meanwhile {
			case "pin":
				// Object 0 stayed in the arena for its reader (object 1
				// was spilled instead) and keeps its file.
				mustRead(t, s, 0, kib)
				s.Unpin(victim)
				if !spillFileExists(dir, 1) || !spillFileExists(dir, 0) {
					t.Fatal("want object 1 spilled, object 0's file kept")
				}
			case "delete":
				if s.Contains(victim) {
					t.Fatal("a deleted object is still there")
				}
				s.Sweep()
				if spillFileExists(dir, 0) {
					t.Fatal("the deleted object's file is left")
				}
			}
			for n := 0; n < 3; n++ {
				s.Delete(testID(n))
			}
			s.Sweep()
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("files left: %v", entries)
			}
			if st := s.Stats(); st.Used != 0 || st.Objects != 0 {
				t.Fatalf("after deleting everything: %+v", st)
			}
		})
	}
}
