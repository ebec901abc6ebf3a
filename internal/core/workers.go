package core

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
)

type workerState uint8

const (
	workerStarting workerState = iota // StartWorker sent
	workerLoading                     // its process runs, its module loads
	workerReady
	workerStopping // KillWorker sent
	workerDead
)

// worker is one worker of a job, as the core sees it: an instance of the
// job's module in the job's worker process on this node (the shell's
// workerpool puts a job's workers in one process, and its driver in one
// of its own). A worker runs one execution at a time.
type worker struct {
	id    WorkerID
	job   *job
	pid   int
	state workerState
	// task is the execution it runs now (nil when idle).
	task *task
	// queued are executions sent to it behind task (actor calls and short
	// tasks are pipelined: the worker runs them in order).
	queued []*task
	// actor is set for a worker dedicated to one actor.
	actor *actor
	// driver is set for the worker dedicated to its job's driver.
	driver *task
	// group names its process among its job's: "" or "driver".
	group string
	// lease is set while it holds a lease (leases.go).
	lease *lease
	// parked is set while MaxWorkers does not count it (isParked).
	parked bool
	// killReason, when set before a kill or a Stop, becomes the error of
	// the execution it runs.
	killReason *abi.ErrorValue
	// stopping is the execution a Stop was sent for, until it ends.
	stopping *task
	// pins are objects pinned for the worker, released on Unpin or death.
	pins map[objects.ID]int
	// partial output lines per stream, for prefixing.
	partial [4][]byte
	// creates are store reservations it made and has not stored yet;
	// they are aborted if it dies.
	creates map[objects.ID]struct{}
	// reserving counts Reserve effects not answered yet.
	reserving int
	// starting is set while it counts in its job's starting workers.
	starting bool
	// reclaimed is set when it was stopped, idle, to make room for
	// another job's worker (it counts in Core.reclaiming until it exits).
	reclaimed bool
}

// usable reports whether the worker may be given executions.
func (w *worker) usable() bool { return w.state == workerReady }

// runs reports whether t runs on w: it is w's execution, or, on a
// concurrent actor's worker, one of the calls sent to it or the actor's
// creation.
func (w *worker) runs(t *task) bool {
	if w.task == t {
		return true
	}
	a := w.actor
	if a == nil || !a.concurrent {
		return false
	}
	// What the serve loop does for no call is the actor's own (current).
	return t == a.create && a.state == actorAlive || t.worker == w && slices.Contains(w.queued, t)
}

// inFlight counts the executions sent to the worker and not done.
func (w *worker) inFlight() int {
	n := len(w.queued)
	if w.task != nil {
		n++
	}
	return n
}

// DefaultMaxInstances is the default of Config.MaxInstances.
const DefaultMaxInstances = 32768

// startWorker starts a worker for j (for its driver when driver is set),
// unless the node has as many as it may: then j waits for one
// (procWaiters), and an idle worker of another job is stopped to make
// room.
func (c *Core) startWorker(j *job, driver *task, parked bool, group string) *worker {
	if driver == nil && len(j.workers) >= c.jobMaxWorkers() {
		if !j.capLogged {
			j.capLogged = true
			c.logf("fabric: job %s has %d workers on this node, the most one job may hold (half of the node's %d); its executions wait for one of them to end", j.id, len(j.workers), c.cfg.MaxInstances)
		}
		return nil // it waits for one of its own to end (workerGone pumps it)
	}
	if !c.roomForWorker(parked) {
		c.waitForWorker(j)
		return nil
	}
	c.nextWorker++
	if driver != nil {
		group = "driver"
	}
	w := &worker{id: c.nextWorker, job: j, pins: map[objects.ID]int{}, driver: driver, group: group}
	c.workers[w.id] = w
	c.live++
	j.workers = append(j.workers, w) // IDs grow: the list stays in order
	c.counts.WorkersStarted++
	c.emit(StartWorker{Worker: w.id, Job: j.id, Tenant: j.tenant, Digest: j.digest, Process: group})
	c.updateParked(w)
	return w
}

// stopGrace is how long an execution asked to stop has to end before its
// worker is killed. Guests reach an interruption point about every
// millisecond; what may take longer is a host call the worker cannot cut
// short, or a guest that defeats the points.
const stopGrace = 2e9 // 2 s

