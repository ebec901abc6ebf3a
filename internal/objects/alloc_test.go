package objects

import (
	"cmp"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// checkAllocator verifies the allocator's invariants: free ranges sorted,
// aligned, disjoint and fully coalesced; live ranges aligned and disjoint
// from each other and from free ranges; together they cover the capacity
// exactly; Used matches the live ranges.
func checkAllocator(t testing.TB, a *Allocator) {
	t.Helper()
	var all []span
	var used int64
	for i, s := range a.free {
		if s.size <= 0 {
			t.Fatalf("free range %d has size %d", i, s.size)
		}
		if s.off%a.align != 0 || s.size%a.align != 0 {
			t.Fatalf("free range %+v not aligned to %d", s, a.align)
		}
		if i > 0 && a.free[i-1].end() >= s.off {
			t.Fatalf("free ranges %+v and %+v overlap, touch or are out of order", a.free[i-1], s)
		}
		all = append(all, s)
	}
	for off, size := range a.live {
		if off%a.align != 0 || size%a.align != 0 || size <= 0 {
			t.Fatalf("live range {%d %d} not aligned to %d", off, size, a.align)
		}
		used += size
		all = append(all, span{off, size})
	}
	if used != a.Used() {
		t.Fatalf("Used() = %d, live ranges sum to %d", a.Used(), used)
	}
	slices.SortFunc(all, func(x, y span) int { return cmp.Compare(x.off, y.off) })
	var next int64
	for _, s := range all {
		if s.off != next {
			t.Fatalf("range %+v: expected it to start at %d (gap or overlap)", s, next)
		}
		next = s.end()
	}
	if next != a.Capacity() {
		t.Fatalf("ranges end at %d, capacity %d", next, a.Capacity())
	}
}

func TestAllocatorTable(t *testing.T) {
	type step struct {
		alloc  int64 // size to allocate, when free < 0
		free   int64 // offset to free, or -1
		wantOK bool
		want   int64 // expected offset of an alloc
	}
	al := func(size int64, ok bool, off int64) step { return step{alloc: size, free: -1, wantOK: ok, want: off} }
	fr := func(off int64) step { return step{free: off} }
	tests := []struct {
		name        string
		capacity    int64
		align       int64
		steps       []step
		wantUsed    int64
		wantLargest int64
	}{
		{"empty", 0, 64, []step{al(0, false, 0), al(1, false, 0)}, 0, 0},
		{"rounds capacity down", 100, 64, []step{al(64, true, 0), al(1, false, 0)}, 64, 0},
		{"zero size takes align", 256, 64, []step{al(0, true, 0), al(0, true, 64)}, 128, 128},
		{"rounds size up", 256, 64, []step{al(1, true, 0), al(65, true, 64), al(64, true, 192)}, 256, 0},
		{"negative size", 256, 64, []step{al(-1, false, 0)}, 0, 256},
		{"too large", 256, 64, []step{al(257, false, 0), al(1<<62, false, 0)}, 0, 256},
		{"exact fit", 256, 64, []step{al(256, true, 0), al(0, false, 0)}, 256, 0},
		{"first fit reuses hole", 256, 64, []step{
			al(64, true, 0), al(64, true, 64), al(64, true, 128), fr(64), al(10, true, 64),
		}, 192, 64},
		{"first fit skips small hole", 512, 64, []step{
			al(64, true, 0), al(64, true, 64), al(64, true, 128), fr(64), al(128, true, 192),
		}, 256, 192},
		{"coalesce prev", 256, 64, []step{
			al(64, true, 0), al(64, true, 64), al(64, true, 128), fr(0), fr(64), al(128, true, 0),
		}, 192, 64},
		{"coalesce next", 256, 64, []step{
			al(64, true, 0), al(64, true, 64), al(128, true, 128), fr(64), fr(0), al(128, true, 0),
		}, 256, 0},
		{"coalesce both", 256, 64, []step{
			al(64, true, 0), al(64, true, 64), al(64, true, 128), al(64, true, 192),
			fr(0), fr(128), fr(64), al(192, true, 0),
		}, 256, 0},
		{"coalesce with tail", 256, 64, []step{al(64, true, 0), al(64, true, 64), fr(64), fr(0)}, 0, 256},
		{"align 1", 10, 1, []step{al(3, true, 0), al(7, true, 3), al(0, false, 0), fr(3), al(0, true, 3)}, 4, 6},
		{"align 4096", 3 * 4096, 4096, []step{al(1, true, 0), al(4097, true, 4096), al(1, false, 0)}, 3 * 4096, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAllocator(tt.capacity, tt.align)
			for i, s := range tt.steps {
				if s.free >= 0 {
					a.Free(s.free)
				} else {
					off, ok := a.Alloc(s.alloc)
					if ok != s.wantOK || (ok && off != s.want) {
						t.Fatalf("step %d: Alloc(%d) = %d, %v; want %d, %v", i, s.alloc, off, ok, s.want, s.wantOK)
					}
				}
				checkAllocator(t, a)
			}
			if got := a.Used(); got != tt.wantUsed {
				t.Errorf("Used() = %d, want %d", got, tt.wantUsed)
			}
			if got := a.LargestFree(); got != tt.wantLargest {
				t.Errorf("LargestFree() = %d, want %d", got, tt.wantLargest)
			}
		})
	}
}

