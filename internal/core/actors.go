package core

import (
	"fmt"
	"slices"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/wire"
)

type actorState uint8

const (
	actorPending actorState = iota
	actorAlive
	actorDead
)

// actorPipeline is how many calls an actor's worker may have been sent at
// once: it runs them in order, without waiting for the agent in between.
const actorPipeline = 16

// remoteActorPipeline bounds the calls an owner has sent to an actor on
// another node and not yet seen answered.
const remoteActorPipeline = 64

// actor is a stateful worker: its own process, calls run one at a time in
// submission order.
type actor struct {
	id           objects.ID
	job          *job
	class        string
	name         string
	state        actorState
	create       *task // the creation task; holds the actor's resources and handles
	worker       *worker
	queue        []*task
	restartsLeft int
	noRestart    bool
	cause        string
	// taskRetries is each method call's MaxTaskRetries; retrying holds
	// the calls that were running or sent ahead when its worker died and
	// will run again, in order, before the queue, once it restarts.
	taskRetries int
	retrying    []*task
	restarts    int // restarts so far
	// concurrent marks an actor whose instance serves calls side by side
	// (MaxConcurrency above 1, or concurrency groups): its worker takes
	// up to limits' sum of calls at once and answers them in any order.
	concurrent bool
	limits     map[string]int // by concurrency group; "" is the default group
	// namespace is where a named actor is found by other jobs ("": only
	// by its own), which may then call and kill it; detached marks one
	// that outlives the job that created it: it lives in a job of its
	// own (detachedJob).
	namespace string
	detached  bool

	// node is where calls go when the actor is not here: the node it lives
	// on (for its owner), or the job's root (for a stub).
	node NodeID
	// stub marks a handle in a share to an actor the job's root knows:
	// calls go to the root, which owns the actor.
	stub bool
	// incarnation counts the owner's placements on other nodes; on the
	// node it lives on, the owner's count when it was placed there.
	incarnation uint64
	forwarded   int // calls sent to node and not yet answered
	// reportTo is the owner to tell when an actor placed here dies.
	reportTo NodeID
	// registering is the worker request (a share's actor creation) that
	// waits for the root to know the actor.
	registering *pendingReply
	// calls counts the method calls it was given, for load reports.
	calls uint64
	// readyAnswer answers reportTo's creation once the constructor ran
	// (a RunTask with Ready), or with the cause once the actor died
	// before.
	readyAnswer *peerwire.TaskDone
}

// pendingReply is a worker request answered later.
type pendingReply struct {
	w   *worker
	seq uint64
}

// createActor creates an actor and submits its creation; setup, when set,
// runs before the submission.
func (c *Core) createActor(j *job, parent *task, spec abi.TaskSpec, id objects.ID, setup func(*actor)) *actor {
	a := &actor{id: id, job: j, class: spec.Func, name: spec.Options.Name, restartsLeft: spec.Options.MaxRestarts,
		taskRetries: spec.Options.MaxTaskRetries, concurrent: spec.Options.Concurrent(),
		namespace: spec.Options.Namespace, detached: spec.Options.Lifetime == abi.LifetimeDetached}
	if a.detached && a.namespace == "" {
		a.namespace = abi.DefaultNamespace
	}
	if a.concurrent {
		a.limits = map[string]int{"": max(1, spec.Options.MaxConcurrency)}
		for g, n := range spec.Options.ConcurrencyGroups {
			a.limits[g] = n
		}
	}
	t := c.newTask(j, parent, spec, wire.ExecActorCreate, c.newID())
	t.actor = a
	t.name = a.class
	a.create = t
	c.actors[a.id] = a
	if a.name != "" {
		c.named[nameKey(j, a.namespace, a.name)] = a.id
	}
	if setup != nil {
		setup(a)
	}
	c.submit(t)
	return a
}

// actorWorkerReady runs the constructor on a fresh actor worker.
func (c *Core) actorWorkerReady(a *actor, w *worker) {
	if a.state == actorDead || a.worker != w {
		c.killWorker(w)
		return
	}
	c.run(w, a.create)
}

func (c *Core) actorCreated(a *actor) {
	a.state = actorAlive
	if d := a.readyAnswer; d != nil {
		a.readyAnswer = nil
		c.sendPeer(a.reportTo, d)
	}
	c.actorNext(a)
}

