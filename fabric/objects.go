package fabric

import (
	"time"

	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/scheduler"
)

// object is the node's record of one object: its state, where its bytes
// are and how many references keep it alive.
type object struct {
	job      *job
	ready    bool
	isError  bool
	inline   []byte // small values and error values
	stored   bool   // bytes are in the node's store under the object's ID
	size     int64
	refs     int
	nested   []objects.ID // references inside the value, kept alive by it
	waiters  []*waiter
	producer *task
	// remote is the node that holds the object for this one (a share's
	// placeholder, fetched on demand, or its fetched copy); borrows counts
	// the holds it keeps, given back when the object is dropped here.
	remote   string
	borrows  int
	fetching bool
	// copies are the other nodes that pulled the stored value from here
	// and still hold it, for locality.
	copies map[string]struct{}
}

// waiter is a Get or Wait waiting for objects.
type waiter struct {
	need  int
	fired bool
	fn    func()
	timer *time.Timer
}

// setReady gives an object its value. Caller holds n.mu.
func (n *Node) setReady(id objects.ID, inline []byte, isError, stored bool, nested []objects.ID) {
	o := n.objs[id]
	if o == nil || o.ready {
		if stored && o == nil {
			n.store.Delete(id)
		}
		return
	}
	o.ready, o.isError, o.inline, o.stored = true, isError, inline, stored
	o.size = int64(len(inline))
	for _, r := range nested {
		n.addRef(r)
	}
	o.nested = nested
	ws := o.waiters
	o.waiters = nil
	for _, w := range ws {
		if w.fired {
			continue
		}
		w.need--
		if w.need <= 0 {
			w.fired = true
			if w.timer != nil {
				w.timer.Stop()
			}
			w.fn()
		}
	}
	n.sched.ObjectReady(scheduler.ObjectKey(id[:]))
	if o.refs <= 0 {
		n.dropObject(id, o)
	}
}

func (n *Node) addRef(id objects.ID) {
	if o := n.objs[id]; o != nil {
		o.refs++
	}
}

// decRef drops one reference; an unreferenced ready object is freed.
func (n *Node) decRef(id objects.ID) {
	o := n.objs[id]
	if o == nil {
		return
	}
	o.refs--
	if o.refs <= 0 && (o.ready || (o.remote != "" && !o.fetching)) && len(o.waiters) == 0 {
		n.dropObject(id, o)
	}
}

func (n *Node) dropObject(id objects.ID, o *object) {
	delete(n.objs, id)
	if o.remote != "" && o.borrows > 0 && !o.job.done {
		n.sendRelease(o.job.id, o.remote, []objects.ID{id}, []int{o.borrows})
		o.borrows = 0
	}
	if p := o.producer; p != nil && p.lineage && p.state == taskDone {
		p.lineage = false // nobody can need the result again
		n.releaseArgs(p)
	}
	if o.stored {
		n.store.Delete(id)
	}
	for _, r := range o.nested {
		n.decRef(r)
	}
	o.nested = nil
}

// waitFor calls fn (under n.mu) once need of ids are ready. It returns
// false when they already are, without calling fn.
func (n *Node) waitFor(ids []objects.ID, need int, timeout time.Duration, fn, onTimeout func()) bool {
	pending := 0
	for _, id := range ids {
		if o := n.objs[id]; o != nil && !o.ready {
			pending++
		}
	}
	ready := len(ids) - pending
	if ready >= need {
		return false
	}
	w := &waiter{need: need - ready, fn: fn}
	for _, id := range ids {
		if o := n.objs[id]; o != nil && !o.ready {
			o.waiters = append(o.waiters, w)
			n.fetch(id, o)
		}
	}
	if timeout >= 0 {
		w.timer = afterFunc(timeout, func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if !w.fired {
				w.fired = true
				n.dropWaiter(ids, w) // a polling loop must not pile waiters up
				onTimeout()
			}
		})
	}
	return true
}

// dropWaiter removes a waiter that timed out from the objects it waited on.
func (n *Node) dropWaiter(ids []objects.ID, w *waiter) {
	for _, id := range ids {
		o := n.objs[id]
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
	}
}
