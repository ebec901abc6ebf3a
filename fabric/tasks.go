package fabric

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/sandbox"
	"github.com/wasmfabric/fabric/scheduler"
)

type taskState uint8

const (
	taskQueued taskState = iota
	taskRunning
	taskDone
)

// defaultMaxRetries is Ray's default for tasks whose worker died.
const defaultMaxRetries = 3

// task is one task, driver, actor creation or actor method call.
type task struct {
	id          objects.ID
	job         *job
	parent      *task
	spec        abi.TaskSpec
	kind        wire.ExecKind
	name        string
	rawArgs     []byte // complete argument array (the driver's)
	returns     []objects.ID
	argRefs     []objects.ID
	nested      []objects.ID
	state       taskState
	worker      *workerProc
	actor       *actor
	retriesLeft int
	timer       *time.Timer
	held        map[objects.ID]int // handles this execution holds
	children    map[*task]struct{} // unfinished tasks it submitted, for recursive cancel
	blocked     bool
	depWait     bool
	demand      scheduler.Resources
	started     time.Time // when it began to run on its worker
	// recalled is set while a Drop for it, queued behind another task on
	// its worker, is on its way; cancelled is set when that Drop is for a
	// cancel, which then also applies if the task started meanwhile.
	recalled  bool
	cancelled *abi.ErrorValue
	// here pins the task to this node: another node sent it.
	here bool
	// followers are short tasks sent to the same node as this one, to run
	// in its reservation there (leaseRemote); leader is the task whose
	// reservation a follower runs in.
	followers []*task
	leader    *task
	// lineage is set while the task's result lives on another node: the
	// task keeps its arguments, to run again if that node is lost.
	lineage bool
}

func (t *task) schedID() scheduler.TaskID { return scheduler.TaskID(t.id[:]) }

func (t *task) stopTimer() {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
}

// keepsHandles reports whether handles of this execution outlive it (the
// driver's live until the job ends, an actor's until it dies).
func (t *task) keepsHandles() bool {
	return t.kind == wire.ExecMain || t.kind == wire.ExecActorCreate || t.kind == wire.ExecActorMethod
}

// holder returns the execution whose handle table owns what t creates.
func (t *task) holder() *task {
	if t.kind == wire.ExecActorMethod && t.actor != nil && t.actor.create != nil {
		return t.actor.create
	}
	return t
}

func demandOf(spec abi.TaskSpec, defaultCPU float64) scheduler.Resources {
	cpu := defaultCPU
	if spec.Options.CPU != nil {
		cpu = *spec.Options.CPU
	}
	r := scheduler.Resources{CPU: scheduler.Quantity(cpu), GPU: scheduler.Quantity(spec.Options.GPU), Memory: spec.Options.Memory}
	for k, v := range spec.Options.Resources {
		if r.Custom == nil {
			r.Custom = map[string]int64{}
		}
		r.Custom[k] = scheduler.Quantity(v)
	}
	return r
}

// newTask creates a task and its return objects. Caller holds n.mu.
func (n *Node) newTask(j *job, parent *task, spec abi.TaskSpec, kind wire.ExecKind, id objects.ID) *task {
	t := &task{id: id, job: j, parent: parent, spec: spec, kind: kind, name: spec.Func, held: map[objects.ID]int{}}
	if spec.Options.Name != "" && kind != wire.ExecActorCreate {
		t.name = spec.Options.Name
	}
	t.retriesLeft = defaultMaxRetries
	if spec.Options.MaxRetries != nil {
		t.retriesLeft = *spec.Options.MaxRetries
	}
	switch kind {
	case wire.ExecTask:
		t.demand = demandOf(spec, 1)
	case wire.ExecActorCreate:
		t.demand = demandOf(spec, 0)
	}
	nret := spec.NumReturns
	if nret <= 0 {
		nret = 1
	}
	if kind == wire.ExecActorCreate || kind == wire.ExecMain {
		nret = 0
	}
	for i := 1; i <= nret; i++ {
		id := t.id.WithIndex(uint32(i))
		n.objs[id] = &object{job: j, producer: t}
		t.returns = append(t.returns, id)
		if parent != nil {
			n.hold(parent.holder(), id)
		}
	}
	for _, a := range spec.Args {
		if a.Ref != nil {
			id, _ := objects.IDFromBytes(a.Ref)
			n.addRef(id)
			t.argRefs = append(t.argRefs, id)
		}
	}
	for _, r := range spec.Refs {
		id, _ := objects.IDFromBytes(r)
		n.addRef(id)
		t.nested = append(t.nested, id)
	}
	if parent != nil {
		if parent.children == nil {
			parent.children = map[*task]struct{}{}
		}
		parent.children[t] = struct{}{}
	}
	n.tasks[t.id] = t
	return t
}