func (c *Core) actorEnqueue(a *actor, t *task) {
	t.state = taskQueued
	a.calls++
	if a.state == actorDead {
		c.failTask(t, actorDiedError(a, t), false)
		return
	}
	a.queue = append(a.queue, t)
	c.actorNext(a)
}

func actorDiedError(a *actor, t *task) abi.ErrorValue {
	return abi.ErrorValue{Kind: abi.KindActorDied, Message: fmt.Sprintf("actor %s is dead: %s", a.class, a.cause), Task: t.name}
}

// pipeline is how many calls the actor's worker may have been sent at
// once: base, or for a concurrent actor as many as its groups may run.
func (a *actor) pipeline(base int) int {
	n := 0
	for _, l := range a.limits {
		n += l
	}
	return max(base, n)
}

// actorNext sends the head of the actor's queue once its arguments are
// ready, until the pipeline is full: to its worker, or to the node it
// lives on.
func (c *Core) actorNext(a *actor) {
	for a.state == actorAlive && len(a.queue) > 0 {
		if a.node != "" {
			if a.forwarded >= a.pipeline(remoteActorPipeline) {
				return
			}
		} else if a.worker == nil || !a.worker.usable() || a.worker.inFlight() >= a.pipeline(actorPipeline) {
			return
		}
		i := 0
		if a.concurrent && a.node == "" {
			if i = c.nextConcurrent(a); i < 0 {
				return // every group with calls waiting is full
			}
		}
		t := a.queue[i]
		var deps []objects.ID
		for _, id := range t.argRefs {
			if o := c.objs[id]; o != nil && !o.ready {
				deps = append(deps, id)
			}
		}
		if len(deps) > 0 {
			if !t.depWait {
				t.depWait = true
				c.waitFor(deps, len(deps), -1, func() { t.depWait = false; c.actorNext(a) }, nil)
			}
			return
		}
		a.queue = slices.Delete(a.queue, i, i+1)
		t.state = taskRunning
		t.placed = c.now
		if a.node != "" {
			a.forwarded++
			c.runRemote(t, a.node)
			continue
		}
		c.run(a.worker, t) // a bad argument fails the call at once; the loop goes on
	}
}

// nextConcurrent returns the index in a's queue of the first call whose
// concurrency group runs fewer calls than its limit on a's worker, or -1:
// a full group's calls wait without holding up the other groups'.
func (c *Core) nextConcurrent(a *actor) int {
	running := map[string]int{}
	count := func(t *task) {
		if t != nil && t.kind == wire.ExecActorMethod {
			running[t.spec.Options.ConcurrencyGroup]++
		}
	}
	count(a.worker.task)
	for _, t := range a.worker.queued {
		count(t)
	}
	for i, t := range a.queue {
		g := t.spec.Options.ConcurrencyGroup
		if limit, ok := a.limits[g]; !ok || running[g] < limit {
			return i // a group it lacks fails the call when it is run
		}
	}
	return -1
}

// actorLost restarts an actor whose worker died, or declares it dead.
func (c *Core) actorLost(a *actor, cause string) {
	a.worker = nil
	a.queue = append(a.retrying, a.queue...) // dead, they fail with the rest
	a.retrying = nil
	c.restartActor(a, cause)
}

// retryCall keeps t, a method call lost with its actor's worker, to run
// again after the restart, if it has a retry left (Ray's
// max_task_retries), and reports whether it did.
func (c *Core) retryCall(t *task) bool {
	a := t.actor
	if a == nil || t.retriesLeft == 0 || a.noRestart || a.node != "" || a.reportTo != "" {
		return false
	}
	t.retriesLeft--
	t.retried++
	c.counts.TaskRetries++
	c.stopTaskTimer(t)
	if w := t.worker; w != nil && w.task == t {
		w.task = nil
		c.updateParked(w)
	}
	t.worker, t.state = nil, taskQueued
	a.retrying = append(a.retrying, t)
	return true
}

// remoteActorLost restarts an actor that lived on another node, or
// declares it dead, after it or its node died.
func (c *Core) remoteActorLost(a *actor, cause string) {
	a.node = ""
	a.queue = append(a.retrying, a.queue...) // dead, they fail with the rest
	a.retrying = nil
	c.restartActor(a, cause)
}

