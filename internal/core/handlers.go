package core

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// apply serves one message from a worker. A message that breaks the
// protocol stops the worker.
func (e WorkerMessage) apply(c *Core) {
	w := c.workers[e.Worker]
	if w == nil || w.state == workerDead {
		return
	}
	if err := c.workerMessage(w, e.Msg); err != nil {
		c.logf("fabric: worker %d sent a bad %T message: %v; stopping it", w.pid, e.Msg, err)
		c.killWorker(w)
	}
}

func (c *Core) workerMessage(w *worker, msg any) error {
	switch m := msg.(type) {
	case wire.Output:
		c.output(w, m)
		return nil
	case wire.Unpin:
		c.unpinAll(w, m.IDs)
		return nil
	}
	if w.state != workerReady || w.job.done {
		// Late messages of a worker being stopped, or of an ended job. A
		// task its process runs under a lease must not run unaccounted:
		// its lane is stopped.
		if m, ok := msg.(wire.Submit); ok {
			c.refuseLeased(w, m.Lane)
		}
		return nil
	}
	switch m := msg.(type) {
	case wire.Done:
		return c.done(w, m)
	case wire.LeaseOver:
		return c.leaseOver(w)
	case wire.Submit:
		return c.submitFrom(w, m)
	case wire.Create:
		c.create(w, m)
	case wire.Put:
		return c.put(w, m)
	case wire.Get:
		c.get(w, m)
	case wire.Wait:
		c.wait(w, m)
	case wire.Cancel:
		c.reply(w, m.Seq, c.cancel(w, m), wire.Reply{})
	case wire.Release:
		if t := w.task; t != nil {
			h := t.holder()
			for _, id := range m.IDs {
				if h.held[id] > 0 {
					h.held[id]--
					if h.held[id] == 0 {
						delete(h.held, id)
					}
					c.decRef(id)
				}
			}
		}
	case wire.ActorLookup:
		if m.List {
			b, err := wire.Marshal(c.actorList(w.job))
			c.reply(w, m.Seq, err, wire.Reply{Items: []wire.Item{{Data: wire.Piece{Inline: b}}}})
			break
		}
		id, ok := c.named[nameKey(w.job, m.Namespace, m.Name)]
		switch {
		case !ok && c.cfg.Registry:
			c.lookupName(w, m.Seq, m.Namespace, m.Name)
		case ok:
			c.reply(w, m.Seq, nil, wire.Reply{IDs: []objects.ID{id}})
		case m.Namespace != "":
			c.reply(w, m.Seq, fmt.Errorf("no actor named %q in namespace %q on this node", m.Name, m.Namespace), wire.Reply{})
		default:
			c.reply(w, m.Seq, fmt.Errorf("no actor named %q in this job (an actor of another job is found in its namespace)", m.Name), wire.Reply{})
		}
	case wire.ActorKill:
		c.reply(w, m.Seq, c.actorKill(w, m), wire.Reply{})
	case wire.Cluster:
		if _, err := c.current(w, m.Task); err != nil {
			return err
		}
		b, err := wire.Marshal(c.clusterInfo())
		c.reply(w, m.Seq, err, wire.Reply{Items: []wire.Item{{Data: wire.Piece{Inline: b}}}})
	case wire.Groups:
		if _, err := c.current(w, m.Task); err != nil {
			return err
		}
		b, err := wire.Marshal(c.groupTable(w.job))
		c.reply(w, m.Seq, err, wire.Reply{Items: []wire.Item{{Data: wire.Piece{Inline: b}}}})
	case wire.Context:
		b, err := c.runtimeContext(w, m.Task)
		c.reply(w, m.Seq, err, wire.Reply{Items: []wire.Item{{Data: wire.Piece{Inline: b}}}})
	case wire.GroupCreate:
		return c.groupCreate(w, m)
	case wire.GroupWait:
		c.groupWait(w, m)
	case wire.GroupRemove:
		return c.groupRemove(w, m)
	default:
		return fmt.Errorf("unexpected message %T", msg)
	}
	return nil
}

// current returns the execution a worker runs, checking the message names it.
func (c *Core) current(w *worker, taskID objects.ID) (*task, error) {
	t := w.task
	if a := w.actor; a != nil && a.concurrent && (t == nil || t.id != taskID) {
		// A concurrent actor's calls run side by side; what its serve
		// loop does for none of them (the nil ID) is the actor's own.
		if i := slices.IndexFunc(w.queued, func(q *task) bool { return q.id == taskID }); i >= 0 {
			return w.queued[i], nil
		}
		if taskID.IsNil() && a.create != nil && a.state == actorAlive {
			return a.create, nil
		}
	}
	if t == nil || t.id != taskID {
		return nil, fmt.Errorf("request for a task this worker is not running")
	}
	return t, nil
}

