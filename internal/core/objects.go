package core

import (
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/wire"
)

// object is the node's record of one object: its state, where its bytes
// are and how many references keep it alive.
type object struct {
	job      *job // nil for an object of no job (AddObject)
	ready    bool
	isError  bool
	inline   []byte // small values and error values
	stored   bool   // the bytes are in the store under the object's ID
	storing  bool   // a StoreValue for it is on its way
	size     int64
	refs     int
	nested   []objects.ID // references inside the value, kept alive by it
	waiters  []*waiter
	producer *task
	// remote is the node that holds the object for this one (a share's
	// placeholder, fetched on demand, or its fetched copy), remoteID the
	// ID it holds it under there; borrows counts the holds it keeps for
	// this node, given back when the object is dropped here.
	remote   NodeID
	remoteID objects.ID
	borrows  int
	fetching bool
	// pulling are the references inside a value whose bytes are being
	// pulled (imported, made ready with it); storeRefs those of a value
	// being stored (held until it is).
	pulling   []objects.ID
	storeRefs []objects.ID
	// copies are the other nodes that pulled the stored value from here
	// and still hold it, for locality.
	copies map[NodeID]struct{}
}

// objectOverhead is what the core counts for an object's record against
// its heap budget, besides its inline bytes: the record, its entry in the
// table and its holder's, as measured (about 360 bytes with Go's size
// classes), rounded up.
const objectOverhead = 384

// waiter is a get, a wait, or a part of the core waiting for objects.
type waiter struct {
	need  int
	fired bool
	fn    func()
	timer TimerID
}

// newObject records a new object of job j.
func (c *Core) newObject(id objects.ID, j *job) *object {
	o := &object{job: j}
	c.objs[id] = o
	c.chargeHeap(j, objectOverhead)
	if j != nil {
		j.objects++
	}
	return o
}

// objValue is an object's value, for setReady.
type objValue struct {
	inline  []byte       // the bytes, when the agent keeps them in memory
	stored  bool         // the bytes are in the object store
	isError bool         // the bytes are an abi.ErrorValue
	nested  []objects.ID // the references nested in it
}

// setReady gives an object its value.
func (c *Core) setReady(id objects.ID, v objValue) {
	o := c.objs[id]
	if o == nil || o.ready {
		if v.stored && o == nil {
			c.store.Delete(id)
		}
		return
	}
	o.ready, o.isError, o.inline, o.stored = true, v.isError, v.inline, v.stored
	if v.stored {
		c.stored++
	}
	o.size = int64(len(v.inline))
	c.chargeHeap(o.job, int64(len(v.inline)))
	for _, r := range v.nested {
		c.addRef(r)
	}
	o.nested = v.nested
	ws := o.waiters
	o.waiters = nil
	for _, w := range ws {
		if w.fired {
			continue
		}
		w.need--
		if w.need <= 0 {
			w.fired = true
			c.stopTimer(w.timer)
			w.fn()
		}
	}
	c.sched.ObjectReady(schedKey(id))
	c.reschedule = true
	if o.refs <= 0 && c.objs[id] == o {
		c.dropObject(id)
	}
}

// setError makes an object hold an error value.
func (c *Core) setError(id objects.ID, ev abi.ErrorValue) {
	b, _ := wire.Marshal(ev)
	c.setReady(id, objValue{inline: b, isError: true})
}

func (c *Core) addRef(id objects.ID) {
	if o := c.objs[id]; o != nil {
		o.refs++
	}
}

// decRef drops one reference; an unreferenced ready object is freed.
func (c *Core) decRef(id objects.ID) {
	o := c.objs[id]
	if o == nil {
		return
	}
	o.refs--
	if o.droppable() {
		c.dropObject(id)
	}
}

// dropObject forgets an object and drops the references inside it. The
// references inside those are dropped by the same loop, not by recursion,
// and at most dropChunk objects go per step: a chain of millions of
// nested objects is released in constant stack, a chunk at a time, the
// rest in Continue events, so that other jobs are not held up meanwhile.
func (c *Core) dropObject(id objects.ID) {
	c.dropping = append(c.dropping, id)
	if !c.inDrop {
		c.drainDrops(dropChunk)
	}
}