// remoteActorPlaced applies the answer to an actor's creation on another
// node, or lost: why none will come.
func (c *Core) remoteActorPlaced(t *task, node NodeID, m *peerwire.TaskDone, lost string) {
	a := t.actor
	if a.state != actorPending || a.create != t || t.job.done {
		return
	}
	switch {
	case lost != "":
		c.remoteActorLost(a, fmt.Sprintf("it could not be created on node %s: %s", node, lost))
	case m.Refused != "":
		a.node = ""
		c.actorDead(a, fmt.Sprintf("node %s refused to create it: %s", node, m.Refused)) // final, as for tasks
	case m.Error != nil:
		c.remoteActorLost(a, fmt.Sprintf("it could not be created on node %s: %s", node, decodeErrorValue(m.Error).Message))
	default:
		a.node, a.state = node, actorAlive
		c.actorNext(a)
	}
}

// remoteCallDone applies the answer to an actor call sent to another
// node; lost says why none will come.
func (c *Core) remoteCallDone(t *task, node NodeID, m *peerwire.TaskDone, lost string) {
	a := t.actor
	a.forwarded--
	switch {
	case t.state != taskRunning || t.job.done:
		if m != nil {
			c.dropAnswer(t.job, node, m)
		}
	case (lost != "" || m.Refused == "" && m.Error != nil && decodeErrorValue(m.Error).Kind == abi.KindActorDied) && c.retryRemoteCall(t):
		if m != nil {
			c.dropAnswer(t.job, node, m)
		}
	case lost != "" || m.Refused != "":
		why := lost
		if why == "" {
			why = m.Refused
		}
		c.failTask(t, abi.ErrorValue{Kind: abi.KindActorDied, Message: fmt.Sprintf("actor %s on node %s did not answer %s: %s", a.class, node, t.name, firstLine(why)), Task: t.name}, false)
	default:
		c.applyResult(t, node, m)
	}
	c.actorNext(a)
}

// retryRemoteCall keeps t, a call to an actor on another node that died
// with the actor, to run again once the actor has restarted (Ray's
// max_task_retries), and reports whether it did. Until the owner hears
// of the death the call waits in retrying; once the actor restarts it
// goes in front of the queue, behind the calls retried before it.
func (c *Core) retryRemoteCall(t *task) bool {
	a := t.actor
	if a == nil || a.stub || t.retriesLeft == 0 || a.noRestart || a.state == actorDead || a.state == actorAlive && a.restartsLeft == 0 {
		return false
	}
	if t.retriesLeft > 0 {
		t.retriesLeft--
	}
	t.retried++
	c.counts.TaskRetries++
	c.stopTaskTimer(t)
	t.state = taskQueued
	if a.state == actorAlive {
		a.retrying = append(a.retrying, t)
		return true
	}
	i := 0
	for i < len(a.queue) && a.queue[i].retried > 0 {
		i++
	}
	a.queue = slices.Insert(a.queue, i, t)
	return true
}

// actorDiedThere restarts or ends an actor of this node whose node
// reports it dead.
func (c *Core) actorDiedThere(from NodeID, m *peerwire.ActorDied) {
	a := c.actors[m.Actor]
	if a != nil && string(a.job.id) == m.Job && !a.stub && a.node == from && a.incarnation == m.Incarnation {
		c.remoteActorLost(a, fmt.Sprintf("it died on node %s: %s", from, m.Cause))
		c.schedule()
	}
}

// restartActor restarts a lost actor while restarts last, or declares it
// dead.
func (c *Core) restartActor(a *actor, cause string) {
	if a.state == actorDead {
		return
	}
	if a.noRestart || a.restartsLeft == 0 {
		c.actorDead(a, cause)
		return
	}
	if a.restartsLeft > 0 {
		a.restartsLeft--
	}
	a.restarts++
	c.counts.ActorRestarts++
	c.jobLogf(a.job, "fabric: actor %s lost its worker (%s); restarting it", a.class, firstLine(cause))
	a.state = actorPending
	c.sched.Finished(a.create.schedID())
	a.create.state = taskQueued
	c.submit(a.create)
}

