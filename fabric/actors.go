package fabric

import (
	"cmp"
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
)

type actorState uint8

const (
	actorPending actorState = iota
	actorAlive
	actorDead
)

// actor is a stateful worker: its own process, calls run one at a time in
// submission order.
type actor struct {
	id           objects.ID
	job          *job
	class        string
	name         string
	state        actorState
	create       *task // the creation task; holds the actor's resources and handles
	worker       *workerProc
	queue        []*task
	restartsLeft int
	noRestart    bool
	cause        string

	// node is where calls go when the actor is not here: the node it lives
	// on (for its owner), or the job's root (for a stub).
	node string
	// stub marks a handle in a share to an actor the job's root knows:
	// calls go to the root, which owns the actor.
	stub bool
	// incarnation counts the owner's placements on other nodes; on the
	// node it lives on, the owner's count when it was placed there.
	incarnation uint64
	sendSeq     uint64 // calls sent to node for this incarnation
	forwarded   int    // calls sent to node and not yet answered
	// reportTo is the owner to tell when an actor placed here dies.
	reportTo string
	// recvNext and recvHeld order calls from other nodes by sender.
	recvNext map[string]uint64
	recvHeld map[string]map[uint64]*task
}

// createActor creates an actor and submits its creation; setup, when
// set, runs before the submission.
func (n *Node) createActor(j *job, parent *task, spec abi.TaskSpec, id objects.ID, setup func(*actor)) *actor {
	a := &actor{id: id, job: j, class: spec.Func, name: spec.Options.Name, restartsLeft: spec.Options.MaxRestarts}
	t := n.newTask(j, parent, spec, wire.ExecActorCreate, newID())
	t.actor = a
	t.name = a.class
	a.create = t
	n.actors[a.id] = a
	if a.name != "" {
		n.named[j.id+"/"+a.name] = a.id
	}
	if setup != nil {
		setup(a)
	}
	n.submit(t)
	return a
}

// actorWorkerReady runs the constructor on a fresh actor worker.
func (n *Node) actorWorkerReady(a *actor, w *workerProc) {
	if a.state == actorDead || a.worker != w {
		w.kill()
		return
	}
	n.run(w, a.create)
}

func (n *Node) actorCreated(a *actor, w *workerProc) {
	a.state = actorAlive
	n.actorNext(a)
}

func (n *Node) actorEnqueue(a *actor, t *task) {
	t.state = taskQueued
	if a.state == actorDead {
		n.failTask(t, n.actorDiedError(a, t), false)
		return
	}
	a.queue = append(a.queue, t)
	n.actorNext(a)
}

func (n *Node) actorDiedError(a *actor, t *task) abi.ErrorValue {
	return abi.ErrorValue{Kind: "actor_died", Message: fmt.Sprintf("actor %s is dead: %s", a.class, a.cause), Task: t.name}
}

// actorPipeline is how many calls an actor's worker may have been sent at
// once: it runs them in order, without waiting for the agent in between.
const actorPipeline = 16

// actorNext sends the head of the actor's queue once its arguments are
// ready, until the pipeline is full: to its worker, or to the node it
// lives on.
func (n *Node) actorNext(a *actor) {
	for a.state == actorAlive && len(a.queue) > 0 {
		if a.node != "" {
			if a.forwarded >= remoteActorPipeline {
				return
			}
		} else if a.worker == nil || !a.worker.ready || a.worker.dead || a.worker.stopping.Load() || a.worker.inFlight() >= actorPipeline {
			return
		}
		t := a.queue[0]
		var deps []objects.ID
		for _, id := range t.argRefs {
			if o := n.objs[id]; o != nil && !o.ready {
				deps = append(deps, id)
			}
		}
		if len(deps) > 0 {
			if !t.depWait {
				t.depWait = true
				n.waitFor(deps, len(deps), -1, func() { t.depWait = false; n.actorNext(a) }, nil)
			}
			return
		}
		a.queue = a.queue[1:]
		t.state = taskRunning
		if a.node != "" {
			a.forwarded++
			n.runRemote(t, a.node)
			continue
		}
		n.run(a.worker, t) // a bad argument fails the call at once; the loop goes on
	}
}

// actorLost restarts an actor whose worker died, or declares it dead.
func (n *Node) actorLost(a *actor, w *workerProc, cause string) {
	a.worker = nil
	n.restartActor(a, cause)
}

// remoteActorLost restarts an actor that lived on another node, or
// declares it dead, after it or its node died. Caller holds n.mu.
func (n *Node) remoteActorLost(a *actor, cause string) {
	a.node = ""
	n.restartActor(a, cause)
}