// hold records that execution h holds a handle to object id (refs+1).
func (n *Node) hold(h *task, id objects.ID) {
	if o := n.objs[id]; o != nil {
		o.refs++
		h.held[id]++
	}
}

// submit queues a task with the scheduler. Caller holds n.mu.
func (n *Node) submit(t *task) {
	t.state = taskQueued
	t.blocked = false
	var deps []scheduler.ObjectKey
	for _, id := range t.argRefs {
		if o := n.objs[id]; o != nil && !o.ready {
			deps = append(deps, scheduler.ObjectKey(id[:]))
			n.fetch(id, o)
		}
	}
	st := scheduler.Task{ID: t.schedID(), Demand: t.demand, Deps: deps, Labels: t.spec.Options.Labels, Bundle: -1}
	if n.peers != nil && (t.here || !n.movable(t)) {
		st.Node = n.nodeID // sent here by another node, or it cannot leave this node (yet)
	} else if n.peers != nil {
		st.Prefer = n.locality(t)
	}
	if g := t.spec.Options.Group; g != nil {
		st.Group = scheduler.GroupID(g)
		if b := t.spec.Options.Bundle; b != nil {
			st.Bundle = *b
		}
	}
	n.sched.Submit(st)
	n.schedule()
}

// schedule applies the scheduler's plan. Caller holds n.mu.
func (n *Node) schedule() {
	for {
		plan := n.sched.Schedule()
		n.groupPlanned(plan)
		if len(plan.Placements) == 0 && len(plan.Infeasible) == 0 && len(plan.Groups) == 0 && len(plan.GroupsInfeasible) == 0 {
			return
		}
		for _, inf := range plan.Infeasible {
			if t := n.tasks[objects.ID([]byte(inf.Task))]; t != nil {
				t.state = taskDone
				if t.kind == wire.ExecActorCreate {
					n.actorDead(t.actor, inf.Reason+"; lower the actor's demand or start the node with more resources")
					continue
				}
				n.failTask(t, abi.ErrorValue{Kind: "infeasible", Message: inf.Reason + "; lower the task's demand or start the node with more resources", Task: t.name}, false)
			}
		}
		for _, p := range plan.Placements {
			t := n.tasks[objects.ID([]byte(p.Task))]
			if t == nil || t.state != taskQueued {
				n.sched.Finished(p.Task)
				continue
			}
			t.state = taskRunning
			if p.Node != n.nodeID {
				n.runRemote(t, string(p.Node))
				continue
			}
			n.dispatch(t)
		}
	}
}

// dispatch finds a worker for a placed task. Caller holds n.mu.
func (n *Node) dispatch(t *task) {
	j := t.job
	if j.done {
		return
	}
	if t.kind == wire.ExecActorCreate {
		w, err := n.startWorker(j)
		if err != nil {
			n.actorDead(t.actor, err.Error())
			return
		}
		w.actor = t.actor
		t.actor.worker = w
		return
	}
	j.queue = append(j.queue, t)
	n.pump(j)
}