// dropChunk bounds the objects dropped in one step.
const dropChunk = 20000

// drainDrops works through the drop list, up to limit objects (< 0: all),
// and asks for a Continue when some are left.
func (c *Core) drainDrops(limit int) {
	c.inDrop = true
	for done := 0; len(c.dropping) > 0 && (limit < 0 || done < limit); done++ {
		id := c.dropping[len(c.dropping)-1]
		c.dropping = c.dropping[:len(c.dropping)-1]
		c.forgetObject(id)
	}
	c.inDrop = false
	if len(c.dropping) > 0 && !c.continuing {
		c.continuing = true
		c.emit(Yield{})
	}
}

func (e Continue) apply(c *Core) {
	c.continuing = false
	c.drainDrops(dropChunk)
}

// forgetObject is one step of dropObject. An object that something
// refers to again while it waited in the list is kept.
func (c *Core) forgetObject(id objects.ID) {
	o := c.objs[id]
	if o == nil || (o.refs > 0 && o.job != nil && !o.job.done) {
		return
	}
	delete(c.objs, id)
	c.chargeHeap(o.job, -(objectOverhead + int64(len(o.inline))))
	if j := o.job; j != nil {
		j.objects--
		if j.done && j.objects == 0 {
			defer c.jobMaybeEnded(j) // the last of an ended job's objects
		}
	}
	if o.remote != "" && o.borrows > 0 && o.job != nil && !o.job.done {
		c.release(o.job.id, o.remote, o.remoteID, o.borrows)
		o.borrows = 0
	}
	for _, r := range o.pulling {
		c.dropImport(o.job, r, o.remote)
	}
	o.pulling = nil
	for _, r := range o.storeRefs {
		c.unrefLater(r)
	}
	o.storeRefs = nil
	if p := o.producer; p != nil && p.lineage && p.state == taskDone {
		p.lineage = false // nobody can need the result again
		c.releaseArgs(p)
	}
	if o.stored {
		c.store.Delete(id)
		c.stored--
	}
	for _, r := range o.nested {
		c.unrefLater(r)
	}
	o.nested = nil
}

// unrefLater is decRef for the inside of dropObject's loop: an object
// left unreferenced joins the work list.
func (c *Core) unrefLater(id objects.ID) {
	if o := c.objs[id]; o != nil {
		o.refs--
		if o.droppable() {
			c.dropping = append(c.dropping, id)
		}
	}
}

// droppable reports whether nothing keeps an object.
func (o *object) droppable() bool {
	return o.refs <= 0 && (o.ready || (o.remote != "" && !o.fetching)) && !o.storing && len(o.waiters) == 0
}

// waitFor calls fn once need of ids are ready (or timeout passes, then
// onTimeout; timeout < 0: none). It returns false, calling nothing, when
// they already are. Placeholders among ids are fetched.
func (c *Core) waitFor(ids []objects.ID, need int, timeout Time, fn, onTimeout func()) bool {
	pending := 0
	for _, id := range ids {
		if o := c.objs[id]; o != nil && !o.ready {
			pending++
		}
	}
	ready := len(ids) - pending
	if ready >= need {
		return false
	}
	w := &waiter{need: need - ready, fn: fn}
	for _, id := range ids {
		if o := c.objs[id]; o != nil && !o.ready {
			o.waiters = append(o.waiters, w)
			c.fetch(id, o)
		}
	}
	if timeout >= 0 {
		w.timer = c.setTimer(timeout, func() {
			if !w.fired {
				w.fired = true
				c.dropWaiter(ids, w) // a polling loop must not pile waiters up
				onTimeout()
			}
		})
	}
	return true
}

// dropWaiter removes a waiter that timed out from the objects it waited on.
func (c *Core) dropWaiter(ids []objects.ID, w *waiter) {
	for _, id := range ids {
		o := c.objs[id]
		if o == nil {
			continue
		}
		kept := o.waiters[:0]
		for _, x := range o.waiters {
			if x != w {
				kept = append(kept, x)
			}
		}
		clear(o.waiters[len(kept):])
		o.waiters = kept
		if o.refs <= 0 && o.ready && len(o.waiters) == 0 {
			c.dropObject(id)
		}
	}
}

