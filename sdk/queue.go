package sdk

import (
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Errors of a Queue.
var (
	ErrQueueFull  = errors.New("fabric: the queue is full")
	ErrQueueEmpty = errors.New("fabric: the queue is empty")
)

// Queue is a first-in first-out queue of T that tasks and actors share,
// as Ray's ray.util.queue.Queue: an actor holds the items, and a Queue
// value (passed to tasks as an argument, or inside one) refers to it.
// Put waits while the queue is full and Get while it is empty, polling
// the actor; PutNowait and GetNowait do not wait.
type Queue[T any] struct {
	h Handle[queueActor]
}

// queueActor is the actor behind a Queue: encoded items, oldest first.
type queueActor struct {
	items   [][]byte
	maxSize int
}

var queueClass = Actor1("fabric.Queue", func(maxSize int) (*queueActor, error) {
	return &queueActor{maxSize: maxSize}, nil
})

var queuePut = NewMethod1(queueClass, "put", func(q *queueActor, item []byte) (bool, error) {
	if q.maxSize > 0 && len(q.items) >= q.maxSize {
		return false, nil
	}
	q.items = append(q.items, item)
	return true, nil
})

// queueItem is what the queue actor's get returns.
type queueItem struct {
	Item []byte `cbor:"i"`
	OK   bool   `cbor:"ok"` // false: the queue was empty
}

var queueGet = NewMethod0(queueClass, "get", func(q *queueActor) (queueItem, error) {
	if len(q.items) == 0 {
		return queueItem{}, nil
	}
	item := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	return queueItem{Item: item, OK: true}, nil
})

var queueSize = NewMethod0(queueClass, "size", func(q *queueActor) (int, error) { return len(q.items), nil })

// NewQueue creates a queue that holds at most maxSize items (0: no
// bound). opts are the options of its actor (Name, resources).
func NewQueue[T any](maxSize int, opts ...Option) (Queue[T], error) {
	h := queueClass.Options(opts...).Remote(maxSize)
	if h.err != nil {
		return Queue[T]{}, h.err
	}
	return Queue[T]{h: h}, nil
}

// PutNowait adds v, or returns ErrQueueFull at once.
func (q Queue[T]) PutNowait(v T) error {
	b, _, err := encode(v)
	if err != nil {
		return fmt.Errorf("%w: queue item: %v", ErrBadArguments, err)
	}
	ok, err := queuePut.Remote(q.h, b).Get()
	if err != nil {
		return err
	}
	if !ok {
		return ErrQueueFull
	}
	return nil
}

// Put adds v, waiting while the queue is full (Timeout bounds the wait;
// past it, ErrQueueFull).
func (q Queue[T]) Put(v T, opts ...GetOption) error {
	return poll(getOpts(opts).timeoutMs, ErrQueueFull, func() error { return q.PutNowait(v) })
}

// GetNowait takes the oldest item, or returns ErrQueueEmpty at once.
func (q Queue[T]) GetNowait() (T, error) {
	var v T
	it, err := queueGet.Remote(q.h).Get()
	if err != nil {
		return v, err
	}
	if !it.OK {
		return v, ErrQueueEmpty
	}
	err = decode(it.Item, &v)
	return v, err
}

// Get takes the oldest item, waiting while the queue is empty (Timeout
// bounds the wait; past it, ErrQueueEmpty).
func (q Queue[T]) Get(opts ...GetOption) (T, error) {
	var v T
	err := poll(getOpts(opts).timeoutMs, ErrQueueEmpty, func() error {
		var err error
		v, err = q.GetNowait()
		return err
	})
	return v, err
}

// Size returns the number of items in the queue.
func (q Queue[T]) Size() (int, error) { return queueSize.Remote(q.h).Get() }

// Shutdown kills the queue's actor; its items are lost.
func (q Queue[T]) Shutdown() error { return Kill(q.h, true) }

// MarshalCBOR encodes the queue as its actor's handle.
func (q Queue[T]) MarshalCBOR() ([]byte, error) { return cbor.Marshal(q.h) }

// UnmarshalCBOR decodes a queue encoded by MarshalCBOR.
func (q *Queue[T]) UnmarshalCBOR(b []byte) error { return decMode.Unmarshal(b, &q.h) }

// poll calls try until it returns something other than busy, waiting
// longer between tries (1 ms doubling to 50 ms), at most timeoutMs
// (negative: no bound).
func poll(timeoutMs int64, busy error, try func() error) error {
	timeout := time.Duration(timeoutMs) * time.Millisecond
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	pause := time.Millisecond
	for {
		err := try()
		if !errors.Is(err, busy) {
			return err
		}
		if timeout >= 0 && time.Now().Add(pause).After(deadline) {
			return err
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}
