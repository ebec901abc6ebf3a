package sdk

import (
	"fmt"
	"sync"
	"time"
)

// Batcher gathers the calls a concurrent actor (a deployment with
// max_ongoing_requests past 1, or sdk.MaxConcurrency) runs side by side
// into batches, as Ray Serve's @serve.batch does: a batch runs once it
// holds maxSize calls, or wait after its first call arrived, whichever
// comes first, and each call gets its own result.
//
//	var batch = sdk.NewBatcher(8, 10*time.Millisecond, func(in []int) ([]int, error) { ... })
//	... out, err := batch.Call(x) // in a method, for each request
type Batcher[In, Out any] struct {
	maxSize int
	wait    time.Duration
	fn      func([]In) ([]Out, error)

	mu      sync.Mutex
	pending []batchItem[In, Out]
	gen     uint64 // the batch being gathered
}

type batchItem[In, Out any] struct {
	in   In
	done chan batchResult[Out]
}

type batchResult[Out any] struct {
	out Out
	err error
}

// NewBatcher makes a batcher that runs fn on up to maxSize inputs at a
// time, waiting at most wait for a batch to fill; fn returns one output
// per input, in order.
func NewBatcher[In, Out any](maxSize int, wait time.Duration, fn func([]In) ([]Out, error)) *Batcher[In, Out] {
	return &Batcher[In, Out]{maxSize: max(1, maxSize), wait: max(0, wait), fn: fn}
}

// Call adds in to the batch being gathered and returns its output once
// the batch ran.
func (b *Batcher[In, Out]) Call(in In) (Out, error) {
	done := make(chan batchResult[Out], 1)
	b.mu.Lock()
	b.pending = append(b.pending, batchItem[In, Out]{in: in, done: done})
	switch {
	case len(b.pending) >= b.maxSize:
		items := b.take()
		b.mu.Unlock()
		b.run(items)
	case len(b.pending) == 1:
		gen := b.gen
		b.mu.Unlock()
		time.AfterFunc(b.wait, func() {
			b.mu.Lock()
			if b.gen != gen || len(b.pending) == 0 {
				b.mu.Unlock()
				return // that batch ran full
			}
			items := b.take()
			b.mu.Unlock()
			b.run(items)
		})
	default:
		b.mu.Unlock()
	}
	r := <-done
	return r.out, r.err
}

// take ends the batch being gathered; b.mu is held.
func (b *Batcher[In, Out]) take() []batchItem[In, Out] {
	items := b.pending
	b.pending = nil
	b.gen++
	return items
}

func (b *Batcher[In, Out]) run(items []batchItem[In, Out]) {
	ins := make([]In, len(items))
	for i, it := range items {
		ins[i] = it.in
	}
	outs, err := b.fn(ins)
	if err == nil && len(outs) != len(ins) {
		err = fmt.Errorf("sdk: a batch function returned %d outputs for %d inputs", len(outs), len(ins))
	}
	for i, it := range items {
		r := batchResult[Out]{err: err}
		if err == nil {
			r.out = outs[i]
		}
		it.done <- r
	}
}