// object returns an object of w's job by ID; other jobs' objects do not
// exist for it.
func (c *Core) object(w *worker, id objects.ID) (*object, error) {
	o := c.objs[id]
	if o == nil || o.job != w.job {
		if w.job.refused > 0 {
			return nil, fmt.Errorf("object %s not found: it was released, never existed, or was refused because the node's memory for objects was full", id.Short())
		}
		return nil, fmt.Errorf("object %s not found: it was released or never existed", id.Short())
	}
	return o, nil
}

// guestObject is object for an ID in bytes from a guest's spec.
func (c *Core) guestObject(w *worker, b []byte) (objects.ID, error) {
	id, err := objects.IDFromBytes(b)
	if err != nil {
		return id, err
	}
	_, err = c.object(w, id)
	return id, err
}

// submitFrom starts a task or a method call, whose return IDs the worker
// made, or creates an actor (the only submission with a reply). IDs that
// are malformed or already in use break the protocol; a spec the core
// refuses fails the call: its objects hold the error, which Get returns.
func (c *Core) submitFrom(w *worker, m wire.Submit) error {
	parent, err := c.current(w, m.Task)
	if err != nil {
		c.refuseLeased(w, m.Lane)
		return err
	}
	if m.Actor {
		id, err := c.freshIDs(m.IDs, true)
		if err != nil {
			return err
		}
		spec, err := c.checkSpec(w, m.Spec)
		if err == nil && spec.Options.Namespace == abi.ServeNamespace {
			err = fmt.Errorf("submit: the namespace %q holds deployments' replicas: a guest makes no actor there", abi.ServeNamespace)
		}
		if err == nil && spec.Options.Name != "" {
			if have, taken := c.named[nameKey(w.job, nameSpace(spec), spec.Options.Name)]; taken {
				if spec.Options.GetIfExists {
					c.reply(w, m.Seq, nil, wire.Reply{IDs: []objects.ID{have}})
					return nil
				}
				err = fmt.Errorf("submit: an actor named %q already exists in this job or namespace (ask for it with get_if_exists, or look it up)", spec.Options.Name)
			}
		}
		if err != nil {
			c.reply(w, m.Seq, err, wire.Reply{})
			return nil
		}
		if spec.Options.Lifetime == abi.LifetimeDetached && c.detachedCount() >= maxDetachedActors {
			c.reply(w, m.Seq, fmt.Errorf("submit: the node has %d detached actors, the most it keeps; kill some (they outlive their jobs)", maxDetachedActors), wire.Reply{})
			return nil
		}
		if c.cfg.Registry && spec.Options.Name != "" {
			c.registerName(w, m.Seq, parent, spec, id) // makeActor once the cluster's registry holds the name
			return nil
		}
		c.makeActor(w, m.Seq, parent, spec, id)
		return nil
	}
	taskID, err := c.freshIDs(m.IDs, false)
	if err != nil {
		c.refuseLeased(w, m.Lane)
		return err
	}
	if c.full(w.job, int64(len(m.Spec))+int64(len(m.IDs))*objectOverhead) {
		c.refuseLeased(w, m.Lane)
		return nil // nothing is made: its results are not found
	}
	spec, err := c.checkSpec(w, m.Spec)
	if err == nil && spec.Options.Generator && spec.NumReturns > 1 {
		err = fmt.Errorf("submit: a generator returns its items one at a time; it cannot declare %d return values", spec.NumReturns)
	}
	if err == nil && max(spec.NumReturns, 1) != len(m.IDs) {
		err = fmt.Errorf("submit: the spec declares %d return values but the caller made room for %d", max(spec.NumReturns, 1), len(m.IDs))
	}
	var a *actor
	if err == nil && spec.Actor != nil {
		aid, _ := objects.IDFromBytes(spec.Actor)
		a = c.actors[aid]
		if a != nil && a.reportTo != "" && a.state == actorDead && a.job == w.job {
			a = nil // a copy that died here: the actor may live on elsewhere, which the root knows
		}
		if a == nil {
			a = c.stubFor(w.job, aid) // an actor of another node that a lookup found
		}
		if a == nil && w.job.root != "" && !aid.IsNil() {
			// A handle this share has not seen: the job's root owns the actor.
			class, _, _ := strings.Cut(spec.Func, ".")
			a = &actor{id: aid, job: w.job, class: class, state: actorAlive, stub: true, node: w.job.root}
			c.actors[aid] = a
		}
		if a == nil || !a.sharedWith(w.job) {
			err = fmt.Errorf("submit: no actor %s in this job", aid.Short())
			if cause, ok := c.departed[aid]; ok && a == nil {
				err = &actorDiedErr{cause}
			}
		}
	}
	if err != nil {
		c.refuseLeased(w, m.Lane)
		c.refuseSubmit(w, parent, taskID, len(m.IDs), spec.Func, err)
		return nil
	}
	if a != nil {
		t := c.newTask(w.job, parent, spec, wire.ExecActorMethod, taskID)
		t.actor = a
		t.name = methodName(a.class, spec.Func)
		if spec.Options.Name != "" { // per-call options, as .options() on a Ray method
			t.name = spec.Options.Name
		}
		t.retriesLeft = a.taskRetries
		if spec.Options.MaxTaskRetries != 0 {
			t.retriesLeft = spec.Options.MaxTaskRetries
		}
		c.actorEnqueue(a, t)
		return nil
	}
	t := c.newTask(w.job, parent, spec, wire.ExecTask, taskID)
	t.rawSpec = m.Spec
	if m.Lane != 0 {
		return c.leasedSubmit(w, t, WorkerID(m.Lane))
	}
	c.submit(t)
	if t.state == taskQueued && t.job.short(t.spec.Func) {
		c.topUpAll(t.job) // workers may take it behind their current task
	}
	return nil
}