func TestAllocatorCapacityAndSizeOf(t *testing.T) {
	a := NewAllocator(1000, 64)
	if a.Capacity() != 960 || a.Align() != 64 {
		t.Fatalf("Capacity, Align = %d, %d; want 960, 64", a.Capacity(), a.Align())
	}
	off, ok := a.Alloc(65)
	if !ok {
		t.Fatal("Alloc failed")
	}
	if size, ok := a.SizeOf(off); !ok || size != 128 {
		t.Fatalf("SizeOf = %d, %v; want 128, true", size, ok)
	}
	if _, ok := a.SizeOf(off + 64); ok {
		t.Fatal("SizeOf of an inner offset reported an allocation")
	}
}

func TestAllocatorFreePanics(t *testing.T) {
	tests := []struct {
		name string
		run  func(a *Allocator)
	}{
		{"never allocated", func(a *Allocator) { a.Free(64) }},
		{"double free", func(a *Allocator) {
			off, _ := a.Alloc(10)
			a.Free(off)
			a.Free(off)
		}},
		{"inner offset", func(a *Allocator) {
			off, _ := a.Alloc(128)
			a.Free(off + 64)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if !strings.Contains(msg, "not allocated") {
					t.Fatalf("recovered %v, want a panic about an unallocated offset", r)
				}
			}()
			tt.run(NewAllocator(1024, 64))
		})
	}
}

func TestNewAllocatorPanics(t *testing.T) {
	for _, tt := range []struct{ capacity, align int64 }{{100, 0}, {100, 3}, {100, -64}, {-1, 64}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewAllocator(%d, %d) did not panic", tt.capacity, tt.align)
				}
			}()
			NewAllocator(tt.capacity, tt.align)
		}()
	}
}

// runAllocatorOps drives an allocator with a sequence of operations taken
// from next (alloc of a size, or free of a random live allocation), checking
// invariants after every step, then frees everything and checks that the
// free list coalesced back into one range.
func runAllocatorOps(t testing.TB, capacity, align int64, steps int, next func() (isFree bool, n int64)) {
	a := NewAllocator(capacity, align)
	var live []int64
	for range steps {
		isFree, n := next()
		if isFree && len(live) > 0 {
			i := int(n % int64(len(live)))
			a.Free(live[i])
			live = slices.Delete(live, i, i+1)
		} else {
			largest := a.LargestFree()
			off, ok := a.Alloc(n)
			need, fits := a.roundedSize(n)
			if ok != (fits && need <= largest) {
				t.Fatalf("Alloc(%d) ok=%v, but largest free range is %d", n, ok, largest)
			}
			if ok {
				live = append(live, off)
			}
		}
		checkAllocator(t, a)
	}
	for _, off := range live {
		a.Free(off)
	}
	checkAllocator(t, a)
	if a.Used() != 0 || (a.Capacity() > 0 && len(a.free) != 1) || a.LargestFree() != a.Capacity() {
		t.Fatalf("after freeing everything: used %d, free ranges %v, capacity %d", a.Used(), a.free, a.Capacity())
	}
}

func TestAllocatorRandom(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewSource(seed))
		capacity := r.Int63n(1 << 16)
		align := int64(1) << r.Intn(8)
		runAllocatorOps(t, capacity, align, 2000, func() (bool, int64) {
			if r.Intn(5) < 2 {
				return true, r.Int63()
			}
			return false, r.Int63n(capacity/4 + 2)
		})
	}
}

func FuzzAllocator(f *testing.F) {
	f.Add(uint16(4096), uint8(6), []byte{0, 10, 0, 20, 1, 0, 0, 64, 1, 1})
	f.Add(uint16(1000), uint8(0), []byte{0, 255, 0, 0, 1, 0, 0, 1})
	f.Add(uint16(0), uint8(3), []byte{0, 0})
	f.Fuzz(func(t *testing.T, capacity uint16, alignLog uint8, ops []byte) {
		align := int64(1) << (alignLog % 13)
		i := 0
		runAllocatorOps(t, int64(capacity), align, len(ops)/2, func() (bool, int64) {
			op, arg := ops[i], ops[i+1]
			i += 2
			if op%3 == 1 {
				return true, int64(arg)
			}
			// Sizes up to a bit over the capacity.
			return false, int64(arg) * (int64(capacity)/200 + 1)
		})
	})
}