// storeValue makes a value that arrived inline ready: small ones stay in
// memory while half the heap budget lasts; others go to the store, and
// are ready once stored.
func (c *Core) storeValue(id objects.ID, data []byte, nested []objects.ID) {
	o := c.objs[id]
	if o == nil || o.ready {
		return
	}
	// Small values stay in memory while they take at most half the budget:
	// the rest is for records and arguments. Past it they go to the store.
	if len(data) <= c.cfg.InlineMax && c.heap+int64(len(data)) <= c.cfg.HeapBudget/2 {
		c.setReady(id, objValue{inline: data, nested: nested})
		return
	}
	o.storing = true
	o.storeRefs = nested
	for _, r := range nested {
		c.addRef(r) // held until the value is stored
	}
	c.store.Abort(id) // a reservation a lost attempt may have left
	tenant := ""
	if o.job != nil {
		tenant = o.job.tenant
	}
	c.emit(StoreValue{ID: id, Data: data, Tenant: tenant})
}

// valueStored finishes storeValue.
func (c *Core) valueStored(ev ValueStored) {
	o := c.objs[ev.ID]
	if o == nil || !o.storing {
		if ev.Err == "" {
			c.store.Delete(ev.ID)
		}
		return
	}
	o.storing = false
	nested := o.storeRefs
	o.storeRefs = nil
	if ev.Err != "" {
		for _, r := range nested {
			c.decRef(r)
		}
		c.setError(ev.ID, abi.ErrorValue{Kind: abi.KindTask, Message: "the node could not store the value: " + ev.Err})
		return
	}
	size := int64(0)
	if loc, err := c.store.PinInPlace(ev.ID); err == nil {
		size = loc.Size
		c.store.Unpin(ev.ID)
	}
	c.setReady(ev.ID, objValue{stored: true, nested: nested})
	if o := c.objs[ev.ID]; o != nil {
		o.size = size
	}
	for _, r := range nested {
		c.decRef(r) // setReady took the value's own references
	}
}

func (e ValueStored) apply(c *Core) { c.valueStored(e) }

func (e AddObject) apply(c *Core) {
	if _, ok := c.objs[e.ID]; ok {
		if e.Stored {
			c.store.Delete(e.ID)
		}
		return
	}
	o := c.newObject(e.ID, nil)
	o.refs = 1
	c.setReady(e.ID, objValue{inline: e.Inline, stored: e.Stored})
	if o := c.objs[e.ID]; o != nil && e.Stored {
		o.size = e.Size
	}
}

func (e DeleteObject) apply(c *Core) {
	if o := c.objs[e.ID]; o != nil && o.job == nil {
		c.decRef(e.ID)
	}
}

// decodeErrorValue reads an error value; a malformed one becomes a task error.
func decodeErrorValue(b []byte) abi.ErrorValue {
	var ev abi.ErrorValue
	if err := wire.Unmarshal(b, &ev); err != nil {
		ev = abi.ErrorValue{Kind: abi.KindTask, Message: "undecodable error value"}
	}
	return ev
}

// Exports, imports and releases: holds on objects across nodes.

// exportKey names the holds a node keeps on an object for another node.
type exportKey struct {
	id   objects.ID
	node NodeID
}

// releaseKey names the holds to give back to one node for one job.
type releaseKey struct {
	job  JobID
	node NodeID
}

// export holds object id of job j for node (once more).
func (c *Core) export(j *job, id objects.ID, node NodeID) {
	if c.objs[id] == nil {
		return
	}
	k := exportKey{id, node}
	if j.exports == nil {
		j.exports = map[exportKey]int{}
	}
	if j.exports[k] == 0 {
		c.addRef(id)
	}
	j.exports[k]++
}

// unexport gives back count holds of node on id.
func (c *Core) unexport(j *job, id objects.ID, node NodeID, count int) {
	k := exportKey{id, node}
	n, ok := j.exports[k]
	if !ok {
		return
	}
	if n -= count; n > 0 {
		j.exports[k] = n
		return
	}
	delete(j.exports, k)
	if o := c.objs[id]; o != nil {
		delete(o.copies, node)
	}
	c.decRef(id)
}