// freshIDs checks IDs a worker made: one random task part, return indexes
// 1..n in order (an actor: one ID with index 0), and not in use. It
// returns the task (or actor) ID.
func (c *Core) freshIDs(ids []objects.ID, actor bool) (objects.ID, error) {
	if len(ids) == 0 || len(ids) > abi.MaxReturns || (actor && len(ids) != 1) {
		return objects.NilID, fmt.Errorf("submit with %d IDs", len(ids))
	}
	base := ids[0].Task()
	if base.IsNil() || c.tasks[base] != nil || c.actors[base] != nil {
		return objects.NilID, fmt.Errorf("submit reuses ID %s", base.Short())
	}
	for i, id := range ids {
		want := base.WithIndex(uint32(i + 1))
		if actor {
			want = base
		}
		if id != want || c.objs[id] != nil {
			return objects.NilID, fmt.Errorf("submit with a malformed or reused ID %s", id.Short())
		}
	}
	return base, nil
}

// decodeSpec decodes a task spec: the SDK's shape without reflection,
// anything else with the general decoder. Byte strings may alias raw.
func decodeSpec(raw []byte) (abi.TaskSpec, error) {
	if spec, ok := abi.ParseTaskSpec(raw); ok {
		return spec, nil
	}
	var spec abi.TaskSpec
	err := wire.Unmarshal(raw, &spec)
	return spec, err
}

// checkSpec decodes and checks a task spec against the worker's job.
func (c *Core) checkSpec(w *worker, raw []byte) (abi.TaskSpec, error) {
	spec, err := decodeSpec(raw)
	if err != nil {
		return spec, fmt.Errorf("submit: malformed task spec: %v", err)
	}
	if spec.Func == "" {
		return spec, fmt.Errorf("submit: task spec names no function")
	}
	if spec.NumReturns < 0 || spec.NumReturns > abi.MaxReturns {
		return spec, fmt.Errorf("submit: %d return values; at most %d", spec.NumReturns, abi.MaxReturns)
	}
	if err := checkDemand(spec.Options); err != nil {
		return spec, err
	}
	if g := spec.Options.Group; g != nil {
		gid, err := objects.IDFromBytes(g)
		if err == nil {
			_, err = c.jobGroup(w, gid)
		}
		if err != nil {
			return spec, fmt.Errorf("submit: %v", err)
		}
		if b := spec.Options.Bundle; b != nil && *b < -1 {
			return spec, fmt.Errorf("submit: bundle index %d", *b)
		}
	}
	if spec.Actor != nil {
		if _, err := objects.IDFromBytes(spec.Actor); err != nil {
			return spec, fmt.Errorf("submit: actor: %v", err)
		}
	}
	for i, a := range spec.Args {
		if (a.Ref == nil) == (a.Value == nil) {
			return spec, fmt.Errorf("submit: argument %d must have exactly one of a value (\"v\") or a reference (\"r\")", i)
		}
		if a.Ref != nil {
			if _, err := c.guestObject(w, a.Ref); err != nil {
				return spec, fmt.Errorf("submit: argument %d: %v", i, err)
			}
		}
	}
	for _, r := range spec.Refs {
		if _, err := c.guestObject(w, r); err != nil {
			return spec, fmt.Errorf("submit: nested reference: %v", err)
		}
	}
	return spec, nil
}

