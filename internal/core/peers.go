package core

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Jobs across nodes. A job runs its driver on one node, its root. When a
// node working for the job sends a task or an actor to another node, that
// node opens a share of the job: the same job ID and module, its own
// tasks, objects and workers, and no driver. An object a share refers to
// but does not hold is a placeholder naming the node that sent its ID; a
// fetch asks that node for the value. A node that sends an object's ID to
// another node holds the object for it (an export) until that node
// releases it. When a job ends, each node tells the nodes it sent work to,
// which end their shares; a share whose root is gone ends too.
//
// Every message is one-way (internal/peerwire): a task sent to another
// node is answered by a TaskDone when it ends, a fetch by an ObjectValue
// when the object is ready. The peer link delivers messages to each node
// in order, which keeps an actor's calls in the order they were made.

// pendingRun is a RunTask waiting for its job's module.
type pendingRun struct {
	from NodeID
	msg  *peerwire.RunTask
}

// localityMin is the argument bytes on one node that make a task prefer it.
const localityMin = 1 << 20

// remotePipelineDepth is how many short tasks may follow one on another
// node, in its reservation, sent without waiting for it to end.
const remotePipelineDepth = 64

func (e PeerUp) apply(c *Core) {
	if e.Node == c.cfg.Node {
		return
	}
	delete(c.gone, e.Node)
	c.peers[e.Node] = true
	c.sched.AddNode(e.Node, e.Resources, e.Labels)
	c.schedule()
}

func (e PeerDown) apply(c *Core) {
	if e.Node == c.cfg.Node {
		return
	}
	if _, known := c.peers[e.Node]; !known && !e.Gone {
		return
	}
	c.peerDown(e.Node, e.Gone)
	c.schedule()
}

// peerDown takes a node out of the scheduler and ends what runs there:
// its tasks run again elsewhere and actors that lived there restart
// elsewhere. When the node is gone, the holds kept for it are given back,
// fetches from it fail, and shares of jobs whose root it was end.
func (c *Core) peerDown(node NodeID, gone bool) {
	c.sched.RemoveNode(node)
	if gone {
		delete(c.peers, node)
		c.gone[node] = true
	} else {
		c.peers[node] = false
	}
	why := "was lost"
	if !gone {
		why = "could not be reached"
	}
	// Actors first, so that the calls that fail below do not send the
	// next ones to the lost node.
	for _, id := range sortedIDs(c.actors) {
		a := c.actors[id]
		if !a.stub && a.node == node && a.state != actorDead {
			if !gone {
				c.sendActorKill(a.job, a.id, node, a.incarnation, true) // in case it lives on there
			}
			c.remoteActorLost(a, "its node "+string(node)+" "+why)
		}
	}
	running := c.remote[node]
	delete(c.remote, node)
	ts := make([]*task, 0, len(running))
	for t := range running {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b *task) int { return compareIDs(a.id, b.id) })
	for _, t := range ts {
		if t.remoteNode == node {
			c.remoteLost(t, node, fmt.Sprintf("node %s %s", node, why))
		}
	}
	if !gone {
		return
	}
	c.forgetLocated(node)
	jobs := make([]JobID, 0, len(c.jobs))
	for id := range c.jobs {
		jobs = append(jobs, id)
	}
	slices.Sort(jobs)
	for _, id := range jobs {
		j := c.jobs[id]
		if j == nil {
			continue
		}
		keys := slices.SortedFunc(maps.Keys(j.exports), func(a, b exportKey) int { return compareIDs(a.id, b.id) })
		for _, k := range keys {
			if k.node == node {
				c.unexport(j, k.id, node, j.exports[k])
			}
		}
		if j.root == node && !j.done {
			c.endJob(j)
		}
	}
	for _, id := range sortedIDs(c.objs) {
		o := c.objs[id]
		if o == nil || o.remote != node || o.ready {
			continue
		}
		o.borrows = 0 // its holds went with it
		if o.fetching {
			o.fetching = false
			c.fetchFailed(id, o)
		}
	}
}

// fetchFailed fails a placeholder whose holder is gone, unless its task
// can make it again.
func (c *Core) fetchFailed(id objects.ID, o *object) {
	if c.reconstruct(id, o) {
		return
	}
	for _, r := range o.pulling {
		c.dropImport(o.job, r, o.remote)
	}
	o.pulling = nil
	from := o.remote
	o.remote = ""
	c.setError(id, abi.ErrorValue{Kind: abi.KindOwnerDied, Message: fmt.Sprintf("object %s: node %s, which holds it for this node, is gone", id.Short(), from)})
}