func cborArrayHeader(n int) []byte {
	switch {
	case n < 24:
		return []byte{0x80 | byte(n)}
	case n < 256:
		return []byte{0x98, byte(n)}
	case n < 65536:
		return []byte{0x99, byte(n >> 8), byte(n)}
	}
	b := []byte{0x9a, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	return b
}

// run sends an execution to a worker. Caller holds n.mu.
func (n *Node) run(w *workerProc, t *task) {
	ex := wire.Exec{Task: t.id, Kind: t.kind, Name: t.spec.Func}
	switch t.kind {
	case wire.ExecActorCreate:
		ex.Name = t.spec.Func + abi.ActorInitSuffix
	case wire.ExecMain:
		ex.Name = abi.MainFunc
	}
	if t.rawArgs != nil {
		ex.Args = []wire.Piece{{Inline: t.rawArgs}}
	} else {
		ex.Args = append(ex.Args, wire.Piece{Inline: cborArrayHeader(len(t.spec.Args))})
		for _, a := range t.spec.Args {
			if a.Ref == nil {
				ex.Args = append(ex.Args, wire.Piece{Inline: a.Value})
				continue
			}
			id, _ := objects.IDFromBytes(a.Ref)
			o := n.objs[id]
			if o == nil {
				n.unpinAll(w, ex.Unpin)
				n.abandon(w, t, abi.ErrorValue{Kind: "task", Message: fmt.Sprintf("argument object %s was released before the task ran", id.Short()), Task: t.name})
				return
			}
			if o.isError {
				n.unpinAll(w, ex.Unpin)
				ev := decodeErrorValue(o.inline)
				n.abandon(w, t, ev)
				return
			}
			p, err := n.piece(w, id, o)
			if err != nil {
				n.unpinAll(w, ex.Unpin)
				n.abandon(w, t, abi.ErrorValue{Kind: "task", Message: "cannot read argument: " + err.Error(), Task: t.name})
				return
			}
			if p.Arena || p.Path != "" {
				ex.Unpin = append(ex.Unpin, id)
			}
			ex.Args = append(ex.Args, p)
		}
	}
	t.worker = w
	if w.task == nil {
		n.started(w, t)
	} else {
		w.queued = append(w.queued, t)
	}
	w.send(wire.TypeExec, ex)
}

// startTimer arms the timeout of an execution that starts running on w.
func (n *Node) startTimer(w *workerProc, t *task) {
	if t.spec.Options.TimeoutMs <= 0 {
		return
	}
	d := time.Duration(t.spec.Options.TimeoutMs) * time.Millisecond
	t.timer = afterFunc(d, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if w.task == t && t.state == taskRunning {
			w.killReason = &abi.ErrorValue{Kind: "timeout", Message: fmt.Sprintf("task %s timed out after %s; its worker was stopped", t.name, d), Task: t.name}
			w.kill()
		}
	})
}

func (n *Node) unpinAll(w *workerProc, ids []objects.ID) {
	for _, id := range ids {
		n.unpin(w, id)
	}
}

// abandon fails a task before it ran and gives a task worker back (an
// actor's worker goes on with the actor's queue).
func (n *Node) abandon(w *workerProc, t *task, ev abi.ErrorValue) {
	t.state = taskDone
	n.failTask(t, ev, true)
	if w.actor == nil && w.task == nil {
		n.workerIdle(w)
	}
}

// piece returns where a ready object's bytes are, pinning arena objects for w.
func (n *Node) piece(w *workerProc, id objects.ID, o *object) (wire.Piece, error) {
	if !o.stored {
		return wire.Piece{Inline: o.inline}, nil
	}
	if w.dead {
		return wire.Piece{}, fmt.Errorf("worker %d is gone", w.pid)
	}
	loc, err := n.store.Pin(id)
	if err != nil {
		return wire.Piece{}, err
	}
	w.pins[id]++ // held until the worker has read the range or the file
	if loc.Path != "" {
		return wire.Piece{Path: loc.Path, Size: loc.Size}, nil
	}
	return wire.Piece{Arena: true, Off: loc.Offset, Size: loc.Size}, nil
}

func (n *Node) unpin(w *workerProc, id objects.ID) {
	if w.pins[id] > 0 {
		w.pins[id]--
		if w.pins[id] == 0 {
			delete(w.pins, id)
		}
		n.store.Unpin(id)
	}
}

func decodeErrorValue(b []byte) abi.ErrorValue {
	var ev abi.ErrorValue
	if err := wire.Unmarshal(b, &ev); err != nil {
		ev = abi.ErrorValue{Kind: "task", Message: "undecodable error value"}
	}
	return ev
}

