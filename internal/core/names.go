package core

import (
	"cmp"
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Names across nodes. On its own a node knows the names of the actors it
// made. With Config.Registry set, the cluster's registry (the replicated
// control state) holds every name as well: an actor with a name is made
// only once the registry has recorded it (RegisterName, answered by
// NameRegistered), so that a name is one actor's in the whole cluster; a
// lookup this node cannot answer asks the registry (LookupName, answered
// by NameFound), and a handle it finds on another node is a stub whose
// calls go to the node that owns the actor. A name is freed in the
// registry when its actor dies (UnregisterName) or, by the registry's
// leader, when its node leaves the cluster.

// RegisterName asks the registry to record that Actor (a placement
// group, with Group) holds a name; the shell answers with NameRegistered.
// Replaces names an actor or group of this node that held the name and
// is gone.
type RegisterName struct {
	Group     bool
	Tenant    string
	Actor     objects.ID
	Namespace string
	Name      string
	Job       JobID
	Class     string
	Detached  bool
	Replaces  objects.ID
	// Proof is a grant of a job of the tenant's (the job's own; a
	// detached job's maker's): the registry names an actor in a tenant's
	// namespaces only for a node that shows one.
	Proof GrantProof
}

// GrantProof is a job's grant and what it binds.
type GrantProof struct {
	Job, Root, Module string
	Grant             []byte
}

// grantProof is j's grant and what it binds.
func (c *Core) grantProof(j *job) GrantProof {
	return GrantProof{Job: string(j.id), Root: string(cmp.Or(j.root, c.cfg.Node)), Module: j.digest, Grant: j.grant}
}

// proved returns r with a grant of its job's tenant.
func (c *Core) proved(j *job, r RegisterName) RegisterName {
	r.Proof = j.proof
	if j.grant != nil {
		r.Proof = c.grantProof(j)
	}
	return r
}

// UnregisterName frees a name in the registry if Actor still holds it.
// Nothing answers it.
type UnregisterName struct {
	Group     bool
	Tenant    string
	Actor     objects.ID
	Namespace string
	Name      string
	Job       JobID
}

// LookupName asks the registry which actor holds a name in a namespace
// (or in Job's own names); the shell answers with NameFound.
type LookupName struct {
	Group     bool
	Tenant    string
	Seq       uint64
	Namespace string
	Name      string
	Job       JobID
}

func (RegisterName) effect()   {}
func (UnregisterName) effect() {}
func (LookupName) effect()     {}

// NamedActor is where the registry says a named actor lives.
type NamedActor struct {
	Actor objects.ID
	Node  NodeID
	Class string
	// Local marks an actor of this node that the shell found without a
	// name (a deployment's replica).
	Local bool
}

// NameRegistered answers RegisterName: Err is empty when the name is
// Actor's; when another actor holds it, Holder says which.
type NameRegistered struct {
	Actor  objects.ID
	Err    string
	Holder *NamedActor
}

// NameFound answers LookupName: Holder is nil when no actor holds the
// name (Err says why, when the registry could not be asked).
type NameFound struct {
	Seq    uint64
	Holder *NamedActor
	Err    string
}

// nameRequest is a named actor's creation waiting for the registry.
type nameRequest struct {
	w         *worker
	seq       uint64
	parent    *task
	spec      abi.TaskSpec
	id        objects.ID
	key       string
	namespace string
	replacing bool // asked again, replacing a dead actor of this node
	// waiters are later creations of the same name on this node.
	waiters []nameWaiter
}

type nameWaiter struct {
	w           *worker
	seq         uint64
	getIfExists bool
}

// lookupRequest is a worker's lookup waiting for the registry.
type lookupRequest struct {
	w         *worker
	seq       uint64
	namespace string
	name      string
}

// locatedActor is an actor of another node that a lookup found.
type locatedActor struct {
	node      NodeID
	class     string
	namespace string
}

// maxJobNames bounds the names a job may hold in the cluster's registry
// from one node, so that no job can fill the registry, which every job
// shares. (A detached actor's name counts for none: maxDetachedActors
// bounds those.)
const maxJobNames = 1024

// maxRegisteredName bounds a name the registry holds (as it does).
const maxRegisteredName = 256

// maxLocated bounds the actors of other nodes a node remembers.
const maxLocated = 4096

// makeActor creates the actor a worker asked for and answers it.
func (c *Core) makeActor(w *worker, seq uint64, parent *task, spec abi.TaskSpec, id objects.ID) {
	if spec.Options.Lifetime == abi.LifetimeDetached {
		// Its own job, which outlives this one, and no parent: it is no
		// part of the creating job's tree.
		c.createActor(c.detachedJob(w.job, cmp.Or(spec.Options.Namespace, abi.DefaultNamespace)), nil, spec, id, nil)
		c.reply(w, seq, nil, wire.Reply{IDs: []objects.ID{id}})
		return
	}
	a := c.createActor(w.job, parent, spec, id, nil)
	if w.job.root == "" || a.state == actorDead {
		c.reply(w, seq, nil, wire.Reply{IDs: []objects.ID{id}})
		return
	}
	// A share's actor: the job's root learns of it before the guest holds
	// a handle it could pass on, so that calls from anywhere, which go to
	// the root, find it.
	a.registering = &pendingReply{w: w, seq: seq}
	c.sendPeer(w.job.root, &peerwire.RegisterActor{Job: string(w.job.id), Actor: id, Class: a.class})
}

// nameSpace is the namespace a spec's name is in ("": the job's own).
func nameSpace(spec abi.TaskSpec) string {
	if spec.Options.Namespace == "" && spec.Options.Lifetime == abi.LifetimeDetached {
		return abi.DefaultNamespace
	}
	return spec.Options.Namespace
}

// registerName asks the registry for the name of an actor to be made; a
// creation of a name this node is registering already waits for that
// one's answer.
func (c *Core) registerName(w *worker, seq uint64, parent *task, spec abi.TaskSpec, id objects.ID) {
	if len(spec.Options.Name) > maxRegisteredName {
		c.reply(w, seq, fmt.Errorf("submit: an actor's name is at most %d bytes in a cluster (it is %d)", maxRegisteredName, len(spec.Options.Name)), wire.Reply{})
		return
	}
	ns := nameSpace(spec)
	key := nameKey(w.job, ns, spec.Options.Name)
	if first, pending := c.namingKeys[key]; pending {
		r := c.naming[first]
		r.waiters = append(r.waiters, nameWaiter{w: w, seq: seq, getIfExists: spec.Options.GetIfExists})
		return
	}
	detached := spec.Options.Lifetime == abi.LifetimeDetached
	if !detached && w.job.names >= maxJobNames {
		c.reply(w, seq, fmt.Errorf("submit: the job holds %d actor names on node %s, the most a job may; kill named actors it no longer needs", maxJobNames, c.cfg.Node), wire.Reply{})
		return
	}
	if !detached {
		w.job.names++ // until the registry refuses it, or the actor's name is freed
	}
	r := &nameRequest{w: w, seq: seq, parent: parent, spec: spec, id: id, key: key, namespace: ns}
	c.naming[id] = r
	c.namingKeys[key] = id
	c.emit(c.registration(r, objects.NilID))
}

func (c *Core) registration(r *nameRequest, replaces objects.ID) RegisterName {
	return c.proved(r.w.job, RegisterName{Actor: r.id, Tenant: r.w.job.tenant, Namespace: r.namespace, Name: r.spec.Options.Name, Job: r.w.job.id,
		Class: r.spec.Func[:min(len(r.spec.Func), maxRegisteredName)], Detached: r.spec.Options.Lifetime == abi.LifetimeDetached, Replaces: replaces})
}

// alive reports whether a worker still waits for answers.
func (c *Core) alive(w *worker) bool { return c.workers[w.id] == w && !w.job.done }

func (e NameRegistered) apply(c *Core) {
	if gr := c.namingGroups[e.Actor]; gr != nil {
		c.groupNamed(e, gr)
		return
	}
	r := c.naming[e.Actor]
	if r == nil {
		return
	}
	h := e.Holder
	if e.Err != "" && h != nil && h.Node == c.cfg.Node && !r.replacing && c.named[r.key] != h.Actor {
		// The name's holder is an actor of this node that no longer holds
		// it here (it died or was killed, and the registry has not heard
		// yet, or never will): take its place.
		r.replacing = true
		c.emit(c.registration(r, h.Actor))
		return
	}
	delete(c.naming, e.Actor)
	delete(c.namingKeys, r.key)
	counted := r.spec.Options.Lifetime != abi.LifetimeDetached
	if counted && (e.Err != "" || !c.alive(r.w)) {
		r.w.job.names-- // not the job's after all
	}
	name := r.spec.Options.Name
	var err error
	holder := objects.NilID // the name's actor, for get_if_exists
	switch {
	case e.Err == "":
		if !c.alive(r.w) && r.spec.Options.Lifetime != abi.LifetimeDetached {
			c.emit(UnregisterName{Actor: r.id, Tenant: r.w.job.tenant, Namespace: r.namespace, Name: name, Job: r.w.job.id})
			err = fmt.Errorf("submit: the actor's creator is gone")
			break
		}
		holder = r.id
		c.makeActor(r.w, r.seq, r.parent, r.spec, r.id)
	case h != nil:
		holder = h.Actor
		c.locate(h, r.namespace)
		err = fmt.Errorf("submit: an actor named %q already exists in %s, on node %s (ask for it with get_if_exists, or look it up)", name, nameScope(r.namespace), h.Node)
		if r.spec.Options.GetIfExists {
			c.stubFor(r.w.job, h.Actor)
			c.reply(r.w, r.seq, nil, wire.Reply{IDs: []objects.ID{h.Actor}})
		} else {
			c.reply(r.w, r.seq, err, wire.Reply{})
		}
	default:
		err = fmt.Errorf("submit: the cluster's registry could not record the actor's name %q: %s", name, e.Err)
		c.reply(r.w, r.seq, err, wire.Reply{})
	}
	for _, wt := range r.waiters {
		if !c.alive(wt.w) {
			continue
		}
		switch {
		case wt.getIfExists && !holder.IsNil():
			c.stubFor(wt.w.job, holder)
			c.reply(wt.w, wt.seq, nil, wire.Reply{IDs: []objects.ID{holder}})
		case err != nil && holder.IsNil():
			c.reply(wt.w, wt.seq, err, wire.Reply{})
		default:
			c.reply(wt.w, wt.seq, fmt.Errorf("submit: an actor named %q already exists in %s (ask for it with get_if_exists, or look it up)", name, nameScope(r.namespace)), wire.Reply{})
		}
	}
}

// nameScope says where a name is, for errors.
func nameScope(ns string) string {
	if ns == "" {
		return "this job"
	}
	return fmt.Sprintf("namespace %q", ns)
}

// lookupName asks the registry for a name this node does not know.
func (c *Core) lookupName(w *worker, seq uint64, ns, name string) {
	c.nextLookup++
	c.lookups[c.nextLookup] = &lookupRequest{w: w, seq: seq, namespace: ns, name: name}
	c.emit(LookupName{Seq: c.nextLookup, Tenant: w.job.tenant, Namespace: ns, Name: name, Job: w.job.id})
}

func (e NameFound) apply(c *Core) {
	r := c.lookups[e.Seq]
	if r == nil {
		return
	}
	delete(c.lookups, e.Seq)
	if !c.alive(r.w) {
		return
	}
	h := e.Holder
	switch {
	case h == nil && e.Err != "":
		c.reply(r.w, r.seq, fmt.Errorf("no actor named %q found: the cluster's registry could not be asked: %s", r.name, e.Err), wire.Reply{})
		return
	case h == nil:
		c.reply(r.w, r.seq, fmt.Errorf("no actor named %q in %s in the cluster", r.name, nameScope(r.namespace)), wire.Reply{})
		return
	case h.Node == c.cfg.Node && h.Local:
		// An actor of this node that holds no name (a deployment's
		// replica, which the shell chose).
		if a := c.actors[h.Actor]; a == nil || a.state == actorDead || a.stub || !a.sharedWith(r.w.job) {
			c.reply(r.w, r.seq, fmt.Errorf("no actor %q in %s on this node (it is gone)", r.name, nameScope(r.namespace)), wire.Reply{})
			return
		}
	case h.Node == c.cfg.Node:
		// This node knows its own names: had the actor still held the
		// name, the lookup would not have asked. It died or was killed,
		// and the registry has yet to hear.
		c.reply(r.w, r.seq, fmt.Errorf("no actor named %q in %s in the cluster (the actor that held it is gone)", r.name, nameScope(r.namespace)), wire.Reply{})
		return
	default:
		c.locate(h, r.namespace)
		c.stubFor(r.w.job, h.Actor)
	}
	c.reply(r.w, r.seq, nil, wire.Reply{IDs: []objects.ID{h.Actor}})
}

// locate remembers where an actor of another node lives.
func (c *Core) locate(h *NamedActor, ns string) {
	if h.Node == c.cfg.Node {
		return
	}
	if _, ok := c.located[h.Actor]; !ok {
		c.locatedIDs = append(c.locatedIDs, h.Actor)
		if len(c.locatedIDs) > maxLocated {
			delete(c.located, c.locatedIDs[0])
			c.locatedIDs = c.locatedIDs[1:]
		}
	}
	c.located[h.Actor] = locatedActor{node: h.Node, class: h.Class, namespace: ns}
}

// stubFor returns the actor by ID, making job j a stub of it when it
// lives on another node that a lookup found (nil if unknown).
func (c *Core) stubFor(j *job, id objects.ID) *actor {
	if a := c.actors[id]; a != nil {
		return a
	}
	loc, ok := c.located[id]
	if !ok {
		return nil
	}
	a := &actor{id: id, job: j, class: loc.class, state: actorAlive, stub: true, node: loc.node, namespace: loc.namespace}
	c.actors[id] = a
	return a
}

// forgetLocated forgets the actors found on a node that is gone.
func (c *Core) forgetLocated(node NodeID) {
	for id, loc := range c.located {
		if loc.node == node {
			delete(c.located, id)
		}
	}
}
