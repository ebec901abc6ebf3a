package sdk

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBatcher(t *testing.T) {
	for _, c := range []struct {
		name      string
		calls     int
		maxSize   int
		wait      time.Duration
		wantSizes []int
	}{
		{"full batches, then the rest after the wait", 10, 4, 500 * time.Millisecond, []int{2, 4, 4}},
		{"one call alone, after the wait", 1, 8, 10 * time.Millisecond, []int{1}},
		{"a batch of one at a time", 3, 1, time.Hour, []int{1, 1, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var sizes []int
			b := NewBatcher(c.maxSize, c.wait, func(in []int) ([]int, error) {
				mu.Lock()
				sizes = append(sizes, len(in))
				mu.Unlock()
				out := make([]int, len(in))
				for i, x := range in {
					out[i] = 2 * x
				}
				return out, nil
			})
			var wg sync.WaitGroup
			for i := range c.calls {
				wg.Go(func() {
					if got, err := b.Call(i); err != nil || got != 2*i {
						t.Errorf("Call(%d) = %d, %v", i, got, err)
					}
				})
			}
			wg.Wait()
			slices.Sort(sizes)
			if !slices.Equal(sizes, c.wantSizes) {
				t.Fatalf("batch sizes %v, want %v", sizes, c.wantSizes)
			}
		})
	}
	// A function's error, or outputs of the wrong number, fail each call.
	boom := errors.New("boom")
	bad := NewBatcher(2, time.Millisecond, func(in []int) ([]int, error) { return nil, boom })
	if _, err := bad.Call(1); !errors.Is(err, boom) {
		t.Fatalf("a batch's error: %v", err)
	}
	short := NewBatcher(1, time.Millisecond, func(in []int) ([]int, error) { return nil, nil })
	if _, err := short.Call(1); err == nil {
		t.Fatal("a batch with no outputs answered")
	}
}
