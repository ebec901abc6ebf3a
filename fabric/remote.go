package fabric

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/transport"
)

// Running a task for another node: the first piece of scheduling across
// nodes. The owner sends the task's spec and its module's digest; this
// node fetches the module if it lacks it, runs the task in a job of its
// own, and answers with the task's value. What is not there yet:
// reference arguments (values only), calls back to the owner from inside
// the task, and the owner's scheduler choosing the node (ARCHITECTURE.md,
// "The path of a task across nodes").

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
func (n *Node) RunTask(ctx context.Context, wasm []byte, spec abi.TaskSpec) (value []byte, isError bool, err error) {
	if len(spec.Refs) > 0 || spec.Actor != nil || spec.NumReturns > 1 || spec.Options.Group != nil {
		return nil, false, fmt.Errorf("%w: reference arguments, actor calls, several returns and placement groups", ErrUnsupported)
	}
	for _, a := range spec.Args {
		if a.Ref != nil || a.Value == nil {
			return nil, false, fmt.Errorf("%w: arguments must be values", ErrUnsupported)
		}
	}
	if err := checkDemand(spec.Options); err != nil {
		return nil, false, err
	}
	j, err := n.newJob(wasm, JobOptions{})
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
}

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
	value, isError, err := a.node.RunTask(ctx, wasm, spec)
	if err != nil {
		return 0, nil, err
	}
	out, err := wire.Marshal(taskResult{Value: value, IsError: isError})
	return msgTaskResult, out, err
}

// RunRemote runs a task of the module with the digest on another node and
// returns its value (CBOR). The module must be on this node. A task that
// fails returns an error wrapping ErrRemoteTask with the task's message.
func (a *Agent) RunRemote(ctx context.Context, nodeID, digest string, spec abi.TaskSpec) ([]byte, error) {
	if !a.node.HasModule(digest) {
		return nil, fmt.Errorf("fabric: module %.12s is not on this node", digest)
	}
	var addr string
	for _, m := range a.members.Members() {
		if m.ID == nodeID && m.Status == "alive" {
			addr = m.QUIC
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownNode, nodeID)
	}
	req, err := wire.Marshal(runTaskRequest{Owner: a.ID, Digest: digest, Spec: spec.AppendCBOR(nil)})
	if err != nil {
		return nil, err
	}
	t, body, err := a.quic.Call(ctx, addr, msgRunTask, req)
	if err != nil {
		return nil, err
	}
	var res taskResult
	if t != msgTaskResult || wire.Unmarshal(body, &res) != nil {
		return nil, fmt.Errorf("fabric: node %s answered a task with a malformed result", nodeID)
	}
	if res.IsError {
		ev := decodeErrorValue(res.Value)
		return nil, fmt.Errorf("%w on %s: %s: %s", ErrRemoteTask, nodeID, ev.Kind, ev.Message)
	}
	return res.Value, nil
}
