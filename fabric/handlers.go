package fabric

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/sandbox"
)

// handle serves one message from a worker. An error means the worker
// broke the protocol and is stopped.
func (n *Node) handle(w *workerProc, t wire.Type, body []byte) error {
	switch t {
	case wire.TypeOutput:
		var m wire.Output
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		n.output(w, m)
		return nil
	case wire.TypeUnpin:
		var m wire.Unpin
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		n.mu.Lock()
		n.unpinAll(w, m.IDs)
		n.mu.Unlock()
		return nil
	}
	n.mu.Lock()
	n.handling = true
	defer func() {
		n.handling = false
		n.mu.Unlock()
	}()
	if w.dead || w.job.done {
		return nil // late messages of an ended job
	}
	switch t {
	case wire.TypeDone:
		var m wire.Done
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		return n.handleDone(w, m)
	case wire.TypeSubmit:
		var m wire.Submit
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		return n.handleSubmit(w, m)
	case wire.TypeCreate:
		var m wire.Create
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		n.handleCreate(w, m)
	case wire.TypePut:
		var m wire.Put
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		return n.handlePut(w, m)
	case wire.TypeGet:
		var m wire.Get
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		n.handleGet(w, m)
	case wire.TypeWait:
		var m wire.Wait
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		n.handleWait(w, m)
	case wire.TypeCancel:
		var m wire.Cancel
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		n.reply(w, m.Seq, n.handleCancel(w, m), wire.Reply{})
	case wire.TypeRelease:
		var m wire.Release
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		if t := w.task; t != nil {
			h := t.holder()
			for _, id := range m.IDs {
				if h.held[id] > 0 {
					h.held[id]--
					n.decRef(id)
				}
			}
		}
	case wire.TypeActorLookup:
		var m wire.ActorLookup
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		id, ok := n.named[w.job.id+"/"+m.Name]
		if !ok {
			n.reply(w, m.Seq, fmt.Errorf("no actor named %q in this job", m.Name), wire.Reply{})
		} else {
			n.reply(w, m.Seq, nil, wire.Reply{IDs: []objects.ID{id}})
		}
	case wire.TypeGroupCreate:
		var m wire.GroupCreate
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		return n.handleGroupCreate(w, m)
	case wire.TypeGroupWait:
		var m wire.GroupWait
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		n.handleGroupWait(w, m)
	case wire.TypeGroupRemove:
		var m wire.GroupRemove
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		return n.handleGroupRemove(w, m)
	case wire.TypeActorKill:
		var m wire.ActorKill
		if err := wire.Unmarshal(body, &m); err != nil {
			return err
		}
		n.reply(w, m.Seq, n.handleActorKill(w, m), wire.Reply{})
	default:
		return fmt.Errorf("unexpected message %s", t)
	}
	return nil
}

func (n *Node) reply(w *workerProc, seq uint64, err error, r wire.Reply) {
	r.Seq = seq
	if err != nil {
		r = wire.Reply{Seq: seq, Error: err.Error()}
	}
	w.send(wire.TypeReply, r)
}

// current returns the execution a worker runs, checking the message names it.
func (n *Node) current(w *workerProc, taskID objects.ID) (*task, error) {
	t := w.task
	if t == nil || t.id != taskID {
		return nil, fmt.Errorf("request for a task this worker is not running")
	}
	return t, nil
}

// guestObject is object for an ID in bytes from a guest.
func (n *Node) guestObject(w *workerProc, b []byte) (objects.ID, *object, error) {
	id, err := objects.IDFromBytes(b)
	if err != nil {
		return id, nil, err
	}
	return n.object(w, id)
}

// object returns an object of w's job by ID; other jobs' objects do not exist for it.
func (n *Node) object(w *workerProc, id objects.ID) (objects.ID, *object, error) {
	o := n.objs[id]
	if o == nil || o.job != w.job {
		return id, nil, fmt.Errorf("object %s not found: it was released or never existed", id.Short())
	}
	return id, o, nil
}