// remoteActorPlaced applies the answer to an actor's creation on another
// node. Caller holds n.mu.
func (n *Node) remoteActorPlaced(t *task, node string, incarnation uint64, res taskResult, err error) {
	a := t.actor
	if a.state != actorPending || a.create != t || a.incarnation != incarnation || t.job.done || n.closed {
		if err == nil && !res.IsError && !t.job.done && !n.closed {
			n.sendActorKill(t.job, a.id, node, incarnation, true) // made there after it was killed or moved on
		}
		return
	}
	if err == nil && res.IsError {
		err = fmt.Errorf("%s", decodeErrorValue(res.Value).Message)
	}
	if err != nil {
		n.remoteActorLost(a, fmt.Sprintf("it could not be created on node %s: %v", node, firstLine(err.Error())))
		return
	}
	a.node, a.state, a.sendSeq = node, actorAlive, 0
	n.actorNext(a)
}

// remoteCallDone applies the answer to an actor call sent to another
// node. Caller holds n.mu.
func (n *Node) remoteCallDone(t *task, node string, res taskResult, refs []objects.ID, err error) {
	a := t.actor
	a.forwarded--
	switch {
	case t.state != taskRunning || t.job.done || n.closed:
	case err != nil:
		n.failTask(t, abi.ErrorValue{Kind: "actor_died", Message: fmt.Sprintf("actor %s on node %s did not answer %s: %v", a.class, node, t.name, firstLine(err.Error())), Task: t.name}, false)
	default:
		n.applyResult(t, res, refs)
	}
	n.actorNext(a)
}

// handleActorDied restarts or ends an actor of this node whose node
// reports it dead.
func (n *Node) handleActorDied(from string, body []byte) error {
	var req actorDiedRequest
	if err := wire.Unmarshal(body, &req); err != nil {
		return fmt.Errorf("malformed actor-died request")
	}
	id, err := objects.IDFromBytes(req.Actor)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if a := n.actors[id]; a != nil && a.job.id == req.Job && !a.stub && a.node == from && a.incarnation == req.Incarnation {
		n.remoteActorLost(a, fmt.Sprintf("it died on node %s: %s", from, req.Cause))
		n.schedule()
	}
	return nil
}

// restartActor restarts a lost actor while restarts last, or declares it
// dead. Caller holds n.mu.
func (n *Node) restartActor(a *actor, cause string) {
	if a.state == actorDead {
		return
	}
	if a.noRestart || a.restartsLeft == 0 {
		n.actorDead(a, cause)
		return
	}
	if a.restartsLeft > 0 {
		a.restartsLeft--
	}
	fmt.Fprintf(n.cfg.Stderr, "fabric: actor %s lost its worker (%s); restarting it\n", a.class, firstLine(cause))
	a.state = actorPending
	n.sched.Finished(a.create.schedID())
	a.create.state = taskQueued
	n.submit(a.create)
}

// actorDead fails every queued call and frees the actor's resources.
func (n *Node) actorDead(a *actor, cause string) {
	if a.state == actorDead {
		return
	}
	a.state = actorDead
	a.cause = cause
	q := a.queue
	a.queue = nil
	for _, t := range q {
		n.failTask(t, n.actorDiedError(a, t), false)
	}
	if a.create.state != taskDone {
		n.sched.Finished(a.create.schedID())
	}
	a.create.state = taskDone
	n.releaseHandles(a.create)
	delete(n.tasks, a.create.id)
	if a.worker != nil {
		a.worker.kill()
	}
	if a.reportTo != "" {
		n.sendAsync(a.reportTo, msgActorDied, actorDiedRequest{Job: a.job.id, Actor: a.id[:], Incarnation: a.incarnation, Cause: cause})
	}
	if a.node != "" && !a.stub {
		n.sendActorKill(a.job, a.id, a.node, a.incarnation, true) // its copy there must not live on
	}
}

// sendActorKill asks node to stop incarnation inc of actor id there.
// Caller holds n.mu.
func (n *Node) sendActorKill(j *job, id objects.ID, node string, inc uint64, noRestart bool) {
	n.sendAsync(node, msgRunTask, runRequest{Kind: runActorKill, Job: j.id, Root: cmp.Or(j.root, string(n.nodeID)),
		Digest: j.digest(), Actor: id[:], Incarnation: inc, NoRestart: noRestart})
}

func (n *Node) handleActorKill(w *workerProc, m wire.ActorKill) error {
	id := m.Actor
	a := n.actors[id]
	if a == nil || a.job != w.job {
		return fmt.Errorf("kill: no actor %s in this job", id.Short())
	}
	if a.stub {
		return fmt.Errorf("kill: actor %s belongs to the job's root; killing it from a task on another node is not supported yet", id.Short())
	}
	if m.NoRestart {
		a.noRestart = true
	}
	if a.node != "" {
		if m.NoRestart {
			a.cause = "it was killed with no restart"
		}
		n.sendActorKill(a.job, a.id, a.node, a.incarnation, m.NoRestart)
		return nil
	}
	if a.worker != nil {
		if cur := a.worker.task; cur != nil {
			a.worker.killReason = &abi.ErrorValue{Kind: "actor_died", Message: fmt.Sprintf("actor %s was killed", a.class), Task: cur.name}
		}
		a.worker.kill()
	} else if m.NoRestart {
		n.actorDead(a, "killed")
	}
	if m.NoRestart {
		a.cause = "it was killed with no restart"
	}
	return nil
}