// refuseSubmit makes the objects of a refused submission hold its error.
func (c *Core) refuseSubmit(w *worker, parent *task, taskID objects.ID, nret int, fn string, err error) {
	kind := abi.KindTask
	var died *actorDiedErr
	if errors.As(err, &died) {
		kind = abi.KindActorDied
	}
	for i := 1; i <= nret; i++ {
		id := taskID.WithIndex(uint32(i))
		c.newObject(id, w.job)
		c.hold(parent.holder(), id)
		c.setError(id, abi.ErrorValue{Kind: kind, Message: err.Error(), Task: fn})
	}
}

// actorDiedErr refuses a call to an actor of a namespace that is gone.
type actorDiedErr struct{ msg string }

func (e *actorDiedErr) Error() string { return e.msg }

// maxCreatesPerWorker bounds the store reservations one worker may hold
// before storing them: a worker makes one at a time.
const maxCreatesPerWorker = 4

// create reserves room in the store for a worker's large value: the
// Reserve effect's answer (Reserved) replies to the worker.
func (c *Core) create(w *worker, m wire.Create) {
	t, err := c.current(w, m.Task)
	if err != nil {
		c.reply(w, m.Seq, err, wire.Reply{})
		return
	}
	id := c.newID()
	if m.Item != 0 {
		if id, err = c.itemID(t, m.Item); err != nil || c.objs[id] != nil && c.objs[id].ready {
			if err == nil {
				err = fmt.Errorf("create: item %d was yielded already", m.Item)
			}
			c.reply(w, m.Seq, err, wire.Reply{})
			return
		}
		c.store.Abort(id) // a lost earlier attempt may have left a reservation
	} else if m.Result {
		if len(t.returns) != 1 {
			c.reply(w, m.Seq, fmt.Errorf("create: task has %d returns", len(t.returns)), wire.Reply{})
			return
		}
		id = t.returns[0]
		c.store.Abort(id) // a lost earlier attempt may have left a reservation
	}
	if len(w.creates)+w.reserving >= maxCreatesPerWorker {
		c.reply(w, m.Seq, fmt.Errorf("create: too many reservations in flight"), wire.Reply{})
		return
	}
	if m.Size < 0 {
		c.reply(w, m.Seq, fmt.Errorf("create: size %d", m.Size), wire.Reply{})
		return
	}
	w.reserving++
	c.emit(Reserve{Worker: w.id, Seq: m.Seq, ID: id, Size: m.Size, Tenant: w.job.tenant})
}

func (e Reserved) apply(c *Core) {
	w := c.workers[e.Worker]
	if w == nil || w.state == workerDead {
		if e.Err == "" {
			c.store.Abort(e.ID)
		}
		return
	}
	w.reserving--
	if e.Err != "" {
		c.reply(w, e.Seq, fmt.Errorf("%s", e.Err), wire.Reply{})
		return
	}
	if w.creates == nil {
		w.creates = map[objects.ID]struct{}{}
	}
	w.creates[e.ID] = struct{}{}
	c.reply(w, e.Seq, nil, wire.Reply{IDs: []objects.ID{e.ID}, Off: e.Off})
}

// put stores a value under the ID the worker made (or that Create
// reserved). An ID in use breaks the protocol; a value that cannot be
// stored (a released nested reference, no room) becomes an error value.
func (c *Core) put(w *worker, m wire.Put) error {
	t, err := c.current(w, m.Task)
	if err != nil {
		return err
	}
	if m.Item != 0 {
		return c.yield(w, t, m)
	}
	id := m.ID
	if id.IsNil() || c.objs[id] != nil || c.tasks[id] != nil || c.actors[id] != nil {
		return fmt.Errorf("put reuses ID %s", id.Short())
	}
	if m.Created.IsNil() && c.full(w.job, objectOverhead) {
		return nil // nothing is made: the object is not found
	}
	if !m.Created.IsNil() {
		if m.Created != m.ID {
			return fmt.Errorf("put of a reservation under another ID")
		}
		if _, ok := w.creates[id]; !ok {
			return fmt.Errorf("put of a reservation the worker did not make")
		}
		delete(w.creates, id)
	}
	c.newObject(id, w.job)
	c.hold(t.holder(), id)
	return c.storePut(w, id, m)
}

