package fabric

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/scheduler"
	"github.com/wasmfabric/fabric/transport"
)

// Tasks across nodes. The owner's scheduler places a task that can move on
// another node (runRemote); the owner sends the task's spec, with small
// arguments as values, and its module's digest. That node fetches the
// module and any large argument from the owner if it lacks them, runs the
// task in a job of its own, pinned to itself, and answers with the value
// and the task's output. Not there yet: calls back to the owner from
// inside the task, large results left where they were made, actors
// (ARCHITECTURE.md, "The path of a task across nodes").

// Errors of remote tasks.
var (
	// ErrRemoteTask wraps the error a task that ran on another node failed with.
	ErrRemoteTask = errors.New("fabric: remote task failed")
	// ErrUnsupported means a request needs what remote tasks cannot do yet.
	ErrUnsupported = errors.New("fabric: not supported for tasks on other nodes yet")
)

// RunTask runs one task of a module outside any driver, in a job made for
// it and ended after it. It returns the task's value (CBOR), or its error
// value (an abi.ErrorValue in CBOR) with isError set.
func (n *Node) RunTask(ctx context.Context, wasm []byte, spec abi.TaskSpec, jo JobOptions) (value []byte, isError bool, err error) {
	if len(spec.Refs) > 0 || spec.Actor != nil || spec.NumReturns > 1 || spec.Options.Group != nil {
		return nil, false, fmt.Errorf("%w: reference arguments, actor calls, several returns and placement groups", ErrUnsupported)
	}
	n.mu.Lock()
	for _, a := range spec.Args {
		if a.Ref == nil && a.Value == nil {
			n.mu.Unlock()
			return nil, false, fmt.Errorf("fabric: an argument is neither a value nor a reference")
		}
		if a.Ref != nil {
			id, err := objects.IDFromBytes(a.Ref)
			if o := n.objs[id]; err != nil || o == nil || !o.ready || o.job != nil {
				n.mu.Unlock()
				return nil, false, fmt.Errorf("%w: reference arguments the owner did not send", ErrUnsupported)
			}
		}
	}
	n.mu.Unlock()
	if err := checkDemand(spec.Options); err != nil {
		return nil, false, err
	}
	j, err := n.newJob(wasm, jo)
	if err != nil {
		return nil, false, err
	}
	done := make(chan struct{})
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, false, ErrClosed
	}
	n.jobs[j.id] = j
	t := n.newTask(j, nil, spec, wire.ExecTask, newID())
	t.here = true // the owner chose this node: no second hop
	ret := t.returns[0]
	n.addRef(ret) // held until read: nobody else refers to it
	n.submit(t)
	if !n.waitFor([]objects.ID{ret}, 1, -1, func() { close(done) }, nil) {
		close(done)
	}
	n.mu.Unlock()
	defer n.endJob(j)
	select {
	case <-done:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	n.mu.Lock()
	o := n.objs[ret]
	var inline []byte
	stored := false
	if o != nil {
		isError, inline, stored = o.isError, o.inline, o.stored
	}
	n.mu.Unlock()
	switch {
	case o == nil:
		return nil, false, fmt.Errorf("fabric: the result of %s was lost", spec.Func)
	case stored:
		value, err = n.store.Read(ret)
		return value, isError, err
	default:
		return inline, isError, nil
	}
}

// Messages between agents for remote tasks.
const (
	msgRunTask    transport.Type = 2 // body: runTaskRequest; answer: msgTaskResult
	msgTaskResult transport.Type = 3 // body: taskResult
)

type runTaskRequest struct {
	_      struct{} `cbor:",toarray"`
	Owner  string   // the node that has the module
	Digest string   // the module's SHA-256
	Spec   []byte   // an abi.TaskSpec in CBOR
}

type taskResult struct {
	_       struct{} `cbor:",toarray"`
	Value   []byte   // CBOR value, or abi.ErrorValue when IsError
	IsError bool
	Output  []byte // the task's output lines, as this node prefixed them (the last remoteOutputMax bytes)
}

// remoteOutputMax bounds the output a remote task's answer carries.
const remoteOutputMax = 1 << 20