// handleSubmit starts a task or a method call, whose return IDs the worker
// made, or creates an actor (the only submission with a reply). IDs that
// are malformed or already in use break the protocol (an error: the worker
// is stopped); a spec the agent refuses fails the call: its objects hold
// the error, which Get returns.
func (n *Node) handleSubmit(w *workerProc, m wire.Submit) error {
	parent, err := n.current(w, m.Task)
	if err != nil {
		return err
	}
	if m.Actor {
		id, err := n.freshIDs(m.IDs, true)
		if err != nil {
			return err
		}
		spec, err := n.checkSpec(w, m.Spec)
		if err == nil && spec.Options.Name != "" {
			if _, taken := n.named[w.job.id+"/"+spec.Options.Name]; taken {
				err = fmt.Errorf("submit: an actor named %q already exists in this job", spec.Options.Name)
			}
		}
		if err != nil {
			n.reply(w, m.Seq, err, wire.Reply{})
			return nil
		}
		a := n.createActor(w.job, parent, spec, id, nil)
		if w.job.root == "" || n.peers == nil || n.closed {
			n.reply(w, m.Seq, nil, wire.Reply{IDs: []objects.ID{id}})
			return nil
		}
		// A share's actor: the job's root learns of it before the guest
		// holds a handle it could pass on, so that calls from anywhere,
		// which go to the root, find it.
		body, _ := wire.Marshal(registerRequest{Job: w.job.id, Actor: id[:], Class: a.class})
		p, root := n.peers, w.job.root
		n.remoteRuns.Add(1)
		go func() {
			defer n.remoteRuns.Done()
			ctx, cancel := context.WithTimeout(n.remoteCtx, peerTimeout)
			defer cancel()
			_, _, err := p.Call(ctx, root, msgRegister, body)
			n.mu.Lock()
			defer n.mu.Unlock()
			if err != nil {
				fmt.Fprintf(n.cfg.Stderr, "fabric: actor %s: the job's root %s did not take its registration (%v); calls from other nodes will not reach it\n", a.class, root, firstLine(err.Error()))
			}
			if !w.dead {
				n.reply(w, m.Seq, nil, wire.Reply{IDs: []objects.ID{id}})
			}
		}()
		return nil
	}
	taskID, err := n.freshIDs(m.IDs, false)
	if err != nil {
		return err
	}
	spec, err := n.checkSpec(w, m.Spec)
	if err == nil && max(spec.NumReturns, 1) != len(m.IDs) {
		err = fmt.Errorf("submit: the spec declares %d return values but the caller made room for %d", max(spec.NumReturns, 1), len(m.IDs))
	}
	var a *actor
	if err == nil && spec.Actor != nil {
		aid, _ := objects.IDFromBytes(spec.Actor)
		a = n.actors[aid]
		if a != nil && a.reportTo != "" && a.state == actorDead && a.job == w.job {
			a = nil // a copy that died here: the actor may live on elsewhere, which the root knows
		}
		if a == nil && w.job.root != "" && !aid.IsNil() {
			// A handle this share has not seen: the job's root owns the actor.
			class, _, _ := strings.Cut(spec.Func, ".")
			a = &actor{id: aid, job: w.job, class: class, state: actorAlive, stub: true, node: w.job.root}
			n.actors[aid] = a
		}
		if a == nil || a.job != w.job {
			err = fmt.Errorf("submit: no actor %s in this job", aid.Short())
		}
	}
	if err != nil {
		n.refuseSubmit(w, parent, taskID, len(m.IDs), spec.Func, err)
		return nil
	}
	if a != nil {
		t := n.newTask(w.job, parent, spec, wire.ExecActorMethod, taskID)
		t.actor = a
		t.name = methodName(a.class, spec.Func)
		n.actorEnqueue(a, t)
		return nil
	}
	t := n.newTask(w.job, parent, spec, wire.ExecTask, taskID)
	n.submit(t)
	if t.state == taskQueued && t.job.short(t.spec.Func) {
		n.topUpAll(t.job) // workers may take it behind their current task
	}
	return nil
}