// movable reports whether a task or an actor may run on another node:
// one whose arguments did not fail.
func (c *Core) movable(t *task) bool {
	if !c.cfg.Clustered {
		return false
	}
	switch t.kind {
	case wire.ExecTask, wire.ExecActorCreate:
	default:
		return false
	}
	if a := t.actor; a != nil && a.shared() {
		return false // other jobs call it here (see RATIONALE.md)
	}
	for _, a := range t.spec.Args {
		if a.Ref == nil {
			continue
		}
		if o := c.objs[objects.ID(a.Ref)]; o == nil || (o.ready && o.isError) {
			return false // it fails here, at once
		}
	}
	return true
}

// locality returns the node holding most of a task's stored argument
// bytes (this node first on a tie), or "" when no node holds localityMin.
func (c *Core) locality(t *task) NodeID {
	var bytes map[NodeID]int64
	for _, id := range t.argRefs {
		o := c.objs[id]
		if o == nil || !o.ready || !o.stored {
			continue
		}
		if bytes == nil {
			bytes = map[NodeID]int64{}
		}
		bytes[c.cfg.Node] += o.size
		for n := range o.copies {
			bytes[n] += o.size
		}
	}
	best, most := c.cfg.Node, bytes[c.cfg.Node]
	for _, node := range slices.Sorted(maps.Keys(bytes)) {
		if bytes[node] > most {
			best, most = node, bytes[node]
		}
	}
	if most < localityMin {
		return ""
	}
	return best
}

// runRemote sends a task, an actor's creation or an actor call to another
// node; the answer is a TaskDone.
func (c *Core) runRemote(t *task, node NodeID) {
	j := t.job
	t.ranOn = node
	msg := &peerwire.RunTask{Job: string(j.id), Root: j.rootNode(c), Digest: j.digest, Task: t.id, Tenant: j.tenant, Grant: j.grant}
	spec := t.spec
	// A task in a placement group runs in the reservation the owner's
	// scheduler made for the bundle on that node: there it is a plain task.
	changed := spec.Options.Group != nil || spec.Options.Bundle != nil
	msg.Group, msg.Bundle = spec.Options.Group, -1
	if spec.Options.Bundle != nil {
		msg.Bundle = int64(*spec.Options.Bundle)
	}
	spec.Options.Group, spec.Options.Bundle = nil, nil
	spec.Args = make([]abi.Arg, len(t.spec.Args))
	for i, a := range t.spec.Args {
		if a.Ref == nil {
			spec.Args[i] = a
			continue
		}
		id := objects.ID(a.Ref)
		if o := c.objs[id]; o != nil && o.ready && !o.stored && !o.isError && len(o.nested) == 0 {
			spec.Args[i] = abi.Arg{Value: o.inline} // small: sent as a value
			changed = true
			continue
		}
		spec.Args[i] = a
		c.export(j, id, node)
		msg.Refs = append(msg.Refs, id)
	}
	for _, r := range t.spec.Refs {
		id := objects.ID(r)
		c.export(j, id, node)
		msg.Refs = append(msg.Refs, id)
	}
	t.attempt++
	switch t.kind {
	case wire.ExecActorCreate:
		a := t.actor
		a.incarnation++
		t.attempt = uint32(a.incarnation)
		msg.What, msg.Actor, msg.Incarnation = peerwire.RunActorCreate, a.id, a.incarnation
	case wire.ExecActorMethod:
		a := t.actor
		msg.What, msg.Incarnation = peerwire.RunActorCall, a.incarnation
		if a.stub {
			msg.Incarnation = 0
		}
	}
	msg.Attempt, msg.Retried = t.attempt, uint32(t.retried)
	if t.rawSpec != nil && t.kind == wire.ExecTask && !changed {
		msg.Spec = t.rawSpec // as the guest wrote it: no need to encode it again
	} else {
		msg.Spec = spec.AppendCBOR(nil)
	}
	if j.sentTo == nil {
		j.sentTo = map[NodeID]struct{}{}
	}
	j.sentTo[node] = struct{}{}
	t.remoteNode = node
	if c.remote[node] == nil {
		c.remote[node] = map[*task]struct{}{}
	}
	c.remote[node][t] = struct{}{}
	t.started = c.now
	c.sendPeer(node, msg)
	c.leaseRemote(t, node)
}

// rootNode is the node running the job's driver.
func (j *job) rootNode(c *Core) string {
	if j.root != "" {
		return string(j.root)
	}
	return string(c.cfg.Node)
}

