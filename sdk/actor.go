package sdk

import (
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
)

// ActorClass is a Go type S registered as an actor class: Remote creates an
// actor (an instance of S living in its own sandbox) and returns its handle.
type ActorClass[S any] struct {
	name  string
	opts  []Option
	extra []Option
}

// Actor registers a class whose constructor takes no arguments.
func Actor[S any](name string, ctor func() (*S, error), opts ...Option) *ActorClass[S] {
	register(name+abi.ActorInitSuffix, 0, func([][]byte) (any, error) {
		s, err := ctor()
		if err != nil {
			return nil, err
		}
		actor = s
		return nil, nil
	})
	return &ActorClass[S]{name: name, opts: opts}
}

// Actor1 registers a class whose constructor takes one argument.
func Actor1[S, A any](name string, ctor func(A) (*S, error), opts ...Option) *ActorClass[S] {
	register(name+abi.ActorInitSuffix, 1, func(raw [][]byte) (any, error) {
		a, err := arg[A](raw, 0)
		if err != nil {
			return nil, err
		}
		s, err := ctor(a)
		if err != nil {
			return nil, err
		}
		actor = s
		return nil, nil
	})
	return &ActorClass[S]{name: name, opts: opts}
}

// Name returns the class name.
func (c *ActorClass[S]) Name() string { return c.name }

// Options returns the class with per-actor options added (Name, MaxRestarts,
// resources).
func (c *ActorClass[S]) Options(opts ...Option) *ActorClass[S] {
	cc := *c
	cc.extra = append(append([]Option(nil), c.extra...), opts...)
	return &cc
}

// Remote creates an actor; args are the constructor's (values or Refs).
// Creation failures surface as ErrActorDied on the actor's method calls.
func (c *ActorClass[S]) Remote(args ...any) Handle[S] {
	spec := abi.TaskSpec{Func: c.name, Options: applyOptions(c.opts, c.extra)}
	var err error
	var put []ObjectID
	spec.Args, spec.Refs, put, err = buildArgs(args)
	if len(put) > 0 {
		defer host.release(put) // after the creation: the constructor holds them
	}
	if err != nil {
		return Handle[S]{err: err}
	}
	b := spec.AppendCBOR(nil)
	id, err := host.actorCreate(b)
	if err != nil {
		return Handle[S]{err: err}
	}
	return Handle[S]{id: id}
}

// Handle refers to an actor of class S. Handles may be passed to other tasks.
type Handle[S any] struct {
	id  ObjectID
	err error
}

// ID returns the actor's ID.
func (h Handle[S]) ID() ObjectID { return h.id }

// Err returns the error of creating or looking up the actor, if any.
func (h Handle[S]) Err() error { return h.err }

// MarshalCBOR encodes the handle as CBOR tag abi.TagActor.
func (h Handle[S]) MarshalCBOR() ([]byte, error) {
	if h.err != nil {
		return nil, h.err
	}
	return marshalTagged(abi.TagActor, h.id), nil
}

// UnmarshalCBOR decodes a handle.
func (h *Handle[S]) UnmarshalCBOR(b []byte) error {
	id, err := unmarshalTagged(abi.TagActor, b, "actor handle")
	h.id = id
	return err
}

// GetActor looks up a named actor of class c.
func GetActor[S any](c *ActorClass[S], name string) (Handle[S], error) {
	id, err := host.actorLookup(name)
	if err != nil {
		return Handle[S]{err: err}, err
	}
	return Handle[S]{id: id}, nil
}

// Kill stops an actor. With noRestart false it is restarted if it has
// restarts left.
func Kill[S any](h Handle[S], noRestart bool) error {
	if h.err != nil {
		return h.err
	}
	return host.actorKill(h.id, noRestart)
}

func self[S any](class string) (*S, error) {
	s, ok := actor.(*S)
	if !ok {
		return nil, fmt.Errorf("fabric: this instance does not host a %s actor", class)
	}
	return s, nil
}

func methodDef(class, method string) *taskDef {
	return &taskDef{name: class + "." + method}
}

// Method0 is an actor method without arguments.
type Method0[S, R any] struct {
	d     *taskDef
	extra []Option
}

// NewMethod0 registers fn as method name of class c.
func NewMethod0[S, R any](c *ActorClass[S], name string, fn func(*S) (R, error)) Method0[S, R] {
	d := methodDef(c.name, name)
	register(d.name, 0, func([][]byte) (any, error) {
		s, err := self[S](c.name)
		if err != nil {
			return nil, err
		}
		return fn(s)
	})
	return Method0[S, R]{d: d}
}

// Remote calls the method on the actor; calls from one caller run in the
// order they were made.
func (m Method0[S, R]) Remote(h Handle[S]) Ref[R] {
	if h.err != nil {
		return Ref[R]{err: h.err}
	}
	return submitOne[R](m.d, &h.id, m.d.name, m.extra)
}

