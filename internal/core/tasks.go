package core

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/cborlite"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
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
	// items counts a generator's items yielded so far (across attempts);
	// placeholders are items asked for before they were (generators.go).
	items        uint32
	placeholders []objects.ID

	id     objects.ID
	job    *job
	parent *task
	spec   abi.TaskSpec
	// rawSpec is spec as it came (from a worker's Submit), sent on to
	// another node as it is when nothing in it changes on the way.
	rawSpec     []byte
	kind        wire.ExecKind
	name        string
	rawArgs     []byte // the complete argument array (the driver's)
	returns     []objects.ID
	argRefs     []objects.ID
	nested      []objects.ID
	state       taskState
	worker      *worker
	actor       *actor
	retriesLeft int
	// cancelling is set when the running task was asked to cancel without
	// force: however it ends, its results hold the cancelled error.
	cancelling bool
	retried    int // retries spent: the attempt that runs now
	// ctxGroup and ctxBundle are the placement group and bundle (-1: any)
	// of a task another node sent, whose spec no longer names them.
	ctxGroup  []byte
	ctxBundle int
	timer     TimerID
	held      map[objects.ID]int // handles this execution holds
	children  map[*task]struct{} // unfinished tasks it submitted, for recursive cancel
	blocked   bool
	depWait   bool
	demand    scheduler.Resources
	started   Time // when it began to run on its worker (timed: it did)
	timed     bool
	ranFor    Time // how long it ran, once done
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
	// lineage is set while a result of the task lives on another node: the
	// task keeps its arguments, to run again if that node is lost.
	lineage bool
	// remoteNode is the node it runs on when placed on another one, and
	// attempt counts its runs there (answers name it).
	remoteNode NodeID
	attempt    uint32
	// asker is the node that asked this node to run it, which knows it as
	// askerTask (attempt askerAttempt); it gets a TaskDone at the end.
	asker        NodeID
	askerTask    objects.ID
	askerAttempt uint32
	answered     bool
	// charge is what the task counts against the heap budget.
	charge int64
	// submitted and placed are when it came and when it was placed, and
	// failure and failureKind its error once it failed, for its record
	// (history.go).
	submitted, placed    Time
	failure, failureKind string
	pid                  int    // the worker process's it started in
	ranOn                NodeID // the other node it was sent to last
}

func (t *task) schedID() scheduler.TaskID { return schedID(t.id) }

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

// Quantity converts an amount (CPUs, GPUs, custom units) to the
// scheduler's fixed point.
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

// checkDemand refuses resource amounts that are negative, not finite or
// absurdly large: a demand of -1000 CPUs would overcommit the node for
// every tenant.
func checkDemand(o abi.Options) error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e9 }
	if o.CPU != nil && bad(*o.CPU) {
		return fmt.Errorf("submit: CPUs %v is not a non-negative amount", *o.CPU)
	}
	if bad(o.GPU) {
		return fmt.Errorf("submit: GPUs %v is not a non-negative amount", o.GPU)
	}
	if o.Memory < 0 {
		return fmt.Errorf("submit: memory %d is negative", o.Memory)
	}
	for k, v := range o.Resources {
		if bad(v) || k == "" {
			return fmt.Errorf("submit: resource %q amount %v is not a non-negative amount", k, v)
		}
	}
	if o.Strategy != "" && o.Strategy != abi.StrategySpread {
		return fmt.Errorf("submit: unknown scheduling strategy %q (the default, or %q)", o.Strategy, abi.StrategySpread)
	}
	if o.Soft && o.Node == "" {
		return fmt.Errorf("submit: soft node affinity without a node")
	}
	if o.MaxConcurrency < 0 || o.MaxConcurrency > abi.MaxConcurrency {
		return fmt.Errorf("submit: max concurrency %d is not between 0 and %d", o.MaxConcurrency, abi.MaxConcurrency)
	}
	if o.Lifetime != "" && o.Lifetime != abi.LifetimeDetached {
		return fmt.Errorf("submit: unknown lifetime %q (the default, or %q)", o.Lifetime, abi.LifetimeDetached)
	}
	if o.Lifetime == abi.LifetimeDetached && o.Name == "" {
		return fmt.Errorf("submit: a detached actor needs a name, by which later jobs find it")
	}
	if len(o.Namespace) > 256 || strings.ContainsRune(o.Namespace, 0) {
		return fmt.Errorf("submit: a namespace is at most 256 bytes, without NUL")
	}
	if len(o.ConcurrencyGroups) > 16 {
		return fmt.Errorf("submit: %d concurrency groups; the limit is 16", len(o.ConcurrencyGroups))
	}
	for g, n := range o.ConcurrencyGroups {
		if g == "" || len(g) > 256 || n < 1 || n > abi.MaxConcurrency {
			return fmt.Errorf("submit: concurrency group %q: the name must be 1-256 bytes and its limit between 1 and %d (it is %d)", g, abi.MaxConcurrency, n)
		}
	}
	_, err := selectorOf(o.Selector)
	return err
}

