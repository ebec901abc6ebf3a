package fabric

import (
	"errors"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/scheduler"
)

// Short tasks are pipelined to task workers: while a worker runs a task,
// the agent sends it the next few tasks of the same scheduling class,
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
	pipelineMaxDuration = 2 * time.Millisecond
)

// errDropUnknown is a worker's answer to a Drop the agent did not send.
var errDropUnknown = errors.New("dropped an execution it did not hold")

// started records that t begins to run on w now.
func (n *Node) started(w *workerProc, t *task) {
	w.task = t
	t.started = time.Now()
	n.startTimer(w, t)
}

// ran folds the run time of a task that finished into its function's mean.
func (j *job) ran(t *task) {
	if t.kind != wire.ExecTask || t.started.IsZero() {
		return
	}
	d := time.Since(t.started)
	if j.runTimes == nil {
		j.runTimes = map[string]time.Duration{}
	}
	if m, ok := j.runTimes[t.spec.Func]; ok {
		d = (4*m + d) / 5
	}
	j.runTimes[t.spec.Func] = d
}

// short reports whether calls of fn have been seen to run quickly.
func (j *job) short(fn string) bool {
	m, ok := j.runTimes[fn]
	return ok && m <= pipelineMaxDuration
}

// topUp sends a task worker the tasks that may run behind its current one.
// Caller holds n.mu.
func (n *Node) topUp(w *workerProc) {
	t := w.task
	if w.actor != nil || t == nil || t.kind != wire.ExecTask || t.blocked || w.dead || w.stopping.Load() ||
		t.job.done || !t.job.short(t.spec.Func) || len(w.queued) >= pipelineDepth {
		return
	}
	ids := n.sched.Lease(t.schedID(), pipelineDepth-len(w.queued), func(id scheduler.TaskID) bool {
		next := n.tasks[objects.ID([]byte(id))]
		return next != nil && next.state == taskQueued && next.kind == wire.ExecTask && next.job == t.job &&
			t.job.short(next.spec.Func)
	})
	for _, id := range ids {
		next := n.tasks[objects.ID([]byte(id))]
		next.state = taskRunning
		n.run(w, next)
	}
}

// topUpAll tops up every task worker of j. Caller holds n.mu.
func (n *Node) topUpAll(j *job) {
	for w := range j.workers {
		if w.task != nil && len(w.queued) < pipelineDepth {
			n.topUp(w)
		}
	}
}

// recall takes back the tasks queued behind w's current one, which has
// blocked: each comes back as a Done with Dropped set and is scheduled
// again. Caller holds n.mu.
func (n *Node) recall(w *workerProc) {
	if w.actor != nil {
		return
	}
	for _, q := range w.queued {
		if !q.recalled {
			q.recalled = true
			w.send(wire.TypeDrop, wire.Drop{Task: q.id})
		}
	}
}

// handleDropped handles a worker's answer to Drop: the execution left its
// queue without running. Caller holds n.mu.
func (n *Node) handleDropped(w *workerProc, d wire.Done) error {
	for i, q := range w.queued {
		if q.id != d.Task {
			continue
		}
		w.queued = append(w.queued[:i], w.queued[i+1:]...)
		n.requeueUnstarted(q)
		n.schedule()
		return nil
	}
	return errDropUnknown
}

// requeueUnstarted schedules again a task that was queued on a worker and
// never ran (taken back with Drop, or left by a dead worker), so no retry is
// spent; one cancelled meanwhile fails as cancelled. Caller holds n.mu.
func (n *Node) requeueUnstarted(t *task) {
	t.worker, t.recalled = nil, false
	if t.state == taskDone {
		return
	}
	if ev := t.cancelled; ev != nil {
		n.failTask(t, *ev, true)
		return
	}
	n.sched.Finished(t.schedID()) // the lease: it charged nothing
	n.submit(t)
}

// cancelQueued cancels a task sent ahead to w and not known to have
// started. Caller holds n.mu.
func (n *Node) cancelQueued(w *workerProc, t *task, ev abi.ErrorValue) {
	t.cancelled = &ev
	if !t.recalled {
		t.recalled = true
		w.send(wire.TypeDrop, wire.Drop{Task: t.id})
	}
}
