//go:build !wasip1

package sdk

import (
	"errors"
	"slices"
	"testing"
	"time"
)

type tripler struct{}

var triplerClass = Actor("pool_test.Tripler", func() (*tripler, error) { return &tripler{}, nil })

var triple = NewMethod1(triplerClass, "triple", func(_ *tripler, x int) (int, error) {
	if x < 0 {
		return 0, errors.New("negative")
	}
	return 3 * x, nil
})

// TestActorPool: submissions beyond the idle actors wait for one; GetNext
// keeps submission order, also after GetNextUnordered took results out of
// it; an error stops PoolMap's result, not the pool.
func TestActorPool(t *testing.T) {
	newMemHost(t)
	pool := NewActorPool[tripler, int]([]Handle[tripler]{triplerClass.Remote(), triplerClass.Remote()})
	out, err := PoolMap(pool, triple.Remote, []int{1, 2, 3, 4, 5})
	if err != nil || !slices.Equal(out, []int{3, 6, 9, 12, 15}) {
		t.Fatalf("PoolMap = %v, %v", out, err)
	}
	if pool.HasNext() {
		t.Fatal("HasNext after PoolMap took every result")
	}
	for _, x := range []int{10, 20, 30, 40} {
		pool.Submit(func(h Handle[tripler]) Ref[int] { return triple.Remote(h, x) })
	}
	if len(pool.queued) != 2 || len(pool.pending) != 2 {
		t.Fatalf("queued %d pending %d, want 2 and 2 (two actors)", len(pool.queued), len(pool.pending))
	}
	first, err := pool.GetNextUnordered(Timeout(time.Second))
	if err != nil || first != 30 && first != 60 {
		t.Fatalf("GetNextUnordered = %d, %v", first, err)
	}
	var rest []int
	for pool.HasNext() {
		v, err := pool.GetNext()
		if err != nil {
			t.Fatal(err)
		}
		rest = append(rest, v)
	}
	if len(rest) != 3 || !slices.IsSorted(rest) || slices.Contains(rest, first) {
		t.Fatalf("GetNext gave %v after %d went unordered", rest, first)
	}
	if _, err := pool.GetNext(); !errors.Is(err, ErrPoolEmpty) {
		t.Fatalf("GetNext on an empty pool: %v", err)
	}
	out, err = PoolMap(pool, triple.Remote, []int{1, -1, 2})
	if err == nil || out[0] != 3 || out[2] != 6 || pool.HasNext() {
		t.Fatalf("PoolMap with a failing call = %v, %v (has next %v)", out, err, pool.HasNext())
	}
}