// selectorOf converts a label selector for the scheduler, checking it.
func selectorOf(terms []abi.LabelTerm) ([]scheduler.LabelTerm, error) {
	if len(terms) > 64 {
		return nil, fmt.Errorf("submit: a label selector of %d terms (at most 64)", len(terms))
	}
	var out []scheduler.LabelTerm
	for _, t := range terms {
		st := scheduler.LabelTerm{Key: t.Key, Values: t.Values}
		switch t.Op {
		case abi.LabelIn:
			st.Op = scheduler.LabelIn
		case abi.LabelNotIn:
			st.Op = scheduler.LabelNotIn
		case abi.LabelExists:
			st.Op = scheduler.LabelExists
		case abi.LabelNotExists:
			st.Op = scheduler.LabelNotExists
		default:
			return nil, fmt.Errorf("submit: label selector on %q: unknown operator %q (in, not_in, exists, not_exists)", t.Key, t.Op)
		}
		if t.Key == "" {
			return nil, fmt.Errorf("submit: label selector term without a key")
		}
		if (st.Op == scheduler.LabelIn || st.Op == scheduler.LabelNotIn) != (len(t.Values) > 0) {
			return nil, fmt.Errorf("submit: label selector on %q: %s takes values; exists and not_exists take none", t.Key, t.Op)
		}
		out = append(out, st)
	}
	return out, nil
}

// specCharge is what a spec's inline arguments count against the heap.
func specCharge(spec abi.TaskSpec) int64 {
	n := int64(len(spec.Func)) + 64
	for _, a := range spec.Args {
		n += int64(len(a.Value)) + int64(len(a.Ref))
	}
	return n + int64(len(spec.Refs))*objects.IDSize
}

// newTask creates a task and its return objects.
func (c *Core) newTask(j *job, parent *task, spec abi.TaskSpec, kind wire.ExecKind, id objects.ID) *task {
	t := &task{id: id, job: j, parent: parent, spec: spec, kind: kind, name: spec.Func, held: map[objects.ID]int{}, submitted: c.now}
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
	nret := max(spec.NumReturns, 1)
	if kind == wire.ExecActorCreate || kind == wire.ExecMain {
		nret = 0
	}
	for i := 1; i <= nret; i++ {
		rid := t.id.WithIndex(uint32(i))
		c.newObject(rid, j).producer = t
		t.returns = append(t.returns, rid)
		if parent != nil {
			c.hold(parent.holder(), rid)
		}
	}
	for _, a := range spec.Args {
		if a.Ref != nil {
			rid := objects.ID(a.Ref)
			c.addRef(rid)
			t.argRefs = append(t.argRefs, rid)
		}
	}
	for _, r := range spec.Refs {
		rid := objects.ID(r)
		c.addRef(rid)
		t.nested = append(t.nested, rid)
	}
	if parent != nil {
		if parent.children == nil {
			parent.children = map[*task]struct{}{}
		}
		parent.children[t] = struct{}{}
	}
	t.charge = specCharge(spec) + int64(len(t.rawArgs))
	c.chargeHeap(j, t.charge)
	c.tasks[t.id] = t
	return t
}

// hold records that execution h holds a handle to object id (refs+1).
func (c *Core) hold(h *task, id objects.ID) {
	if o := c.objs[id]; o != nil {
		o.refs++
		h.held[id]++
	}
}

// forwarded reports whether another node's scheduler placed t here: it
// was asked by a node of the cluster (not a call of this node's API).
// Such a task counts against its tenant's quota there, not here.
func (c *Core) forwarded(t *task) bool {
	if t.asker == "" {
		return false
	}
	_, node := c.sched.Total(t.asker)
	return node
}

// submit queues a task with the scheduler.
func (c *Core) submit(t *task) {
	t.state = taskQueued
	c.setBlocked(t, false)
	var deps []scheduler.ObjectKey
	for _, id := range t.argRefs {
		if o := c.objs[id]; o != nil && !o.ready {
			deps = append(deps, schedKey(id))
			c.fetch(id, o)
		}
	}
	o := &t.spec.Options
	st := scheduler.Task{ID: t.schedID(), Demand: t.demand, Deps: deps, Labels: o.Labels, Bundle: -1, Spread: o.Strategy == abi.StrategySpread,
		Tenant: t.job.tenant, Job: string(t.job.id), Uncharged: t.kind == wire.ExecMain, Forwarded: c.forwarded(t), Actor: t.kind == wire.ExecActorCreate}
	st.Selector, _ = selectorOf(o.Selector) // checked at submit
	switch {
	case c.cfg.Clustered && (t.here || !c.movable(t)):
		st.Node = c.cfg.Node // sent here by another node, or it cannot leave this node
	case o.Node != "" && o.Soft:
		st.Prefer = NodeID(o.Node)
	case o.Node != "":
		st.Node = NodeID(o.Node)
	case c.cfg.Clustered:
		st.Prefer = c.locality(t)
	}
	if g, err := objects.IDFromBytes(t.spec.Options.Group); err == nil { // checked at submit
		st.Group = scheduler.GroupID(g)
		if b := t.spec.Options.Bundle; b != nil {
			st.Bundle = *b
		}
	}
	c.sched.Submit(st)
	c.schedule()
}

