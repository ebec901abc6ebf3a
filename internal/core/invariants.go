package core

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// CheckInvariants reports what is inconsistent in the core's state: a
// reference count below zero, a record of a job that is gone, a worker
// its job does not know, a count that disagrees with what it counts. Tests
// call it after every step.
func (c *Core) CheckInvariants() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	// An ended job's objects go in chunks: those still on the drop list
	// are on their way out.
	dropping := make(map[objects.ID]bool, len(c.dropping))
	for _, id := range c.dropping {
		dropping[id] = true
	}
	for key, id := range c.groupNames {
		g := c.groups[id]
		if g == nil || groupKey(g.job, g.spec.Name) != key {
			bad("placement group name %q names group %s, which is gone or named otherwise", key, id.Short())
		}
	}
	for key, until := range c.busyUntil {
		if until <= 0 {
			bad("busy answer of node %s remembered until %d", key, until)
		}
	}
	askedTasks := map[NodeID]int{}
	for k, t := range c.asked {
		if t.kind == wire.ExecTask {
			askedTasks[k.node]++
		}
	}
	for n, k := range c.askedTasks {
		if askedTasks[n] != k {
			bad("node %s asked %d tasks by the count, %d by the table", n, k, askedTasks[n])
		}
	}
	counts := map[*job]int{}
	stored := 0
	for id, o := range c.objs {
		if o.job != nil {
			counts[o.job]++
		}
		if o.stored {
			stored++
		}
		if o.refs < 0 {
			bad("object %s has %d references", id.Short(), o.refs)
		}
		if o.borrows < 0 {
			bad("object %s has %d borrows", id.Short(), o.borrows)
		}
		if o.job != nil && c.jobs[o.job.id] != o.job {
			bad("object %s belongs to job %s, which is gone", id.Short(), o.job.id)
		}
		if o.job != nil && o.job.done && !dropping[id] {
			bad("object %s outlived its job %s", id.Short(), o.job.id)
		}
	}
	for _, j := range c.jobs {
		if counts[j] != j.objects {
			bad("job %s counts %d objects, has %d", j.id, j.objects, counts[j])
		}
	}
	for id, t := range c.tasks {
		if c.jobs[t.job.id] != t.job || t.job.done {
			bad("task %s (%s) outlived its job %s", id.Short(), t.name, t.job.id)
		}
		if t.state == taskDone && t.kind != 2 /* actor creation */ {
			bad("task %s (%s) is done but still in the table", id.Short(), t.name)
		}
	}
	for id, a := range c.actors {
		if c.jobs[a.job.id] != a.job || a.job.done {
			bad("actor %s outlived its job %s", id.Short(), a.job.id)
		}
	}
	for id, g := range c.groups {
		if c.jobs[g.job.id] != g.job || g.job.done {
			bad("placement group %s outlived its job %s", id.Short(), g.job.id)
		}
	}
	if c.live != len(c.workers) {
		bad("%d workers counted, %d known", c.live, len(c.workers))
	}
	reclaimed, parked := 0, 0
	for id, w := range c.workers {
		if w.reclaimed {
			reclaimed++
		}
		if w.parked != w.isParked() {
			bad("worker %d counted parked %v, is %v", id, w.parked, w.isParked())
		}
		if w.parked {
			parked++
		}
		if _, ok := slices.BinarySearchFunc(w.job.workers, w.id, func(x *worker, id WorkerID) int { return cmp.Compare(x.id, id) }); !ok {
			bad("worker %d is not among its job's workers", id)
		}
		if c.jobs[w.job.id] != w.job {
			bad("worker %d outlived its job %s", id, w.job.id)
		}
	}
	for gk, w := range c.leases {
		if c.workers[w.id] != w || w.lease == nil || leaseGroupKey(w, w.lease.key) != gk {
			bad("lease %q names worker %d, which does not hold it", gk, w.id)
		}
	}
	for id, w := range c.workers {
		if w.lease != nil && c.leases[leaseGroupKey(w, w.lease.key)] != w {
			bad("worker %d holds a lease the node does not know", id)
		}
	}
	if parked != c.parked {
		bad("%d workers counted parked, %d are", c.parked, parked)
	}
	if reclaimed != c.reclaiming {
		bad("%d idle workers counted as stopped for room, %d are", c.reclaiming, reclaimed)
	}
	for _, j := range c.procWaiters {
		if c.jobs[j.id] != j || j.done {
			bad("job %s waits for a worker process after it ended", j.id)
		}
	}
	for _, j := range c.jobs {
		if j.starting < 0 {
			bad("job %s has %d workers starting", j.id, j.starting)
		}
	}
	if stored != c.stored {
		bad("the core counts %d stored objects, has %d", c.stored, stored)
	}
	if c.heap < 0 {
		bad("the heap count is %d", c.heap)
	}
	return errors.Join(errs...)
}

// CheckIdle reports what is left on a node where no job runs: objects of
// jobs, tasks, actors, groups, workers, and resources not given back.
func (c *Core) CheckIdle() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.jobs) > 0 {
		bad("%d jobs remain", len(c.jobs))
	}
	for id, o := range c.objs {
		if o.job != nil {
			bad("object %s of job %s remains", id.Short(), o.job.id)
		}
	}
	if len(c.tasks) > 0 || len(c.actors) > 0 || len(c.groups) > 0 || len(c.workers) > 0 || len(c.named) > 0 {
		bad("%d tasks, %d actors, %d groups, %d workers, %d names remain", len(c.tasks), len(c.actors), len(c.groups), len(c.workers), len(c.named))
	}
	for n, m := range c.remote {
		if len(m) > 0 {
			bad("%d executions remain on node %s", len(m), n)
		}
	}
	if len(c.asked) > 0 {
		bad("%d tasks asked by other nodes remain", len(c.asked))
	}
	total, _ := c.sched.Total(c.cfg.Node)
	avail, _ := c.sched.Available(c.cfg.Node)
	if !total.Sub(avail).IsZero() {
		bad("resources in use with no job: %s of %s", total.Sub(avail), total)
	}
	if q := c.sched.Queued(); q > 0 {
		bad("%d tasks queued in the scheduler", q)
	}
	if len(c.releases) > 0 {
		bad("%d release messages not sent", len(c.releases))
	}
	return errors.Join(errs...)
}