// forgetRemote takes t off the list of executions running on its node.
func (c *Core) forgetRemote(t *task) {
	if m := c.remote[t.remoteNode]; m != nil {
		delete(m, t)
	}
	t.remoteNode = ""
}

// cancelRemote stops t on the node it runs on.
func (c *Core) cancelRemote(t *task, force bool) {
	node := t.remoteNode
	c.passLease(t, node) // tasks sent behind it keep its reservation
	c.sendPeer(node, &peerwire.CancelTask{Job: string(t.job.id), Task: t.id, Attempt: t.attempt, Force: force})
	c.forgetRemote(t)
}

// taskDone applies the answer of a node that ran an execution of ours.
func (c *Core) taskDone(from NodeID, m *peerwire.TaskDone) {
	j := c.jobs[JobID(m.Job)]
	t := c.tasks[m.Task]
	if j == nil || j.done || t == nil || t.job != j || t.remoteNode != from || t.attempt != m.Attempt {
		if j != nil && !j.done {
			c.dropAnswer(j, from, m)
			if t != nil && t.kind == wire.ExecActorCreate && m.Refused == "" && m.Error == nil {
				c.sendActorKill(j, t.actor.id, from, uint64(m.Attempt), true) // made there after it was killed or moved on
			}
		}
		return
	}
	c.forgetRemote(t)
	c.remoteEnded(t, from, m, "")
	c.schedule()
}

// remoteLost ends an execution whose node is lost or unreachable.
func (c *Core) remoteLost(t *task, node NodeID, why string) {
	t.remoteNode = ""
	c.remoteEnded(t, node, nil, why)
}

// remoteEnded applies the end of an execution that ran on node: its
// answer m, or lost (why none will come).
func (c *Core) remoteEnded(t *task, node NodeID, m *peerwire.TaskDone, lost string) {
	j := t.job
	if t.kind == wire.ExecTask {
		c.passLease(t, node)
		if m != nil && m.Ran > 0 {
			j.ranFor(t, Time(m.Ran))
		}
	}
	switch {
	case t.kind == wire.ExecActorCreate:
		c.remoteActorPlaced(t, node, orEmpty(m), lost)
	case t.kind == wire.ExecActorMethod:
		c.remoteCallDone(t, node, m, lost)
	case t.state != taskRunning:
		if m != nil {
			c.dropAnswer(j, node, m)
		}
	case m != nil && m.Busy != nil:
		// The node lacked the room: place it again, without that room.
		c.sched.Finished(t.schedID()) // first: the room it took is not the others'
		c.observeBusy(node, m.Busy)
		c.submit(t)
	case lost != "" && t.retriesLeft != 0:
		c.retry(t, fmt.Sprintf("could not run on node %s (%s)", node, firstLine(lost)))
	case lost != "":
		c.failTask(t, abi.ErrorValue{Kind: abi.KindWorkerDied, Message: fmt.Sprintf("task %s could not run on node %s and no retries are left: %s", t.name, node, lost), Task: t.name}, true)
	case m.Refused != "":
		// A refusal is final: what made the node refuse (the job ended
		// there, its root is gone, a spec it cannot run) would make it
		// refuse again, and retrying would go round for ever.
		c.failTask(t, abi.ErrorValue{Kind: abi.KindTask, Message: fmt.Sprintf("node %s refused to run task %s: %s", node, t.name, m.Refused), Task: t.name}, true)
	default:
		c.applyResult(t, node, m)
	}
}

// busyMemory is how long a node's busy answer shapes where tasks go:
// after it, the node's room is what this node's own placements leave.
const busyMemory = 1e9 // 1 s

// observeBusy records what a node that refused a task for lack of room
// has free, until busyMemory passes without another such answer.
func (c *Core) observeBusy(node NodeID, b []byte) {
	var free scheduler.Resources
	if wire.Unmarshal(b, &free) != nil {
		return // garbage from a peer: nothing learned
	}
	c.sched.ObserveFree(node, free)
	_, pending := c.busyUntil[node]
	c.busyUntil[node] = c.now + busyMemory
	if !pending {
		c.clearBusyLater(node, busyMemory)
	}
}

// clearBusyLater forgets a node's busy answers once busyMemory passed
// since the last one: one timer per node, however many answers come.
func (c *Core) clearBusyLater(node NodeID, after Time) {
	c.setTimer(after, func() {
		until, ok := c.busyUntil[node]
		switch {
		case !ok:
		case c.now < until:
			c.clearBusyLater(node, until-c.now)
		default:
			delete(c.busyUntil, node)
			c.sched.ClearObserved(node)
			c.schedule()
		}
	})
}

