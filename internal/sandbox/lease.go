package sandbox

import (
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/cborlite"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// The worker side of leases, the short path for tasks: a lane the agent
// granted a lease (wire.Lease) runs, while it is idle, the tasks this
// process's lanes submit that the lease covers (same function and
// options, inline arguments, one return value), without the agent
// sending them: the process queues the task on the lane itself and sends
// its Submit with the lane set, and the agent accounts it as the lane's.
// The result goes to the agent as usual, and stays in the process's
// cache of small values, so that a get of it by a lane here needs no
// round trip either.

// localTask is a task this process runs under a lease.
type localTask struct {
	lane *lane
	task objects.ID
	done chan struct{} // closed when it ended, was dropped or its lane closed
}

// grantLease records the lease lane ln holds.
func (w *worker) grantLease(ln wire.Lane, m wire.Lease) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.lanes[ln]
	if l == nil || l.closing {
		return
	}
	w.dropLeaseLocked(l)
	key := m.Fn + "\x00" + string(m.Opts)
	if old := w.leases[key]; old != nil {
		old.leaseKey = ""
	} else {
		w.nLease.Add(1)
	}
	l.leaseKey = key
	w.leases[key] = l
}

// endLease ends lane ln's lease and says so (LeaseOver) after every
// Submit that ran a task on it.
func (w *worker) endLease(ln wire.Lane) {
	w.mu.Lock()
	if l := w.lanes[ln]; l != nil {
		w.dropLeaseLocked(l)
	}
	_ = w.append(ln, wire.TypeLeaseOver, wire.LeaseOver{}) // in order after the lane's Submits
	w.mu.Unlock()
	_ = w.conn.Flush()
}

// dropLeaseLocked forgets the lease l holds; the caller holds w.mu.
func (w *worker) dropLeaseLocked(l *lane) {
	if l.leaseKey == "" {
		return
	}
	if w.leases[l.leaseKey] == l {
		delete(w.leases, l.leaseKey)
		w.nLease.Add(-1)
	}
	l.leaseKey = ""
}

// runLeased queues the task msg (from execution cur of lane from) submits on the lane that
// holds a lease for it, if that lane is idle, and queues msg with the lane
// set. It reports
// whether it did; if not, the task goes to the agent.
func (w *worker) runLeased(from *lane, cur *execution, msg wire.Submit) bool {
	// Most submissions of a burst find the lanes busy: they need not
	// decode their spec to learn it.
	w.mu.Lock()
	idle := false
	for _, l := range w.leases {
		if !l.closing && l.current == nil && len(l.pending) == 0 {
			idle = true
			break
		}
	}
	w.mu.Unlock()
	if !idle {
		return false
	}
	spec, ok := abi.ParseTaskSpec(msg.Spec)
	if !ok {
		if wire.Unmarshal(msg.Spec, &spec) != nil {
			return false
		}
	}
	if spec.Func == "" || spec.Actor != nil || len(spec.Refs) > 0 || spec.NumReturns > 1 || len(msg.IDs) != 1 ||
		len(spec.Options.Group) > 0 || len(spec.Options.Labels) > 0 {
		return false
	}
	args := make([]wire.Piece, 0, len(spec.Args)+1)
	args = append(args, wire.Piece{Inline: cborlite.AppendHead(nil, cborlite.MajorArray, uint64(len(spec.Args)))})
	for _, a := range spec.Args {
		if a.Ref != nil || a.Value == nil {
			return false
		}
		args = append(args, wire.Piece{Inline: a.Value})
	}
	key := abi.LeaseKey(spec.Func, &spec.Options)
	task := msg.IDs[0].Task()
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.leases[key]
	if l == nil || l.closing || l.current != nil || len(l.pending) > 0 || from.closing || cur.stopped {
		return false // (a submitter being stopped: the agent may no longer hear it)
	}
	msg.Lane = uint64(l.id)
	// Queued under the lock that orders the lane's executions, so that the
	// agent learns of the lane's tasks in the order the lane runs them.
	if w.append(from.id, wire.TypeSubmit, msg) != nil {
		return false
	}
	l.pending = append(l.pending, wire.Exec{Task: task, Kind: wire.ExecTask, Name: spec.Func, Args: args})
	w.local[msg.IDs[0]] = &localTask{lane: l, task: task, done: make(chan struct{})}
	l.cond.Signal()
	return true
}

// localDone keeps the result of a task run under a lease, if it was one,
// for the process's gets, and wakes them.
func (w *worker) localDone(task objects.ID, done wire.Done) {
	ret := task.WithIndex(1)
	w.mu.Lock()
	lt := w.local[ret]
	if lt == nil || lt.task != task {
		w.mu.Unlock()
		return
	}
	delete(w.local, ret)
	w.mu.Unlock()
	if done.OK && !done.Value.Arena && done.Value.Path == "" {
		w.cache.add(ret, Staged{Kind: abi.StagedValue, Data: done.Value.Inline})
	}
	close(lt.done) // a failure: the get asks the agent, which has the error by now
}

// releaseLocal wakes the gets of a local task that will not run here.
func (w *worker) releaseLocal(task objects.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.releaseLocalLocked(nil, task)
}

// releaseLocalLocked wakes the gets of the local tasks of lane l, or of
// task; the caller holds w.mu.
func (w *worker) releaseLocalLocked(l *lane, task objects.ID) {
	for id, lt := range w.local {
		if (l != nil && lt.lane == l) || (!task.IsNil() && lt.task == task) {
			delete(w.local, id)
			close(lt.done)
		}
	}
}

// awaitLocal waits until none of ids is a task running here under a
// lease, or the timeout passes (timedOut), or cur is stopped.
func (w *worker) awaitLocal(cur *execution, ids []objects.ID, timeoutMs int64) (timedOut bool, err error) {
	var waits []chan struct{}
	w.mu.Lock()
	for _, id := range ids {
		if lt := w.local[id]; lt != nil {
			waits = append(waits, lt.done)
		}
	}
	w.mu.Unlock()
	if len(waits) == 0 {
		return false, nil
	}
	var deadline <-chan time.Time
	if timeoutMs >= 0 {
		t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
		defer t.Stop()
		deadline = t.C
	}
	for _, ch := range waits {
		select {
		case <-ch:
		case <-deadline:
			return true, nil
		case <-cur.stop:
			return false, w.wokenErr(cur)
		}
	}
	return false, nil
}
