package fabric

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/scheduler"
	"github.com/wasmfabric/fabric/transport"
)

// Tasks and actors across nodes. The scheduler places a task or an actor
// that can move on another node (runRemote); the job's share there
// (peers.go) runs it pinned to that node and answers with its value. An
// actor placed on another node lives there in the job's share; its owner
// forwards calls to it in order (sequence numbers per sender and actor
// incarnation) and restarts it elsewhere when it or its node dies. A task
// in a share that calls an actor it does not know sends the call to the
// job's root (ARCHITECTURE.md, "The path of a task across nodes").

// Errors of remote tasks.
var (
	// ErrRemoteTask wraps the error a task that ran on another node failed with.
	ErrRemoteTask = errors.New("fabric: remote task failed")
)

// What a runRequest asks for.
const (
	runTask uint8 = iota
	runActorCreate
	runActorCall
	runActorKill
)

// runRequest asks a node to run a task, create an actor, call or kill one,
// for a job's share there.
type runRequest struct {
	_      struct{} `cbor:",toarray"`
	Kind   uint8
	Job    string
	Root   string // the node running the job's driver
	Digest string // the module's SHA-256; the sender has it
	Spec   []byte // an abi.TaskSpec in CBOR
	// Refs are the objects the spec refers to by reference, each exported
	// by the sender to the receiver.
	Refs        [][]byte
	Actor       []byte // create, kill: the actor's ID (a call names it in Spec)
	Incarnation uint64 // actors: the owner's count of its placements (0: a call from a share)
	Seq         uint64 // calls: the call's place among the sender's calls to this incarnation
	NoRestart   bool   // kill
	// Task is the sender's ID of a task: the receiver uses it when free,
	// so that a large result it keeps (taskResult.Held) has the same
	// object ID on both nodes.
	Task []byte
}

// taskResult answers a runRequest: the value of each return (a CBOR array
// of them when there are several), or the error value. Refs are the
// references inside the value, exported to the asker.
type taskResult struct {
	_       struct{} `cbor:",toarray"`
	Value   []byte
	IsError bool
	Refs    [][]byte
	// Held says that the value stays on the answering node, exported to
	// the asker, under the task's return ID: the asker fetches it when
	// needed. Size is its size.
	Held bool
	Size int64
}

// leaveMin is the size from which a remote task's single result stays on
// the node that made it until someone needs it.
const leaveMin = 4 << 20

// remoteActorPipeline bounds the calls an owner has sent to an actor on
// another node and not yet seen answered.
const remoteActorPipeline = 64