func orEmpty(m *peerwire.TaskDone) *peerwire.TaskDone {
	if m == nil {
		return &peerwire.TaskDone{}
	}
	return m
}

// dropAnswer gives back the holds an answer nobody will use took.
func (c *Core) dropAnswer(j *job, from NodeID, m *peerwire.TaskDone) {
	if m.Refused != "" || m.Error != nil {
		return
	}
	for _, r := range m.Results {
		if r.Held {
			c.release(j.id, from, r.ID, 1)
		}
	}
	for _, r := range m.Refs {
		c.release(j.id, from, r, 1)
	}
}

// applyResult stores a remote execution's values and finishes it, or fails
// it with its error value. A result held on the node that made it becomes
// a placeholder served by that node, and the task keeps its arguments (its
// lineage) so that it can run again if that node is lost.
func (c *Core) applyResult(t *task, node NodeID, m *peerwire.TaskDone) {
	j := t.job
	if m.Error != nil {
		c.failTask(t, decodeErrorValue(m.Error), true)
		return
	}
	if len(m.Results) != len(t.returns) {
		c.dropAnswer(j, node, m)
		c.failTask(t, abi.ErrorValue{Kind: abi.KindTask, Message: fmt.Sprintf("task %s declares %d return values but its node answered with %d", t.name, len(t.returns), len(m.Results)), Task: t.name}, true)
		return
	}
	c.importAll(j, m.Refs, node)
	held := false
	for i, id := range t.returns {
		r := m.Results[i]
		o := c.objs[id]
		if !r.Held {
			c.storeValue(id, r.Value, m.Refs)
			continue
		}
		if o == nil || o.ready {
			c.release(j.id, node, r.ID, 1) // nobody wants it
			continue
		}
		o.remote, o.remoteID, o.borrows, o.size = node, r.ID, 1, r.Size
		held = true
	}
	if held {
		t.lineage = true
	}
	c.finishTask(t, true)
	for _, id := range t.returns {
		o := c.objs[id]
		if o == nil || o.ready || o.remote == "" {
			continue
		}
		if o.droppable() {
			c.dropObject(id) // nobody holds the result: give it back, and the lineage
			continue
		}
		if len(o.waiters) > 0 || c.neededByQueued(id) {
			c.fetch(id, o)
		}
	}
}

// neededByQueued reports whether a queued task takes the object as an
// argument.
func (c *Core) neededByQueued(id objects.ID) bool {
	for _, q := range c.tasks {
		if q.state == taskQueued && slices.Contains(q.argRefs, id) {
			return true
		}
	}
	return false
}

// reconstruct runs again the task that made a result lost with the node
// that held it, when the task's retries allow.
func (c *Core) reconstruct(id objects.ID, o *object) bool {
	t := o.producer
	if t == nil || !t.lineage || t.retriesLeft == 0 || t.job.done || c.tasks[t.id] != nil {
		return false
	}
	if _, alive := c.peers[o.remote]; alive {
		return false // it is there: the answer said it is gone for good
	}
	t.retriesLeft--
	t.retried++
	c.counts.TaskRetries++
	t.lineage = false
	node := o.remote
	for _, rid := range t.returns {
		if r := c.objs[rid]; r != nil && !r.ready && r.remote != "" {
			r.remote, r.borrows, r.fetching = "", 0, false
		}
	}
	c.tasks[t.id] = t
	t.answered = false
	if t.parent != nil && t.parent.state != taskDone {
		if t.parent.children == nil {
			t.parent.children = map[*task]struct{}{}
		}
		t.parent.children[t] = struct{}{}
	}
	c.logf("fabric: object %s was lost with node %s; running task %s again to make it", id.Short(), node, t.name)
	c.submit(t)
	return true
}

// leaseRemote sends queued short tasks of t's kind to t's node to run in
// its reservation, as topUp does for a local worker: their node queues
// them, so that a round trip per task does not bound the rate.
func (c *Core) leaseRemote(t *task, node NodeID) {
	if t.kind != wire.ExecTask || t.leader != nil || t.state != taskRunning || t.job.done || !t.job.short(t.spec.Func) {
		return
	}
	ids := c.sched.Lease(t.schedID(), remotePipelineDepth-len(t.followers), func(id scheduler.TaskID) bool {
		next := c.tasks[objects.ID(id)]
		return next != nil && next.state == taskQueued && next.kind == wire.ExecTask && next.job == t.job &&
			t.job.short(next.spec.Func) && !next.here && c.movable(next)
	})
	for _, id := range ids {
		next := c.tasks[objects.ID(id)]
		next.state = taskRunning
		next.placed = c.now
		next.leader = t
		t.followers = append(t.followers, next)
		c.runRemote(next, node)
	}
}