// schedule applies the scheduler's plans until it has nothing more to place.
func (c *Core) schedule() {
	for {
		plan := c.sched.Schedule()
		c.groupPlanned(plan)
		if len(plan.Placements) == 0 && len(plan.Infeasible) == 0 && len(plan.Groups) == 0 && len(plan.GroupsInfeasible) == 0 {
			return
		}
		for _, inf := range plan.Infeasible {
			t := c.tasks[objects.ID(inf.Task)]
			if t == nil {
				continue
			}
			t.state = taskDone
			hint := "start the node with more resources"
			if inf.Quota {
				hint = "ask for a larger quota (fabric tenant quota)"
			}
			if t.kind == wire.ExecActorCreate {
				c.actorDead(t.actor, inf.Reason+"; lower the actor's demand or "+hint)
				continue
			}
			c.failTask(t, abi.ErrorValue{Kind: abi.KindInfeasible, Message: inf.Reason + "; lower the task's demand or " + hint, Task: t.name}, false)
		}
		for _, p := range plan.Placements {
			t := c.tasks[objects.ID(p.Task)]
			if t == nil || t.state != taskQueued {
				c.sched.Finished(p.Task)
				continue
			}
			t.state, t.placed = taskRunning, c.now
			c.counts.placed(t, c.now)
			if p.Node != c.cfg.Node {
				c.runRemote(t, p.Node)
				continue
			}
			c.dispatch(t)
		}
	}
}

// dispatch finds a worker for a placed task.
func (c *Core) dispatch(t *task) {
	j := t.job
	if j.done {
		return
	}
	if t.kind == wire.ExecActorCreate || t.kind == wire.ExecMain {
		j.soloStarts = append(j.soloStarts, t)
		c.startSolos(j)
		return
	}
	if c.cfg.Leases && c.leasable(t) && c.grantLease(t) {
		return
	}
	j.queue = append(j.queue, t)
	c.pump(j)
}

// startSolos starts a worker for each actor of j, and for its driver,
// waiting for one. While the node has as many as it may, they wait for an
// idle worker of another job to be stopped; when there is none to stop,
// an actor fails (a driver waits).
func (c *Core) startSolos(j *job) {
	for len(j.soloStarts) > 0 {
		t := j.soloStarts[0]
		if t.state == taskDone {
			j.soloStarts = j.soloStarts[1:]
			continue
		}
		var driver *task
		if t.kind == wire.ExecMain {
			driver = t
		}
		if driver == nil && len(j.workers) >= c.jobMaxWorkers() {
			j.soloStarts = j.soloStarts[1:]
			c.actorDead(t.actor, fmt.Sprintf("the job has %d workers on this node, the most one job may hold (half of the node's %d); kill actors it no longer needs", len(j.workers), c.cfg.MaxInstances))
			continue
		}
		w := c.startWorker(j, driver, true, "")
		if w == nil {
			if c.reclaiming > 0 || driver != nil {
				return // an idle worker is being stopped for it, or a driver waits
			}
			j.soloStarts = j.soloStarts[1:]
			c.actorDead(t.actor, fmt.Sprintf("the node has %d workers, its most, and none is idle", c.cfg.MaxInstances))
			continue
		}
		j.soloStarts = j.soloStarts[1:]
		if driver == nil {
			w.actor = t.actor
			t.actor.worker = w
			c.updateParked(w)
		}
	}
}

