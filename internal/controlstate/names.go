package controlstate

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ActorName is a named actor's record, or a named placement group's
// (Group): which actor or group holds a name, and the node that owns it,
// so that a job on any node finds it. A name is in a namespace, where
// every job finds it, or (Namespace empty) the job's own. Actors and
// groups have names of their own: an actor and a group may share one.
type ActorName struct {
	Namespace string `cbor:"1,keyasint,omitempty" json:"namespace,omitempty"`
	Name      string `cbor:"2,keyasint" json:"name"`
	// Job owns the actor: the job of a job's own name, the job that holds
	// the actor otherwise (a detached actor's holder on its node).
	Job      string `cbor:"3,keyasint" json:"job"`
	Actor    []byte `cbor:"4,keyasint" json:"actor"`
	Node     string `cbor:"5,keyasint" json:"node"`
	Class    string `cbor:"6,keyasint,omitempty" json:"class,omitempty"`
	Detached bool   `cbor:"7,keyasint,omitempty" json:"detached,omitempty"`
	Time     int64  `cbor:"8,keyasint" json:"created"`
	Group    bool   `cbor:"9,keyasint,omitempty" json:"group,omitempty"`
	// Tenant owns the name's namespace ("": the cluster's operator):
	// namespaces are per tenant.
	Tenant string `cbor:"10,keyasint,omitempty" json:"tenant,omitempty"`
}

// NameActor records that Actor, owned by Node, holds a name. It fails
// with ErrNameTaken when another actor holds it, unless that actor is
// Replaces (one its owner knows is dead). Naming an actor again is no
// change.
type NameActor struct {
	ActorName
	Replaces []byte `cbor:"20,keyasint,omitempty"`
}

// UnnameActor frees a name if Actor still holds it (after that, no
// change).
type UnnameActor struct {
	Namespace string `cbor:"1,keyasint,omitempty"`
	Name      string `cbor:"2,keyasint"`
	Job       string `cbor:"3,keyasint,omitempty"`
	Actor     []byte `cbor:"4,keyasint"`
	Group     bool   `cbor:"5,keyasint,omitempty"`
	Tenant    string `cbor:"6,keyasint,omitempty"`
}

// ForgetNode frees every name a node owns: the node has left the
// cluster, and its actors with it.
type ForgetNode struct {
	Node string `cbor:"1,keyasint"`
}

// Limits of the name registry.
const (
	// MaxNames bounds the named actors recorded.
	MaxNames = 65536
	// MaxNameLength bounds a name, a namespace and a class.
	MaxNameLength = 256
	// maxActorID bounds an actor's ID.
	maxActorID = 32
)

// Errors of the name registry.
var (
	ErrNameTaken    = errors.New("controlstate: another actor holds the name")
	ErrTooManyNames = errors.New("controlstate: too many named actors")
)

// nameKey is a name's key: in its namespace, or in its job's own; a
// group's apart from actors'.
func nameKey(group bool, tenant, namespace, job, name string) string {
	kind := "actor\x00"
	if group {
		kind = "group\x00"
	}
	if namespace == "" {
		return kind + "job\x00" + job + "\x00" + name
	}
	return kind + "ns\x00" + tenant + "\x00" + namespace + "\x00" + name
}

func (s *State) nameActor(c *NameActor) error {
	n := c.ActorName
	switch {
	case n.Name == "" || len(n.Name) > MaxNameLength || len(n.Namespace) > MaxNameLength || len(n.Class) > MaxNameLength:
		return fmt.Errorf("%w: a name, namespace or class of 0 or more than %d bytes", ErrBadCommand, MaxNameLength)
	case n.Job == "" || len(n.Job) > MaxIDLength || len(n.Tenant) > MaxIDLength:
		return fmt.Errorf("%w: job %q", ErrBadCommand, n.Job)
	case len(n.Actor) == 0 || len(n.Actor) > maxActorID || len(c.Replaces) > maxActorID:
		return fmt.Errorf("%w: an actor ID of %d bytes", ErrBadCommand, len(n.Actor))
	case !validNode(n.Node):
		return fmt.Errorf("%w: node %q", ErrBadCommand, n.Node)
	}
	key := nameKey(n.Group, n.Tenant, n.Namespace, n.Job, n.Name)
	if have, ok := s.names[key]; ok {
		switch {
		case bytes.Equal(have.Actor, n.Actor):
			return nil
		case len(c.Replaces) == 0 || !bytes.Equal(have.Actor, c.Replaces):
			what := "actor"
			if n.Group {
				what = "placement group"
			}
			return fmt.Errorf("%w: %q is %s %x's, owned by node %s", ErrNameTaken, n.Name, what, have.Actor, have.Node)
		}
	} else if len(s.names) >= MaxNames {
		return fmt.Errorf("%w: %d; kill some named actors", ErrTooManyNames, len(s.names))
	}
	rec := n
	rec.Actor = slices.Clone(n.Actor)
	s.names[key] = &rec
	return nil
}

func (s *State) unnameActor(c *UnnameActor) error {
	key := nameKey(c.Group, c.Tenant, c.Namespace, c.Job, c.Name)
	if have, ok := s.names[key]; ok && bytes.Equal(have.Actor, c.Actor) {
		delete(s.names, key)
	}
	return nil
}

func (s *State) forgetNode(c *ForgetNode) error {
	if !validNode(c.Node) {
		return fmt.Errorf("%w: node %q", ErrBadCommand, c.Node)
	}
	for key, n := range s.names {
		if n.Node == c.Node {
			delete(s.names, key)
		}
	}
	return nil
}

// Name returns the record of an actor's name (a group's, with group) in
// a namespace of tenant, or (namespace empty) in job's own names.
func (s *State) Name(group bool, tenant, namespace, job, name string) (ActorName, bool) {
	n, ok := s.names[nameKey(group, tenant, namespace, job, name)]
	if !ok {
		return ActorName{}, false
	}
	c := *n
	c.Actor = slices.Clone(n.Actor)
	return c, true
}

// Names returns copies of the names that match keep (nil: all): actors'
// first, then groups', by namespace, job and name.
func (s *State) Names(keep func(*ActorName) bool) []ActorName {
	keys := make([]string, 0, len(s.names))
	for k, n := range s.names {
		if keep == nil || keep(n) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, strings.Compare)
	out := make([]ActorName, 0, len(keys))
	for _, k := range keys {
		c := *s.names[k]
		c.Actor = slices.Clone(c.Actor)
		out = append(out, c)
	}
	return out
}

// NamesOwnedBy returns the nodes that own names, sorted.
func (s *State) NamesOwnedBy() []string {
	var out []string
	for _, n := range s.names {
		if i, found := slices.BinarySearch(out, n.Node); !found {
			out = slices.Insert(out, i, n.Node)
		}
	}
	return out
}