// stopExecution stops t, which w runs, without its process: a Stop, after
// which t's Done comes back as interrupted and fails with ev. If t still
// runs stopGrace later, the worker is killed.
func (c *Core) stopExecution(w *worker, t *task, ev abi.ErrorValue) {
	if w.stopping == t {
		return
	}
	w.killReason, w.stopping = &ev, t
	c.sendWorker(w, wire.TypeStop, wire.Stop{Task: t.id})
	c.setTimer(stopGrace, func() {
		if w.stopping == t && w.task == t && w.state != workerDead {
			c.logf("fabric: task %s did not stop within %s of being asked; stopping its worker", t.name, Time(stopGrace))
			c.killWorker(w)
		}
	})
}

// jobMaxWorkers is the most workers one job may hold on the node, parked
// ones included: half of MaxInstances (16,384 by default; 10,000 actors
// of a C guest are about 110 MB), so that one job cannot take every
// worker the node may hold while other jobs wait. Its driver is never
// refused.
func (c *Core) jobMaxWorkers() int { return max(c.cfg.MaxInstances/2, c.cfg.MaxWorkers) }

// roomForWorker reports whether the node may start another worker, one
// that will be parked (an actor's, a driver's) or not.
func (c *Core) roomForWorker(parked bool) bool {
	return c.live < c.cfg.MaxInstances && (parked || c.live-c.parked < c.cfg.MaxWorkers)
}

// isParked reports whether MaxWorkers does not count w: its task is
// blocked in get or wait (it gave its CPU back), it runs a job's driver
// (one per job, for the job's life), or it is an actor's (an actor holds
// its worker for its life, busy or not). As in Ray, where workers blocked
// in ray.get and actors' workers do not count against the soft limit:
// otherwise a tree of tasks (a recursive quicksort) deadlocks once every
// worker holds a parent waiting for children that have none left, and a
// job's idle actors leave other jobs no worker for their tasks. They
// count against MaxInstances.
func (w *worker) isParked() bool {
	t := w.task
	return w.state != workerDead && (w.actor != nil || w.driver != nil || t != nil && t.blocked)
}

// updateParked recounts w after a change to what isParked reads.
func (c *Core) updateParked(w *worker) {
	if p := w.isParked(); p != w.parked {
		w.parked = p
		if p {
			c.parked++
		} else {
			c.parked--
		}
	}
}

// setBlocked marks t blocked in get or wait, or not.
func (c *Core) setBlocked(t *task, blocked bool) {
	t.blocked = blocked
	if w := t.worker; w != nil && w.task == t {
		c.updateParked(w)
	}
}

// waitForWorker queues j for the next worker that exits, and
// stops an idle worker (the one idle longest, of the job with the most
// idle) unless enough are already being stopped for the jobs waiting. A
// job's idle workers are kept to spare its next tasks a cold start, but
// never while another job waits: one job that ran many short tasks and
// then idled held every process of its node.
func (c *Core) waitForWorker(j *job) {
	if !slices.Contains(c.procWaiters, j) {
		c.procWaiters = append(c.procWaiters, j)
	}
	if c.reclaiming >= len(c.procWaiters) {
		return
	}
	var victim *job
	for _, o := range c.sortedJobs() {
		if o != j && len(o.idle) > 0 && (victim == nil || len(o.idle) > len(victim.idle)) {
			victim = o
		}
	}
	if victim == nil {
		return
	}
	w := victim.idle[0]
	victim.idle = victim.idle[1:]
	w.reclaimed = true
	c.reclaiming++
	c.killWorker(w)
}

// workerFreed gives room that a worker left to the jobs waiting for one,
// in order.
func (c *Core) workerFreed() {
	// One pass over the jobs waiting now: a job that still finds no room
	// queues itself again (waitForWorker). Room for a parked worker is
	// enough to try, since a job may wait to start a driver or an actor.
	waiting := c.procWaiters
	c.procWaiters = nil
	for i, j := range waiting {
		if !c.roomForWorker(true) {
			for _, rest := range waiting[i:] {
				if !slices.Contains(c.procWaiters, rest) {
					c.procWaiters = append(c.procWaiters, rest)
				}
			}
			return
		}
		if c.jobs[j.id] == j && !j.done {
			c.pump(j)
		}
	}
}

