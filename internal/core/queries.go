package core

import (
	"fmt"
	"sort"
	"strings"

	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/scheduler"
)

// Queries read the core's state for the shell; they change nothing.

// Stats are counters of a node.
type Stats struct {
	Workers int
	Objects int
	Tasks   int
	Jobs    int
	// Stored counts the objects whose bytes are in the object store.
	Stored int
	// Heap is the bytes of values and arguments held in memory.
	Heap int64
	// Total and Available are the node's resources and what of them is free.
	Total, Available scheduler.Resources
	// Queued counts tasks waiting for resources or arguments; QueuedDemand
	// sums what they ask for.
	Queued       int
	QueuedDemand scheduler.Resources
	// Nodes counts the nodes the scheduler knows, this one included.
	Nodes int
	// Busy counts the workers running an execution or hosting an actor,
	// Parked those of them that MaxWorkers does not count (blocked in get
	// or wait, drivers, actors), Idle those kept for their job's next
	// tasks; MaxWorkers and MaxInstances are the node's limits;
	// WaitingForWorker counts the executions placed here that wait for a
	// worker (so that a node out of workers does not look idle).
	Busy, Parked, Idle, MaxWorkers, MaxInstances int
	WaitingForWorker                             int
	// Leases counts the leases held now; LeasedTasks the tasks run under
	// one so far (their processes ran them without the agent sending
	// them).
	Leases, LeasedTasks int
}

// Stats returns the core's counters.
func (c *Core) Stats() Stats {
	st := Stats{Workers: len(c.workers), Objects: len(c.objs), Tasks: len(c.tasks), Jobs: len(c.jobs), Heap: c.heap,
		Stored: c.stored, Queued: c.sched.Queued(), QueuedDemand: c.sched.QueuedDemand(), Nodes: len(c.sched.Nodes())}
	st.Total, _ = c.sched.Total(c.cfg.Node)
	st.Available, _ = c.sched.Available(c.cfg.Node)
	st.MaxWorkers, st.MaxInstances, st.Parked = c.cfg.MaxWorkers, c.cfg.MaxInstances, c.parked
	st.Leases, st.LeasedTasks = len(c.leases), c.leasedTasks
	for _, j := range c.jobs {
		st.Idle += len(j.idle)
		st.WaitingForWorker += len(j.queue) + len(j.soloStarts)
	}
	for _, w := range c.workers {
		if w.task != nil || w.actor != nil {
			st.Busy++
		}
	}
	return st
}

// ObjectBytes is what the shell needs to serve a ready object's bytes to
// another node: the inline value, or that the bytes are in the store.
// Error values are not served.
func (c *Core) ObjectBytes(id objects.ID) (inline []byte, stored, ok bool) {
	o := c.objs[id]
	if o == nil || !o.ready || o.isError {
		return nil, false, false
	}
	return o.inline, o.stored, true
}

// ObjectServedTo reports whether the node serves an object's bytes to
// node: one of a job only to a node it was sent to (an export, or a copy
// it was told to pull); one of no job (AddObject) to any node.
func (c *Core) ObjectServedTo(id objects.ID, node NodeID) bool {
	o := c.objs[id]
	if o == nil {
		return false
	}
	if o.job == nil {
		return true
	}
	if _, ok := o.copies[node]; ok {
		return true
	}
	return o.job.exports[exportKey{id, node}] > 0
}

// HasObject reports whether the node knows an object by ID.
func (c *Core) HasObject(id objects.ID) bool { return c.objs[id] != nil }

// TaskNames lists the names of the node's tasks, sorted.
func (c *Core) TaskNames() []string {
	names := make([]string, 0, len(c.tasks))
	for _, t := range c.tasks {
		names = append(names, t.name)
	}
	sort.Strings(names)
	return names
}

// Describe tells the core's state, for tests that fail.
func (c *Core) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: %d workers, %d queued, heap %d\n", c.cfg.Node, len(c.workers), c.sched.Queued(), c.heap)
	jobs := make([]string, 0, len(c.jobs))
	for id, j := range c.jobs {
		jobs = append(jobs, fmt.Sprintf("  job %s root %q done %v workers %d sent to %d nodes", id, j.root, j.done, len(j.workers), len(j.sentTo)))
	}
	sort.Strings(jobs)
	for _, j := range jobs {
		b.WriteString(j + "\n")
	}
	for _, id := range sortedIDs(c.tasks) {
		t := c.tasks[id]
		fmt.Fprintf(&b, "  task %s %s kind %d state %d here %v blocked %v worker %v remote %q asker %q job %s\n",
			id.Short(), t.name, t.kind, t.state, t.here, t.blocked, t.worker != nil, t.remoteNode, t.asker, t.job.id)
	}
	for _, id := range sortedIDs(c.objs) {
		o := c.objs[id]
		if o.job == nil {
			continue
		}
		fmt.Fprintf(&b, "  object %s ready %v stored %v remote %q fetching %v refs %d borrows %d waiters %d\n",
			id.Short(), o.ready, o.stored, o.remote, o.fetching, o.refs, o.borrows, len(o.waiters))
	}
	return b.String()
}

// ActorCalls returns, for each of the actors of this node, how many calls
// it holds now, queued or running, and how many it was given in all (its
// owner's and other jobs' alike); zeros for one it does not know.
func (c *Core) ActorCalls(ids []objects.ID) (holds []int, given []uint64) {
	holds, given = make([]int, len(ids)), make([]uint64, len(ids))
	for i, id := range ids {
		a := c.actors[id]
		if a == nil || a.stub || a.state == actorDead {
			continue
		}
		n := len(a.queue) + len(a.retrying)
		if w := a.worker; w != nil && w.actor == a {
			n += len(w.queued)
			if w.task != nil && w.task != a.create {
				n++
			}
		}
		holds[i], given[i] = n, a.calls
	}
	return holds, given
}

// ModuleInUse reports whether a job on the node runs the module.
func (c *Core) ModuleInUse(digest string) bool {
	for _, j := range c.jobs {
		if j.digest == digest {
			return true
		}
	}
	return false
}

// TenantUsage is what each tenant's tasks that this node placed hold,
// wherever they run (not those other nodes placed here).
func (c *Core) TenantUsage() map[string]scheduler.TenantUsage {
	return c.sched.Usage()
}

// SentModule reports whether a job of this node with the module sent
// node work: that node may copy the module from here.
func (c *Core) SentModule(node NodeID, digest string) bool {
	for _, j := range c.jobs {
		if j.digest == digest && j.worksFor(node) {
			return true
		}
	}
	return false
}

// LocalCPU returns, for each tenant with a worker on this node, the CPUs
// (scheduler fixed point) that what runs in its workers here declared:
// tasks, actors and leases, 0 for a tenant whose work here declared none.
// The node weighs its tenants' control groups by it.
func (c *Core) LocalCPU() map[string]int64 {
	out := map[string]int64{}
	for _, w := range c.workers {
		if w.state == workerDead || w.job == nil {
			continue
		}
		cpu := int64(0)
		if w.task != nil && !w.task.blocked {
			cpu = w.task.demand.CPU
		}
		if w.lease != nil && !w.lease.over {
			cpu = max(cpu, w.lease.demand.CPU)
		}
		if w.actor != nil && w.actor.create != nil && w.actor.create != w.task {
			cpu += w.actor.create.demand.CPU
		}
		out[w.job.tenant] += cpu
	}
	return out
}