// freshIDs checks IDs a worker made: 20 bytes each, one random task part,
// return indexes 1..n in order (an actor: one ID with index 0), and not in
// use. It returns the task (or actor) ID.
func (n *Node) freshIDs(raw []objects.ID, actor bool) (objects.ID, error) {
	if len(raw) == 0 || len(raw) > abi.MaxReturns || (actor && len(raw) != 1) {
		return objects.NilID, fmt.Errorf("submit with %d IDs", len(raw))
	}
	base := raw[0].Task()
	if base.IsNil() || n.tasks[base] != nil || n.actors[base] != nil {
		return objects.NilID, fmt.Errorf("submit reuses ID %s", base.Short())
	}
	for i, id := range raw {
		want := base.WithIndex(uint32(i + 1))
		if actor {
			want = base
		}
		if id != want || n.objs[id] != nil {
			return objects.NilID, fmt.Errorf("submit with a malformed or reused ID %s", id.Short())
		}
	}
	return base, nil
}

// checkSpec decodes and checks a task spec against the worker's job.
func (n *Node) checkSpec(w *workerProc, raw []byte) (abi.TaskSpec, error) {
	var spec abi.TaskSpec
	if err := wire.Unmarshal(raw, &spec); err != nil {
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
			_, err = n.jobGroup(w, gid)
		}
		if err != nil {
			return spec, fmt.Errorf("submit: %v", err)
		}
		if b := spec.Options.Bundle; b != nil && *b < -1 {
			return spec, fmt.Errorf("submit: bundle index %d", *b)
		}
	}
	for i, a := range spec.Args {
		if (a.Ref == nil) == (a.Value == nil) {
			return spec, fmt.Errorf("submit: argument %d must have exactly one of a value (\"v\") or a reference (\"r\")", i)
		}
		if a.Ref != nil {
			if _, _, err := n.guestObject(w, a.Ref); err != nil {
				return spec, fmt.Errorf("submit: argument %d: %v", i, err)
			}
		}
	}
	for _, r := range spec.Refs {
		if _, _, err := n.guestObject(w, r); err != nil {
			return spec, fmt.Errorf("submit: nested reference: %v", err)
		}
	}
	return spec, nil
}

// refuseSubmit makes the objects of a refused submission hold its error.
func (n *Node) refuseSubmit(w *workerProc, parent *task, taskID objects.ID, nret int, fn string, err error) {
	b, _ := wire.Marshal(abi.ErrorValue{Kind: "task", Message: err.Error(), Task: fn})
	for i := 1; i <= nret; i++ {
		id := taskID.WithIndex(uint32(i))
		n.objs[id] = &object{job: w.job}
		n.hold(parent.holder(), id)
		n.setReady(id, b, true, false, nil)
	}
}

// maxCreatesPerWorker bounds the arena reservations one worker may hold
// before storing them: a worker makes at most one at a time.
const maxCreatesPerWorker = 4

func (n *Node) handleCreate(w *workerProc, m wire.Create) {
	t, err := n.current(w, m.Task)
	if err != nil {
		n.reply(w, m.Seq, err, wire.Reply{})
		return
	}
	id := newID()
	if m.Result {
		if len(t.returns) != 1 {
			n.reply(w, m.Seq, fmt.Errorf("create: task has %d returns", len(t.returns)), wire.Reply{})
			return
		}
		id = t.returns[0]
		n.store.Abort(id) // a lost earlier attempt may have left a reservation
	}
	if len(w.creates) >= maxCreatesPerWorker {
		n.reply(w, m.Seq, fmt.Errorf("create: too many reservations in flight"), wire.Reply{})
		return
	}
	off, err := n.store.Create(id, m.Size)
	if err != nil {
		n.reply(w, m.Seq, err, wire.Reply{})
		return
	}
	if w.creates == nil {
		w.creates = map[objects.ID]struct{}{}
	}
	w.creates[id] = struct{}{}
	n.reply(w, m.Seq, nil, wire.Reply{IDs: []objects.ID{id}, Off: off})
}