// storePut stores a Put's value in object id, which exists and is not
// ready: inline, or sealed in the reservation it names.
func (c *Core) storePut(w *worker, id objects.ID, m wire.Put) error {
	fail := func(err error) error {
		if !m.Created.IsNil() {
			c.store.Abort(id)
		}
		c.setError(id, abi.ErrorValue{Kind: abi.KindTask, Message: "put: " + err.Error()})
		return nil
	}
	var refs []objects.ID
	for _, r := range m.Refs {
		if _, err := c.object(w, r); err != nil {
			return fail(fmt.Errorf("nested reference: %v", err))
		}
		refs = append(refs, r)
	}
	if m.Created.IsNil() {
		c.storeValue(id, m.Data, refs)
		return nil
	}
	if err := c.store.Seal(id); err != nil {
		return fail(err)
	}
	size := int64(0)
	if loc, err := c.store.PinInPlace(id); err == nil {
		size = loc.Size
		c.store.Unpin(id)
	}
	c.setReady(id, objValue{stored: true, nested: refs})
	if o := c.objs[id]; o != nil {
		o.size = size
	}
	return nil
}

// items builds the reply of a Get whose objects are all ready.
func (c *Core) items(w *worker, ids []objects.ID) ([]wire.Item, error) {
	out := make([]wire.Item, len(ids))
	for i, id := range ids {
		o := c.objs[id]
		if o == nil {
			c.unpinItems(w, ids[:i], out[:i])
			return nil, fmt.Errorf("object %s was released while waiting", id.Short())
		}
		if o.isError {
			out[i] = wire.Item{IsError: true, Data: wire.Piece{Inline: o.inline}}
			continue
		}
		p, err := c.piece(w, id, o)
		if err != nil {
			c.unpinItems(w, ids[:i], out[:i])
			return nil, err
		}
		out[i] = wire.Item{Data: p}
	}
	return out, nil
}

// unpinItems gives back the pins of a Get reply that was not sent.
func (c *Core) unpinItems(w *worker, ids []objects.ID, items []wire.Item) {
	for i, it := range items {
		if it.Data.Arena || it.Data.Path != "" {
			c.unpin(w, ids[i])
		}
	}
}

// checkIDs checks that every ID names an object of w's job.
func (c *Core) checkIDs(w *worker, ids []objects.ID) error {
	for _, id := range ids {
		if c.objs[id] == nil {
			c.itemPlaceholder(w, id)
		}
		if _, err := c.object(w, id); err != nil {
			return err
		}
	}
	return nil
}

func timeoutOf(ms int64) Time {
	if ms < 0 {
		return -1
	}
	return Time(ms) * 1e6
}

func (c *Core) get(w *worker, m wire.Get) {
	t, err := c.current(w, m.Task)
	if err != nil {
		c.reply(w, m.Seq, err, wire.Reply{})
		return
	}
	ids := m.IDs
	if err := c.checkIDs(w, ids); err != nil {
		c.reply(w, m.Seq, fmt.Errorf("get: %v", err), wire.Reply{})
		return
	}
	for _, id := range ids {
		c.addRef(id) // keep them alive while waiting
	}
	finish := func(timedOut bool) {
		if w.state == workerDead || !w.runs(t) { // the waiting execution is gone
			for _, id := range ids {
				c.decRef(id)
			}
			return
		}
		if t.blocked {
			c.setBlocked(t, false)
			if t.kind == wire.ExecTask {
				c.sched.Unblocked(c.reservation(t))
			}
		}
		var items []wire.Item
		var err error
		if !timedOut {
			items, err = c.items(w, ids)
		}
		for _, id := range ids {
			c.decRef(id)
		}
		if timedOut {
			c.reply(w, m.Seq, nil, wire.Reply{Code: abi.TimedOut})
			return
		}
		c.reply(w, m.Seq, err, wire.Reply{Items: items})
	}
	waiting := c.waitFor(ids, len(ids), timeoutOf(m.TimeoutMs), func() { finish(false) }, func() { finish(true) })
	if !waiting {
		finish(false)
		return
	}
	if t.kind == wire.ExecTask && !t.blocked {
		c.setBlocked(t, true)
		c.recall(w)
		c.sched.Blocked(c.reservation(t))
		c.schedule()
		c.workerFreed() // its process no longer counts against the most
	}
}

