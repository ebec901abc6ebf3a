package sdk

import (
	"errors"
)

// ErrPoolEmpty is what ActorPool's GetNext returns when no call is
// pending.
var ErrPoolEmpty = errors.New("fabric: the actor pool has no pending results")

// ActorPool spreads calls over a fixed set of actors, as Ray's
// ray.util.ActorPool: each call goes to an idle actor, or waits for one;
// results come back in submission order (GetNext) or as they finish
// (GetNextUnordered). An actor is idle again once its result was got.
// A pool is used by one goroutine, like the rest of the SDK.
//
//	pool := sdk.NewActorPool[Worker, int](handles)
//	out, err := sdk.PoolMap(pool, double.Remote, []int{1, 2, 3}) // double is a Method1
type ActorPool[S, R any] struct {
	idle    []Handle[S]
	queued  []func(Handle[S]) Ref[R] // submissions waiting for an idle actor
	pending []poolCall[S, R]         // calls made, in submission order
	next    uint64                   // sequence of the next submission
	nextOut uint64                   // sequence GetNext returns next
	done    map[uint64]poolResult[R] // results got ahead of GetNext, or returned unordered
	held    int                      // results in done for GetNext to return
}

type poolCall[S, R any] struct {
	seq   uint64
	actor Handle[S]
	ref   Ref[R]
}

type poolResult[R any] struct {
	v   R
	err error
}

// NewActorPool returns a pool over the actors.
func NewActorPool[S, R any](actors []Handle[S]) *ActorPool[S, R] {
	return &ActorPool[S, R]{idle: append([]Handle[S](nil), actors...), done: map[uint64]poolResult[R]{}}
}

// Submit calls call on an idle actor, or queues it until one is idle.
// call makes one method call, for example
//
//	pool.Submit(func(h sdk.Handle[Worker]) sdk.Ref[int] { return double.Remote(h, 21) })
func (p *ActorPool[S, R]) Submit(call func(Handle[S]) Ref[R]) {
	if len(p.idle) == 0 {
		p.queued = append(p.queued, call)
		return
	}
	h := p.idle[0]
	p.idle = p.idle[1:]
	p.pending = append(p.pending, poolCall[S, R]{seq: p.next, actor: h, ref: call(h)})
	p.next++
}

// HasNext reports whether a result is pending (submitted and not got).
func (p *ActorPool[S, R]) HasNext() bool {
	return len(p.pending) > 0 || len(p.queued) > 0 || p.held > 0
}

// GetNext returns the result of the oldest submission not yet returned,
// waiting for it (Timeout bounds the wait; a timed out result stays
// pending).
func (p *ActorPool[S, R]) GetNext(opts ...GetOption) (R, error) {
	for {
		if r, ok := p.done[p.nextOut]; ok {
			delete(p.done, p.nextOut)
			p.nextOut++
			if r.err == errSkipped {
				continue
			}
			p.held--
			return r.v, r.err
		}
		if len(p.pending) == 0 {
			var zero R
			return zero, ErrPoolEmpty
		}
		c := p.pending[0] // its seq is nextOut: those before it are in done
		v, err := c.ref.Get(opts...)
		if errors.Is(err, ErrGetTimeout) {
			return v, err
		}
		p.pending = p.pending[1:]
		p.returned(c.actor)
		p.done[c.seq] = poolResult[R]{v, err}
		p.held++
	}
}

// GetNextUnordered returns the result of whichever pending call finishes
// first (Timeout bounds the wait). GetNext then skips it.
func (p *ActorPool[S, R]) GetNextUnordered(opts ...GetOption) (R, error) {
	var zero R
	if len(p.pending) == 0 {
		return zero, ErrPoolEmpty
	}
	refs := make([]Ref[R], len(p.pending))
	for i, c := range p.pending {
		refs[i] = c.ref
	}
	ready, _, err := Wait(refs, 1, opts...)
	if err != nil {
		return zero, err
	}
	if len(ready) == 0 {
		return zero, ErrGetTimeout
	}
	for i, c := range p.pending {
		if c.ref.id != ready[0].id {
			continue
		}
		p.pending = append(p.pending[:i:i], p.pending[i+1:]...)
		v, err := c.ref.Get()
		p.returned(c.actor)
		p.done[c.seq] = poolResult[R]{err: errSkipped}
		return v, err
	}
	return zero, errors.New("fabric: the actor pool lost track of a ready call")
}

var errSkipped = errors.New("fabric: returned out of order")

// returned makes an actor idle and gives it the oldest queued submission.
func (p *ActorPool[S, R]) returned(h Handle[S]) {
	p.idle = append(p.idle, h)
	if len(p.queued) > 0 {
		call := p.queued[0]
		p.queued = p.queued[1:]
		p.Submit(call)
	}
}

// PoolMap calls method on the pool's actors for each value and returns
// the results in the values' order (Ray's ActorPool.map). It stops at the
// first error, after collecting every pending result.
func PoolMap[S, A, R any](p *ActorPool[S, R], method func(Handle[S], A) Ref[R], values []A) ([]R, error) {
	for _, v := range values {
		v := v
		p.Submit(func(h Handle[S]) Ref[R] { return method(h, v) })
	}
	out := make([]R, 0, len(values))
	var first error
	for range values {
		r, err := p.GetNext()
		if err != nil && first == nil {
			first = err
		}
		out = append(out, r)
	}
	return out, first
}