// killWorker stops a worker; its exit is handled by WorkerExited.
func (c *Core) killWorker(w *worker) {
	if w.state == workerStopping || w.state == workerDead {
		return
	}
	if w.state != workerStarting || w.pid != 0 {
		c.emit(KillWorker{Worker: w.id})
	}
	w.state = workerStopping
}

// sendWorker sends a worker a message.
func (c *Core) sendWorker(w *worker, t wire.Type, msg any) {
	if w.state == workerDead {
		return
	}
	c.emit(SendWorker{Worker: w.id, Type: t, Msg: msg})
}

// reply answers a worker's request.
func (c *Core) reply(w *worker, seq uint64, err error, r wire.Reply) {
	r.Seq = seq
	if err != nil {
		r = wire.Reply{Seq: seq, Error: err.Error()}
	}
	c.sendWorker(w, wire.TypeReply, r)
}

func (e WorkerStarted) apply(c *Core) {
	w := c.workers[e.Worker]
	if w == nil {
		return
	}
	w.pid = e.Pid
	switch w.state {
	case workerStarting:
		w.state = workerLoading
	case workerStopping:
		c.emit(KillWorker{Worker: w.id}) // stopped before it started
	}
}

// startRetry is how long a job waits for another try after a worker
// process could not start.
const startRetry = 500e6 // 0.5 s

func (e WorkerStartFailed) apply(c *Core) {
	w := c.workers[e.Worker]
	if w == nil {
		return
	}
	j := w.job
	if !j.startFailing {
		j.startFailing = true
		c.logf("fabric: start worker: %s; trying again every %s", e.Err, Time(startRetry))
	}
	j.startHeld = true // no new start until the timer
	c.workerGone(w, "the worker process could not start: "+e.Err)
	c.setTimer(startRetry, func() {
		j.startHeld = false
		c.pump(j)
	})
}

func (e WorkerReady) apply(c *Core) {
	w := c.workers[e.Worker]
	if w == nil || w.state != workerLoading {
		return
	}
	w.state = workerReady
	w.job.startFailing = false
	if w.starting {
		w.starting = false
		w.job.starting--
	}
	c.workerIdle(w)
}

func (e WorkerLoadFailed) apply(c *Core) {
	w := c.workers[e.Worker]
	if w == nil {
		return
	}
	c.jobResult(w.job, "worker could not load the module: "+e.Err)
	c.killWorker(w)
}

func (e WorkerExited) apply(c *Core) {
	if w := c.workers[e.Worker]; w != nil {
		c.workerGone(w, e.Cause)
	}
}

// workerGone cleans up after a worker that exited or never started.
func (c *Core) workerGone(w *worker, cause string) {
	if w.starting {
		w.starting = false
		w.job.starting--
	}
	w.state = workerDead
	delete(c.workers, w.id)
	c.live--
	c.updateParked(w)
	if w.reclaimed {
		w.reclaimed = false
		c.reclaiming--
	}
	j := w.job
	j.removeWorker(w)
	j.removeIdle(w)
	for _, id := range sortedIDs(w.pins) {
		for range w.pins[id] {
			c.store.Unpin(id)
		}
	}
	w.pins = nil
	for _, id := range sortedIDs(w.creates) {
		c.store.Abort(id)
	}
	w.creates = nil
	if t := w.task; t != nil {
		w.task = nil
		c.flushOutput(w, t)
		c.executionLost(t, w, cause)
	}
	w.killReason, w.stopping = nil, nil // they were for the running execution only
	queued := w.queued
	w.queued = nil
	for _, t := range queued {
		if t.kind == wire.ExecTask {
			c.requeueUnstarted(t)
			continue
		}
		c.executionLost(t, w, cause)
	}
	c.dropLease(w)
	if a := w.actor; a != nil && a.worker == w {
		c.actorLost(a, cause)
	}
	if t := w.driver; t != nil && t.state == taskRunning && t.worker == nil && !j.done {
		j.soloStarts = append([]*task{t}, j.soloStarts...) // it never ran: start another
	}
	c.schedule()
	c.pump(j)
	c.workerFreed()
	c.jobMaybeEnded(j)
}