// runForPeer runs what another node asks of this node's share of a job.
func (n *Node) runForPeer(ctx context.Context, from string, req runRequest) (transport.Type, []byte, error) {
	var spec abi.TaskSpec
	if req.Kind != runActorKill {
		if err := wire.Unmarshal(req.Spec, &spec); err != nil {
			return 0, nil, fmt.Errorf("malformed task spec: %v", err)
		}
		if spec.Func == "" || spec.NumReturns < 0 || spec.NumReturns > abi.MaxReturns {
			return 0, nil, fmt.Errorf("malformed task spec: function %q with %d returns", spec.Func, spec.NumReturns)
		}
		if err := checkDemand(spec.Options); err != nil {
			return 0, nil, err
		}
		if spec.Options.Group != nil {
			return 0, nil, fmt.Errorf("placement groups on another node are not supported yet")
		}
	}
	j, err := n.share(req.Job, req.Root, req.Digest)
	if err != nil {
		return 0, nil, err
	}
	n.mu.Lock()
	if j.done {
		n.mu.Unlock()
		return 0, nil, fmt.Errorf("job %s has ended on node %s", j.id, n.nodeID)
	}
	for _, r := range req.Refs {
		id, err := objects.IDFromBytes(r)
		if err != nil {
			n.mu.Unlock()
			return 0, nil, err
		}
		n.importRef(j, id, from)
	}
	known := func(b []byte) error {
		id, err := objects.IDFromBytes(b)
		if err != nil {
			return err
		}
		if o := n.objs[id]; o == nil || o.job != j {
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
		if err != nil {
			n.mu.Unlock()
			return 0, nil, err
		}
	}
	for _, r := range spec.Refs {
		if err := known(r); err != nil {
			n.mu.Unlock()
			return 0, nil, err
		}
	}
	var t *task
	leave := false // a large result may stay here
	switch req.Kind {
	case runActorCreate:
		id, err := objects.IDFromBytes(req.Actor)
		if err != nil {
			n.mu.Unlock()
			return 0, nil, err
		}
		if old := n.actors[id]; old != nil && old.stub && old.job == j {
			delete(n.actors, id) // a relay to the root: the actor itself comes here now
		} else if old != nil {
			if old.job != j || old.reportTo == "" {
				n.mu.Unlock()
				return 0, nil, fmt.Errorf("actor %s exists on node %s already", id.Short(), n.nodeID)
			}
			old.reportTo = "" // replaced: its owner has moved on
			n.actorDead(old, "replaced by a newer incarnation")
		}
		spec.Options.MaxRestarts = 0 // its owner restarts it, anywhere
		a := n.createActor(j, nil, spec, id, func(a *actor) {
			a.reportTo, a.incarnation = from, req.Incarnation
			a.create.here = true
		})
		_ = a
		n.mu.Unlock()
		out, err := wire.Marshal(taskResult{})
		return msgTaskResult, out, err
	case runActorKill:
		id, _ := objects.IDFromBytes(req.Actor)
		if a := n.actors[id]; a != nil && a.job == j && !a.stub && a.incarnation == req.Incarnation {
			if a.worker == nil {
				n.actorDead(a, "it was killed before it started")
			} else {
				if cur := a.worker.task; cur != nil {
					a.worker.killReason = &abi.ErrorValue{Kind: "actor_died", Message: fmt.Sprintf("actor %s was killed", a.class), Task: cur.name}
				}
				a.worker.kill()
			}
		}
		n.mu.Unlock()
		return msgAck, nil, nil
	case runActorCall:
		aid, _ := objects.IDFromBytes(spec.Actor)
		a := n.actors[aid]
		if a == nil || a.job != j || (a.stub && j.root != "") || (a.reportTo != "" && a.incarnation != req.Incarnation) {
			n.mu.Unlock()
			b, _ := wire.Marshal(abi.ErrorValue{Kind: "actor_died", Message: fmt.Sprintf("actor %s is not on node %s (it died or moved)", aid.Short(), n.nodeID), Task: spec.Func})
			out, err := wire.Marshal(taskResult{Value: b, IsError: true})
			return msgTaskResult, out, err
		}
		t = n.newTask(j, nil, spec, wire.ExecActorMethod, newID())
		t.actor = a
		t.name = methodName(a.class, spec.Func)
		n.actorReceive(a, from, req.Seq, t)
	default:
		id := newID()
		if tid, err := objects.IDFromBytes(req.Task); err == nil && !tid.IsNil() && n.tasks[tid] == nil && n.objs[tid.WithIndex(1)] == nil {
			id, leave = tid, spec.NumReturns <= 1
		}
		t = n.newTask(j, nil, spec, wire.ExecTask, id)
		t.here = true // the sender chose this node: no second hop
		n.submit(t)
	}
	rets := t.returns
	for _, id := range rets {
		n.addRef(id) // held until answered: nobody else refers to them
	}
	done := make(chan struct{})
	if !n.waitFor(rets, len(rets), -1, func() { close(done) }, nil) {
		close(done)
	}
	n.mu.Unlock()
	var waitErr error
	select {
	case <-done:
	case <-ctx.Done():
		waitErr = ctx.Err()
	case <-j.ctx.Done():
		waitErr = fmt.Errorf("job %s ended on node %s", j.id, n.nodeID)
	}
	if waitErr == nil {
		flushShareOutput(j) // the task's output comes before its value
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if waitErr != nil && t.kind == wire.ExecTask && t.state != taskDone && ctx.Err() != nil {
		n.cancelTask(t, true, true) // the sender went away: it cancelled the task, or ended
	}
	defer func() {
		for _, id := range rets {
			n.decRef(id)
		}
	}()
	if waitErr != nil {
		return 0, nil, waitErr
	}
	if o := n.objs[rets[0]]; leave && o != nil && o.ready && o.stored && !o.isError && o.size >= leaveMin {
		n.export(j, rets[0], from)
		out, err := wire.Marshal(taskResult{Held: true, Size: o.size})
		return msgTaskResult, out, err
	}
	res, err := n.resultOf(j, rets, from)
	if err != nil {
		return 0, nil, err
	}
	out, err := wire.Marshal(res)
	return msgTaskResult, out, err
}

// resultOf builds the answer of a finished remote execution, exporting the
// references in its value to node to. Caller holds n.mu.
func (n *Node) resultOf(j *job, rets []objects.ID, to string) (taskResult, error) {
	var res taskResult
	values := make([]wire.RawMessage, 0, len(rets))
	for _, id := range rets {
		o := n.objs[id]
		if o == nil || !o.ready {
			return taskResult{}, fmt.Errorf("the result %s was lost", id.Short())
		}
		v := o.inline
		if o.stored {
			b, err := n.store.Read(id)
			if err != nil {
				return taskResult{}, err
			}
			v = b
		}
		if o.isError {
			return taskResult{Value: v, IsError: true}, nil
		}
		values = append(values, v)
		for _, r := range o.nested {
			n.export(j, r, to)
			res.Refs = append(res.Refs, r[:])
		}
	}
	if len(values) == 1 {
		res.Value = values[0]
		return res, nil
	}
	b, err := wire.Marshal(values)
	res.Value = b
	return res, err
}

// actorReceive queues a call that node from sent, in the order of the
// sequence numbers it gave its calls. Caller holds n.mu.
func (n *Node) actorReceive(a *actor, from string, seq uint64, t *task) {
	if a.recvNext == nil {
		a.recvNext, a.recvHeld = map[string]uint64{}, map[string]map[uint64]*task{}
	}
	if seq != a.recvNext[from] {
		if a.recvHeld[from] == nil {
			a.recvHeld[from] = map[uint64]*task{}
		}
		a.recvHeld[from][seq] = t // an earlier call is still on its way
		return
	}
	for {
		n.actorEnqueue(a, t)
		a.recvNext[from]++
		next, ok := a.recvHeld[from][a.recvNext[from]]
		if !ok {
			return
		}
		delete(a.recvHeld[from], a.recvNext[from])
		t = next
	}
}

func methodName(class, fn string) string {
	return class + "." + fn[len(class)+min(len(fn)-len(class), 1):]
}

// RunRemote runs a task of the module with the digest on another node, in
// a job of its own, and returns its value (CBOR). The module must be on
// this node. A task that fails returns an error wrapping ErrRemoteTask
// with the task's message.
func (a *Agent) RunRemote(ctx context.Context, nodeID, digest string, spec abi.TaskSpec) ([]byte, error) {
	if !a.node.HasModule(digest) {
		return nil, fmt.Errorf("fabric: module %.12s is not on this node", digest)
	}
	jobID := newID().String()[:16]
	body, err := wire.Marshal(runRequest{Kind: runTask, Job: jobID, Root: a.ID, Digest: digest, Spec: spec.AppendCBOR(nil)})
	if err != nil {
		return nil, err
	}
	defer func() {
		end, _ := wire.Marshal(jobRequest{Job: jobID})
		ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
		defer cancel()
		_, _, _ = a.Call(ctx, nodeID, msgEndJob, end)
	}()
	t, rb, err := a.Call(ctx, nodeID, msgRunTask, body)
	if err != nil {
		return nil, err
	}
	var res taskResult
	if t != msgTaskResult || wire.Unmarshal(rb, &res) != nil {
		return nil, fmt.Errorf("fabric: node %s answered a task with a malformed result", nodeID)
	}
	if res.IsError {
		ev := decodeErrorValue(res.Value)
		return nil, fmt.Errorf("%w on %s: %s: %s", ErrRemoteTask, nodeID, ev.Kind, ev.Message)
	}
	return res.Value, nil
}

// AddPeer tells the node's scheduler about another node of the cluster
// (again to update its resources or labels).
func (n *Node) AddPeer(id string, resources map[string]float64, labels map[string]string) {
	if scheduler.NodeID(id) == n.nodeID {
		return
	}
	total := scheduler.Resources{CPU: scheduler.Quantity(resources["CPU"]), GPU: scheduler.Quantity(resources["GPU"]), Memory: int64(resources["memory"])}
	for k, v := range resources {
		if k != "CPU" && k != "GPU" && k != "memory" {
			if total.Custom == nil {
				total.Custom = map[string]int64{}
			}
			total.Custom[k] = scheduler.Quantity(v)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sched.AddNode(scheduler.NodeID(id), total, labels)
	n.schedule()
}

// RemovePeer forgets a node that left or failed. Tasks placed there are
// scheduled again: their runs fail with the lost connection, and are
// retried while retries last.
func (n *Node) RemovePeer(id string) {
	if scheduler.NodeID(id) == n.nodeID {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.removePeerLocked(id, true)
	n.schedule()
}

// removePeerLocked forgets a node and ends the calls running there: their
// tasks are retried elsewhere and actors that lived there restart
// elsewhere. When membership says the node is gone, the holds kept for it
// are given back and shares of jobs whose root it was end (a call that
// failed once does not end them). Caller holds n.mu.
func (n *Node) removePeerLocked(id string, gone bool) {
	n.sched.RemoveNode(scheduler.NodeID(id))
	for _, cancel := range n.remoteCalls[id] {
		cancel()
	}
	why := "was lost"
	if !gone {
		why = "could not be reached"
	}
	for _, a := range n.actors {
		if !a.stub && a.node == id && a.state != actorDead {
			if !gone {
				n.sendActorKill(a.job, a.id, id, a.incarnation, true) // in case it lives on there
			}
			n.remoteActorLost(a, "its node "+id+" "+why)
		}
	}
	if !gone {
		return
	}
	for _, j := range n.jobs {
		for k, c := range j.exports {
			if k.node == id {
				n.unexport(j, k.id, id, c)
			}
		}
	}
	for _, j := range n.jobs {
		if j.root == id && !j.done && !n.closed {
			n.remoteRuns.Add(1)
			go func() {
				defer n.remoteRuns.Done()
				n.endJob(j)
			}()
		}
	}
}

// movable reports whether a task or an actor may run on another node:
// one whose arguments did not fail. Caller holds n.mu.
func (n *Node) movable(t *task) bool {
	if n.peers == nil {
		return false
	}
	switch t.kind {
	case wire.ExecTask:
	case wire.ExecActorCreate:
	default:
		return false
	}
	for _, a := range t.spec.Args {
		if a.Ref == nil {
			continue
		}
		id, _ := objects.IDFromBytes(a.Ref)
		if o := n.objs[id]; o == nil || (o.ready && o.isError) {
			return false // it fails here, at once
		}
	}
	return true
}

// localityMin is the argument bytes on one node that make a task prefer it.
const localityMin = 1 << 20

// locality returns the node holding most of a task's stored argument
// bytes (this node first on a tie), or "" when no node holds localityMin.
// Caller holds n.mu.
func (n *Node) locality(t *task) scheduler.NodeID {
	var bytes map[string]int64
	for _, id := range t.argRefs {
		o := n.objs[id]
		if o == nil || !o.ready || !o.stored {
			continue
		}
		if bytes == nil {
			bytes = map[string]int64{}
		}
		bytes[string(n.nodeID)] += o.size
		for c := range o.copies {
			bytes[c] += o.size
		}
	}
	best, most := n.nodeID, bytes[string(n.nodeID)]
	for _, node := range slices.Sorted(maps.Keys(bytes)) {
		if bytes[node] > most {
			best, most = scheduler.NodeID(node), bytes[node]
		}
	}
	if most < localityMin {
		return ""
	}
	return best
}

// runRemote sends a task, an actor's creation or an actor call to another
// node, and applies the answer when it comes back. Caller holds n.mu.
func (n *Node) runRemote(t *task, node string) {
	if n.closed {
		return // the node is closing: its jobs end with it
	}
	j := t.job
	req := runRequest{Kind: runTask, Job: j.id, Root: cmp.Or(j.root, string(n.nodeID)), Digest: j.digest()}
	spec := t.spec
	// A task in a placement group runs in the reservation the owner's
	// scheduler made for the bundle on that node: there it is a plain task.
	spec.Options.Group, spec.Options.Bundle = nil, nil
	spec.Args = make([]abi.Arg, len(t.spec.Args))
	for i, a := range t.spec.Args {
		if a.Ref == nil {
			spec.Args[i] = a
			continue
		}
		id, _ := objects.IDFromBytes(a.Ref)
		if o := n.objs[id]; o != nil && o.ready && !o.stored && !o.isError && len(o.nested) == 0 {
			spec.Args[i] = abi.Arg{Value: o.inline} // small: sent as a value
			continue
		}
		spec.Args[i] = a
		n.export(j, id, node)
		req.Refs = append(req.Refs, a.Ref)
	}
	for _, r := range t.spec.Refs {
		id, _ := objects.IDFromBytes(r)
		n.export(j, id, node)
		req.Refs = append(req.Refs, r)
	}
	switch t.kind {
	case wire.ExecTask:
		req.Task = t.id[:]
	case wire.ExecActorCreate:
		a := t.actor
		a.incarnation++
		req.Kind, req.Actor, req.Incarnation = runActorCreate, a.id[:], a.incarnation
	case wire.ExecActorMethod:
		a := t.actor
		req.Kind, req.Incarnation, req.Seq = runActorCall, a.incarnation, a.sendSeq
		if a.stub {
			req.Incarnation = 0
		}
		a.sendSeq++
	}
	req.Spec = spec.AppendCBOR(nil)
	body, err := wire.Marshal(req)
	if j.sentTo == nil {
		j.sentTo = map[string]struct{}{}
	}
	j.sentTo[node] = struct{}{}
	ctx, cancel := context.WithTimeout(j.ctx, 7*24*time.Hour) // as long as the node is up
	if n.remoteCalls == nil {
		n.remoteCalls = map[string]map[*task]context.CancelFunc{}
	}
	if n.remoteCalls[node] == nil {
		n.remoteCalls[node] = map[*task]context.CancelFunc{}
	}
	n.remoteCalls[node][t] = cancel
	t.started = time.Now()
	p := n.peers
	defer n.leaseRemote(t, node)
	n.remoteRuns.Add(1)
	go func() {
		defer n.remoteRuns.Done()
		var res taskResult
		if err == nil {
			var typ transport.Type
			var rb []byte
			typ, rb, err = p.Call(ctx, node, msgRunTask, body)
			if err == nil && (typ != msgTaskResult || wire.Unmarshal(rb, &res) != nil) {
				err = fmt.Errorf("%w: node %s answered with a malformed result", transport.ErrRemote, node)
			}
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		cancelled := ctx.Err() != nil
		cancel()
		delete(n.remoteCalls[node], t)
		if err != nil && !errors.Is(err, transport.ErrRemote) && !cancelled {
			// The node could not be reached or the link broke: take it out
			// of the scheduler until gossip says it is alive again.
			n.removePeerLocked(node, false)
		}
		if t.kind == wire.ExecTask {
			n.passLease(t, node)
			if err == nil {
				j.ran(t)
			}
		}
		refs := n.importAll(j, res.Refs, node)
		live := !n.closed && t.state == taskRunning && !j.done
		if !live || err != nil || res.IsError {
			n.dropImports(j, refs, node)
			refs = nil
		}
		switch {
		case t.kind == wire.ExecActorCreate:
			n.remoteActorPlaced(t, node, req.Incarnation, res, err)
		case t.kind == wire.ExecActorMethod:
			n.remoteCallDone(t, node, res, refs, err)
		case !live:
			if err == nil && res.Held {
				n.sendRelease(j.id, node, []objects.ID{t.returns[0]}, []int{1})
			}
		case err != nil && t.retriesLeft != 0:
			n.retry(t, fmt.Sprintf("could not run on node %s (%s)", node, firstLine(err.Error())))
		case err != nil:
			n.failTask(t, abi.ErrorValue{Kind: "worker_died", Message: fmt.Sprintf("task %s could not run on node %s and no retries are left: %v", t.name, node, err), Task: t.name}, true)
		case res.Held:
			n.resultHeld(t, node, res.Size)
		default:
			n.applyResult(t, res, refs)
		}
		n.schedule()
	}()
}

// resultHeld finishes a task whose result stayed on the node that ran
// it: the result becomes a placeholder served by that node, fetched when
// needed, and the task keeps its arguments (its lineage) so that it can
// run again if that node is lost first. Caller holds n.mu.
func (n *Node) resultHeld(t *task, node string, size int64) {
	id := t.returns[0]
	o := n.objs[id]
	if o == nil || o.ready || len(t.returns) != 1 {
		n.sendRelease(t.job.id, node, []objects.ID{id}, []int{1}) // nobody wants it
		n.finishTask(t, true)
		return
	}
	o.remote, o.borrows, o.size = node, 1, size
	t.lineage = true
	n.finishTask(t, true)
	if o.refs <= 0 && len(o.waiters) == 0 {
		n.dropObject(id, o) // nobody holds the result: give it back, and the lineage
		return
	}
	needed := len(o.waiters) > 0
	for _, q := range n.tasks {
		if q.state == taskQueued && slices.Contains(q.argRefs, id) {
			needed = true
			break
		}
	}
	if needed {
		n.fetch(id, o)
	}
}

// reconstruct runs again the task that made a result lost with the node
// that held it, when the task's retries allow. Caller holds n.mu.
func (n *Node) reconstruct(id objects.ID, o *object, node string) bool {
	t := o.producer
	if t == nil || !t.lineage || t.retriesLeft == 0 || t.job.done || n.tasks[t.id] != nil {
		return false
	}
	t.retriesLeft--
	t.lineage = false
	o.remote, o.borrows = "", 0
	n.tasks[t.id] = t
	if t.parent != nil && t.parent.state != taskDone {
		if t.parent.children == nil {
			t.parent.children = map[*task]struct{}{}
		}
		t.parent.children[t] = struct{}{}
	}
	fmt.Fprintf(n.cfg.Stderr, "fabric: object %s was lost with node %s; running task %s again to make it\n", id.Short(), node, t.name)
	n.submit(t)
	return true
}

// remotePipelineDepth is how many short tasks may follow one on another
// node, in its reservation, sent without waiting for it to end.
const remotePipelineDepth = 8

// leaseRemote sends queued short tasks of t's kind to t's node to run in
// its reservation, as topUp does for a local worker: their node queues
// them, so that a round trip per task does not bound the rate. Caller
// holds n.mu.
func (n *Node) leaseRemote(t *task, node string) {
	if t.kind != wire.ExecTask || t.leader != nil || t.state != taskRunning || t.job.done || !t.job.short(t.spec.Func) {
		return
	}
	ids := n.sched.Lease(t.schedID(), remotePipelineDepth-len(t.followers), func(id scheduler.TaskID) bool {
		next := n.tasks[objects.ID([]byte(id))]
		return next != nil && next.state == taskQueued && next.kind == wire.ExecTask && next.job == t.job &&
			t.job.short(next.spec.Func) && !next.here && n.movable(next)
	})
	for _, id := range ids {
		next := n.tasks[objects.ID([]byte(id))]
		next.state = taskRunning
		next.leader = t
		t.followers = append(t.followers, next)
		n.runRemote(next, node)
	}
}

// passLease runs when remote task t ends: a follower leaves its leader;
// a leader hands its reservation to its first follower still running,
// which takes the others and tops up. Caller holds n.mu.
func (n *Node) passLease(t *task, node string) {
	if l := t.leader; l != nil {
		t.leader = nil
		for i, f := range l.followers {
			if f == t {
				l.followers = append(l.followers[:i], l.followers[i+1:]...)
				break
			}
		}
		return
	}
	for len(t.followers) > 0 {
		f := t.followers[0]
		t.followers = t.followers[1:]
		f.leader = nil
		if f.state == taskRunning && n.sched.Handoff(t.schedID(), f.schedID()) {
			f.followers, t.followers = t.followers, nil
			for _, g := range f.followers {
				g.leader = f
			}
			n.leaseRemote(f, node)
			return
		}
	}
}

// importAll imports the references of an answer from node. Caller holds n.mu.
func (n *Node) importAll(j *job, raw [][]byte, node string) []objects.ID {
	var ids []objects.ID
	for _, r := range raw {
		if id, err := objects.IDFromBytes(r); err == nil {
			n.importRef(j, id, node)
			ids = append(ids, id)
		}
	}
	return ids
}

// dropImports lets go of imported references nothing will hold. Caller
// holds n.mu.
func (n *Node) dropImports(j *job, ids []objects.ID, node string) {
	for _, id := range ids {
		o := n.objs[id]
		switch {
		case o == nil || o.remote != node || o.borrows <= 0:
		case o.refs <= 0:
			n.decRef(id) // dropped, and its holds given back
		default:
			o.borrows--
			n.sendRelease(j.id, node, []objects.ID{id}, []int{1})
		}
	}
}

// applyResult stores a remote execution's value(s) and finishes it, or
// fails it with its error value. Caller holds n.mu.
func (n *Node) applyResult(t *task, res taskResult, refs []objects.ID) {
	if res.IsError {
		n.failTask(t, decodeErrorValue(res.Value), true)
		return
	}
	values := []wire.RawMessage{res.Value}
	if len(t.returns) > 1 {
		if err := wire.Unmarshal(res.Value, &values); err != nil || len(values) != len(t.returns) {
			n.failTask(t, abi.ErrorValue{Kind: "task", Message: fmt.Sprintf("task %s declares %d return values but its node answered with %d", t.name, len(t.returns), len(values)), Task: t.name}, true)
			return
		}
	}
	for i, id := range t.returns {
		if err := n.storeValue(id, values[i], refs); err != nil {
			n.failTask(t, abi.ErrorValue{Kind: "task", Message: err.Error(), Task: t.name}, true)
			return
		}
	}
	n.finishTask(t, true)
}

// markNode adds the node to the prefix of each output line of a remote
// task: "(name pid=7) text" becomes "(name pid=7, node=ID) text", as Ray
// adds the worker's IP.
func markNode(out []byte, node string) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(out, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if i := bytes.Index(line, []byte(") ")); line[0] == '(' && i > 0 {
			b.Write(line[:i])
			b.WriteString(", node=" + node)
			b.Write(line[i:])
			continue
		}
		b.Write(line)
	}
	return b.Bytes()
}