// passLease runs when remote task t ends: a follower leaves its leader;
// a leader hands its reservation to its first follower still running,
// which takes the others and tops up.
func (c *Core) passLease(t *task, node NodeID) {
	if l := t.leader; l != nil {
		t.leader = nil
		if i := slices.Index(l.followers, t); i >= 0 {
			l.followers = slices.Delete(l.followers, i, i+1)
		}
		return
	}
	for len(t.followers) > 0 {
		f := t.followers[0]
		t.followers = t.followers[1:]
		f.leader = nil
		if f.state == taskRunning && c.sched.Handoff(t.schedID(), f.schedID()) {
			f.followers, t.followers = t.followers, nil
			for _, g := range f.followers {
				g.leader = f
			}
			c.leaseRemote(f, node)
			return
		}
	}
}

// The receiving side.

func (e PeerMessage) apply(c *Core) {
	if _, ok := c.peers[e.From]; !ok && e.From != c.cfg.Node {
		c.peers[e.From] = false // heard from before membership told of it
	}
	switch m := e.Msg.(type) {
	case *peerwire.RunTask:
		c.runForPeer(e.From, m)
	case *peerwire.TaskDone:
		c.taskDone(e.From, m)
	case *peerwire.TaskYield:
		c.taskYield(e.From, m)
	case *peerwire.CancelTask:
		c.cancelForPeer(e.From, m)
	case *peerwire.GetObject:
		c.serveObject(e.From, m)
	case *peerwire.ObjectValue:
		c.objectValue(e.From, m)
	case *peerwire.Release:
		if j := c.jobs[JobID(m.Job)]; j != nil {
			for i, id := range m.IDs {
				c.unexport(j, id, e.From, int(m.Counts[i]))
			}
		}
	case *peerwire.EndJob:
		// Only the job's root ends a share of it.
		if j := c.jobs[JobID(m.Job)]; j != nil && j.root != "" && j.root == e.From {
			c.endJob(j)
		} else if j == nil {
			c.markEnded(JobID(m.Job), e.From) // work for it still on its way from its root is refused
			c.unpark(func(r pendingRun) bool { return r.msg.Job == m.Job && NodeID(r.msg.Root) == e.From })
		}
	case *peerwire.Output:
		// Only from a node the job's work went to.
		if j := c.jobs[JobID(m.Job)]; j != nil && j.root == "" && !j.done && j.worksFor(e.From) {
			c.emit(JobOutput{Job: j.id, Stderr: m.Stderr, Data: markNode(m.Data, e.From)})
		}
	case *peerwire.ActorDied:
		c.actorDiedThere(e.From, m)
	case *peerwire.RegisterActor:
		c.registerActor(e.From, m)
	case *peerwire.ActorRegistered:
		if a := c.actors[m.Actor]; a != nil && string(a.job.id) == m.Job && a.registering != nil && a.job.root == e.From {
			p := a.registering
			a.registering = nil
			if m.Err != "" {
				c.logf("fabric: actor %s: the job's root did not take its registration (%s); calls from other nodes will not reach it", a.class, m.Err)
			}
			c.reply(p.w, p.seq, nil, wire.Reply{IDs: []objects.ID{a.id}})
		}
	case *peerwire.KillActor:
		c.killActorHere(e.From, m)
	case *peerwire.ShareOpened:
		switch j := c.jobs[JobID(m.Job)]; {
		case j != nil && j.root == "" && !j.done && !bytes.Equal(m.Grant, j.grant):
			// Not opened with the job's grant: not the job's work.
		case j != nil && j.root == "" && !j.done:
			if j.sentTo == nil {
				j.sentTo = map[NodeID]struct{}{}
			}
			j.sentTo[e.From] = struct{}{}
		case j == nil && !c.endedFor(JobID(m.Job), ""):
			// Not a job of this node's: nothing to tell.
		case j == nil || j.done:
			c.sendPeer(e.From, &peerwire.EndJob{Job: m.Job}) // it ended already
		}
	}
}

// registerActor records an actor of a share at the job's root: a stub
// that forwards calls to the node that owns it.
func (c *Core) registerActor(from NodeID, m *peerwire.RegisterActor) {
	j := c.jobs[JobID(m.Job)]
	ans := &peerwire.ActorRegistered{Job: m.Job, Actor: m.Actor}
	switch {
	case j == nil || j.root != "" || j.done || !j.worksFor(from):
		ans.Err = fmt.Sprintf("job %s does not run its driver on node %s", m.Job, c.cfg.Node)
	case c.actors[m.Actor] == nil:
		c.actors[m.Actor] = &actor{id: m.Actor, job: j, class: m.Class, state: actorAlive, stub: true, node: from}
	}
	c.sendPeer(from, ans)
}

