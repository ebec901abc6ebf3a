package core

import (
	"cmp"
	"slices"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/wire"
)

// job is one run of a module's driver with everything it started, or this
// node's share of a job whose driver runs on another node (its root).
type job struct {
	id JobID
	// names counts the names the job holds or asks for in the cluster's
	// registry (names.go).
	names int
	// tenant owns the job ("": the cluster's operator): its namespaces
	// and detached groups are the tenant's.
	tenant string
	// grant is the job's grant: what its work on other nodes carries,
	// and what a share of it takes work with.
	grant []byte
	// proof is a detached job's maker's grant, which it shows the
	// registry for its names.
	proof GrantProof
	// exitCode is the code its driver exited with, when not 0.
	exitCode uint32
	digest   string
	workers  []*worker // in ID order
	idle     []*worker
	queue    []*task // placed executions waiting for a worker
	// soloStarts are executions that get a worker of their own (actor
	// creations, the driver) waiting for a worker the
	// node is making room for.
	soloStarts []*task
	// capLogged is set once the log said the job holds its most workers.
	capLogged bool
	starting  int
	// done is set when the job ends; the job is forgotten once its
	// workers have exited (JobEnded).
	done   bool
	result bool // JobResult was emitted
	driver *task
	// runTimes is the mean run time of each task function, for pipelining.
	runTimes map[string]Time
	// root is the node whose driver runs the job ("": this node).
	root NodeID
	// sentTo are the nodes this job sent work to, told when it ends.
	sentTo map[NodeID]struct{}
	// exports are holds on objects kept for other nodes.
	exports map[exportKey]int
	// startFailing is set while worker processes fail to start;
	// startHeld while the next try waits.
	startFailing, startHeld bool
	// refused counts puts and submissions refused for want of memory.
	refused int
	// objects counts the job's object records; an ended job is forgotten
	// once they are all dropped too.
	objects int
	// detachedKey is set on a job that holds detached actors (its key in
	// Core.detached).
	detachedKey string
}

// endedFor reports whether a job ended here, or its root root said so.
func (c *Core) endedFor(id JobID, root NodeID) bool {
	by, ok := c.ended[id]
	return ok && (by == "" || by == root)
}

// worksFor reports whether a node works for the job: the job sent it work,
// or it opened a share of the job with the job's grant.
func (j *job) worksFor(node NodeID) bool {
	_, ok := j.sentTo[node]
	return ok
}

// maxEndedJobs bounds how many ended job IDs a node remembers.
const maxEndedJobs = 4096

func (c *Core) newJob(id JobID, digest string, root NodeID) *job {
	j := &job{id: id, digest: digest, root: root}
	c.jobs[id] = j
	return j
}

func (e SubmitJob) apply(c *Core) {
	if _, ended := c.ended[e.Job]; c.jobs[e.Job] != nil || ended {
		c.emit(JobResult{Job: e.Job, Err: "a job with this ID exists"})
		return
	}
	c.modules[e.Digest] = true
	j := c.newJob(e.Job, e.Digest, "")
	j.tenant, j.grant = e.Tenant, e.Grant
	zero := 0.0
	spec := abi.TaskSpec{Func: abi.MainFunc, Options: abi.Options{CPU: &zero, MaxRetries: new(int)}}
	t := c.newTask(j, nil, spec, wire.ExecMain, c.newID())
	t.rawArgs = e.Args
	c.chargeHeap(j, int64(len(e.Args)))
	t.charge += int64(len(e.Args))
	j.driver = t
	c.submit(t)
}

func (e CancelJob) apply(c *Core) {
	j := c.jobs[e.Job]
	if j == nil || j.root != "" {
		return
	}
	c.jobResult(j, cmp.Or(e.Reason, "the job was cancelled"))
}

// jobResult ends a job whose driver runs here with its result (msg empty:
// success).
func (c *Core) jobResult(j *job, msg string) {
	if j.root != "" || j.result {
		return
	}
	j.result = true
	c.emit(JobResult{Job: j.id, Err: msg, ExitCode: j.exitCode})
	c.endJob(j)
}