// workerIdle hands an idle task worker the next queued execution.
func (c *Core) workerIdle(w *worker) {
	if !w.usable() {
		return
	}
	if w.actor != nil {
		c.actorWorkerReady(w.actor, w)
		return
	}
	if w.lease != nil {
		c.leaseWorkerIdle(w)
		return
	}
	if t := w.driver; t != nil {
		if t.state == taskRunning && t.worker == nil && !w.job.done {
			c.run(w, t)
		} else {
			c.killWorker(w)
		}
		return
	}
	j := w.job
	if j.done {
		c.killWorker(w)
		return
	}
	if len(j.queue) > 0 {
		t := j.queue[0]
		j.queue = j.queue[1:]
		c.run(w, t)
		c.topUp(w)
		return
	}
	j.idle = append(j.idle, w)
}

// pump gives queued executions of j to its idle workers and starts
// workers while executions wait for one.
func (c *Core) pump(j *job) {
	if !j.done && !j.startHeld && len(j.soloStarts) > 0 {
		c.startSolos(j)
	}
	for !j.done && len(j.queue) > 0 && len(j.idle) > 0 {
		w := j.idle[len(j.idle)-1]
		j.idle = j.idle[:len(j.idle)-1]
		t := j.queue[0]
		j.queue = j.queue[1:]
		c.run(w, t)
		c.topUp(w)
	}
	for !j.done && !j.startHeld && len(j.queue) > j.starting {
		w := c.startWorker(j, nil, false, "")
		if w == nil {
			return
		}
		w.starting = true
		j.starting++
	}
}

// Short tasks are pipelined to task workers: while a worker runs a task,
// the core sends it the next few tasks of the same scheduling class,
// leased in the running task's reservation (scheduler.Core.Lease), so
// that the worker goes from one to the next without waiting a round trip
// to the agent. Only tasks whose function has been seen to finish quickly
// are sent ahead, which bounds how long a leased task can wait behind
// another while a different worker sits idle. When the running task
// blocks (get, or a wait that waits), the tasks queued behind it are taken
// back with Drop, since one of them may be what it waits for.
const (
	// pipelineDepth is how many tasks a worker holds queued behind the
	// one it runs.
	pipelineDepth = 8
	// pipelineMaxDuration is the longest mean run time of a function whose
	// calls are still sent ahead.
	pipelineMaxDuration = 2e6 // 2 ms
)

// topUp sends a task worker the tasks that may run behind its current one.
func (c *Core) topUp(w *worker) {
	t := w.task
	if w.actor != nil || w.lease != nil || t == nil || t.kind != wire.ExecTask || t.blocked || !w.usable() ||
		t.job.done || !t.job.short(t.spec.Func) || len(w.queued) >= pipelineDepth {
		return
	}
	ids := c.sched.Lease(t.schedID(), pipelineDepth-len(w.queued), func(id scheduler.TaskID) bool {
		next := c.tasks[objects.ID(id)]
		return next != nil && next.state == taskQueued && next.kind == wire.ExecTask && next.job == t.job &&
			t.job.short(next.spec.Func)
	})
	for _, id := range ids {
		next := c.tasks[objects.ID(id)]
		next.state = taskRunning
		next.placed = c.now
		c.run(w, next)
	}
}

// topUpAll tops up every task worker of j.
func (c *Core) topUpAll(j *job) {
	for _, w := range j.sortedWorkers() {
		if w.task != nil && len(w.queued) < pipelineDepth {
			c.topUp(w)
		}
	}
}

// recall takes back the tasks queued behind w's current one, which has
// blocked: each comes back as a Done with Dropped set and is scheduled
// again.
func (c *Core) recall(w *worker) {
	if w.actor != nil {
		return
	}
	for _, q := range w.queued {
		if !q.recalled {
			q.recalled = true
			c.sendWorker(w, wire.TypeDrop, wire.Drop{Task: q.id})
		}
	}
}