// refuse answers a RunTask that will not run here.
func (c *Core) refuse(from NodeID, m *peerwire.RunTask, why string) {
	c.sendPeer(from, &peerwire.TaskDone{Job: m.Job, Task: m.Task, Attempt: m.Attempt, Refused: why})
}

// runForPeer runs what another node asks of this node's share of a job.
func (c *Core) runForPeer(from NodeID, m *peerwire.RunTask) {
	spec, err := decodeSpec(m.Spec)
	if err != nil {
		c.refuse(from, m, fmt.Sprintf("malformed task spec: %v", err))
		c.releaseRefs(m, from)
		return
	}
	if err := checkPeerSpec(spec); err != nil {
		c.refuse(from, m, err.Error())
		c.releaseRefs(m, from)
		return
	}
	if m.What == peerwire.RunPlainTask && c.askedTasks[from] == 0 {
		// Other nodes place work here too, so the sender's view of this
		// node may be stale: a task that does not fit now goes back, with
		// what this node has free, to be placed again. (One sent behind
		// the sender's tasks already here waits for them: see
		// leaseRemote.)
		if free, _ := c.sched.Available(c.cfg.Node); !demandOf(spec, 1).Fits(free) {
			b, _ := wire.Marshal(free)
			c.sendPeer(from, &peerwire.TaskDone{Job: m.Job, Task: m.Task, Attempt: m.Attempt, Busy: b})
			c.releaseRefs(m, from)
			return
		}
	}
	j := c.jobs[JobID(m.Job)]
	switch {
	case j == nil && c.cfg.VerifyGrant != nil && c.cfg.VerifyGrant(m.Job, m.Tenant, m.Root, m.Digest, m.Grant) != nil:
		c.refuse(from, m, fmt.Sprintf("job %s: its work carries no grant of the servers' for tenant %q, root %s and module %.12s", m.Job, m.Tenant, m.Root, m.Digest))
		c.releaseRefs(m, from)
		return
	case j != nil && (!bytes.Equal(m.Grant, j.grant) || m.Tenant != j.tenant || m.Digest != j.digest):
		c.refuse(from, m, fmt.Sprintf("job %s: the work does not carry the job's grant", m.Job))
		c.releaseRefs(m, from)
		return
	case j != nil && j.done, j == nil && c.endedFor(JobID(m.Job), NodeID(m.Root)):
		c.refuse(from, m, fmt.Sprintf("job %s has ended on node %s", m.Job, c.cfg.Node))
		c.releaseRefs(m, from)
		return
	case j == nil && !c.modules[m.Digest]:
		// The module first: from the sender, which has it.
		if _, fetching := c.fetchingModules[m.Digest]; !fetching {
			c.emit(FetchModule{Digest: m.Digest, From: from})
		}
		c.fetchingModules[m.Digest] = append(c.fetchingModules[m.Digest], pendingRun{from: from, msg: m})
		return
	case j == nil && c.gone[NodeID(m.Root)]:
		c.refuse(from, m, fmt.Sprintf("job %s: its root, node %s, is gone", m.Job, m.Root))
		c.releaseRefs(m, from)
		return
	case j == nil:
		j = c.newJob(JobID(m.Job), m.Digest, NodeID(m.Root))
		j.tenant, j.grant = m.Tenant, m.Grant
		if from != j.root && j.root != c.cfg.Node {
			// Work of the job reached this node through another: the
			// root learns of the share, to end it with the job.
			c.sendPeer(j.root, &peerwire.ShareOpened{Job: m.Job, Grant: j.grant})
		}
	}
	c.importAll(j, m.Refs, from)
	known := func(b []byte) error {
		id, err := objects.IDFromBytes(b)
		if err != nil {
			return err
		}
		if o := c.objs[id]; o == nil || o.job != j {
			return fmt.Errorf("the request refers to object %s, which its sender did not send", id.Short())
		}
		return nil
	}
	for i, a := range spec.Args {
		err := known(a.Ref)
		if a.Ref == nil {
			err = nil
			if a.Value == nil {
				err = fmt.Errorf("argument %d is neither a value nor a reference", i)
			}
		}
		if err == nil && a.Ref != nil && a.Value != nil {
			err = fmt.Errorf("argument %d is both a value and a reference", i)
		}
		if err != nil {
			c.refuse(from, m, err.Error())
			c.dropImports(j, m.Refs, from)
			return
		}
	}
	for _, r := range spec.Refs {
		if err := known(r); err != nil {
			c.refuse(from, m, err.Error())
			c.dropImports(j, m.Refs, from)
			return
		}
	}
	var t *task
	switch m.What {
	case peerwire.RunActorCreate:
		if old := c.actors[m.Actor]; old != nil && old.stub && old.job == j {
			delete(c.actors, m.Actor) // a relay to the root: the actor itself comes here now
		} else if old != nil {
			if old.job != j || old.reportTo == "" {
				c.refuse(from, m, fmt.Sprintf("actor %s exists on node %s already", m.Actor.Short(), c.cfg.Node))
				c.dropImports(j, m.Refs, from)
				return
			}
			old.reportTo = "" // replaced: its owner has moved on
			c.actorDead(old, "replaced by a newer incarnation")
			delete(c.actors, m.Actor)
		}
		spec.Options.MaxRestarts = 0 // its owner restarts it, anywhere
		c.createActor(j, nil, spec, m.Actor, func(a *actor) {
			a.reportTo, a.incarnation = from, m.Incarnation
			a.create.here = true
			if len(m.Group) > 0 {
				a.create.ctxGroup, a.create.ctxBundle = m.Group, int(m.Bundle)
			}
			if m.Ready {
				a.readyAnswer = &peerwire.TaskDone{Job: m.Job, Task: m.Task, Attempt: m.Attempt}
			}
		})
		if !m.Ready {
			c.sendPeer(from, &peerwire.TaskDone{Job: m.Job, Task: m.Task, Attempt: m.Attempt})
		}
		return
	case peerwire.RunActorCall:
		aid, _ := objects.IDFromBytes(spec.Actor)
		a := c.actors[aid]
		// Another job's call reaches a namespace's actor (its caller found
		// it in the registry).
		if a == nil || !a.sharedWith(j) || (a.stub && (a.job != j || j.root != "")) || (a.reportTo != "" && a.job == j && a.incarnation != m.Incarnation) {
			msg := fmt.Sprintf("actor %s is not on node %s (it died or moved)", aid.Short(), c.cfg.Node)
			if a != nil && !a.sharedWith(j) {
				msg = fmt.Sprintf("actor %s is another job's and in no namespace of its tenant: other jobs cannot call it", aid.Short())
			}
			ev, _ := wire.Marshal(abi.ErrorValue{Kind: abi.KindActorDied, Message: msg, Task: spec.Func})
			c.sendPeer(from, &peerwire.TaskDone{Job: m.Job, Task: m.Task, Attempt: m.Attempt, Error: ev})
			c.dropImports(j, m.Refs, from)
			return
		}
		t = c.newTask(j, nil, spec, wire.ExecActorMethod, c.newID())
		t.actor = a
		t.name = methodName(a.class, spec.Func)
		if spec.Options.Name != "" {
			t.name = spec.Options.Name
		}
	default:
		t = c.newTask(j, nil, spec, wire.ExecTask, c.newID())
		t.here = true // the sender chose this node: no second hop
	}
	t.asker, t.askerTask, t.askerAttempt = from, m.Task, m.Attempt
	t.retried = int(m.Retried)
	if len(m.Group) > 0 {
		t.ctxGroup, t.ctxBundle = m.Group, int(m.Bundle)
	}
	key := askKey{from, m.Task}
	if old := c.asked[key]; old != nil && old.kind == wire.ExecTask { // a later attempt replaces it
		c.askedTasks[from]--
	}
	c.asked[key] = t
	if t.kind == wire.ExecTask {
		c.askedTasks[from]++
	}
	for _, id := range t.returns {
		c.addRef(id) // held until answered: nobody else refers to them
	}
	if t.kind == wire.ExecActorMethod {
		c.actorEnqueue(t.actor, t)
	} else {
		c.submit(t)
	}
}