// endJob stops the job's workers and drops its tasks, objects and actors.
// The job is forgotten when its last worker has exited.
func (c *Core) endJob(j *job) {
	if j.done {
		return
	}
	j.done = true
	c.markEnded(j.id, "")
	nodes := make([]NodeID, 0, len(j.sentTo))
	for n := range j.sentTo {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		if _, ok := c.peers[n]; ok {
			c.sendPeer(n, &peerwire.EndJob{Job: string(j.id)})
		}
	}
	for _, id := range sortedIDs(c.tasks) {
		t := c.tasks[id]
		if t.job != j {
			continue
		}
		if a := t.actor; a != nil && a.job != j && t.kind == wire.ExecActorMethod {
			// A call to another job's actor (a namespace's): one still
			// queued there goes; one sent to its worker ends there, and its
			// answer is dropped (done).
			if i := slices.Index(a.queue, t); i >= 0 {
				a.queue = slices.Delete(a.queue, i, i+1)
			}
			if i := slices.Index(a.retrying, t); i >= 0 {
				a.retrying = slices.Delete(a.retrying, i, i+1)
			}
		}
		if t.state == taskQueued {
			c.sched.Cancel(t.schedID())
		}
		if t.state == taskRunning && t.kind != wire.ExecActorMethod {
			c.sched.Finished(t.schedID())
		}
		if t.remoteNode != "" && t.state == taskRunning {
			c.forgetRemote(t)
		}
		t.state = taskDone
		c.stopTaskTimer(t)
		c.forgetTask(t)
	}
	for _, id := range sortedIDs(c.actors) {
		a := c.actors[id]
		if a.job == j {
			if a.shared() && a.state != actorDead && !a.stub { // a stub's actor lives on
				a.cause = "its job ended"
				c.rememberDeparted(a)
			}
			a.state = actorDead // its worker's exit must not restart it
			delete(c.actors, id)
			c.freeName(a)
		}
	}
	for _, id := range sortedIDs(c.groups) {
		if g := c.groups[id]; g.job == j {
			c.removeGroup(g, "was removed when its job ended")
		}
	}
	// Every object of the job goes, in chunks between other events, since a
	// job may have millions. Their order does not matter: what
	// dropping one does (holds given back to other nodes) is gathered into
	// one message per node at the end of the step.
	for id, o := range c.objs {
		if o.job == j {
			o.waiters = nil
			c.dropping = append(c.dropping, id)
		}
	}
	c.drainDrops(dropChunk) // the rest in later steps (Yield)
	j.exports = nil
	j.queue = nil
	j.soloStarts = nil
	j.idle = nil
	if i := slices.Index(c.procWaiters, j); i >= 0 {
		c.procWaiters = slices.Delete(c.procWaiters, i, i+1)
	}
	for _, w := range j.sortedWorkers() {
		c.killWorker(w)
	}
	c.schedule()
	c.emit(TrimStore{})
	c.jobMaybeEnded(j)
}

// markEnded remembers that a job ended here (by ""), or that its root by
// said so, for a while.
func (c *Core) markEnded(id JobID, by NodeID) {
	if _, ok := c.ended[id]; ok {
		return
	}
	c.ended[id] = by
	c.endedIDs = append(c.endedIDs, id)
	if len(c.endedIDs) > maxEndedJobs {
		delete(c.ended, c.endedIDs[0])
		c.endedIDs = c.endedIDs[1:]
	}
}

// jobMaybeEnded forgets an ended job once its workers have exited.
func (c *Core) jobMaybeEnded(j *job) {
	if !j.done || len(j.workers) > 0 || j.objects > 0 || c.jobs[j.id] != j {
		return
	}
	delete(c.jobs, j.id)
	c.emit(JobEnded{Job: j.id})
}

// ran folds the run time of a task that finished on a worker here into
// its function's mean.
func (j *job) ran(t *task, now Time) {
	if t.kind != wire.ExecTask || !t.timed {
		return
	}
	t.ranFor = now - t.started
	j.ranFor(t, t.ranFor)
}

// ranFor folds a run time of t's function into its mean.
func (j *job) ranFor(t *task, d Time) {
	if j.runTimes == nil {
		j.runTimes = map[string]Time{}
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

func (j *job) removeIdle(w *worker) {
	if i := slices.Index(j.idle, w); i >= 0 {
		j.idle = slices.Delete(j.idle, i, i+1)
	}
}

// sortedWorkers returns a copy of the job's workers, in the order they
// started.
func (j *job) sortedWorkers() []*worker { return slices.Clone(j.workers) }

// removeWorker takes w out of the job's workers.
func (j *job) removeWorker(w *worker) {
	if i, ok := slices.BinarySearchFunc(j.workers, w.id, func(x *worker, id WorkerID) int { return cmp.Compare(x.id, id) }); ok {
		j.workers = slices.Delete(j.workers, i, i+1)
	}
}
