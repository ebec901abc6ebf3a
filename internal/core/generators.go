package core

import (
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Generators. A task (or method call) whose option "generator" is set
// yields items one at a time: item i is its return object of index
// abi.FirstItem+i, made as soon as the worker yields it (a Put with Item)
// and held by the task's caller, so that the caller may use it while the
// task goes on. The task's own return object (index 1) is its end: the
// number of items, which the agent counts, or the task's error, in which
// case the items made before stay readable. A caller that waits for an
// item not yet yielded gets a placeholder that the yield fills, or that
// the end fails. A generator that runs for another node (its owner)
// sends each item there as it is made (task_yield), before its
// task_done.

// maxPlaceholders bounds the items a generator's callers may wait for
// ahead of it.
const maxPlaceholders = 1024

// itemID returns the ID of generator t's item of return index idx and
// counts it among the items made. The SDK yields items in order; a
// guest that skips some only confuses its own callers.
func (c *Core) itemID(t *task, idx uint32) (objects.ID, error) {
	switch {
	case !t.spec.Options.Generator:
		return objects.NilID, fmt.Errorf("yield from %s, which is not a generator", t.name)
	case idx < abi.FirstItem || idx-abi.FirstItem >= abi.MaxItems:
		return objects.NilID, fmt.Errorf("yield of item index %d", idx)
	}
	t.items = max(t.items, idx-abi.FirstItem+1)
	return t.id.WithIndex(idx), nil
}

// yield stores a generator's item; one an earlier attempt made already
// is kept as it was. A bad one is dropped, and the task's output says so.
func (c *Core) yield(w *worker, t *task, m wire.Put) error {
	if !m.Created.IsNil() {
		if _, ok := w.creates[m.Created]; !ok || m.Created != m.ID {
			return fmt.Errorf("yield of a reservation the worker did not make")
		}
		delete(w.creates, m.Created)
	}
	id, err := c.itemID(t, m.Item)
	if err == nil && m.ID != id {
		err = fmt.Errorf("yield under ID %s", m.ID.Short())
	}
	if err != nil {
		if !m.Created.IsNil() {
			c.store.Abort(m.Created)
		}
		c.flushOutput(w, t)
		c.jobOutput(w.job, true, appendLine(nil, t.name, w.pid, []byte("fabric: "+err.Error()+": the item is dropped")))
		return nil
	}
	o := c.objs[id]
	if o != nil && o.ready {
		if !m.Created.IsNil() {
			c.store.Abort(id)
		}
		return nil
	}
	if o == nil {
		if m.Created.IsNil() && c.full(w.job, objectOverhead+int64(len(m.Data))) {
			return nil // nothing is made, as for a put: the item is not found
		}
		c.newObject(id, w.job)
		c.hold(t.callerHolder(), id)
	}
	if err := c.storePut(w, id, m); err != nil {
		return err
	}
	if t.asker != "" {
		c.sendItem(t, m.Item, id)
	}
	return nil
}

// sendItem sends a generator's item to the node it runs for: inline, or
// exported, with the references inside it.
func (c *Core) sendItem(t *task, idx uint32, id objects.ID) {
	o := c.objs[id]
	j := t.job
	if o == nil || !o.ready || j.done {
		return
	}
	msg := &peerwire.TaskYield{Job: string(j.id), Task: t.askerTask, Attempt: t.askerAttempt, Index: idx}
	switch {
	case o.isError:
		msg.Error = o.inline
	case o.stored:
		c.export(j, id, t.asker)
		msg.Result = peerwire.Result{Held: true, ID: id, Size: o.size}
	default:
		msg.Result = peerwire.Result{Value: o.inline}
	}
	if msg.Error == nil {
		for _, r := range o.nested {
			c.export(j, r, t.asker)
			msg.Refs = append(msg.Refs, r)
		}
	}
	c.sendPeer(t.asker, msg)
}

// taskYield applies an item of a generator that runs on another node.
func (c *Core) taskYield(from NodeID, m *peerwire.TaskYield) {
	j := c.jobs[JobID(m.Job)]
	if j == nil || j.done {
		return
	}
	drop := func() {
		if m.Error == nil && m.Result.Held {
			c.release(j.id, from, m.Result.ID, 1)
		}
		for _, r := range m.Refs {
			c.release(j.id, from, r, 1)
		}
	}
	t := c.tasks[m.Task]
	if t == nil || t.job != j || t.remoteNode != from || t.attempt != m.Attempt {
		drop()
		return
	}
	id, err := c.itemID(t, m.Index)
	if o := c.objs[id]; err != nil || o != nil && o.ready {
		drop()
		return
	}
	o := c.objs[id]
	if o == nil {
		if c.full(j, objectOverhead+int64(len(m.Result.Value))) {
			drop()
			return
		}
		o = c.newObject(id, j)
		c.hold(t.callerHolder(), id)
	}
	c.importAll(j, m.Refs, from)
	switch {
	case m.Error != nil:
		c.setError(id, decodeErrorValue(m.Error))
	case !m.Result.Held:
		c.storeValue(id, m.Result.Value, m.Refs)
	default:
		o.remote, o.remoteID, o.borrows, o.size = from, m.Result.ID, 1, m.Result.Size
		if len(o.waiters) > 0 {
			c.fetch(id, o)
		}
	}
}

// callerHolder is the execution that holds what t returns.
func (t *task) callerHolder() *task {
	if t.parent != nil {
		return t.parent.holder()
	}
	return t
}

// itemPlaceholder makes a pending object for a generator's item that a
// worker of its job asks for before it is yielded; the yield fills it.
func (c *Core) itemPlaceholder(w *worker, id objects.ID) {
	t := c.tasks[id.Task()]
	idx := id.Index()
	if t == nil || t.job != w.job || !t.spec.Options.Generator || t.state == taskDone ||
		idx < abi.FirstItem+t.items || idx-abi.FirstItem >= abi.MaxItems ||
		len(t.placeholders) >= maxPlaceholders || c.full(w.job, objectOverhead) {
		return
	}
	c.newObject(id, w.job)
	c.hold(t.callerHolder(), id)
	t.placeholders = append(t.placeholders, id)
}

// endGenerator fails the placeholders of items a generator never
// yielded: with its error, or as past its end.
func (c *Core) endGenerator(t *task) {
	ev := abi.ErrorValue{Kind: abi.KindTask, Message: fmt.Sprintf("generator %s ended after %d items", t.name, t.items), Task: t.name}
	if len(t.returns) > 0 {
		if o := c.objs[t.returns[0]]; o != nil && o.ready && o.isError {
			ev = decodeErrorValue(o.inline)
		}
	}
	for _, id := range t.placeholders {
		if o := c.objs[id]; o != nil && !o.ready {
			c.setError(id, ev)
		}
	}
	t.placeholders = nil
}