// Options returns the method with per-call options added, as .options()
// on a Ray method: Name (the call's name in output), TaskTimeout and
// MaxTaskRetries apply to a method call.
func (m Method0[S, R]) Options(opts ...Option) Method0[S, R] {
	m.extra = append(append([]Option(nil), m.extra...), opts...)
	return m
}

// Method1 is an actor method with one argument.
type Method1[S, A, R any] struct {
	d     *taskDef
	extra []Option
}

// NewMethod1 registers fn as method name of class c.
func NewMethod1[S, A, R any](c *ActorClass[S], name string, fn func(*S, A) (R, error)) Method1[S, A, R] {
	d := methodDef(c.name, name)
	register(d.name, 1, func(raw [][]byte) (any, error) {
		s, err := self[S](c.name)
		if err != nil {
			return nil, err
		}
		a, err := arg[A](raw, 0)
		if err != nil {
			return nil, err
		}
		return fn(s, a)
	})
	return Method1[S, A, R]{d: d}
}

// Remote calls the method; a is an A or a Ref to one.
func (m Method1[S, A, R]) Remote(h Handle[S], a any) Ref[R] {
	if h.err != nil {
		return Ref[R]{err: h.err}
	}
	return submitOne[R](m.d, &h.id, m.d.name, m.extra, a)
}

// Options returns the method with per-call options added (see
// Method0.Options).
func (m Method1[S, A, R]) Options(opts ...Option) Method1[S, A, R] {
	m.extra = append(append([]Option(nil), m.extra...), opts...)
	return m
}

// Method2 is an actor method with two arguments.
type Method2[S, A, B, R any] struct {
	d     *taskDef
	extra []Option
}

// NewMethod2 registers fn as method name of class c.
func NewMethod2[S, A, B, R any](c *ActorClass[S], name string, fn func(*S, A, B) (R, error)) Method2[S, A, B, R] {
	d := methodDef(c.name, name)
	register(d.name, 2, func(raw [][]byte) (any, error) {
		s, err := self[S](c.name)
		if err != nil {
			return nil, err
		}
		a, err := arg[A](raw, 0)
		if err != nil {
			return nil, err
		}
		b, err := arg[B](raw, 1)
		if err != nil {
			return nil, err
		}
		return fn(s, a, b)
	})
	return Method2[S, A, B, R]{d: d}
}

// Remote calls the method; each argument is a value or a Ref to one.
func (m Method2[S, A, B, R]) Remote(h Handle[S], a, b any) Ref[R] {
	if h.err != nil {
		return Ref[R]{err: h.err}
	}
	return submitOne[R](m.d, &h.id, m.d.name, m.extra, a, b)
}

// Options returns the method with per-call options added (see
// Method0.Options).
func (m Method2[S, A, B, R]) Options(opts ...Option) Method2[S, A, B, R] {
	m.extra = append(append([]Option(nil), m.extra...), opts...)
	return m
}

// Method1N is an actor method with one argument whose result is a slice
// of n values, each returned as its own object (num_returns=n on a Ray
// method).
type Method1N[S, A, R any] struct {
	d     *taskDef
	extra []Option
}

// NewMethod1N registers fn as method name of class c; fn must return
// exactly n values.
func NewMethod1N[S, A, R any](c *ActorClass[S], name string, n int, fn func(*S, A) ([]R, error)) Method1N[S, A, R] {
	d := methodDef(c.name, name)
	d.nret = n
	register(d.name, 1, func(raw [][]byte) (any, error) {
		s, err := self[S](c.name)
		if err != nil {
			return nil, err
		}
		a, err := arg[A](raw, 0)
		if err != nil {
			return nil, err
		}
		rs, err := fn(s, a)
		if err != nil {
			return nil, err
		}
		return splitReturns(d.name, n, rs)
	})
	return Method1N[S, A, R]{d: d}
}

// Remote calls the method and returns one reference per result.
func (m Method1N[S, A, R]) Remote(h Handle[S], a any) []Ref[R] {
	refs := make([]Ref[R], m.d.nret)
	if h.err != nil {
		for i := range refs {
			refs[i] = Ref[R]{err: h.err}
		}
		return refs
	}
	ids, err := m.d.submit(&h.id, m.d.name, m.extra, []any{a})
	for i := range refs {
		if err != nil {
			refs[i] = Ref[R]{err: err}
		} else {
			refs[i] = Ref[R]{id: ids[i]}
		}
	}
	return refs
}

// Options returns the method with per-call options added (see
// Method0.Options).
func (m Method1N[S, A, R]) Options(opts ...Option) Method1N[S, A, R] {
	m.extra = append(append([]Option(nil), m.extra...), opts...)
	return m
}