// dropped handles a worker's answer to Drop: the execution left its
// queue without running.
func (c *Core) dropped(w *worker, d wire.Done) error {
	for i, q := range w.queued {
		if q.id != d.Task {
			continue
		}
		w.queued = append(w.queued[:i], w.queued[i+1:]...)
		c.requeueUnstarted(q)
		c.schedule()
		return nil
	}
	return fmt.Errorf("dropped an execution it did not hold")
}

// requeueUnstarted schedules again a task that was queued on a worker and
// never ran (taken back with Drop, or left by a dead worker), so no retry is
// spent; one cancelled meanwhile fails as cancelled.
func (c *Core) requeueUnstarted(t *task) {
	t.worker, t.recalled = nil, false
	if t.state == taskDone {
		return
	}
	if ev := t.cancelled; ev != nil {
		c.failTask(t, *ev, true)
		return
	}
	c.sched.Finished(t.schedID()) // the lease: it charged nothing
	c.submit(t)
}

// cancelQueued cancels a task sent ahead to w and not known to have
// started.
func (c *Core) cancelQueued(w *worker, t *task, ev abi.ErrorValue) {
	t.cancelled = &ev
	if !t.recalled {
		t.recalled = true
		c.sendWorker(w, wire.TypeDrop, wire.Drop{Task: t.id})
	}
}

// Output.

// maxLine is the longest output line held back for its end.
const maxLine = 64 << 10

// output prints guest output: the driver's as it is, a task's line by line
// prefixed with its name and worker pid, as Ray prefixes worker output.
func (c *Core) output(w *worker, m wire.Output) {
	t := w.task
	if t != nil && t.id != m.Task && w.actor != nil && w.actor.concurrent {
		// A concurrent actor's calls share one instance and its output:
		// lines go out under whichever call the worker named.
		if i := slices.IndexFunc(w.queued, func(q *task) bool { return q.id == m.Task }); i >= 0 {
			t = w.queued[i]
		} else {
			t = w.task
			m.Task = t.id
		}
	}
	if t == nil || t.id != m.Task || m.Stream == 0 || m.Stream > 3 {
		return
	}
	stderr := m.Stream != 1
	if t.kind == wire.ExecMain {
		c.jobOutput(w.job, stderr, m.Data)
		return
	}
	to := t.job // a call from another job to a namespace's actor: the caller's
	buf := append(w.partial[m.Stream], m.Data...)
	var out []byte
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		out = appendLine(out, t.name, w.pid, buf[:i])
		buf = buf[i+1:]
	}
	if len(buf) > maxLine { // a very long line: print it in pieces
		out = appendLine(out, t.name, w.pid, buf)
		buf = nil
	}
	w.partial[m.Stream] = append(w.partial[m.Stream][:0], buf...)
	if len(out) > 0 {
		c.jobOutput(to, stderr, out)
	}
}

func appendLine(dst []byte, name string, pid int, line []byte) []byte {
	dst = fmt.Appendf(dst, "(%s pid=%d) ", name, pid)
	dst = append(dst, line...)
	return append(dst, '\n')
}

// flushOutput prints what is left of a finished execution's partial lines.
func (c *Core) flushOutput(w *worker, t *task) {
	for s := uint8(1); s <= 3; s++ {
		if len(w.partial[s]) > 0 {
			c.jobOutput(t.job, s != 1, appendLine(nil, t.name, w.pid, w.partial[s]))
			w.partial[s] = w.partial[s][:0]
		}
	}
}

// jobOutput sends output to the job's reader: here, or at its root.
func (c *Core) jobOutput(j *job, stderr bool, data []byte) {
	if j.root == "" {
		c.emit(JobOutput{Job: j.id, Stderr: stderr, Data: data})
		return
	}
	c.sendPeer(j.root, &peerwire.Output{Job: string(j.id), Stderr: stderr, Data: data})
}

// markNode adds the node to the prefix of each output line of a remote
// task: "(name pid=7) text" becomes "(name pid=7, node=ID) text", as Ray
// adds the worker's IP.
func markNode(out []byte, node NodeID) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(out, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if i := bytes.Index(line, []byte(") ")); line[0] == '(' && i > 0 {
			b.Write(line[:i])
			b.WriteString(", node=" + string(node))
			b.Write(line[i:])
			continue
		}
		b.Write(line)
	}
	return b.Bytes()
}