// actorDead fails every queued call and frees the actor's resources.
func (c *Core) actorDead(a *actor, cause string) {
	if a.state == actorDead {
		return
	}
	a.state = actorDead
	if !a.noRestart || a.cause == "" { // a kill's reason stays
		a.cause = cause
	}
	c.freeName(a)
	if a.shared() {
		c.rememberDeparted(a)
	}
	defer c.maybeEndDetached(a.job)
	q := a.queue
	a.queue = nil
	for _, t := range q {
		c.failTask(t, actorDiedError(a, t), false)
	}
	if a.create.state != taskDone {
		c.sched.Finished(a.create.schedID())
	}
	a.create.state = taskDone
	c.releaseHandles(a.create)
	c.forgetTask(a.create)
	if a.worker != nil {
		c.killWorker(a.worker)
	}
	if d := a.readyAnswer; d != nil && a.reportTo != "" {
		a.readyAnswer = nil
		d.Error, _ = wire.Marshal(abi.ErrorValue{Kind: abi.KindActorDied, Message: fmt.Sprintf("actor %s died before it was created: %s", a.class, a.cause), Task: a.class})
		c.sendPeer(a.reportTo, d)
	}
	if a.reportTo != "" {
		c.sendPeer(a.reportTo, &peerwire.ActorDied{Job: string(a.job.id), Actor: a.id, Incarnation: a.incarnation, Cause: cause})
	}
	if a.node != "" && !a.stub {
		c.sendActorKill(a.job, a.id, a.node, a.incarnation, true) // its copy there must not live on
	}
	if p := a.registering; p != nil {
		a.registering = nil
		c.reply(p.w, p.seq, nil, wire.Reply{IDs: []objects.ID{a.id}})
	}
}

// sendActorKill asks node to stop incarnation inc of actor id there.
func (c *Core) sendActorKill(j *job, id objects.ID, node NodeID, inc uint64, noRestart bool) {
	c.sendPeer(node, &peerwire.KillActor{Job: string(j.id), Actor: id, Incarnation: inc, NoRestart: noRestart})
}

// killActorHere stops an actor of this node on its owner's word.
func (c *Core) killActorHere(from NodeID, m *peerwire.KillActor) {
	j := c.jobs[JobID(m.Job)]
	a := c.actors[m.Actor]
	if j == nil || a == nil || a.job != j || a.stub || a.incarnation != m.Incarnation || a.reportTo != from {
		return // only the owner that placed it here kills it
	}
	if a.worker == nil {
		c.actorDead(a, "it was killed before it started")
		return
	}
	if cur := a.worker.task; cur != nil {
		a.worker.killReason = &abi.ErrorValue{Kind: abi.KindActorDied, Message: fmt.Sprintf("actor %s was killed", a.class), Task: cur.name}
	}
	c.killWorker(a.worker)
}

// actorKill serves a worker's ActorKill.
func (c *Core) actorKill(w *worker, m wire.ActorKill) error {
	a := c.actors[m.Actor]
	if a == nil || !a.sharedWith(w.job) {
		return fmt.Errorf("kill: no actor %s in this job", m.Actor.Short())
	}
	if a.stub && a.shared() {
		return fmt.Errorf("kill: actor %s lives on node %s; killing an actor of another node is not supported yet (kill it from a job on node %s)", m.Actor.Short(), a.node, a.node)
	}
	if a.stub {
		return fmt.Errorf("kill: actor %s belongs to the job's root; killing it from a task on another node is not supported yet", m.Actor.Short())
	}
	if m.NoRestart {
		a.noRestart = true
		a.cause = "it was killed with no restart"
		c.freeName(a) // at once, though its worker stops later
	}
	if a.node != "" {
		c.sendActorKill(a.job, a.id, a.node, a.incarnation, m.NoRestart)
		return nil
	}
	if a.worker != nil {
		if cur := a.worker.task; cur != nil {
			a.worker.killReason = &abi.ErrorValue{Kind: abi.KindActorDied, Message: fmt.Sprintf("actor %s was killed", a.class), Task: cur.name}
		}
		c.killWorker(a.worker)
	} else if m.NoRestart {
		c.actorDead(a, "killed")
	}
	if m.NoRestart {
		a.cause = "it was killed with no restart"
	}
	return nil
}

// freeName lets another actor of a's job take a's name, if a holds it:
// a dead actor's name is free again at once, as in Ray, and so is that of
// one killed with no restart.
func (c *Core) freeName(a *actor) {
	if a.name == "" {
		return
	}
	key := nameKey(a.job, a.namespace, a.name)
	if c.named[key] == a.id {
		delete(c.named, key)
		if c.cfg.Registry && a.reportTo == "" && !a.stub { // the owner's: the registry has it
			c.emit(UnregisterName{Actor: a.id, Tenant: a.job.tenant, Namespace: a.namespace, Name: a.name, Job: a.job.id})
			if !a.detached {
				a.job.names--
			}
		}
	}
}