// importRef records an object ID that node from sent for job j, which from
// now holds for this node: a new placeholder, one more hold on one from
// the same node, or a hold given back at once when the object is known
// here otherwise.
func (c *Core) importRef(j *job, id objects.ID, from NodeID) {
	o := c.objs[id]
	switch {
	case o == nil:
		o = c.newObject(id, j)
		o.remote, o.remoteID, o.borrows = from, id, 1
	case o.job == j && o.remote == from && o.remoteID == id:
		o.borrows++
	default:
		c.release(j.id, from, id, 1)
	}
}

// importAll imports the references of a message from node.
func (c *Core) importAll(j *job, ids []objects.ID, from NodeID) {
	for _, id := range ids {
		c.importRef(j, id, from)
	}
}

// dropImport lets go of one imported hold that nothing will use.
func (c *Core) dropImport(j *job, id objects.ID, from NodeID) {
	o := c.objs[id]
	switch {
	case o == nil || j == nil || o.remote != from || o.borrows <= 0:
	case o.refs <= 0 && !o.fetching:
		c.decRef(id) // dropped, and its holds given back
	default:
		o.borrows--
		c.release(j.id, from, o.remoteID, 1)
	}
}

// release queues count holds to give back to node, sent at the end of the
// step with the others of the same job and node.
func (c *Core) release(job JobID, node NodeID, id objects.ID, count int) {
	if count <= 0 || node == "" {
		return
	}
	k := releaseKey{job, node}
	m := c.releases[k]
	if m == nil {
		m = map[objects.ID]uint32{}
		c.releases[k] = m
	}
	m[id] += uint32(count)
}

// flushReleases sends the holds given back during a step.
func (c *Core) flushReleases() {
	if len(c.releases) == 0 {
		return
	}
	keys := make([]releaseKey, 0, len(c.releases))
	for k := range c.releases {
		keys = append(keys, k)
	}
	sortReleaseKeys(keys)
	for _, k := range keys {
		m := c.releases[k]
		delete(c.releases, k)
		if _, ok := c.peers[k.node]; !ok {
			continue // gone: its holds went with it
		}
		msg := &peerwire.Release{Job: string(k.job)}
		for _, id := range sortedIDs(m) {
			msg.IDs = append(msg.IDs, id)
			msg.Counts = append(msg.Counts, m[id])
		}
		c.sendPeer(k.node, msg)
	}
}

func sortReleaseKeys(keys []releaseKey) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && (keys[j].job < keys[j-1].job || (keys[j].job == keys[j-1].job && keys[j].node < keys[j-1].node)); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
}

// Fetching placeholders.

// fetch starts fetching a placeholder's value from the node that holds it
// for this one.
func (c *Core) fetch(id objects.ID, o *object) {
	if o.ready || o.fetching || o.remote == "" || o.job == nil || o.job.done {
		return
	}
	o.fetching = true
	if _, ok := c.peers[o.remote]; !ok {
		// Its holder is gone: fail it (or make it again) once the caller,
		// which may be registering waiters, is done.
		c.later = append(c.later, func() {
			if c.objs[id] == o && o.fetching && !o.ready {
				o.fetching = false
				c.fetchFailed(id, o)
				c.schedule()
			}
		})
		return
	}
	c.sendPeer(o.remote, &peerwire.GetObject{Job: string(o.job.id), ID: o.remoteID, For: id})
}

