package fabric

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/sandbox"
	"github.com/wasmfabric/fabric/transport"
)

// Jobs across nodes. A job runs its driver on one node, its root. When a
// node working for the job sends a task or an actor to another node, that
// node opens a share of the job: the same job ID and module, its own
// tasks, objects and workers, and no driver. An object a share refers to
// but does not hold is a placeholder naming the node that sent its ID; a
// fetch asks that node for the value. A node that sends an object's ID to
// another node holds the object for it (an export) until that node
// releases it. When a job ends, each node tells the nodes it sent work to,
// which end their shares; a share whose root is lost ends too.

// Messages of jobs across nodes.
const (
	msgRunTask    transport.Type = 2  // body: runRequest; answer: msgTaskResult
	msgTaskResult transport.Type = 3  // body: taskResult
	msgGetObject  transport.Type = 4  // body: getObjectRequest; answer: msgObject
	msgObject     transport.Type = 5  // body: objectAnswer
	msgRelease    transport.Type = 6  // body: releaseRequest; answer: msgAck
	msgEndJob     transport.Type = 7  // body: jobRequest; answer: msgAck
	msgOutput     transport.Type = 8  // body: outputRequest; answer: msgAck
	msgActorDied  transport.Type = 9  // body: actorDiedRequest; answer: msgAck
	msgAck        transport.Type = 10 // body: none
	msgRegister   transport.Type = 11 // body: registerRequest; answer: msgAck
)

// Peers is how a node reaches the other nodes of its cluster; an Agent
// gives its node one.
type Peers interface {
	// Call sends a request to a node and returns its answer.
	Call(ctx context.Context, node string, t transport.Type, body []byte) (transport.Type, []byte, error)
	// Pull copies an object's bytes from a node into memory alloc gives.
	Pull(ctx context.Context, node string, id objects.ID, alloc func(size int64) ([]byte, error)) error
}

type getObjectRequest struct {
	_   struct{} `cbor:",toarray"`
	Job string
	ID  []byte
}

// objectAnswer is an object's value for a share: inline, or Stored (the
// asker pulls the bytes by ID). Refs are the references inside it, each
// exported to the asker.
type objectAnswer struct {
	_       struct{} `cbor:",toarray"`
	IsError bool
	Inline  []byte
	Stored  bool
	Size    int64
	Refs    [][]byte
}

// releaseRequest gives back exports: Counts[i] holds of object IDs[i].
type releaseRequest struct {
	_      struct{} `cbor:",toarray"`
	Job    string
	IDs    [][]byte
	Counts []int
}

type jobRequest struct {
	_   struct{} `cbor:",toarray"`
	Job string
}

// outputRequest carries output of a share's tasks to the job's root,
// already prefixed with each task's name and pid.
type outputRequest struct {
	_      struct{} `cbor:",toarray"`
	Job    string
	Stream uint8 // 1: stdout, 2: stderr
	Data   []byte
}

type actorDiedRequest struct {
	_           struct{} `cbor:",toarray"`
	Job         string
	Actor       []byte
	Incarnation uint64
	Cause       string
}

// registerRequest tells a job's root about an actor a share created, so
// that calls from other nodes, which go to the root, reach it.
type registerRequest struct {
	_     struct{} `cbor:",toarray"`
	Job   string
	Actor []byte
	Class string
}

// handleRegister records an actor of a share at the job's root: a stub
// that forwards calls to the node that owns it.
func (n *Node) handleRegister(from string, body []byte) error {
	var req registerRequest
	if err := wire.Unmarshal(body, &req); err != nil {
		return fmt.Errorf("malformed actor registration")
	}
	id, err := objects.IDFromBytes(req.Actor)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	j := n.jobs[req.Job]
	if j == nil || j.root != "" || j.done {
		return fmt.Errorf("job %s does not run its driver on node %s", req.Job, n.nodeID)
	}
	if n.actors[id] == nil {
		n.actors[id] = &actor{id: id, job: j, class: req.Class, state: actorAlive, stub: true, node: from}
	}
	return nil
}

// exportKey names the holds a node keeps on an object for another node.
type exportKey struct {
	id   objects.ID
	node string
}

// peerTimeout bounds the small requests between nodes (releases, output).
const peerTimeout = 10 * time.Second

// SetPeers gives the node a way to reach the other nodes of its cluster.
// Until then, tasks stay here.
func (n *Node) SetPeers(p Peers) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.peers = p
}

// export holds object id of job j for node (once more). Caller holds n.mu.
func (n *Node) export(j *job, id objects.ID, node string) {
	if n.objs[id] == nil {
		return
	}
	k := exportKey{id, node}
	if j.exports == nil {
		j.exports = map[exportKey]int{}
	}
	if j.exports[k] == 0 {
		n.addRef(id)
	}
	j.exports[k]++
}