// checkPeerSpec checks a spec another node sent.
func checkPeerSpec(spec abi.TaskSpec) error {
	if spec.Func == "" || spec.NumReturns < 0 || spec.NumReturns > abi.MaxReturns {
		return fmt.Errorf("malformed task spec: function %q with %d returns", spec.Func, spec.NumReturns)
	}
	if err := checkDemand(spec.Options); err != nil {
		return err
	}
	if spec.Options.Group != nil {
		return fmt.Errorf("placement groups on another node are not supported yet")
	}
	if spec.Actor != nil {
		if _, err := objects.IDFromBytes(spec.Actor); err != nil {
			return fmt.Errorf("actor: %v", err)
		}
	}
	for _, r := range spec.Refs {
		if _, err := objects.IDFromBytes(r); err != nil {
			return err
		}
	}
	return nil
}

// releaseRefs gives back the exports of a RunTask that will not run.
func (c *Core) releaseRefs(m *peerwire.RunTask, from NodeID) {
	for _, r := range m.Refs {
		c.release(JobID(m.Job), from, r, 1)
	}
}

// dropImports lets go of the holds of a message's references once
// something else holds them (or nothing will).
func (c *Core) dropImports(j *job, ids []objects.ID, from NodeID) {
	for _, id := range ids {
		c.dropImport(j, id, from)
	}
}