func (c *Core) wait(w *worker, m wire.Wait) {
	t, err := c.current(w, m.Task)
	if err != nil {
		c.reply(w, m.Seq, err, wire.Reply{})
		return
	}
	ids := m.IDs
	if err := c.checkIDs(w, ids); err != nil {
		c.reply(w, m.Seq, fmt.Errorf("wait: %v", err), wire.Reply{})
		return
	}
	if m.NumReady < 0 || m.NumReady > len(ids) {
		c.reply(w, m.Seq, fmt.Errorf("wait: num_ready %d out of range", m.NumReady), wire.Reply{})
		return
	}
	for _, id := range ids {
		c.addRef(id)
	}
	finish := func() {
		if t.blocked && w.task == t && w.state != workerDead {
			c.setBlocked(t, false)
			c.sched.Unblocked(c.reservation(t))
		}
		ready := make([]bool, len(ids))
		for i, id := range ids {
			if o := c.objs[id]; o != nil && o.ready {
				ready[i] = true
			}
		}
		for _, id := range ids {
			c.decRef(id)
		}
		c.reply(w, m.Seq, nil, wire.Reply{Ready: ready})
	}
	if !c.waitFor(ids, m.NumReady, timeoutOf(m.TimeoutMs), finish, finish) {
		finish()
		return
	}
	c.recall(w) // what it waits for may be queued behind it
	// As in get: it gives its CPU and its place among the running back.
	if t.kind == wire.ExecTask && !t.blocked {
		c.setBlocked(t, true)
		c.sched.Blocked(c.reservation(t))
		c.schedule()
		c.workerFreed()
	}
}

func (c *Core) cancel(w *worker, m wire.Cancel) error {
	o, err := c.object(w, m.ID)
	if err != nil {
		return fmt.Errorf("cancel: %v", err)
	}
	if o.ready || o.producer == nil {
		return nil
	}
	c.cancelTask(o.producer, m.Recursive, m.Force)
	c.schedule()
	return nil
}

// full reports whether n more bytes of records and arguments would take
// the core past its heap budget, or the job's tenant past its share of it;
// if so, the job is told (once) and counts the refusal, and its guest
// finds the object it made missing.
func (c *Core) full(j *job, n int64) bool {
	share := c.heapShare(j.tenant)
	if c.heap+n <= c.cfg.HeapBudget && c.tenantHeap[j.tenant]+n <= share {
		return false
	}
	if j.refused == 0 {
		what := fmt.Sprintf("the node's memory for objects and arguments is full (%s)", sizeOf(c.cfg.HeapBudget))
		if c.heap+n <= c.cfg.HeapBudget {
			what = fmt.Sprintf("tenant %s's share of the node's memory for objects and arguments is full (%s of %s)", j.tenant, sizeOf(share), sizeOf(c.cfg.HeapBudget))
		}
		c.logf("fabric: job %s: %s; its puts and submissions are refused until some are released", j.id, what)
		c.jobOutput(j, true, fmt.Appendf(nil, "fabric: %s: puts and submissions are refused until some are released\n", what))
	}
	j.refused++
	return true
}

// chargeHeap adds n bytes (negative: gives them back) to the heap, for
// j's tenant (j nil: the operator's).
func (c *Core) chargeHeap(j *job, n int64) {
	c.heap += n
	tenant := ""
	if j != nil {
		tenant = j.tenant
	}
	if v := c.tenantHeap[tenant] + n; v != 0 {
		c.tenantHeap[tenant] = v
	} else {
		delete(c.tenantHeap, tenant)
	}
}

// heapShare is what of the heap budget a tenant's jobs may hold: for a
// named tenant, an equal share, the budget divided among the other
// tenants holding some, the tenant, and one more for a tenant yet to
// come (as the object store shares its spill room); the operator's jobs
// are held to the budget only. So a tenant that fills its share with
// small puts has its own refused, not another tenant's.
func (c *Core) heapShare(tenant string) int64 {
	if tenant == "" {
		return c.cfg.HeapBudget
	}
	n := int64(2)
	for t, b := range c.tenantHeap {
		if t != "" && t != tenant && b > 0 {
			n++
		}
	}
	return c.cfg.HeapBudget / n
}

// sizeOf formats a number of bytes for people.
func sizeOf(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