// unexport gives back count holds of node on id. Caller holds n.mu.
func (n *Node) unexport(j *job, id objects.ID, node string, count int) {
	k := exportKey{id, node}
	c, ok := j.exports[k]
	if !ok {
		return
	}
	if c -= count; c > 0 {
		j.exports[k] = c
		return
	}
	delete(j.exports, k)
	if o := n.objs[id]; o != nil {
		delete(o.copies, node)
	}
	n.decRef(id)
}

// importRef records an object ID that node from sent for job j, which from
// now holds for this node: a new placeholder, one more hold on one from
// the same node, or a hold given back at once when the object is known
// here otherwise. Caller holds n.mu.
func (n *Node) importRef(j *job, id objects.ID, from string) {
	o := n.objs[id]
	switch {
	case o == nil:
		n.objs[id] = &object{job: j, remote: from, borrows: 1}
	case o.job == j && o.remote == from:
		o.borrows++
	default:
		n.sendRelease(j.id, from, []objects.ID{id}, []int{1})
	}
}

// sendRelease gives holds back to the node that keeps them for this one.
// Caller holds n.mu.
func (n *Node) sendRelease(jobID, node string, ids []objects.ID, counts []int) {
	req := releaseRequest{Job: jobID, Counts: counts}
	for _, id := range ids {
		req.IDs = append(req.IDs, id[:])
	}
	n.sendAsync(node, msgRelease, req)
}

// sendAsync sends a request whose answer only acknowledges it, in the
// background. Caller holds n.mu.
func (n *Node) sendAsync(node string, t transport.Type, msg any) {
	if n.peers == nil || n.closed {
		return
	}
	body, err := wire.Marshal(msg)
	if err != nil {
		return
	}
	p := n.peers
	n.remoteRuns.Add(1)
	go func() {
		defer n.remoteRuns.Done()
		ctx, cancel := context.WithTimeout(n.remoteCtx, peerTimeout)
		defer cancel()
		_, _, _ = p.Call(ctx, node, t, body)
	}()
}

// fetch starts fetching a placeholder's value from the node that holds it
// for this one. Caller holds n.mu.
func (n *Node) fetch(id objects.ID, o *object) {
	if o.ready || o.fetching || o.remote == "" || n.peers == nil || n.closed {
		return
	}
	o.fetching = true
	j, from, p := o.job, o.remote, n.peers
	n.remoteRuns.Add(1)
	go func() {
		defer n.remoteRuns.Done()
		ans, release, err := n.getObject(j.ctx, p, from, j.id, id)
		n.mu.Lock()
		defer n.mu.Unlock()
		defer n.schedule() // tasks may wait for it
		o.fetching = false
		if n.objs[id] != o || o.ready {
			_, _, _ = release(false) // dropped meanwhile
			if err == nil && !j.done {
				ids := []objects.ID{id} // the holds the answer took for this node
				for _, r := range ans.Refs {
					if rid, err := objects.IDFromBytes(r); err == nil {
						ids = append(ids, rid)
					}
				}
				counts := make([]int, len(ids))
				for i := range counts {
					counts[i] = 1
				}
				n.sendRelease(j.id, from, ids, counts)
			}
			return
		}
		if err != nil && !errors.Is(err, transport.ErrRemote) && n.reconstruct(id, o, from) {
			return // made again from its lineage
		}
		if err != nil {
			ev := abi.ErrorValue{Kind: "object_lost", Message: fmt.Sprintf("object %s could not be fetched from node %s: %v", id.Short(), from, err)}
			if !errors.Is(err, transport.ErrRemote) {
				ev = abi.ErrorValue{Kind: "owner_died", Message: fmt.Sprintf("object %s: node %s, which holds it for this node, is unreachable or gone: %v", id.Short(), from, firstLine(err.Error()))}
			}
			b, _ := wire.Marshal(ev)
			n.setReady(id, b, true, false, nil)
			return
		}
		nested := make([]objects.ID, 0, len(ans.Refs))
		for _, r := range ans.Refs {
			if rid, err := objects.IDFromBytes(r); err == nil {
				n.importRef(j, rid, from)
				nested = append(nested, rid)
			}
		}
		stored, inline, err := release(true)
		if err != nil {
			b, _ := wire.Marshal(abi.ErrorValue{Kind: "object_lost", Message: fmt.Sprintf("object %s arrived from node %s but could not be stored: %v", id.Short(), from, err)})
			n.setReady(id, b, true, false, nil)
			return
		}
		if !stored && inline != nil {
			ans.Inline = inline
		}
		o.borrows++ // the answer took a hold on it for this node
		n.setReady(id, ans.Inline, ans.IsError, stored, nested)
		if o := n.objs[id]; o != nil && stored {
			o.size = ans.Size
		}
	}()
}