// handlePut stores a value under the ID the worker made (or that Create
// reserved). An ID in use breaks the protocol; a value that cannot be stored
// (a released nested reference, no room) becomes an error value.
func (n *Node) handlePut(w *workerProc, m wire.Put) error {
	t, err := n.current(w, m.Task)
	if err != nil {
		return err
	}
	id := m.ID
	if id.IsNil() || n.objs[id] != nil || n.tasks[id] != nil || n.actors[id] != nil {
		return fmt.Errorf("put reuses ID %s", id.Short())
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
	n.objs[id] = &object{job: w.job}
	n.hold(t.holder(), id)
	fail := func(err error) error {
		if !m.Created.IsNil() {
			n.store.Abort(id)
		}
		b, _ := wire.Marshal(abi.ErrorValue{Kind: "task", Message: "put: " + err.Error()})
		n.setReady(id, b, true, false, nil)
		return nil
	}
	var refs []objects.ID
	for _, r := range m.Refs {
		rid, _, err := n.object(w, objects.ID(r))
		if err != nil {
			return fail(fmt.Errorf("nested reference: %v", err))
		}
		refs = append(refs, rid)
	}
	stored := false
	var inline []byte
	switch {
	case !m.Created.IsNil():
		if err := n.store.Seal(id); err != nil {
			return fail(err)
		}
		stored = true
	case len(m.Data) > sandbox.InlineMax:
		if err := n.store.Put(id, m.Data); err != nil {
			return fail(err)
		}
		stored = true
	default:
		inline = m.Data
	}
	n.setReady(id, inline, false, stored, refs)
	if o := n.objs[id]; o != nil && stored {
		o.size = int64(len(m.Data))
		if !m.Created.IsNil() {
			if loc, err := n.store.Pin(id); err == nil {
				o.size = loc.Size
				n.store.Unpin(id)
			}
		}
	}
	return nil
}

// items builds the reply of a Get whose objects are all ready.
func (n *Node) items(w *workerProc, ids []objects.ID) ([]wire.Item, error) {
	out := make([]wire.Item, len(ids))
	for i, id := range ids {
		o := n.objs[id]
		if o == nil {
			return nil, fmt.Errorf("object %s was released while waiting", id.Short())
		}
		if o.isError {
			out[i] = wire.Item{IsError: true, Data: wire.Piece{Inline: o.inline}}
			continue
		}
		p, err := n.piece(w, id, o)
		if err != nil {
			return nil, err
		}
		out[i] = wire.Item{Data: p}
	}
	return out, nil
}

func (n *Node) parseIDs(w *workerProc, raw []objects.ID) ([]objects.ID, error) {
	ids := make([]objects.ID, len(raw))
	for i, b := range raw {
		id, _, err := n.object(w, b)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

func timeoutOf(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

func (n *Node) handleGet(w *workerProc, m wire.Get) {
	t, err := n.current(w, m.Task)
	if err != nil {
		n.reply(w, m.Seq, err, wire.Reply{})
		return
	}
	ids, err := n.parseIDs(w, m.IDs)
	if err != nil {
		n.reply(w, m.Seq, fmt.Errorf("get: %v", err), wire.Reply{})
		return
	}
	for _, id := range ids {
		n.addRef(id) // keep them alive while waiting
	}
	finish := func(timedOut bool) {
		if w.dead || w.task != t { // the waiting execution is gone
			for _, id := range ids {
				n.decRef(id)
			}
			return
		}
		if t.blocked {
			t.blocked = false
			if t.kind == wire.ExecTask {
				n.sched.Unblocked(t.schedID())
			}
		}
		var items []wire.Item
		var err error
		if !timedOut {
			items, err = n.items(w, ids)
		}
		for _, id := range ids {
			n.decRef(id)
		}
		if timedOut {
			n.reply(w, m.Seq, nil, wire.Reply{Code: abi.TimedOut})
			return
		}
		n.reply(w, m.Seq, err, wire.Reply{Items: items})
	}
	waiting := n.waitFor(ids, len(ids), timeoutOf(m.TimeoutMs), func() { finish(false) }, func() { finish(true) })
	if !waiting {
		finish(false)
		return
	}
	if t.kind == wire.ExecTask && !t.blocked {
		t.blocked = true
		n.recall(w)
		n.sched.Blocked(t.schedID())
		n.schedule()
	}
}

func (n *Node) handleWait(w *workerProc, m wire.Wait) {
	if _, err := n.current(w, m.Task); err != nil {
		n.reply(w, m.Seq, err, wire.Reply{})
		return
	}
	ids, err := n.parseIDs(w, m.IDs)
	if err != nil {
		n.reply(w, m.Seq, fmt.Errorf("wait: %v", err), wire.Reply{})
		return
	}
	if m.NumReady < 0 || m.NumReady > len(ids) {
		n.reply(w, m.Seq, fmt.Errorf("wait: num_ready %d out of range", m.NumReady), wire.Reply{})
		return
	}
	for _, id := range ids {
		n.addRef(id)
	}
	finish := func() {
		ready := make([]bool, len(ids))
		for i, id := range ids {
			if o := n.objs[id]; o != nil && o.ready {
				ready[i] = true
			}
			n.decRef(id)
		}
		n.reply(w, m.Seq, nil, wire.Reply{Ready: ready})
	}
	if !n.waitFor(ids, m.NumReady, timeoutOf(m.TimeoutMs), finish, finish) {
		finish()
		return
	}
	n.recall(w) // what it waits for may be queued behind it
}

func (n *Node) handleCancel(w *workerProc, m wire.Cancel) error {
	id, o, err := n.object(w, m.ID)
	if err != nil {
		return fmt.Errorf("cancel: %v", err)
	}
	if o.ready || o.producer == nil {
		return nil
	}
	n.cancelTask(o.producer, m.Force, m.Recursive)
	_ = id
	return nil
}

func (n *Node) cancelTask(t *task, force, recursive bool) {
	if t.kind == wire.ExecActorCreate {
		return // actors are not cancelled (Ray kills them with kill)
	}
	if recursive {
		children := make([]*task, 0, len(t.children))
		for c := range t.children {
			children = append(children, c)
		}
		sort.Slice(children, func(i, j int) bool { return string(children[i].id[:]) < string(children[j].id[:]) })
		for _, c := range children {
			n.cancelTask(c, force, recursive)
		}
	}
	ev := abi.ErrorValue{Kind: "cancelled", Message: fmt.Sprintf("task %s was cancelled", t.name), Task: t.name}
	switch t.state {
	case taskQueued:
		if t.kind == wire.ExecActorMethod {
			if a := t.actor; a != nil {
				for i, q := range a.queue {
					if q == t {
						a.queue = append(a.queue[:i], a.queue[i+1:]...)
						break
					}
				}
			}
			n.failTask(t, ev, false)
			return
		}
		n.sched.Cancel(t.schedID())
		n.failTask(t, ev, false)
	case taskRunning:
		if t.kind == wire.ExecActorMethod || t.kind == wire.ExecMain {
			return // Ray does not cancel running actor calls
		}
		if w := t.worker; w != nil {
			if w.task != t { // sent ahead, perhaps not started
				n.cancelQueued(w, t, ev)
				return
			}
			w.killReason = &ev
			w.kill()
			return
		}
		for node, calls := range n.remoteCalls {
			if cancel := calls[t]; cancel != nil {
				n.passLease(t, node) // tasks sent behind it keep its reservation
				cancel()             // its node cancels it when the call goes away (runForPeer)
			}
		}
		// placed but waiting for a worker, or running on another node
		for i, q := range t.job.queue {
			if q == t {
				t.job.queue = append(t.job.queue[:i], t.job.queue[i+1:]...)
				break
			}
		}
		n.failTask(t, ev, true)
	}
}

// checkDemand refuses resource amounts that are negative, not finite or
// absurdly large: a demand of -1000 CPUs would overcommit the node for
// every tenant.
func checkDemand(o abi.Options) error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e9 }
	if o.CPU != nil && bad(*o.CPU) {
		return fmt.Errorf("submit: CPUs %v is not a non-negative amount", *o.CPU)
	}
	if bad(o.GPU) {
		return fmt.Errorf("submit: GPUs %v is not a non-negative amount", o.GPU)
	}
	if o.Memory < 0 {
		return fmt.Errorf("submit: memory %d is negative", o.Memory)
	}
	for k, v := range o.Resources {
		if bad(v) || k == "" {
			return fmt.Errorf("submit: resource %q amount %v is not a non-negative amount", k, v)
		}
	}
	return nil
}
