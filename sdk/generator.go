package sdk

import (
	"errors"
	"iter"

	"github.com/wasmfabric/fabric/internal/abi"
)

// ErrEndOfStream is what Stream.Next returns after a generator's last
// item (Python's StopIteration).
var ErrEndOfStream = errors.New("fabric: end of stream")

// generatorOption marks a task or method as a generator.
func generatorOption(o *abi.Options) { o.Generator = true }

// runGenerator runs a generator's body: each value it yields becomes an
// object at once (yield_value), in order. Its result is their number (the
// agent counts them too, and stores its own count).
func runGenerator[T any](body func(yield func(T) error) error) (any, error) {
	next := uint32(abi.FirstItem)
	err := body(func(v T) error {
		if next-abi.FirstItem >= abi.MaxItems {
			return errors.New("fabric: a generator yields at most 1048576 items")
		}
		parts, refs, err := encodeParts(v)
		if err != nil {
			return err
		}
		if err := host.yield(parts, refs, next); err != nil {
			return err
		}
		next++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return int(next - abi.FirstItem), nil
}

// Stream is the caller's side of a generator call, as Ray's
// ObjectRefGenerator: Next returns a reference to each item as soon as
// the generator yields it, while the generator goes on; Refs waits for
// the end and returns them all (num_returns="dynamic"). If the generator
// fails after k items, those k stay readable and Next then returns its
// error. A Stream is used by one goroutine.
type Stream[T any] struct {
	end   Ref[int]
	next  int
	count int   // items, once the end is known; -1 before
	err   error // the generator's error, once known
}

func submitStream[T any](d *taskDef, actorID *ObjectID, fn string, extra []Option, args ...any) *Stream[T] {
	ids, err := d.submit(actorID, fn, extra, args)
	if err != nil {
		return &Stream[T]{end: Ref[int]{err: err}, count: -1}
	}
	return &Stream[T]{end: Ref[int]{id: ids[0]}, count: -1}
}

// End is a reference that is ready once the generator has ended: its
// value is the number of items, or its error. Wait takes it.
func (s *Stream[T]) End() Ref[int] { return s.end }

// item returns the reference to item i.
func (s *Stream[T]) item(i int) Ref[T] {
	return Ref[T]{id: objectIDWithIndex(s.end.id, uint32(abi.FirstItem+i))}
}

func objectIDWithIndex(id ObjectID, i uint32) ObjectID {
	id[16], id[17], id[18], id[19] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return id
}

// Next waits for the generator's next item and returns a reference to
// it; ErrEndOfStream after the last; the generator's error after the
// items it made before failing; ErrGetTimeout when Timeout passes first.
func (s *Stream[T]) Next(opts ...GetOption) (Ref[T], error) {
	if s.end.err != nil {
		return Ref[T]{}, s.end.err
	}
	cfg := getOpts(opts)
	for {
		if s.count >= 0 {
			if s.next < s.count {
				r := s.item(s.next)
				s.next++
				return r, nil
			}
			if s.err != nil {
				return Ref[T]{}, s.err
			}
			return Ref[T]{}, ErrEndOfStream
		}
		it := s.item(s.next)
		ready, err := host.wait([]ObjectID{it.id, s.end.id}, 1, cfg.timeoutMs)
		if err != nil {
			// The item is past an end the agent no longer tracks: the end
			// says how many there were.
			ready = []bool{false, true}
		}
		if ready[0] {
			s.next++
			return it, nil
		}
		if !ready[1] {
			return Ref[T]{}, ErrGetTimeout
		}
		n, err := s.end.Get()
		host.release([]ObjectID{it.id}) // a placeholder the wait made, if any
		if err != nil {
			s.count, s.err = s.next, err
			continue
		}
		s.count = n
	}
}

// All iterates over the items' references as Next returns them; the
// last pair holds the generator's error, if it failed:
//
//	for ref, err := range stream.All() { ... }
func (s *Stream[T]) All(opts ...GetOption) iter.Seq2[Ref[T], error] {
	return func(yield func(Ref[T], error) bool) {
		for {
			r, err := s.Next(opts...)
			if errors.Is(err, ErrEndOfStream) {
				return
			}
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// Refs waits until the generator ends and returns the references to all
// its items (Ray's num_returns="dynamic"), and its error if it failed
// after them.
func (s *Stream[T]) Refs(opts ...GetOption) ([]Ref[T], error) {
	if s.end.err != nil {
		return nil, s.end.err
	}
	n, err := s.end.Get(opts...)
	if errors.Is(err, ErrGetTimeout) {
		return nil, err
	}
	if err != nil {
		// Failed: its items are those a Wait finds ready, in order.
		for s.count < 0 {
			if _, nerr := s.Next(); nerr != nil {
				break
			}
		}
		n = s.next
	}
	refs := make([]Ref[T], n)
	for i := range refs {
		refs[i] = s.item(i)
	}
	return refs, err
}
