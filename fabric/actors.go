package fabric

import (
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
}

func (n *Node) createActor(j *job, parent *task, spec abi.TaskSpec, id objects.ID) *actor {
	a := &actor{id: id, job: j, class: spec.Func, name: spec.Options.Name, restartsLeft: spec.Options.MaxRestarts}
	t := n.newTask(j, parent, spec, wire.ExecActorCreate, newID())
	t.actor = a
	t.name = a.class
	a.create = t
	n.actors[a.id] = a
	if a.name != "" {
		n.named[j.id+"/"+a.name] = a.id
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
// ready, until the pipeline is full.
func (n *Node) actorNext(a *actor) {
	for a.state == actorAlive && len(a.queue) > 0 && a.worker != nil && a.worker.ready && !a.worker.dead && !a.worker.stopping.Load() && a.worker.inFlight() < actorPipeline {
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
		n.run(a.worker, t) // a bad argument fails the call at once; the loop goes on
	}
}

// actorLost restarts an actor whose worker died, or declares it dead.
func (n *Node) actorLost(a *actor, w *workerProc, cause string) {
	a.worker = nil
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
}

func (n *Node) handleActorKill(w *workerProc, m wire.ActorKill) error {
	id, err := objects.IDFromBytes(m.Actor)
	if err != nil {
		return err
	}
	a := n.actors[id]
	if a == nil || a.job != w.job {
		return fmt.Errorf("kill: no actor %s in this job", id.Short())
	}
	if m.NoRestart {
		a.noRestart = true
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