// handleRunTask runs a task for another node.
func (a *Agent) handleRunTask(ctx context.Context, body []byte) (transport.Type, []byte, error) {
	var req runTaskRequest
	if err := wire.Unmarshal(body, &req); err != nil {
		return 0, nil, fmt.Errorf("malformed task request: %v", err)
	}
	var spec abi.TaskSpec
	if err := wire.Unmarshal(req.Spec, &spec); err != nil {
		return 0, nil, fmt.Errorf("malformed task spec: %v", err)
	}
	if err := a.PullModule(ctx, req.Owner, req.Digest); err != nil {
		return 0, nil, fmt.Errorf("fetching module %.12s from %s: %v", req.Digest, req.Owner, err)
	}
	wasm, err := os.ReadFile(filepath.Join(a.node.dataDir, "modules", req.Digest+".wasm"))
	if err != nil {
		return 0, nil, err
	}
	// Reference arguments are large objects of the owner: fetch each into
	// this node's store first (or use a copy already here), for the task.
	for _, arg := range spec.Args {
		if arg.Ref == nil {
			continue
		}
		id, err := objects.IDFromBytes(arg.Ref)
		if err != nil {
			return 0, nil, err
		}
		if !a.node.holdObject(id) {
			if _, err := a.PullObject(ctx, req.Owner, id, transport.PullOptions{}); err != nil && !a.node.holdObject(id) {
				return 0, nil, fmt.Errorf("fetching argument %s from %s: %v", id.Short(), req.Owner, err)
			}
		}
		defer a.node.DeleteObject(id)
	}
	output := &limitedBuffer{b: &bytes.Buffer{}, max: remoteOutputMax}
	value, isError, err := a.node.RunTask(ctx, wasm, spec, JobOptions{Stdout: output, Stderr: output})
	if err != nil {
		return 0, nil, err
	}
	out, err := wire.Marshal(taskResult{Value: value, IsError: isError, Output: output.b.Bytes()})
	return msgTaskResult, out, err
}

// RunRemote runs a task of the module with the digest on another node and
// returns its value (CBOR). The module must be on this node. A task that
// fails returns an error wrapping ErrRemoteTask with the task's message.
func (a *Agent) RunRemote(ctx context.Context, nodeID, digest string, spec abi.TaskSpec) ([]byte, error) {
	res, err := a.runOn(ctx, nodeID, digest, spec)
	if err != nil {
		return nil, err
	}
	if res.IsError {
		ev := decodeErrorValue(res.Value)
		return nil, fmt.Errorf("%w on %s: %s: %s", ErrRemoteTask, nodeID, ev.Kind, ev.Message)
	}
	return res.Value, nil
}

// runOn is RunRemote's core, and the node's RemoteRunner.
func (a *Agent) runOn(ctx context.Context, nodeID, digest string, spec abi.TaskSpec) (RemoteResult, error) {
	if !a.node.HasModule(digest) {
		return RemoteResult{}, fmt.Errorf("fabric: module %.12s is not on this node", digest)
	}
	var addr string
	for _, m := range a.members.Members() {
		if m.ID == nodeID && m.Status == "alive" {
			addr = m.QUIC
		}
	}
	if addr == "" {
		return RemoteResult{}, fmt.Errorf("%w: %q", ErrUnknownNode, nodeID)
	}
	req, err := wire.Marshal(runTaskRequest{Owner: a.ID, Digest: digest, Spec: spec.AppendCBOR(nil)})
	if err != nil {
		return RemoteResult{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		// Tasks may run for long: the call waits as long as the node is up.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 7*24*time.Hour)
		defer cancel()
	}
	t, body, err := a.quic.Call(ctx, addr, msgRunTask, req)
	if err != nil {
		return RemoteResult{}, err
	}
	var res taskResult
	if t != msgTaskResult || wire.Unmarshal(body, &res) != nil {
		return RemoteResult{}, fmt.Errorf("fabric: node %s answered a task with a malformed result", nodeID)
	}
	return RemoteResult{Value: res.Value, IsError: res.IsError, Output: res.Output}, nil
}

// RemoteRunner runs a task on another node: the module is digest, which is
// on this node. It returns the task's value or error value (isError), or
// err when the task could not be run there (the node is gone, the link
// broke): the task may then be retried elsewhere.
type RemoteRunner func(ctx context.Context, node, digest string, spec abi.TaskSpec) (res RemoteResult, err error)

// RemoteResult is what a task that ran on another node gave back.
type RemoteResult struct {
	Value   []byte // CBOR value, or an abi.ErrorValue when IsError
	IsError bool
	Output  []byte // its output lines, prefixed there with the task's name and pid
}

// SetPeers gives the node a way to run tasks on other nodes. Until then,
// and for tasks that cannot move, tasks stay here.
func (n *Node) SetPeers(run RemoteRunner) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.remote = run
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
	n.removePeerLocked(id)
	n.schedule()
}

