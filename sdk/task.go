package sdk

import (
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
)

// taskDef is the untyped core shared by the typed task wrappers.
type taskDef struct {
	name string
	opts []Option
	nret int
	// The encoding of the options with the last list of extra options a
	// call used. Options(...) makes a new list each time and options are
	// values, so a Func made once with Options encodes them once, not on
	// every call.
	cachedExtra *Option
	cachedLen   int
	cached      bool
	cachedCBOR  []byte
}

// encodedOptions returns the encoding of the task's options with extra.
func (d *taskDef) encodedOptions(extra []Option) []byte {
	var first *Option
	if len(extra) > 0 {
		first = &extra[0]
	}
	if !d.cached || d.cachedExtra != first || d.cachedLen != len(extra) {
		o := applyOptions(d.opts, extra)
		d.cachedCBOR = o.AppendCBOR(nil)
		d.cachedExtra, d.cachedLen, d.cached = first, len(extra), true
	}
	return d.cachedCBOR
}

// buildArgs encodes the arguments of a call: values inline, references by ID.
// autoPutMin is the size of an encoded argument from which it goes
// through the object store, as Ray puts arguments over 100 KiB: the
// submission then carries its ID, not its bytes, and the agent keeps no
// copy of it in its memory.
const autoPutMin = 100 << 10

// buildArgs encodes a call's arguments. Those of autoPutMin bytes or more
// are put first and passed by reference; their IDs are returned in put,
// for the caller to release once the submission has gone (the task holds
// them from then on).
func buildArgs(args []any) (out []abi.Arg, nested [][]byte, put []ObjectID, err error) {
	out = make([]abi.Arg, len(args))
	for i, a := range args {
		if r, ok := a.(anyRef); ok {
			id, err := r.objectID()
			if err != nil {
				return nil, nil, put, err
			}
			out[i] = abi.Arg{Ref: append([]byte(nil), id[:]...)}
			continue
		}
		b, refs, err := encode(a)
		if err != nil {
			return nil, nil, put, fmt.Errorf("%w: argument %d: %v", ErrBadArguments, i, err)
		}
		if len(b) >= autoPutMin {
			id, err := host.put([][]byte{b}, refs)
			if err != nil {
				return nil, nil, put, fmt.Errorf("argument %d (%d bytes, put in the object store): %w", i, len(b), err)
			}
			put = append(put, id)
			out[i] = abi.Arg{Ref: append([]byte(nil), id[:]...)}
			continue
		}
		for _, id := range refs {
			nested = append(nested, append([]byte(nil), id[:]...))
		}
		out[i] = abi.Arg{Value: b}
	}
	return out, nested, put, nil
}

func (d *taskDef) submit(actorID *ObjectID, fn string, extra []Option, args []any) ([]ObjectID, error) {
	spec := abi.TaskSpec{Func: fn, NumReturns: d.nret, RawOptions: d.encodedOptions(extra)}
	if actorID != nil {
		spec.Actor = append([]byte(nil), actorID[:]...)
	}
	var err error
	var put []ObjectID
	spec.Args, spec.Refs, put, err = buildArgs(args)
	if len(put) > 0 {
		defer host.release(put) // after the submission: the task holds them
	}
	if err != nil {
		return nil, err
	}
	b := spec.AppendCBOR(nil)
	n := d.nret
	if n == 0 {
		n = 1
	}
	return host.submit(b, n)
}

func submitOne[R any](d *taskDef, actorID *ObjectID, fn string, extra []Option, args ...any) Ref[R] {
	ids, err := d.submit(actorID, fn, extra, args)
	if err != nil {
		return Ref[R]{err: err}
	}
	return Ref[R]{id: ids[0]}
}

func arg[A any](raw [][]byte, i int) (A, error) {
	var a A
	if err := decode(raw[i], &a); err != nil {
		return a, fmt.Errorf("%w: argument %d: cannot decode into %T: %v", ErrBadArguments, i, a, err)
	}
	return a, nil
}

// Func1N is a registered task with one argument whose result is a slice of
// n values, each returned as its own object (Ray's num_returns=n).
type Func1N[A, R any] struct {
	d     *taskDef
	extra []Option
}