// failTask stores ev as the value of every return of t and finishes it.
func (n *Node) failTask(t *task, ev abi.ErrorValue, releaseSched bool) {
	b, _ := wire.Marshal(ev)
	for _, id := range t.returns {
		n.store.Abort(id) // a reservation a lost attempt may have left
		n.setReady(id, b, true, false, nil)
	}
	if t.kind == wire.ExecMain {
		t.job.fail(fmt.Errorf("%s", ev.Message))
	}
	n.finishTask(t, releaseSched)
}

// finishTask releases what a finished execution held. Caller holds n.mu.
func (n *Node) finishTask(t *task, releaseSched bool) {
	t.state = taskDone
	t.stopTimer()
	if t.worker != nil && t.worker.task == t {
		t.worker.task = nil
	}
	t.worker = nil
	if releaseSched && t.kind != wire.ExecActorMethod && t.kind != wire.ExecActorCreate {
		n.sched.Finished(t.schedID())
	}
	if !t.lineage {
		n.releaseArgs(t)
	}
	if t.parent != nil {
		delete(t.parent.children, t)
	}
	if !t.keepsHandles() {
		n.releaseHandles(t)
	}
	if t.kind != wire.ExecActorCreate {
		delete(n.tasks, t.id)
	}
}

// releaseArgs drops the holds a task has on its arguments. Caller holds n.mu.
func (n *Node) releaseArgs(t *task) {
	for _, id := range t.argRefs {
		n.decRef(id)
	}
	for _, id := range t.nested {
		n.decRef(id)
	}
	t.argRefs, t.nested = nil, nil
}

func (n *Node) releaseHandles(t *task) {
	for id, c := range t.held {
		for range c {
			n.decRef(id)
		}
	}
	t.held = map[objects.ID]int{}
}

// handleDone completes an execution. Caller holds n.mu.
func (n *Node) handleDone(w *workerProc, d wire.Done) error {
	if d.Dropped {
		return n.handleDropped(w, d)
	}
	t := w.task
	if t == nil || t.id != d.Task {
		return fmt.Errorf("done for a task it was not running")
	}
	n.flushOutput(w, t)
	t.stopTimer()
	t.job.ran(t)
	w.task = nil
	t.worker = nil
	if len(w.queued) > 0 { // the next execution sent ahead is running now
		next := w.queued[0]
		w.queued = w.queued[1:]
		if next.kind == wire.ExecTask && t.kind == wire.ExecTask {
			n.sched.Handoff(t.schedID(), next.schedID()) // next runs in t's reservation
		}
		n.started(w, next)
		next.recalled = false // a Drop, if any, came too late: its Done follows
		if ev := next.cancelled; ev != nil {
			w.killReason = ev // cancelling a running task stops its worker
			w.kill()
		}
	}
	if t.blocked {
		t.blocked = false
	}
	if id := d.Created; !id.IsNil() {
		delete(w.creates, id)
		if !d.OK {
			n.store.Abort(id)
		}
	}
	if !d.OK {
		n.executionFailed(w, t, d)
		return nil
	}
	switch t.kind {
	case wire.ExecMain:
		t.job.fail(nil)
		n.finishTask(t, true)
	case wire.ExecActorCreate:
		n.actorCreated(t.actor, w)
		return nil
	default:
		if err := n.storeResults(t, d); err != nil {
			n.failTask(t, abi.ErrorValue{Kind: "task", Message: err.Error(), Task: t.name}, true)
		} else {
			n.finishTask(t, true)
		}
	}
	n.afterExecution(w, t)
	n.schedule()
	return nil
}

// afterExecution hands the worker its next execution.
func (n *Node) afterExecution(w *workerProc, t *task) {
	if w.actor != nil {
		n.actorNext(w.actor)
		return
	}
	if w.task != nil { // it runs a task sent ahead: send more
		n.topUp(w)
		return
	}
	n.workerIdle(w)
}