// getObject asks node for object id of a job and, when it is stored
// there, pulls its bytes into this node's store. release(keep) commits
// the pulled bytes (keep) or gives their room back, and reports whether
// the value is in the store, or else the pulled bytes; call it under n.mu.
func (n *Node) getObject(ctx context.Context, p Peers, node, jobID string, id objects.ID) (objectAnswer, func(keep bool) (bool, []byte, error), error) {
	none := func(bool) (bool, []byte, error) { return false, nil, nil }
	body, err := wire.Marshal(getObjectRequest{Job: jobID, ID: id[:]})
	if err != nil {
		return objectAnswer{}, none, err
	}
	ctx, cancel := context.WithTimeout(ctx, 7*24*time.Hour) // it waits for the value to be made
	defer cancel()
	t, rb, err := p.Call(ctx, node, msgGetObject, body)
	if err != nil {
		return objectAnswer{}, none, err
	}
	var ans objectAnswer
	if t != msgObject || wire.Unmarshal(rb, &ans) != nil {
		return objectAnswer{}, none, fmt.Errorf("%w: malformed object answer", transport.ErrRemote)
	}
	if !ans.Stored {
		return ans, none, nil
	}
	var commit func(ok bool) (bool, error)
	var buf []byte
	err = p.Pull(ctx, node, id, func(size int64) ([]byte, error) {
		dst, c, err := n.reserve(id, size)
		commit, buf = c, dst
		return dst, err
	})
	if err != nil {
		if commit != nil {
			n.mu.Lock()
			_, _ = commit(false)
			n.mu.Unlock()
		}
		return objectAnswer{}, none, err
	}
	return ans, func(keep bool) (bool, []byte, error) {
		stored, err := commit(keep)
		if err != nil || !keep {
			return false, nil, err
		}
		if stored {
			return true, nil, nil
		}
		return false, buf, nil
	}, nil
}

// serveObject answers a share's fetch of object id: once the object is
// ready (fetched here first if this node holds only a placeholder), it is
// exported to the asker with the references inside it.
func (n *Node) serveObject(ctx context.Context, from string, body []byte) (transport.Type, []byte, error) {
	var req getObjectRequest
	if err := wire.Unmarshal(body, &req); err != nil {
		return 0, nil, fmt.Errorf("malformed object request: %v", err)
	}
	id, err := objects.IDFromBytes(req.ID)
	if err != nil {
		return 0, nil, err
	}
	n.mu.Lock()
	j, o := n.jobs[req.Job], n.objs[id]
	if j == nil || o == nil || o.job != j {
		n.mu.Unlock()
		return 0, nil, fmt.Errorf("object %s of job %s is not on node %s (released, or its job ended)", id.Short(), req.Job, n.nodeID)
	}
	n.addRef(id)
	ready := make(chan struct{})
	if !n.waitFor([]objects.ID{id}, 1, -1, func() { close(ready) }, nil) {
		close(ready)
	}
	n.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
	case <-j.ctx.Done():
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.decRef(id)
	o = n.objs[id]
	if o == nil || !o.ready {
		return 0, nil, fmt.Errorf("object %s: the request ended or its job ended before it was ready", id.Short())
	}
	ans := objectAnswer{IsError: o.isError, Stored: o.stored, Size: o.size}
	if !o.stored {
		ans.Inline = o.inline
	} else {
		if o.copies == nil {
			o.copies = map[string]struct{}{}
		}
		o.copies[from] = struct{}{} // it pulls the bytes now, and holds them until it releases
	}
	n.export(j, id, from)
	for _, r := range o.nested {
		n.export(j, r, from)
		ans.Refs = append(ans.Refs, r[:])
	}
	out, err := wire.Marshal(ans)
	return msgObject, out, err
}