// removePeerLocked forgets a node and ends the calls running there: their
// tasks are retried elsewhere. Caller holds n.mu.
func (n *Node) removePeerLocked(id string) {
	n.sched.RemoveNode(scheduler.NodeID(id))
	for _, cancel := range n.remoteCalls[id] {
		cancel()
	}
}

// movable reports whether a task may run on another node: a plain task
// whose arguments are values or ready objects held inline, with nothing
// nested in them. Caller holds n.mu.
func (n *Node) movable(t *task) bool {
	if n.remote == nil || t.kind != wire.ExecTask || len(t.spec.Refs) > 0 || t.spec.NumReturns > 1 || t.spec.Options.Group != nil {
		return false
	}
	for _, a := range t.spec.Args {
		if a.Ref == nil {
			continue
		}
		id, _ := objects.IDFromBytes(a.Ref)
		if o := n.objs[id]; o == nil || !o.ready || o.isError || len(o.nested) > 0 {
			return false // pending, failed or holding references: kept here for now
		}
	}
	return true
}

// runRemote sends a task the scheduler placed on another node there, and
// applies its result when it comes back. Caller holds n.mu.
func (n *Node) runRemote(t *task, node string) {
	spec := t.spec
	spec.Args = make([]abi.Arg, len(t.spec.Args))
	for i, a := range t.spec.Args {
		if a.Ref == nil {
			spec.Args[i] = a
			continue
		}
		id, _ := objects.IDFromBytes(a.Ref)
		o := n.objs[id]
		if o == nil || !o.ready {
			n.failTask(t, abi.ErrorValue{Kind: "task", Message: fmt.Sprintf("argument object %s is not available to send", id.Short()), Task: t.name}, true)
			return
		}
		if o.stored {
			spec.Args[i] = a // large: the node pulls it from here
			continue
		}
		spec.Args[i] = abi.Arg{Value: o.inline}
	}
	digest := strings.TrimSuffix(filepath.Base(t.job.modulePath), ".wasm")
	run := n.remote
	ctx, cancel := context.WithCancel(n.remoteCtx)
	if n.remoteCalls == nil {
		n.remoteCalls = map[string]map[*task]context.CancelFunc{}
	}
	if n.remoteCalls[node] == nil {
		n.remoteCalls[node] = map[*task]context.CancelFunc{}
	}
	n.remoteCalls[node][t] = cancel
	t.started = time.Now()
	n.remoteRuns.Add(1)
	go func() {
		defer n.remoteRuns.Done()
		res, err := run(ctx, node, digest, spec)
		value, isError := res.Value, res.IsError
		n.mu.Lock()
		defer n.mu.Unlock()
		cancel()
		delete(n.remoteCalls[node], t)
		if err != nil && !errors.Is(err, transport.ErrRemote) && n.remoteCtx.Err() == nil {
			// The node could not be reached or the link broke: take it out
			// of the scheduler until gossip says it is alive again.
			n.removePeerLocked(node)
		}
		if n.closed || t.state != taskRunning || t.job.done {
			return // cancelled, or its job or the node ended meanwhile
		}
		if len(res.Output) > 0 {
			n.outMu.Lock()
			_, _ = t.job.stdout.Write(markNode(res.Output, node))
			n.outMu.Unlock()
		}
		switch {
		case err != nil && t.retriesLeft != 0:
			n.retry(t, fmt.Sprintf("could not run on node %s (%s)", node, firstLine(err.Error())))
		case err != nil:
			n.failTask(t, abi.ErrorValue{Kind: "worker_died", Message: fmt.Sprintf("task %s could not run on node %s and no retries are left: %v", t.name, node, err), Task: t.name}, true)
		case isError:
			n.failTask(t, decodeErrorValue(value), true)
		default:
			if err := n.storeValue(t.returns[0], value, nil); err != nil {
				n.failTask(t, abi.ErrorValue{Kind: "task", Message: err.Error(), Task: t.name}, true)
			} else {
				n.finishTask(t, true)
			}
		}
		n.schedule()
	}()
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