// answerAsker sends the node that asked for a task its result, when the
// task ends: inline values, or results that stay here, exported to it.
func (c *Core) answerAsker(t *task) {
	if t.asker == "" || t.answered || t.kind == wire.ExecActorCreate {
		return
	}
	t.answered = true
	j := t.job
	defer func() {
		for _, id := range t.returns {
			c.decRef(id) // the hold runForPeer took
		}
	}()
	if j.done {
		return
	}
	msg := &peerwire.TaskDone{Job: string(j.id), Task: t.askerTask, Attempt: t.askerAttempt, Ran: int64(t.ranFor)}
	for _, id := range t.returns {
		o := c.objs[id]
		switch {
		case o == nil || !o.ready:
			ev, _ := wire.Marshal(abi.ErrorValue{Kind: abi.KindTask, Message: fmt.Sprintf("the result %s was lost", id.Short()), Task: t.name})
			msg = &peerwire.TaskDone{Job: msg.Job, Task: msg.Task, Attempt: msg.Attempt, Error: ev}
		case o.isError:
			msg = &peerwire.TaskDone{Job: msg.Job, Task: msg.Task, Attempt: msg.Attempt, Error: o.inline}
		case o.stored:
			c.export(j, id, t.asker)
			msg.Results = append(msg.Results, peerwire.Result{Held: true, ID: id, Size: o.size})
			continue
		default:
			msg.Results = append(msg.Results, peerwire.Result{Value: o.inline})
			continue
		}
		break
	}
	if msg.Error == nil {
		var seen map[objects.ID]bool
		for _, id := range t.returns {
			for _, r := range c.objs[id].nested {
				if seen == nil {
					seen = map[objects.ID]bool{}
				}
				if !seen[r] {
					seen[r] = true
					c.export(j, r, t.asker)
					msg.Refs = append(msg.Refs, r)
				}
			}
		}
	} else {
		for _, r := range msg.Results {
			if r.Held {
				c.unexport(j, r.ID, t.asker, 1)
			}
		}
		msg.Results = nil
	}
	c.sendPeer(t.asker, msg)
}

// askKey names a task another node asked this node to run.
type askKey struct {
	node NodeID
	task objects.ID
}

// cancelForPeer stops a task another node asked this node to run.
func (c *Core) cancelForPeer(from NodeID, m *peerwire.CancelTask) {
	c.unpark(func(r pendingRun) bool { return r.from == from && r.msg.Task == m.Task && r.msg.Attempt == m.Attempt })
	t := c.asked[askKey{from, m.Task}]
	if t != nil && t.askerAttempt == m.Attempt && string(t.job.id) == m.Job && (t.kind == wire.ExecTask || t.kind == wire.ExecActorMethod) {
		c.cancelTask(t, t.kind == wire.ExecTask, m.Force)
		c.schedule()
	}
}

// unpark drops the runs waiting for a module that match, giving their
// exports back.
func (c *Core) unpark(match func(pendingRun) bool) {
	for _, d := range slices.Sorted(maps.Keys(c.fetchingModules)) {
		runs := c.fetchingModules[d]
		kept := runs[:0]
		for _, r := range runs {
			if match(r) {
				c.releaseRefs(r.msg, r.from)
				continue
			}
			kept = append(kept, r)
		}
		c.fetchingModules[d] = kept
	}
}

func (e ModuleReady) apply(c *Core) {
	if e.Err == "" {
		c.modules[e.Digest] = true
	}
	runs := c.fetchingModules[e.Digest]
	delete(c.fetchingModules, e.Digest)
	for _, r := range runs {
		if e.Err != "" {
			c.refuse(r.from, r.msg, fmt.Sprintf("fetching module %.12s from %s: %s", e.Digest, r.from, e.Err))
			c.releaseRefs(r.msg, r.from)
			continue
		}
		c.runForPeer(r.from, r.msg)
	}
}