// handleRelease gives back a peer's holds on objects of a job.
func (n *Node) handleRelease(from string, body []byte) error {
	var req releaseRequest
	if err := wire.Unmarshal(body, &req); err != nil || len(req.IDs) != len(req.Counts) {
		return fmt.Errorf("malformed release request")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	j := n.jobs[req.Job]
	if j == nil {
		return nil // ended: everything is gone already
	}
	for i, b := range req.IDs {
		if id, err := objects.IDFromBytes(b); err == nil && req.Counts[i] > 0 {
			n.unexport(j, id, from, req.Counts[i])
		}
	}
	return nil
}

// handleEndJob ends this node's share of a job when a node that sent it
// work says the job ended.
func (n *Node) handleEndJob(body []byte) error {
	var req jobRequest
	if err := wire.Unmarshal(body, &req); err != nil {
		return fmt.Errorf("malformed end-job request")
	}
	n.mu.Lock()
	j := n.jobs[req.Job]
	n.mu.Unlock()
	if j != nil && j.root != "" && !n.closing.Load() {
		n.remoteRuns.Add(1)
		go func() {
			defer n.remoteRuns.Done()
			n.endJob(j)
		}()
	}
	return nil
}

// handleOutput prints output a share sent for a job of this node.
func (n *Node) handleOutput(from string, body []byte) error {
	var req outputRequest
	if err := wire.Unmarshal(body, &req); err != nil {
		return fmt.Errorf("malformed output request")
	}
	n.mu.Lock()
	j := n.jobs[req.Job]
	n.mu.Unlock()
	if j == nil || j.root != "" {
		return nil
	}
	dst := j.stdout
	if req.Stream != 1 {
		dst = j.stderr
	}
	n.outMu.Lock()
	defer n.outMu.Unlock()
	_, _ = dst.Write(markNode(req.Data, from))
	return nil
}

// share returns this node's share of a job whose root is another node,
// opening it with the module with digest (which must be here).
func (n *Node) share(jobID, root, digest string) (*job, error) {
	n.mu.Lock()
	j := n.jobs[jobID]
	_, ended := n.ended[jobID]
	n.mu.Unlock()
	if j != nil {
		return j, nil
	}
	if ended {
		return nil, fmt.Errorf("job %s has ended on node %s", jobID, n.nodeID)
	}
	path := filepath.Join(n.dataDir, "modules", digest+".wasm")
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("module %.12s is not on node %s", digest, n.nodeID)
	}
	if _, err := sandbox.Validate(wasm, sandbox.Limits{MaxMemoryPages: uint32(n.cfg.GuestMemoryLimit / sandbox.WasmPageSize)}); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if j := n.jobs[jobID]; j != nil {
		return j, nil
	}
	if _, ended := n.ended[jobID]; ended {
		return nil, fmt.Errorf("job %s has ended on node %s", jobID, n.nodeID)
	}
	j = &job{id: jobID, root: root, modulePath: path, workers: map[*workerProc]struct{}{}, result: make(chan error, 1)}
	j.ctx, j.cancel = context.WithCancel(n.remoteCtx)
	j.stdout = &peerOutput{n: n, job: jobID, root: root, stream: 1}
	j.stderr = &peerOutput{n: n, job: jobID, root: root, stream: 2}
	n.jobs[jobID] = j
	return j, nil
}

// peerOutput sends a share's output to its job's root, in batches.
type peerOutput struct {
	n      *Node
	job    string
	root   string
	stream uint8

	sendMu   sync.Mutex // one batch at a time, in order
	mu       sync.Mutex
	buf      []byte
	dropped  int
	flushing bool
}

// peerOutputMax bounds the output a share buffers for its root.
const peerOutputMax = 4 << 20

func (p *peerOutput) Write(b []byte) (int, error) {
	p.mu.Lock()
	if len(p.buf)+len(b) > peerOutputMax {
		p.dropped += len(b)
	} else {
		p.buf = append(p.buf, b...)
	}
	start := !p.flushing && !p.n.closing.Load()
	if start {
		p.flushing = true
	}
	p.mu.Unlock()
	if start {
		p.n.remoteRuns.Add(1)
		go func() {
			defer p.n.remoteRuns.Done()
			for {
				select {
				case <-time.After(20 * time.Millisecond):
				case <-p.n.remoteCtx.Done():
				}
				p.flush()
				p.mu.Lock()
				if len(p.buf) == 0 || p.n.remoteCtx.Err() != nil {
					p.flushing = false
					p.mu.Unlock()
					return
				}
				p.mu.Unlock()
			}
		}()
	}
	return len(b), nil
}

// flush sends what is buffered now.
func (p *peerOutput) flush() {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	p.mu.Lock()
	data, dropped := p.buf, p.dropped
	p.buf, p.dropped = nil, 0
	p.mu.Unlock()
	if dropped > 0 {
		data = fmt.Appendf(data, "fabric: node %s dropped %d bytes of output its job's root did not take in time\n", p.n.nodeID, dropped)
	}
	p.n.mu.Lock()
	peers := p.n.peers
	p.n.mu.Unlock()
	if len(data) == 0 || peers == nil {
		return
	}
	body, err := wire.Marshal(outputRequest{Job: p.job, Stream: p.stream, Data: data})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(p.n.remoteCtx, peerTimeout)
	defer cancel()
	_, _, _ = peers.Call(ctx, p.root, msgOutput, body)
}

// flushShareOutput sends a share's buffered output before a result that
// should follow it.
func flushShareOutput(j *job) {
	for _, w := range []any{j.stdout, j.stderr} {
		if p, ok := w.(*peerOutput); ok {
			p.flush()
		}
	}
}
