package core

import (
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Leases are the short path for tasks: a worker process whose lanes
// submit tasks of one function and options runs them itself, on a lane
// of its own, without a round trip through the agent for each, as Ray's
// owners push tasks to the workers they lease. The core still accounts
// every one.
//
// The first such task the scheduler places on this node is run on a new
// worker (the lease's lane) started in the submitter's process; the task's
// reservation becomes the lease's (scheduler.Detach), and the lane is told
// it holds a lease (wire.Lease). From then on the process, while the lane
// is idle, runs a matching task there itself and sends its Submit with the
// lane set: the core records the task as the lane's next execution,
// adopted in the lease's reservation (scheduler.Adopt), and sends nothing.
// The lane's results go to the agent as usual (Done), and the process keeps
// them for its own gets. A lease idle for leaseIdle ends: LeaseEnd, answered
// by LeaseOver once the process runs nothing more there by itself; the
// reservation goes back and the lane becomes one of the job's workers (in
// the driver's process, it is closed instead).
//
// Only simple, short tasks qualify: inline arguments, one return value,
// no placement group, no labels, and a function whose calls have been
// seen to end within pipelineMaxDuration (a task under a lease shares its
// submitter's process, the driver's for the driver's tasks, and with it
// the fate of that process). The process matches them by function name
// and canonical options (leaseKeyOf). While a task under a lease blocks
// in get or wait, the lease's CPU goes back, as a blocked task's does.

// leaseIdle is how long a lease's lane stays idle before the lease ends.
const leaseIdle = 50e6 // 50 ms

// lease is a worker's lease.
type lease struct {
	key    string // leaseKeyOf
	fn     string
	opts   []byte
	holder scheduler.TaskID // the reservation it keeps
	demand scheduler.Resources
	// first is the task it was granted for, until the lane runs it.
	first *task
	// ending is set once LeaseEnd was sent; over once LeaseOver came.
	ending, over bool
	// idleAt is when the lane last went idle; timing is set while a
	// timer will look at it.
	idleAt Time
	timing bool
}

// leaseKeyOf is the key a lease and the tasks it may run share
// (abi.LeaseKey), and the options' encoding, which the lane is sent.
func leaseKeyOf(spec abi.TaskSpec) (string, []byte) {
	return abi.LeaseKey(spec.Func, &spec.Options), spec.Options.AppendCBOR(nil)
}

// leasable reports whether a lease may be granted for tasks like t: it
// has a lease's shape, and its function's calls are short.
func (c *Core) leasable(t *task) bool {
	return leaseShaped(t) && t.job.short(t.spec.Func)
}

// leaseShaped reports whether t may run under a lease of its submitter's
// process: a task with inline arguments and one return value, in no
// placement group and with no labels.
func leaseShaped(t *task) bool {
	o := t.spec.Options
	return t.kind == wire.ExecTask && t.parent != nil && t.parent.worker != nil && t.rawArgs == nil &&
		len(t.argRefs) == 0 && len(t.spec.Refs) == 0 && t.spec.NumReturns <= 1 && t.spec.Actor == nil &&
		len(o.Group) == 0 && len(o.Labels) == 0
}

// leaseGroupKey names a lease among the node's: the process (its job's
// or its driver's) and the key.
func leaseGroupKey(w *worker, key string) string {
	return string(w.job.id) + "/" + w.group + "\x00" + key
}

// grantLease runs t, placed here, on a new lane of its submitter's
// process that then holds a lease for tasks like it. It reports false
// when it did not (no room, or a lease for them exists).
func (c *Core) grantLease(t *task) bool {
	s := t.parent.worker
	if !s.usable() || s.job != t.job {
		return false
	}
	key, opts := leaseKeyOf(t.spec)
	gk := leaseGroupKey(s, key)
	j := t.job
	if c.leases[gk] != nil || j.startHeld || !c.roomForWorker(false) || len(j.workers) >= c.jobMaxWorkers() {
		return false
	}
	holder := schedID(c.newID())
	if !c.sched.Detach(t.schedID(), holder) {
		return false
	}
	w := c.startWorker(j, nil, false, s.group)
	w.lease = &lease{key: key, fn: t.spec.Func, opts: opts, holder: holder, first: t, demand: t.demand}
	c.leases[gk] = w
	return true
}

// leaseIdle is workerIdle for a lease's lane: it runs the task the lease
// was granted for, and ends the lease once the lane has been idle a
// while.
func (c *Core) leaseWorkerIdle(w *worker) {
	l := w.lease
	if t := l.first; t != nil {
		l.first = nil
		if t.state == taskRunning && t.worker == nil && !w.job.done {
			c.run(w, t)
			c.sendWorker(w, wire.TypeLease, wire.Lease{Fn: l.fn, Opts: l.opts})
			return
		}
	}
	if w.task != nil {
		return
	}
	if l.over {
		c.endLease(w)
		return
	}
	if l.ending {
		return
	}
	if c.sched.Queued() > 0 {
		// Tasks wait for resources (perhaps the lease's own, which holds
		// a 1-CPU node's only CPU): the lease gives them back now rather
		// than after leaseIdle. Waiting cost each task of a burst that
		// found the lane busy 50 ms: 300 short tasks took 16 s.
		l.ending = true
		c.sendWorker(w, wire.TypeLeaseEnd, wire.LeaseEnd{})
		return
	}
	l.idleAt = c.now
	if !l.timing {
		l.timing = true
		c.setTimer(leaseIdle, func() { c.leaseTimer(w, l) })
	}
}

// leaseTimer ends a lease whose lane has been idle leaseIdle, or waits
// for the rest of that time. One timer per lease at most: a lane that
// runs 20,000 tasks a second goes idle as often.
func (c *Core) leaseTimer(w *worker, l *lease) {
	l.timing = false
	if w.lease != l || l.ending || w.state != workerReady || w.task != nil {
		return // busy: it arms the timer again when idle
	}
	if idle := c.now - l.idleAt; idle < leaseIdle {
		l.timing = true
		c.setTimer(leaseIdle-idle, func() { c.leaseTimer(w, l) })
		return
	}
	l.ending = true
	c.sendWorker(w, wire.TypeLeaseEnd, wire.LeaseEnd{})
}

// leaseOver handles LeaseOver: the process runs nothing more on the lane
// by itself.
func (c *Core) leaseOver(w *worker) error {
	l := w.lease
	if l == nil || !l.ending || l.over {
		return fmt.Errorf("lease_over for a lease that was not ending")
	}
	l.over = true
	if w.task == nil {
		c.endLease(w)
	}
	return nil
}

// endLease gives the lease's reservation back. A lane of the job's
// process becomes one of its workers; one of the driver's process is
// closed, so that no other task runs beside the driver.
func (c *Core) endLease(w *worker) {
	c.dropLease(w)
	c.schedule()
	if w.group != "" {
		c.killWorker(w)
		return
	}
	c.workerIdle(w)
}

// dropLease forgets w's lease and frees its reservation.
func (c *Core) dropLease(w *worker) {
	l := w.lease
	if l == nil {
		return
	}
	w.lease = nil
	c.sched.Finished(l.holder)
	if gk := leaseGroupKey(w, l.key); c.leases[gk] == w {
		delete(c.leases, gk)
	}
	if t := l.first; t != nil && t.state == taskRunning && t.worker == nil && !w.job.done {
		// The lane never ran it: the scheduler places it again.
		l.first = nil
		c.sched.Finished(t.schedID())
		c.submit(t)
	}
}

// leasedSubmit records t, which the submitter's process runs on lane
// lane under its lease. It reports an error for a lane the process may
// not run it on.
func (c *Core) leasedSubmit(from *worker, t *task, lane WorkerID) error {
	w := c.workers[lane]
	if w == nil || w.state == workerDead {
		// The lane closed: its process dropped the task unrun.
		c.submit(t)
		return nil
	}
	if w.job != from.job || w.group != from.group {
		// Not a lane of its process: the sender breaks the protocol, and
		// the lane, another's, is left alone.
		c.submit(t)
		return fmt.Errorf("submit: lane %d is not one of its process", lane)
	}
	l := w.lease
	if key, _ := leaseKeyOf(t.spec); l == nil || l.over || key != l.key || !leaseShaped(t) {
		c.killWorker(w) // it would run a task the core does not account
		c.submit(t)
		return fmt.Errorf("submit: lane %d holds no lease for %s", lane, t.spec.Func)
	}
	if !c.sched.Adopt(l.holder, scheduler.Task{ID: t.schedID(), Demand: t.demand, Tenant: t.job.tenant, Job: string(t.job.id)}) {
		c.logf("fabric: lane %d's lease could not take task %s; stopping the lane", lane, t.name)
		c.killWorker(w)
		c.submit(t)
		return nil
	}
	c.leasedTasks++
	t.state = taskRunning
	t.placed = c.now
	t.worker = w
	if w.task == nil {
		c.started(w, t)
	} else {
		w.queued = append(w.queued, t)
	}
	return nil
}

// refuseLeased closes the lease's lane when a task its process runs there
// is refused: the core will not account it, so it must not run.
func (c *Core) refuseLeased(from *worker, lane uint64) {
	if lane == 0 {
		return
	}
	if w := c.workers[WorkerID(lane)]; w != nil && w.job == from.job && w.group == from.group && w.lease != nil {
		c.killWorker(w)
	}
}

// reservation names the scheduler entry that holds t's resources: its
// lease's, for a task that runs in one.
func (c *Core) reservation(t *task) scheduler.TaskID {
	if w := t.worker; w != nil && w.lease != nil && w.task == t {
		return w.lease.holder
	}
	return t.schedID()
}
