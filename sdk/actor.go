package sdk

import (
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
)

// ActorClass is a Go type S registered as an actor class, whatever its
// constructor takes. Actor, Actor1 ... Actor6 return it wrapped in a type
// of their arity (Class0 ... Class6), whose Remote takes the constructor's
// arguments with their types.
type ActorClass[S any] struct {
	name  string
	opts  []Option
	extra []Option
}

// Class is what takes an actor class of any arity: method registrations
// and GetActor. *ActorClass and Class0 ... Class6 are Classes.
type Class[S any] interface {
	actorClass() *ActorClass[S]
}

func (c *ActorClass[S]) actorClass() *ActorClass[S] { return c }

// Name returns the class name.
func (c *ActorClass[S]) Name() string { return c.name }

// with returns the class with per-actor options added.
func (c *ActorClass[S]) with(opts []Option) *ActorClass[S] {
	cc := *c
	cc.extra = append(append([]Option(nil), c.extra...), opts...)
	return &cc
}

// create creates an actor with the constructor's arguments (values or
// Refs). Creation failures surface as ErrActorDied on the actor's method
// calls.
func (c *ActorClass[S]) create(args []any) Handle[S] {
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

// LookupOption changes where GetActor looks.
type LookupOption func(*lookup)

type lookup struct{ namespace string }

// InNamespace makes GetActor look in a namespace instead of the job's own
// (Ray's get_actor(name, namespace=)): an actor created with Namespace,
// or a detached one (Detached; "default" when it named none).
func InNamespace(ns string) LookupOption { return func(l *lookup) { l.namespace = ns } }

// GetActor looks up a named actor of class c: in the job's own names, or
// with InNamespace in a namespace, where other jobs' actors are.
func GetActor[S any](c Class[S], name string, opts ...LookupOption) (Handle[S], error) {
	var l lookup
	for _, o := range opts {
		o(&l)
	}
	id, err := host.actorLookup(l.namespace, name)
	if err != nil {
		return Handle[S]{err: err}, err
	}
	return Handle[S]{id: id}, nil
}

// ActorInfo describes a named actor (ListNamedActors).
type ActorInfo struct {
	Name      string
	Namespace string // "": the job's own
	Class     string
	State     string // "pending", "alive" or "restarting"
	Detached  bool
	ID        ObjectID
}

// ListNamedActors lists the named actors that GetActor finds from this
// job, on this node: the job's own and every namespace's (Ray's
// list_named_actors(all_namespaces=True)).
func ListNamedActors() ([]ActorInfo, error) {
	b, err := host.actorList()
	if err != nil {
		return nil, err
	}
	var list []abi.ActorInfo
	if err := decMode.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("fabric: malformed actor list: %w", err)
	}
	out := make([]ActorInfo, len(list))
	for i, a := range list {
		out[i] = ActorInfo{Name: a.Name, Namespace: a.Namespace, Class: a.Class, State: a.State, Detached: a.Detached}
		copy(out[i].ID[:], a.ID)
	}
	return out, nil
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

// Method1N is an actor method with one argument whose result is a slice
// of n values, each returned as its own object (num_returns=n on a Ray
// method).
type Method1N[S, A, R any] struct {
	d     *taskDef
	extra []Option
}

// NewMethod1N registers fn as method name of class c; fn must return
// exactly n values.
func NewMethod1N[S, A, R any](class Class[S], name string, n int, fn func(*S, A) ([]R, error)) Method1N[S, A, R] {
	c := class.actorClass()
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
func (m Method1N[S, A, R]) Remote(h Handle[S], a A) []Ref[R] { return m.submit(h, a) }

// RemoteRefs is Remote with a Ref to the argument, or a value wrapped
// with Val.
func (m Method1N[S, A, R]) RemoteRefs(h Handle[S], a Arg[A]) []Ref[R] {
	return m.submit(h, argValues(a)[0])
}

func (m Method1N[S, A, R]) submit(h Handle[S], a any) []Ref[R] {
	if h.err != nil {
		refs := make([]Ref[R], m.d.nret)
		for i := range refs {
			refs[i] = Ref[R]{err: h.err}
		}
		return refs
	}
	return submitN[R](m.d, &h.id, a, m.extra...)
}

// Options returns the method with per-call options added (see
// Method0.Options).
func (m Method1N[S, A, R]) Options(opts ...Option) Method1N[S, A, R] {
	m.extra = append(append([]Option(nil), m.extra...), opts...)
	return m
}