// executionFailed handles a guest error (returned error, panic or trap).
func (n *Node) executionFailed(w *workerProc, t *task, d wire.Done) {
	if t.kind == wire.ExecActorCreate {
		n.actorDead(t.actor, "the constructor failed: "+d.Error)
		if !w.dead {
			w.kill()
		}
		return
	}
	if t.kind == wire.ExecTask && t.spec.Options.RetryExceptions && t.retriesLeft != 0 {
		t.retriesLeft--
		n.sched.Finished(t.schedID())
		n.submit(t)
		n.afterExecution(w, t)
		return
	}
	n.failTask(t, abi.ErrorValue{Kind: "task", Message: d.Error, Task: t.name}, true)
	if t.kind == wire.ExecActorMethod && d.Kind != "app" {
		// A trap lost the actor's state: stop its worker so that it is
		// restarted (constructor again) or declared dead.
		w.kill()
		return
	}
	n.afterExecution(w, t)
	n.schedule()
}

// executionLost handles a worker that died while running t.
func (n *Node) executionLost(t *task, w *workerProc, cause string) {
	if t.state == taskDone {
		return
	}
	t.stopTimer()
	t.worker = nil
	if t.kind == wire.ExecActorCreate {
		return // actorLost decides
	}
	if t.kind == wire.ExecActorMethod {
		ev := abi.ErrorValue{Kind: "actor_died", Message: fmt.Sprintf("actor %s died while running %s: %s", t.actor.class, t.name, cause), Task: t.name}
		if w.killReason != nil {
			ev = *w.killReason
		}
		n.failTask(t, ev, false)
		return
	}
	if w.killReason != nil {
		n.failTask(t, *w.killReason, true)
		return
	}
	if t.kind == wire.ExecMain {
		n.failTask(t, abi.ErrorValue{Kind: "worker_died", Message: "the driver's worker died: " + cause}, true)
		return
	}
	if t.retriesLeft != 0 {
		n.retry(t, fmt.Sprintf("lost its worker (%s)", firstLine(cause)))
		return
	}
	n.failTask(t, abi.ErrorValue{Kind: "worker_died", Message: fmt.Sprintf("task %s failed: its worker died and no retries are left: %s", t.name, cause), Task: t.name}, true)
}

// retry spends one of t's retries and schedules it again, saying why on
// the node's stderr. Caller holds n.mu.
func (n *Node) retry(t *task, why string) {
	t.retriesLeft--
	n.sched.Finished(t.schedID())
	fmt.Fprintf(n.cfg.Stderr, "fabric: task %s %s; retrying\n", t.name, why)
	n.submit(t)
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// storeResults makes a successful execution's value(s) ready.
func (n *Node) storeResults(t *task, d wire.Done) error {
	var refs []objects.ID
	for _, id := range d.Refs {
		if o := n.objs[id]; o != nil && o.job == t.job {
			refs = append(refs, id)
		}
	}
	if len(t.returns) == 1 {
		id := t.returns[0]
		if !d.Created.IsNil() {
			if d.Created != id {
				return fmt.Errorf("result stored under the wrong ID")
			}
			if err := n.store.Seal(id); err != nil {
				return err
			}
			n.setReady(id, nil, false, true, refs)
			if o := n.objs[id]; o != nil { // nil when nobody holds it any more
				o.size = d.Value.Size
			}
			return nil
		}
		return n.storeValue(id, d.Value.Inline, refs)
	}
	var parts []wire.RawMessage
	if err := wire.Unmarshal(d.Value.Inline, &parts); err != nil || len(parts) != len(t.returns) {
		return fmt.Errorf("task %s declares %d return values but returned %d", t.name, len(t.returns), len(parts))
	}
	for i, id := range t.returns {
		if err := n.storeValue(id, []byte(parts[i]), refs); err != nil {
			return err
		}
	}
	return nil
}

// storeValue makes a value that arrived inline ready: small ones stay in the
// object table, large ones go to the store (which spills as needed).
func (n *Node) storeValue(id objects.ID, data []byte, refs []objects.ID) error {
	if len(data) <= sandbox.InlineMax {
		n.setReady(id, data, false, false, refs)
		return nil
	}
	n.store.Abort(id)
	if err := n.store.Put(id, data); err != nil {
		return err
	}
	n.setReady(id, nil, false, true, refs)
	if o := n.objs[id]; o != nil {
		o.size = int64(len(data))
	}
	return nil
}
