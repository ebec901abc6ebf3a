package sdk

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
)

// Ref is a reference to an object of type T that a task returned or Put
// stored. It is returned at once; the value arrives later. A Ref may be
// passed to other tasks (as an argument the task receives the value; nested
// inside a value it stays a reference).
type Ref[T any] struct {
	id  ObjectID
	err error // set when submitting failed
}

type anyRef interface {
	objectID() (ObjectID, error)
}

func (r Ref[T]) objectID() (ObjectID, error) { return r.id, r.err }

// Arg is an argument of type A for RemoteRefs: a Ref[A], whose value the
// task gets (once it is ready), or a value, wrapped with Val. Nothing else
// compiles: a Ref[int] is no Arg[string].
type Arg[A any] interface {
	argOf(A)
	argValue() any
}

func (r Ref[T]) argOf(T)       {}
func (r Ref[T]) argValue() any { return r }

// Val passes a value beside references in RemoteRefs:
//
//	add.RemoteRefs(sq, sdk.Val(1))
func Val[A any](v A) Arg[A] { return value[A]{v} }

type value[A any] struct{ v A }

func (value[A]) argOf(A)         {}
func (v value[A]) argValue() any { return v.v }

// argValues unwraps RemoteRefs' arguments for buildArgs.
func argValues(args ...interface{ argValue() any }) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if a == nil {
			out[i] = nil
			continue
		}
		out[i] = a.argValue()
	}
	return out
}

// ID returns the object's ID.
func (r Ref[T]) ID() ObjectID { return r.id }

// Err returns the error of submitting the task that makes r, if any.
func (r Ref[T]) Err() error { return r.err }

// Get waits for the value. Shorthand for sdk.Get(r).
func (r Ref[T]) Get(opts ...GetOption) (T, error) { return Get(r, opts...) }

// Release tells the host this guest no longer needs the object; it is freed
// once nothing else refers to it.
func (r Ref[T]) Release() {
	if r.err == nil {
		delete(knownReady, r.id)
		one := [1]ObjectID{r.id}
		host.release(one[:])
	}
}

// ReleaseAll releases every reference in refs with one host call: what
// Ray does when a list of references goes out of scope. References that
// hold a submit error are skipped.
func ReleaseAll[T any](refs []Ref[T]) {
	ids := make([]ObjectID, 0, len(refs))
	for _, r := range refs {
		if r.err == nil {
			delete(knownReady, r.id)
			ids = append(ids, r.id)
		}
	}
	if len(ids) > 0 {
		host.release(ids)
	}
}

func marshalTagged(tag uint32, id ObjectID) []byte {
	b := make([]byte, 0, 5+2+IDSize)
	b = append(b, 0xda)
	b = binary.BigEndian.AppendUint32(b, tag)
	b = append(b, 0x40|IDSize) // byte string of 20 bytes
	return append(b, id[:]...)
}

func unmarshalTagged(tag uint32, b []byte, what string) (ObjectID, error) {
	var id ObjectID
	if len(b) != 5+1+IDSize || b[0] != 0xda || binary.BigEndian.Uint32(b[1:5]) != tag || b[5] != 0x40|IDSize {
		return id, fmt.Errorf("%w: expected a %s", ErrBadArguments, what)
	}
	copy(id[:], b[6:])
	return id, nil
}

// MarshalCBOR encodes the reference as CBOR tag abi.TagObjectRef.
func (r Ref[T]) MarshalCBOR() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	collected = append(collected, r.id)
	return marshalTagged(abi.TagObjectRef, r.id), nil
}

// UnmarshalCBOR decodes a reference.
func (r *Ref[T]) UnmarshalCBOR(b []byte) error {
	id, err := unmarshalTagged(abi.TagObjectRef, b, "object reference")
	r.id = id
	return err
}

// GetOption changes how a call that waits waits. Every such call (Get,
// GetAll, GetEach, Wait, WaitAny, PlacementGroup.Ready, Queue.Put and
// Get, ActorPool.GetNext and GetNextUnordered) waits without bound unless
// given Timeout: one way to say a timeout everywhere.
type GetOption func(*getConfig)

type getConfig struct{ timeoutMs int64 }

// Timeout bounds how long a call waits. Past it Get, GetAll, GetEach,
// Ready and the pool's calls return ErrGetTimeout; Wait returns what is
// ready; a queue's Put and Get return ErrQueueFull and ErrQueueEmpty.
func Timeout(d time.Duration) GetOption {
	return func(c *getConfig) { c.timeoutMs = d.Milliseconds() }
}