// nameKey is the key of a named actor in Core.named: in namespace ns of
// job j's tenant, or in job j's own when ns is "".
func nameKey(j *job, ns, name string) string {
	if ns == "" {
		return string(j.id) + "/" + name
	}
	return "\x00" + j.tenant + "\x00" + ns + "/" + name
}

// maxDeparted bounds the departed actors a node remembers.
const maxDeparted = 4096

// rememberDeparted notes that a (of a namespace, which other jobs may
// still call) is dead: once its job has ended, calls to it fail as
// actor_died rather than as calls to no actor.
func (c *Core) rememberDeparted(a *actor) {
	if _, ok := c.departed[a.id]; ok {
		return
	}
	c.departed[a.id] = actorDiedError(a, &task{}).Message
	c.departedIDs = append(c.departedIDs, a.id)
	if len(c.departedIDs) > maxDeparted {
		delete(c.departed, c.departedIDs[0])
		c.departedIDs = c.departedIDs[1:]
	}
}

// maxDetachedActors bounds the detached actors living on a node: they
// outlive the jobs that made them, so no job's end would free them.
const maxDetachedActors = 256

// detachedCount counts the detached actors that are not dead.
func (c *Core) detachedCount() int {
	n := 0
	for _, a := range c.actors {
		if a.detached && a.state != actorDead && !a.noRestart { // one killed is going
			n++
		}
	}
	return n
}

// shared reports whether jobs other than a's may call and kill it: it has
// a namespace.
func (a *actor) shared() bool { return a.namespace != "" }

// sharedWith reports whether job j may call and kill a: its own, or one
// in a namespace of j's tenant (namespaces are per tenant).
func (a *actor) sharedWith(j *job) bool { return a.job == j || a.shared() && a.job.tenant == j.tenant }

// detachedJob returns the job that holds the detached actors made from
// module digest in namespace ns: it has no driver, and ends when its last
// actor is dead.
func (c *Core) detachedJob(by *job, ns string) *job {
	tenant, digest := by.tenant, by.digest
	key := tenant + "\x00" + ns + "\x00" + digest
	if j := c.detached[key]; j != nil && !j.done {
		if j.proof.Grant == nil && by.grant != nil {
			j.proof = c.grantProof(by)
		}
		return j
	}
	c.nextDetached++
	j := c.newJob(JobID(fmt.Sprintf("detached-%d-%s", c.nextDetached, ns)), digest, "")
	j.detachedKey, j.tenant = key, tenant
	j.proof = c.grantProof(by) // it has no grant of its own: its maker's shows the registry whose it is
	c.detached[key] = j
	return j
}

// maybeEndDetached ends a detached job once none of its actors lives
// and none of its groups is left.
func (c *Core) maybeEndDetached(j *job) {
	if j.detachedKey == "" || j.done {
		return
	}
	for _, b := range c.actors {
		if b.job == j && b.state != actorDead {
			return
		}
	}
	for _, g := range c.groups {
		if g.job == j {
			return
		}
	}
	delete(c.detached, j.detachedKey)
	c.endJob(j)
}

// actorList lists the named actors job j may look up: its own, and those
// of every namespace.
func (c *Core) actorList(j *job) []abi.ActorInfo {
	var out []abi.ActorInfo
	for _, id := range sortedIDs(c.actors) {
		a := c.actors[id]
		if a.name == "" || a.state == actorDead || a.stub || !a.sharedWith(j) || c.named[nameKey(a.job, a.namespace, a.name)] != a.id {
			continue
		}
		state := "alive"
		switch {
		case a.state == actorPending && a.create.retried == 0 && !a.create.timed:
			state = "pending"
		case a.state == actorPending:
			state = "restarting"
		}
		out = append(out, abi.ActorInfo{Name: a.name, Namespace: a.namespace, Class: a.class, State: state, Detached: a.detached, ID: a.id[:]})
	}
	return out
}

func methodName(class, fn string) string {
	return class + "." + fn[len(class)+min(len(fn)-len(class), 1):]
}