// objectValue applies the answer to a fetch.
func (c *Core) objectValue(from NodeID, m *peerwire.ObjectValue) {
	j := c.jobs[JobID(m.Job)]
	if j == nil || j.done {
		return // the job ended: its holds end with it on the sender too
	}
	id := m.For
	o := c.objs[id]
	if o == nil || o.job != j || o.remote != from || o.remoteID != m.ID || !o.fetching || o.ready {
		if m.Missing == "" {
			c.release(j.id, from, m.ID, 1) // the holds the answer took
			for _, r := range m.Refs {
				c.release(j.id, from, r, 1)
			}
		}
		return
	}
	if m.Missing != "" {
		o.fetching = false
		if c.reconstruct(id, o) {
			return
		}
		c.setError(id, abi.ErrorValue{Kind: abi.KindObjectLost, Message: fmt.Sprintf("object %s could not be fetched from node %s: %s", id.Short(), from, m.Missing)})
		c.schedule()
		return
	}
	o.borrows++ // the answer took a hold on it for this node
	c.importAll(j, m.Refs, from)
	if m.Stored {
		o.size = m.Size
		o.pulling = m.Refs
		c.store.Abort(id)
		c.emit(PullObject{Job: j.id, Tenant: j.tenant, ID: id, From: from, As: m.ID, Size: m.Size})
		return
	}
	o.fetching = false
	c.setReady(id, objValue{inline: m.Inline, isError: m.IsError, nested: m.Refs})
	c.schedule()
}

func (e ObjectPulled) apply(c *Core) {
	o := c.objs[e.ID]
	j := c.jobs[e.Job]
	if o == nil || j == nil || o.job != j || !o.fetching || o.ready {
		if e.Err == "" {
			c.store.Delete(e.ID)
		}
		return
	}
	o.fetching = false
	nested := o.pulling
	o.pulling = nil
	if e.Err != "" {
		for _, r := range nested {
			c.dropImport(j, r, o.remote)
		}
		if _, alive := c.peers[o.remote]; !alive && c.reconstruct(e.ID, o) {
			return
		}
		c.setError(e.ID, abi.ErrorValue{Kind: abi.KindObjectLost, Message: fmt.Sprintf("object %s arrived from node %s but could not be stored: %s", e.ID.Short(), o.remote, e.Err)})
		c.schedule()
		return
	}
	c.setReady(e.ID, objValue{stored: true, nested: nested})
	if o := c.objs[e.ID]; o != nil {
		o.size = e.Size
	}
	c.schedule()
}

// serveObject answers a peer's fetch of object id once it is ready
// (fetching it first if this node holds only a placeholder): the object
// and the references inside it are exported to the asker.
func (c *Core) serveObject(from NodeID, m *peerwire.GetObject) {
	j := c.jobs[JobID(m.Job)]
	o := c.objs[m.ID]
	if j == nil || j.done || o == nil || o.job != j {
		c.sendPeer(from, &peerwire.ObjectValue{Job: m.Job, ID: m.ID, For: m.For,
			Missing: fmt.Sprintf("object %s of job %s is not on node %s (released, or its job ended)", m.ID.Short(), m.Job, c.cfg.Node)})
		return
	}
	if j.exports[exportKey{m.ID, from}] == 0 {
		// Served only to a node it was sent to (which holds it until it
		// releases it): a node that learnt the ID some other way, working
		// for the job or not, gets nothing.
		c.sendPeer(from, &peerwire.ObjectValue{Job: m.Job, ID: m.ID, For: m.For,
			Missing: fmt.Sprintf("object %s of job %s was not sent to node %s", m.ID.Short(), m.Job, from)})
		return
	}
	id := m.ID
	c.addRef(id)
	answer := func() {
		defer c.decRef(id)
		o := c.objs[id]
		if o == nil || !o.ready {
			c.sendPeer(from, &peerwire.ObjectValue{Job: m.Job, ID: id, For: m.For, Missing: "released before it was ready"})
			return
		}
		ans := &peerwire.ObjectValue{Job: m.Job, ID: id, For: m.For, IsError: o.isError, Stored: o.stored, Size: o.size}
		if !o.stored {
			ans.Inline = o.inline
		} else {
			if o.copies == nil {
				o.copies = map[NodeID]struct{}{}
			}
			o.copies[from] = struct{}{} // it pulls the bytes now, and holds them until it releases
		}
		c.export(j, id, from)
		for _, r := range o.nested {
			c.export(j, r, from)
			ans.Refs = append(ans.Refs, r)
		}
		c.sendPeer(from, ans)
	}
	if !c.waitFor([]objects.ID{id}, 1, -1, answer, nil) {
		answer()
	}
}