func getOpts(opts []GetOption) getConfig {
	c := getConfig{timeoutMs: -1}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Get waits for one object and decodes its value. If the task that makes it
// failed, the error is a *TaskError with the guest's message and stack.
func Get[T any](r Ref[T], opts ...GetOption) (T, error) {
	vals, err := GetAll([]Ref[T]{r}, opts...)
	if err != nil {
		var zero T
		return zero, err
	}
	return vals[0], nil
}

// GetAll waits for all objects and decodes their values in order. The
// first failed object's error is returned.
func GetAll[T any](refs []Ref[T], opts ...GetOption) ([]T, error) {
	ids := make([]ObjectID, len(refs))
	for i, r := range refs {
		if r.err != nil {
			return nil, r.err
		}
		ids[i] = r.id
	}
	items, err := host.get(ids, getOpts(opts).timeoutMs)
	if err != nil {
		return nil, err
	}
	out := make([]T, len(refs))
	for i, it := range items {
		if err := decodeStaged(it, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func decodeStaged(it staged, v any) error {
	switch it.kind {
	case abi.StagedValue:
		if err := decode(it.data, v); err != nil {
			return fmt.Errorf("%w: cannot decode value into %T: %v", ErrBadArguments, v, err)
		}
		return nil
	case abi.StagedError:
		var ev abi.ErrorValue
		if err := decode(it.data, &ev); err != nil {
			return errHost("undecodable error value")
		}
		return &TaskError{Kind: ev.Kind, Message: ev.Message, Task: ev.Task, types: ev.Types}
	default:
		return errHost(string(it.data))
	}
}

// Put stores a value in the object store and returns a reference to it.
func Put[T any](v T) (Ref[T], error) {
	parts, refs, err := encodeParts(v)
	if err != nil {
		return Ref[T]{err: err}, err
	}
	id, err := host.put(parts, refs)
	if err != nil {
		return Ref[T]{err: err}, err
	}
	return Ref[T]{id: id}, nil
}

// knownReady remembers objects a Wait reply reported ready: an object never
// stops being ready, so a later Wait that would be satisfied by known-ready
// objects needs no host call (Ray's pattern of waiting for one object at a
// time over a long list makes one host call per batch of completions, not
// per object). It is cleared when it grows past maxKnownReady.
var knownReady = map[ObjectID]struct{}{}

const maxKnownReady = 1 << 16

// Wait waits until numReady of refs are ready, or until Timeout passes,
// and returns the ready and the not-ready references, each in input
// order, as ray.wait does.
func Wait[T any](refs []Ref[T], numReady int, opts ...GetOption) (ready, notReady []Ref[T], err error) {
	numReady = max(0, min(numReady, len(refs)))
	for _, r := range refs {
		if r.err != nil {
			return nil, nil, r.err
		}
	}
	// The first numReady refs known to be ready, in input order. The scan
	// stops there: waiting for one object at a time over a long list
	// (Ray's pattern) then costs little per call, however long the list.
	picked := make([]int, 0, numReady)
	for i := 0; i < len(refs) && len(picked) < numReady; i++ {
		if _, ok := knownReady[refs[i].id]; ok {
			picked = append(picked, i)
		}
	}
	if len(picked) < numReady {
		ids := make([]ObjectID, len(refs))
		for i, r := range refs {
			ids[i] = r.id
		}
		flags, err := host.wait(ids, numReady, getOpts(opts).timeoutMs)
		if err != nil {
			return nil, nil, err
		}
		if len(knownReady) > maxKnownReady {
			clear(knownReady)
		}
		picked = picked[:0]
		for i, f := range flags {
			if f {
				knownReady[ids[i]] = struct{}{}
				if len(picked) < numReady {
					picked = append(picked, i)
				}
			}
		}
	}
	ready = make([]Ref[T], 0, len(picked))
	notReady = make([]Ref[T], 0, len(refs)-len(picked))
	prev := 0
	for _, i := range picked {
		notReady = append(notReady, refs[prev:i]...)
		ready = append(ready, refs[i])
		prev = i + 1
	}
	notReady = append(notReady, refs[prev:]...)
	return ready, notReady, nil
}

// AnyRef is a reference whatever its value's type: WaitAny and GetEach
// take references of different types together. Every Ref is one.
type AnyRef interface {
	ID() ObjectID
	Err() error
}

// WaitAny is Wait over references of different types.
func WaitAny(refs []AnyRef, numReady int, opts ...GetOption) (ready, notReady []AnyRef, err error) {
	plain := make([]Ref[any], len(refs))
	for i, r := range refs {
		plain[i] = Ref[any]{id: r.ID(), err: r.Err()}
	}
	got, _, err := Wait(plain, numReady, opts...)
	if err != nil {
		return nil, nil, err
	}
	// The ready ones are a subsequence of refs, in order.
	for _, r := range refs {
		if len(got) > 0 && got[0].id == r.ID() {
			ready, got = append(ready, r), got[1:]
		} else {
			notReady = append(notReady, r)
		}
	}
	return ready, notReady, nil
}

// Target pairs a reference with the variable its value goes to (To).
type Target struct {
	ref AnyRef
	dst any
}

// To makes a Target: GetEach decodes r's value into *dst.
func To[T any](r Ref[T], dst *T) Target { return Target{ref: r, dst: dst} }

// GetEach waits for the values of references of different types with one
// host call, as ray.get of a list does, and decodes each into its target.
// The first error (a failed task, a timeout) is returned.
func GetEach(targets []Target, opts ...GetOption) error {
	ids := make([]ObjectID, len(targets))
	for i, t := range targets {
		if err := t.ref.Err(); err != nil {
			return err
		}
		ids[i] = t.ref.ID()
	}
	items, err := host.get(ids, getOpts(opts).timeoutMs)
	if err != nil {
		return err
	}
	for i, it := range items {
		if err := decodeStaged(it, targets[i].dst); err != nil {
			return err
		}
	}
	return nil
}

// CancelOption changes Cancel.
type CancelOption func(*cancelConfig)

type cancelConfig struct{ force, recursive bool }

// Force stops a running task at once. Without it, a running task is
// asked to return: Cancelled reports true in it and its blocking calls
// return ErrCancelled, and it is stopped if it has not returned a second
// later.
func Force() CancelOption { return func(c *cancelConfig) { c.force = true } }

// Recursive also cancels tasks the task submitted, first.
func Recursive() CancelOption { return func(c *cancelConfig) { c.recursive = true } }

// Cancel cancels the task that makes r. A queued task never runs; a running
// task is asked to return, or with Force stopped at once (see Force). Get
// on r then returns an error matching ErrTaskCancelled. An actor's method
// call is cancelled only before it starts, as in Ray.
func Cancel[T any](r Ref[T], opts ...CancelOption) error {
	if r.err != nil {
		return r.err
	}
	var c cancelConfig
	for _, o := range opts {
		o(&c)
	}
	return host.cancel(r.id, c.force, c.recursive)
}