// Task1N registers fn, which must return exactly n values; each becomes an
// object of its own.
func Task1N[A, R any](name string, n int, fn func(A) ([]R, error), opts ...Option) Func1N[A, R] {
	register(name, 1, func(raw [][]byte) (any, error) {
		a, err := arg[A](raw, 0)
		if err != nil {
			return nil, err
		}
		rs, err := fn(a)
		if err != nil {
			return nil, err
		}
		return splitReturns(name, n, rs)
	})
	return Func1N[A, R]{d: &taskDef{name: name, opts: opts, nret: n}}
}

// splitReturns checks that a function declaring n return values returned
// n, and shapes them for dispatch: one value as itself, more as a list.
func splitReturns[R any](name string, n int, rs []R) (any, error) {
	if len(rs) != n {
		return nil, fmt.Errorf("%s declares %d return values but returned %d", name, n, len(rs))
	}
	if n == 1 {
		return rs[0], nil // one return value travels as itself
	}
	out := make([]any, n)
	for i := range rs {
		out[i] = rs[i]
	}
	return out, nil
}

// Options returns the task with per-call options added.
func (f Func1N[A, R]) Options(opts ...Option) Func1N[A, R] {
	f.extra = append(append([]Option(nil), f.extra...), opts...)
	return f
}

// Remote submits a call and returns one reference per result.
func (f Func1N[A, R]) Remote(a A) []Ref[R] { return submitN[R](f.d, nil, a, f.extra...) }

// RemoteRefs is Remote with a Ref to the argument, or a value wrapped
// with Val.
func (f Func1N[A, R]) RemoteRefs(a Arg[A]) []Ref[R] {
	return submitN[R](f.d, nil, argValues(a)[0], f.extra...)
}

// submitN submits a call of d with n results and returns their
// references.
func submitN[R any](d *taskDef, actorID *ObjectID, a any, extra ...Option) []Ref[R] {
	refs := make([]Ref[R], d.nret)
	ids, err := d.submit(actorID, d.name, extra, []any{a})
	for i := range refs {
		if err != nil {
			refs[i] = Ref[R]{err: err}
		} else {
			refs[i] = Ref[R]{id: ids[i]}
		}
	}
	return refs
}

// Func1x2 is a registered task with one argument and two return values,
// each its own object (Ray's num_returns=2).
type Func1x2[A, R1, R2 any] struct {
	d     *taskDef
	extra []Option
}

// Task1x2 registers fn, whose two results become two objects.
func Task1x2[A, R1, R2 any](name string, fn func(A) (R1, R2, error), opts ...Option) Func1x2[A, R1, R2] {
	register(name, 1, func(raw [][]byte) (any, error) {
		a, err := arg[A](raw, 0)
		if err != nil {
			return nil, err
		}
		r1, r2, err := fn(a)
		if err != nil {
			return nil, err
		}
		return []any{r1, r2}, nil
	})
	return Func1x2[A, R1, R2]{d: &taskDef{name: name, opts: opts, nret: 2}}
}

// Options returns the task with per-call options added.
func (f Func1x2[A, R1, R2]) Options(opts ...Option) Func1x2[A, R1, R2] {
	f.extra = append(append([]Option(nil), f.extra...), opts...)
	return f
}

// Remote submits a call and returns one reference per result.
func (f Func1x2[A, R1, R2]) Remote(a A) (Ref[R1], Ref[R2]) { return f.submit(a) }

// RemoteRefs is Remote with a Ref to the argument, or a value wrapped
// with Val.
func (f Func1x2[A, R1, R2]) RemoteRefs(a Arg[A]) (Ref[R1], Ref[R2]) {
	return f.submit(argValues(a)[0])
}

func (f Func1x2[A, R1, R2]) submit(a any) (Ref[R1], Ref[R2]) {
	ids, err := f.d.submit(nil, f.d.name, f.extra, []any{a})
	if err != nil {
		return Ref[R1]{err: err}, Ref[R2]{err: err}
	}
	return Ref[R1]{id: ids[0]}, Ref[R2]{id: ids[1]}
}