// run sends an execution to a worker.
func (c *Core) run(w *worker, t *task) {
	ex := wire.Exec{Task: t.id, Kind: t.kind, Name: t.spec.Func}
	switch t.kind {
	case wire.ExecActorCreate:
		ex.Name = t.spec.Func + abi.ActorInitSuffix
	case wire.ExecMain:
		ex.Name = abi.MainFunc
	case wire.ExecActorMethod:
		if a := t.actor; a != nil && a.concurrent {
			g := t.spec.Options.ConcurrencyGroup
			limit, ok := a.limits[g]
			if !ok {
				c.abandon(w, t, abi.ErrorValue{Kind: abi.KindTask, Task: t.name,
					Message: fmt.Sprintf("actor %s has no concurrency group %q", a.class, g)})
				return
			}
			ex.Serve, ex.Group, ex.Limit = true, g, limit
		}
	}
	if t.rawArgs != nil {
		ex.Args = []wire.Piece{{Inline: t.rawArgs}}
	} else {
		ex.Args = append(ex.Args, wire.Piece{Inline: cborlite.AppendHead(nil, cborlite.MajorArray, uint64(len(t.spec.Args)))})
		for _, a := range t.spec.Args {
			if a.Ref == nil {
				ex.Args = append(ex.Args, wire.Piece{Inline: a.Value})
				continue
			}
			id := objects.ID(a.Ref)
			o := c.objs[id]
			var fail *abi.ErrorValue
			switch {
			case o == nil:
				fail = &abi.ErrorValue{Kind: abi.KindTask, Message: fmt.Sprintf("argument object %s was released before the task ran", id.Short()), Task: t.name}
			case o.isError:
				ev := decodeErrorValue(o.inline)
				fail = &ev
			}
			var p wire.Piece
			if fail == nil {
				var err error
				if p, err = c.piece(w, id, o); err != nil {
					fail = &abi.ErrorValue{Kind: abi.KindTask, Message: "cannot read argument: " + err.Error(), Task: t.name}
				}
			}
			if fail != nil {
				c.unpinAll(w, ex.Unpin)
				c.abandon(w, t, *fail)
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
		c.started(w, t)
	} else {
		w.queued = append(w.queued, t)
		if ex.Serve { // it may start at once, beside the others
			c.armTimeout(w, t)
		}
	}
	c.sendWorker(w, wire.TypeExec, ex)
}

// started records that t begins to run on w now.
func (c *Core) started(w *worker, t *task) {
	w.task = t
	c.updateParked(w)
	c.armTimeout(w, t)
}

// armTimeout notes that t starts on w now and sets its timeout, once.
func (c *Core) armTimeout(w *worker, t *task) {
	if t.timed {
		return // a concurrent actor's call, started when it was sent
	}
	t.started, t.timed, t.pid = c.now, true, w.pid
	if t.spec.Options.TimeoutMs <= 0 {
		return
	}
	d := Time(t.spec.Options.TimeoutMs) * 1e6
	t.timer = c.setTimer(d, func() {
		t.timer = 0
		if !w.runs(t) || t.state != taskRunning {
			return
		}
		ev := abi.ErrorValue{Kind: abi.KindTimeout, Message: fmt.Sprintf("task %s timed out after %s and was stopped", t.name, d), Task: t.name}
		if t.kind == wire.ExecTask {
			c.stopExecution(w, t, ev)
			return
		}
		// An actor's call: the actor's state goes with its instance, so
		// its worker goes, and the actor restarts if it may.
		w.killReason = &ev
		c.killWorker(w)
	})
}

func (c *Core) stopTaskTimer(t *task) {
	c.stopTimer(t.timer)
	t.timer = 0
}

// abandon fails a task before it ran and gives a task worker back (an
// actor's worker goes on with the actor's queue).
func (c *Core) abandon(w *worker, t *task, ev abi.ErrorValue) {
	t.state = taskDone
	c.failTask(t, ev, true)
	if w.actor == nil && w.task == nil {
		c.workerIdle(w)
	}
}

// piece returns where a ready object's bytes are, pinning stored ones for w.
func (c *Core) piece(w *worker, id objects.ID, o *object) (wire.Piece, error) {
	if !o.stored {
		return wire.Piece{Inline: o.inline}, nil
	}
	if w.state == workerDead {
		return wire.Piece{}, fmt.Errorf("worker %d is gone", w.pid)
	}
	loc, err := c.store.PinInPlace(id)
	if err != nil {
		return wire.Piece{}, err
	}
	w.pins[id]++ // held until the worker has read the range or the file
	if loc.Path != "" {
		return wire.Piece{Path: loc.Path, Size: loc.Size}, nil
	}
	return wire.Piece{Arena: true, Off: loc.Offset, Size: loc.Size}, nil
}

func (c *Core) unpin(w *worker, id objects.ID) {
	if w.pins[id] > 0 {
		w.pins[id]--
		if w.pins[id] == 0 {
			delete(w.pins, id)
		}
		c.store.Unpin(id)
	}
}

func (c *Core) unpinAll(w *worker, ids []objects.ID) {
	for _, id := range ids {
		c.unpin(w, id)
	}
}

// failTask stores ev as the value of every return of t and finishes it.
func (c *Core) failTask(t *task, ev abi.ErrorValue, releaseSched bool) {
	t.failure, t.failureKind = truncateError(ev.Message), string(ev.Kind)
	for _, id := range t.returns {
		c.store.Abort(id) // a reservation a lost attempt may have left
		if o := c.objs[id]; o != nil && !o.ready && o.remote != "" {
			o.remote, o.fetching = "", false // a result held elsewhere that cannot be had
		}
		c.setError(id, ev)
	}
	if t.kind == wire.ExecMain {
		c.jobResult(t.job, ev.Message)
	}
	c.finishTask(t, releaseSched)
}

// finishTask releases what a finished execution held.
func (c *Core) finishTask(t *task, releaseSched bool) {
	if t.spec.Options.Generator {
		c.endGenerator(t)
	}
	t.state = taskDone
	c.stopTaskTimer(t)
	if w := t.worker; w != nil && w.task == t {
		w.task = nil
		c.updateParked(w)
	}
	t.worker = nil
	if releaseSched && t.kind != wire.ExecActorMethod && t.kind != wire.ExecActorCreate {
		c.sched.Finished(t.schedID())
	}
	c.answerAsker(t)
	if !t.lineage {
		c.releaseArgs(t)
	}
	if t.parent != nil {
		delete(t.parent.children, t)
	}
	if !t.keepsHandles() {
		c.releaseHandles(t)
	}
	if t.kind != wire.ExecActorCreate {
		c.keepRecord(t)
		c.forgetTask(t)
	}
}

// forgetTask removes a finished task from the table.
func (c *Core) forgetTask(t *task) {
	if c.tasks[t.id] == t {
		delete(c.tasks, t.id)
		c.chargeHeap(t.job, -t.charge)
		t.charge = 0
	}
	if t.asker != "" {
		if k := (askKey{t.asker, t.askerTask}); c.asked[k] == t {
			delete(c.asked, k)
			if t.kind == wire.ExecTask {
				if c.askedTasks[t.asker]--; c.askedTasks[t.asker] <= 0 {
					delete(c.askedTasks, t.asker)
				}
			}
		}
	}
	if t.remoteNode != "" {
		c.forgetRemote(t)
	}
}

// releaseArgs drops the holds a task has on its arguments.
func (c *Core) releaseArgs(t *task) {
	args, nested := t.argRefs, t.nested
	t.argRefs, t.nested = nil, nil
	for _, id := range args {
		c.decRef(id)
	}
	for _, id := range nested {
		c.decRef(id)
	}
}

// releaseHandles drops the handles an execution holds, in ID order.
func (c *Core) releaseHandles(t *task) {
	held := t.held
	t.held = map[objects.ID]int{}
	for _, id := range sortedIDs(held) {
		for range held[id] {
			c.decRef(id)
		}
	}
}

// done completes an execution.
func (c *Core) done(w *worker, d wire.Done) error {
	if d.Dropped {
		return c.dropped(w, d)
	}
	if a := w.actor; a != nil && a.concurrent && w.task != nil && w.task.id != d.Task {
		// A concurrent actor answers its calls in any order: the one that
		// ended takes the head's place, and the head goes back in front.
		i := slices.IndexFunc(w.queued, func(q *task) bool { return q.id == d.Task })
		if i < 0 {
			return fmt.Errorf("done for a task it was not running")
		}
		t := w.queued[i]
		w.queued = slices.Insert(slices.Delete(w.queued, i, i+1), 0, w.task)
		w.task = t
	}
	t := w.task
	if t == nil || t.id != d.Task {
		return fmt.Errorf("done for a task it was not running")
	}
	if t.cancelled != nil && t.actor != nil && t.actor.concurrent {
		t.cancelling = true // it was told, at its next park, and is cancelled
	}
	c.flushOutput(w, t)
	c.stopTaskTimer(t)
	if !d.OK {
		c.counts.executionFailed(d.Kind)
	}
	t.job.ran(t, c.now)
	if t.blocked && w.lease != nil { // it ended blocked: the lease's CPU was given back
		c.sched.Unblocked(w.lease.holder)
	}
	w.task = nil
	c.updateParked(w)
	t.worker = nil
	stopped := w.killReason
	if w.stopping == t {
		// It ended, stopped or not: the reason was for it alone. One that
		// finished before the Stop reached it keeps its result.
		w.killReason, w.stopping = nil, nil
	} else {
		stopped = nil
	}
	if len(w.queued) > 0 { // the next execution sent ahead is running now
		next := w.queued[0]
		w.queued = w.queued[1:]
		if next.kind == wire.ExecTask && t.kind == wire.ExecTask {
			c.sched.Handoff(t.schedID(), next.schedID()) // next runs in t's reservation
		}
		c.started(w, next)
		next.recalled = false // a Drop, if any, came too late: its Done follows
		if ev := next.cancelled; ev != nil {
			if next.kind == wire.ExecActorMethod {
				if a := next.actor; a == nil || !a.concurrent {
					next.cancelled = nil // an actor call that started runs to its end, as in Ray
				}
			} else {
				c.stopExecution(w, next, *ev)
			}
		}
	}
	t.blocked = false
	if id := d.Created; !id.IsNil() {
		delete(w.creates, id)
		if !d.OK || t.job.done {
			c.store.Abort(id)
		}
	}
	if t.job.done && t.job != w.job {
		// A call of a job that ended, to an actor of a namespace: the
		// answer goes nowhere. One that lost the actor's instance takes
		// the worker with it, and the actor restarts (or dies) as when
		// any call does.
		if !d.OK && d.Kind != "app" {
			c.killWorker(w)
			return nil
		}
		c.afterExecution(w)
		c.schedule()
		return nil
	}
	if !d.OK && stopped != nil && d.Kind == "interrupted" { // only tasks are stopped
		c.failTask(t, *stopped, true)
		c.afterExecution(w)
		c.schedule()
		return nil
	}
	if t.cancelling { // asked to cancel: whatever it returned, it was cancelled
		c.failTask(t, cancelledError(t), true)
		c.afterExecution(w)
		c.schedule()
		return nil
	}
	if !d.OK {
		c.executionFailed(w, t, d)
		return nil
	}
	switch t.kind {
	case wire.ExecMain:
		c.jobResult(t.job, "")
		c.finishTask(t, true)
	case wire.ExecActorCreate:
		c.actorCreated(t.actor)
		return nil
	default:
		if err := c.storeResults(t, d); err != nil {
			c.failTask(t, abi.ErrorValue{Kind: abi.KindTask, Message: err.Error(), Task: t.name}, true)
		} else {
			c.finishTask(t, true)
		}
	}
	c.afterExecution(w)
	c.schedule()
	return nil
}

// afterExecution hands the worker its next execution.
func (c *Core) afterExecution(w *worker) {
	if w.actor != nil {
		c.actorNext(w.actor)
		return
	}
	if w.task != nil { // it runs a task sent ahead: send more
		c.topUp(w)
		return
	}
	c.workerIdle(w)
}

// executionFailed handles a guest error (returned error, panic or trap).
func (c *Core) executionFailed(w *worker, t *task, d wire.Done) {
	if d.Kind == "exit" && t.kind != wire.ExecActorCreate {
		c.executionExited(w, t, d)
		return
	}
	if t.kind == wire.ExecActorCreate {
		c.actorDead(t.actor, "the constructor failed: "+d.Error)
		c.killWorker(w)
		return
	}
	ev := abi.ErrorValue{Kind: abi.KindTask, Message: d.Error, Task: t.name}
	if d.Kind == "app" && len(d.ErrorTypes) > 0 {
		// Checked by the worker's host; a worker that sends garbage only
		// loses its own error's types.
		_ = wire.Unmarshal(d.ErrorTypes, &ev.Types)
	}
	retriable := t.spec.Options.RetryExceptions || d.Kind == "app" && ev.MatchesAny(t.spec.Options.RetryOn)
	if t.kind == wire.ExecTask && retriable && t.retriesLeft != 0 {
		t.retriesLeft--
		t.retried++
		c.counts.TaskRetries++
		c.sched.Finished(t.schedID())
		c.afterExecution(w) // the worker is idle first: the retry may go to it
		c.submit(t)
		return
	}
	if t.kind == wire.ExecActorMethod && d.Kind != "app" {
		// A trap lost the actor's state: the actor died with this call
		// (as with the calls after it, should it not restart). Its worker
		// is stopped so that it is restarted (constructor again) or
		// declared dead.
		c.actorDiedIn(w, t, d.Error)
		return
	}
	c.failTask(t, ev, true)
	c.afterExecution(w)
	c.schedule()
}

// executionExited handles a guest that exited (os.Exit, WASI's
// proc_exit) during t: a system failure, as Ray counts a worker process
// that exits, not an application error. A task is retried under
// MaxRetries and fails as a dead worker when none are left; an actor dies
// with the call, and is restarted under MaxRestarts; a driver that exits
// with code 0 ends its job as if it had returned.
func (c *Core) executionExited(w *worker, t *task, d wire.Done) {
	switch t.kind {
	case wire.ExecMain:
		if d.ExitCode == 0 {
			c.jobResult(t.job, "")
			c.finishTask(t, true)
		} else {
			t.job.exitCode = d.ExitCode
			c.failTask(t, abi.ErrorValue{Kind: abi.KindTask, Message: fmt.Sprintf("the driver exited with code %d", d.ExitCode)}, true)
		}
	case wire.ExecActorMethod:
		c.actorDiedIn(w, t, d.Error)
		return
	default:
		if t.retriesLeft != 0 {
			t.retriesLeft--
			t.retried++
			c.counts.TaskRetries++
			c.sched.Finished(t.schedID())
			c.afterExecution(w) // the worker is idle first: the retry may go to it
			c.jobLogf(t.job, "fabric: task %s exited (%s); retrying", t.name, firstLine(d.Error))
			c.submit(t)
			return
		}
		c.failTask(t, abi.ErrorValue{Kind: abi.KindWorkerDied, Task: t.name,
			Message: fmt.Sprintf("task %s failed: %s, and no retries are left", t.name, firstLine(d.Error))}, true)
	}
	c.afterExecution(w)
	c.schedule()
}

// actorDiedIn fails the method call t, during which its actor's instance
// was lost (a trap, an exit: why), with actor_died, as the calls sent
// ahead to the worker will be; the worker is stopped so that the actor is
// restarted (constructor again) or declared dead.
func (c *Core) actorDiedIn(w *worker, t *task, why string) {
	if c.retryCall(t) { // the calls sent ahead follow it (executionLost)
		c.logf("fabric: actor %s died while running %s (%s); the call runs again when the actor has restarted", t.actor.class, t.name, firstLine(why))
		c.killWorker(w)
		return
	}
	ev := abi.ErrorValue{Kind: abi.KindActorDied, Task: t.name,
		Message: fmt.Sprintf("actor %s died while running %s: %s", t.actor.class, t.name, firstLine(why))}
	if a := t.actor; a.reportTo != "" {
		// A copy of another node's actor: its owner hears of the death
		// before the call's answer, so that a call its caller makes on
		// that answer waits for the restart instead of coming here.
		c.sendPeer(a.reportTo, &peerwire.ActorDied{Job: string(a.job.id), Actor: a.id, Incarnation: a.incarnation, Cause: ev.Message})
	}
	c.failTask(t, ev, true)
	w.killReason = &ev
	c.killWorker(w)
}

// executionLost handles a worker that died while running t.
func (c *Core) executionLost(t *task, w *worker, cause string) {
	if t.state == taskDone {
		return
	}
	c.stopTaskTimer(t)
	t.worker = nil
	switch {
	case t.kind == wire.ExecActorCreate:
		return // actorLost decides
	case t.kind == wire.ExecActorMethod && w.killReason == nil && c.retryCall(t):
		c.logf("fabric: call %s lost its actor's worker (%s); it runs again when the actor has restarted", t.name, firstLine(cause))
	case t.kind == wire.ExecActorMethod:
		ev := abi.ErrorValue{Kind: abi.KindActorDied, Message: fmt.Sprintf("actor %s died while running %s: %s", t.actor.class, t.name, cause), Task: t.name}
		if w.killReason != nil {
			ev = *w.killReason
		}
		c.failTask(t, ev, false)
	case w.killReason != nil:
		c.failTask(t, *w.killReason, true)
	case t.cancelling: // its worker died while it had its grace to return
		c.failTask(t, cancelledError(t), true)
	case t.kind == wire.ExecMain:
		c.failTask(t, abi.ErrorValue{Kind: abi.KindWorkerDied, Message: "the driver's worker died: " + cause}, true)
	case t.retriesLeft != 0:
		c.retry(t, fmt.Sprintf("lost its worker (%s)", firstLine(cause)))
	default:
		c.failTask(t, abi.ErrorValue{Kind: abi.KindWorkerDied, Message: fmt.Sprintf("task %s failed: its worker died and no retries are left: %s", t.name, cause), Task: t.name}, true)
	}
}

// retry spends one of t's retries and schedules it again, saying why in
// the node's log.
func (c *Core) retry(t *task, why string) {
	t.retriesLeft--
	t.retried++
	c.counts.TaskRetries++
	c.sched.Finished(t.schedID())
	c.jobLogf(t.job, "fabric: task %s %s; retrying", t.name, why)
	c.submit(t)
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
func (c *Core) storeResults(t *task, d wire.Done) error {
	var refs []objects.ID
	for _, id := range d.Refs {
		if o := c.objs[id]; o != nil && o.job == t.job {
			refs = append(refs, id)
		}
	}
	if t.spec.Options.Generator && len(t.returns) == 1 {
		// The end object holds the number of items, as the agent counted
		// them, whatever the guest returned.
		if !d.Created.IsNil() {
			c.store.Abort(d.Created)
		}
		c.storeValue(t.returns[0], cborlite.AppendUint(nil, uint64(t.items)), nil)
		return nil
	}
	if len(t.returns) == 1 {
		id := t.returns[0]
		if !d.Created.IsNil() {
			if d.Created != id {
				return fmt.Errorf("result stored under the wrong ID")
			}
			if err := c.store.Seal(id); err != nil {
				return err
			}
			c.setReady(id, objValue{stored: true, nested: refs})
			if o := c.objs[id]; o != nil { // nil when nobody holds it any more
				o.size = d.Value.Size
			}
			return nil
		}
		c.storeValue(id, d.Value.Inline, refs)
		return nil
	}
	var parts []wire.RawMessage
	if err := wire.Unmarshal(d.Value.Inline, &parts); err != nil || len(parts) != len(t.returns) {
		return fmt.Errorf("task %s declares %d return values but returned %d", t.name, len(t.returns), len(parts))
	}
	for i, id := range t.returns {
		c.storeValue(id, []byte(parts[i]), refs)
	}
	return nil
}

// cancelGrace is how long a running task asked to cancel without force
// has to return by itself (seeing sdk.Cancelled, or a Get that returned
// cancelled) before it is stopped.
const cancelGrace = 1e9 // 1 s

// cancelledError is the error a cancelled task's results hold.
func cancelledError(t *task) abi.ErrorValue {
	return abi.ErrorValue{Kind: abi.KindCancelled, Message: fmt.Sprintf("task %s was cancelled", t.name), Task: t.name}
}

// cancelTask cancels a task, and with recursive the tasks it submitted
// first (in ID order, by a work list: no recursion a guest controls). A
// task that has not started never runs. A running one is stopped at once
// with force; without, it is told (its blocking calls return cancelled,
// and the cancelled host call says so) and has cancelGrace to return
// before it is stopped. Its results hold the cancelled error either way.
func (c *Core) cancelTask(root *task, recursive, force bool) {
	order := []*task{root}
	if recursive {
		// Children first, as Ray does: collect the tree, then cancel it
		// from the leaves up.
		for i := 0; i < len(order); i++ {
			kids := make([]*task, 0, len(order[i].children))
			for k := range order[i].children {
				kids = append(kids, k)
			}
			slices.SortFunc(kids, func(a, b *task) int { return compareIDs(a.id, b.id) })
			order = append(order, kids...)
		}
	}
	for i := len(order) - 1; i >= 0; i-- {
		c.cancelOne(order[i], force)
	}
}

// cancelOne cancels one task (not an actor: Ray kills those with kill).
func (c *Core) cancelOne(t *task, force bool) {
	if t.kind == wire.ExecActorCreate || t.state == taskDone {
		return
	}
	ev := cancelledError(t)
	switch t.state {
	case taskQueued:
		if t.kind == wire.ExecActorMethod {
			if a := t.actor; a != nil {
				if i := slices.Index(a.queue, t); i >= 0 {
					a.queue = slices.Delete(a.queue, i, i+1)
				}
			}
			c.failTask(t, ev, false)
			return
		}
		c.sched.Cancel(t.schedID())
		c.failTask(t, ev, false)
	case taskRunning:
		if t.kind == wire.ExecMain {
			return
		}
		if t.kind == wire.ExecActorMethod {
			// Ray cancels an actor call only before it starts: one sent
			// ahead to the actor's worker is taken back if it has not.
			// A concurrent actor's call is told, and stops at its next
			// park.
			if w := t.worker; w != nil && (w.task != t || t.actor != nil && t.actor.concurrent) {
				c.cancelQueued(w, t, ev)
			}
			if t.remoteNode != "" { // its node cancels it if it has not started; its answer says
				c.sendPeer(t.remoteNode, &peerwire.CancelTask{Job: string(t.job.id), Task: t.id, Attempt: t.attempt, Force: force})
			}
			return
		}
		if w := t.worker; w != nil {
			if w.task != t { // sent ahead, perhaps not started
				c.cancelQueued(w, t, ev)
				return
			}
			if force || t.kind != wire.ExecTask {
				c.stopExecution(w, t, ev)
			} else {
				c.cancelRunning(w, t, ev)
			}
			return
		}
		if t.remoteNode != "" {
			c.cancelRemote(t, force)
		}
		// placed but waiting for a worker, or running on another node
		if i := slices.Index(t.job.queue, t); i >= 0 {
			t.job.queue = slices.Delete(t.job.queue, i, i+1)
		}
		c.failTask(t, ev, true)
	}
}

// cancelRunning asks a running task to return: its worker marks the call
// cancelled, and stops it if it has not returned within cancelGrace.
func (c *Core) cancelRunning(w *worker, t *task, ev abi.ErrorValue) {
	if t.cancelling {
		return
	}
	t.cancelling = true
	c.sendWorker(w, wire.TypeStop, wire.Stop{Task: t.id, Soft: true})
	c.setTimer(cancelGrace, func() {
		if w.task == t && t.state != taskDone && w.state != workerDead {
			c.stopExecution(w, t, ev)
		}
	})
}

// runtimeContext is the runtime context of the execution worker w runs
// (runtime_context): an abi.RuntimeContext in CBOR.
func (c *Core) runtimeContext(w *worker, taskID objects.ID) ([]byte, error) {
	t, err := c.current(w, taskID)
	if err != nil {
		return nil, err
	}
	id := t.id
	if !t.askerTask.IsNil() {
		id = t.askerTask // another node's task: its ID there, which the caller knows
	}
	rc := abi.RuntimeContext{Job: string(t.job.id), Task: id[:], Node: string(c.cfg.Node), Attempt: t.retried}
	held, spec := t, t.spec // what holds the resources: an actor's creation, for its methods
	if a := t.actor; a != nil {
		rc.Actor = a.id[:]
		if a.create != nil {
			held, spec = a.create, a.create.spec
		}
	}
	rc.Resources = resourceMap(held.demand, false)
	switch {
	case len(spec.Options.Group) > 0:
		rc.Group, rc.Bundle = spec.Options.Group, spec.Options.Bundle
	case len(held.ctxGroup) > 0:
		rc.Group = held.ctxGroup
		if held.ctxBundle >= 0 {
			b := held.ctxBundle
			rc.Bundle = &b
		}
	}
	return wire.Marshal(rc)
}

// resourceMap turns resources into the map guests see: "CPU", "GPU" and
// custom ones in units, "memory" in bytes. CPU is always there; other
// zero amounts are left out unless all is set.
func resourceMap(r scheduler.Resources, all bool) map[string]float64 {
	m := map[string]float64{"CPU": float64(r.CPU) / scheduler.Unit}
	if r.GPU != 0 || all {
		m["GPU"] = float64(r.GPU) / scheduler.Unit
	}
	if r.Memory != 0 || all {
		m["memory"] = float64(r.Memory)
	}
	for k, v := range r.Custom {
		m[k] = float64(v) / scheduler.Unit
	}
	return m
}

// clusterInfo lists the nodes the scheduler knows (cluster_info).
func (c *Core) clusterInfo() abi.ClusterInfo {
	var ci abi.ClusterInfo
	for _, id := range c.sched.Nodes() {
		total, _ := c.sched.Total(id)
		avail, _ := c.sched.Available(id)
		labels, _ := c.sched.Labels(id)
		ci.Nodes = append(ci.Nodes, abi.NodeInfo{ID: string(id), Labels: labels, Total: resourceMap(total, true), Available: resourceMap(avail, true)})
	}
	return ci
}
