//go:build linux

package fabric

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Serve's replicas on a node: a deployment's replicas are actors of a
// job rooted at a pseudo-peer of the agent ("call:serve:<hex>"), as a
// call's task is. The agent creates them (RunActorCreate) and sends each
// request as a call of the class's __call__ method (RunActorCall); the
// node answers the pseudo-peer as it answers any peer, and the agent
// routes those answers here. The core runs the actors as it runs any
// job's: worker processes, sandboxes, the tenant's share and limits.

// servePeerPrefix names the pseudo-peers of replica sets. It extends
// callPeerPrefix: grants and module proofs for calls hold for it.
const servePeerPrefix = callPeerPrefix + "serve:"

// replicaLinger is how long the worker process of a replica set outlives
// its last replica (workerpool's Linger): a deployment scaled to zero
// that gets a request within it starts a replica in a process that has
// its module loaded, in milliseconds, instead of starting a process and
// loading the module (a tenth of a second for a Go guest). The process
// holds no instance meanwhile, and uses no CPU.
const replicaLinger = 10 * time.Minute

// Errors of a replica set.
var (
	// ErrNoReplica: the deployment has no replica alive to take the request.
	ErrNoReplica = errors.New("fabric: no replica of the deployment is alive")
	// ErrReplicaDied: the replica died while it held the request.
	ErrReplicaDied = errors.New("fabric: the replica died while it held the request")
	// errStreams: the deployment streams its responses, which the caller
	// takes on a stream of its own.
	errStreams = errors.New("fabric: the deployment streams its responses")
	// ErrOverloaded: every replica holds its max ongoing requests.
	ErrOverloaded = errors.New("fabric: every replica of the deployment is at its max ongoing requests")
)

// replicaSet hosts replicas of one deployment on this node.
type replicaSet struct {
	a                     *Agent
	peer, job             string
	tenant, digest, class string
	grant                 []byte
	opts                  abi.Options
	mu                    sync.Mutex
	replicas              []*replica
	waiting               map[objects.ID]chan *peerwire.TaskDone // calls and creations by task ID
	closed                bool
	ctx                   context.Context // ended by close
	cancel                context.CancelFunc
	readyNow              chan struct{}             // closed (and replaced) when a replica becomes ready
	yields                map[objects.ID]*itemQueue // streamed calls' items by task ID
	// streaming: the deployment streams its responses (its __call__
	// said so): requests go to its __stream__ method.
	streaming atomic.Bool
	started   atomic.Int64
	orphans   atomic.Int64 // streamed items no request took (it left, or held its bound)
	loads     loadSamples
	logs      logTail // the replicas' latest output
	// maxOngoing bounds each replica's requests in flight (0: none);
	// past it on every replica, call answers ErrOverloaded.
	maxOngoing int
}

// replica is one actor of a replica set. It takes requests once ready:
// its constructor ran.
type replica struct {
	id      objects.ID
	inc     uint64
	ongoing atomic.Int64
	ready   atomic.Bool
	dead    atomic.Bool
	cause   string
}

// newReplicaSet opens a replica set for tenant's class of module digest
// (which this node holds) with the actor options opts.
func (a *Agent) newReplicaSet(ctx context.Context, tenant, digest, class string, opts abi.Options) (*replicaSet, error) {
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	rs := &replicaSet{a: a, peer: servePeerPrefix + hex.EncodeToString(raw[:]), job: string(newJobID()), tenant: tenant, digest: digest,
		class: class, opts: opts, waiting: map[objects.ID]chan *peerwire.TaskDone{}, readyNow: make(chan struct{}),
		yields: map[objects.ID]*itemQueue{}}
	rs.ctx, rs.cancel = context.WithCancel(context.Background())
	rs.grant = a.grantFor(ctx, rs.job, tenant, rs.peer, "", digest)
	if !a.node.HasModule(digest) {
		if err := a.node.pullModuleFrom(ctx, digest, a.moduleHolders(ctx, digest), encodeModuleProof(rs.job, tenant, rs.peer, digest, rs.grant)); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoModuleHere, digest, err)
		}
	}
	a.node.touchModule(digest)
	a.node.pool.Linger(rs.job, rs.tenant, replicaLinger)
	a.serveMu.Lock()
	a.replicaSets[rs.peer] = rs
	a.serveMu.Unlock()
	return rs, nil
}

// step hands the node a message from the set's pseudo-peer.
func (rs *replicaSet) step(m peerwire.Message) {
	rs.a.node.step(core.PeerMessage{From: scheduler.NodeID(rs.peer), Msg: m})
}

// run sends a RunTask and waits for its TaskDone.
func (rs *replicaSet) run(ctx context.Context, what peerwire.Run, actor objects.ID, inc uint64, spec abi.TaskSpec) (*peerwire.TaskDone, error) {
	var task objects.ID
	_, _ = rand.Read(task[:16])
	done := make(chan *peerwire.TaskDone, 1)
	rs.mu.Lock()
	if rs.closed {
		rs.mu.Unlock()
		return nil, ErrClosed
	}
	rs.waiting[task] = done
	rs.mu.Unlock()
	defer func() {
		rs.mu.Lock()
		delete(rs.waiting, task)
		rs.mu.Unlock()
	}()
	m := &peerwire.RunTask{Job: rs.job, Root: rs.peer, Digest: rs.digest, What: what, Task: task, Attempt: 1, Spec: spec.AppendCBOR(nil),
		Incarnation: inc, Tenant: rs.tenant, Grant: rs.grant}
	if what == peerwire.RunActorCreate {
		m.Actor, m.Ready = actor, true
	}
	rs.step(m)
	select {
	case d := <-done:
		return d, nil
	case <-ctx.Done():
		switch what {
		case peerwire.RunActorCall:
			rs.step(&peerwire.CancelTask{Job: rs.job, Task: task, Attempt: 1, Force: true})
		case peerwire.RunActorCreate:
			rs.step(&peerwire.KillActor{Job: rs.job, Actor: actor, Incarnation: inc, NoRestart: true})
		}
		return nil, ctx.Err()
	}
}

// add creates one more replica and waits until it is ready (its
// constructor ran), or failed.
func (rs *replicaSet) add() error {
	r := rs.reserve()
	if r == nil {
		return ErrClosed
	}
	return rs.create(r)
}

// reserve adds a replica that is starting, for create. It counts as
// alive from this moment: it may wait long, for its tenant's quota or
// the node's room, and the set must not start another in its place; and
// a request that comes meanwhile waits for it (pickWait).
func (rs *replicaSet) reserve() *replica {
	var id objects.ID
	_, _ = rand.Read(id[:16])
	r := &replica{id: id, inc: 1}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return nil
	}
	rs.replicas = append(rs.replicas, r)
	rs.started.Add(1)
	return r
}

// create creates a reserved replica's actor and waits until it is ready,
// or failed (and then forgotten).
func (rs *replicaSet) create(r *replica) error {
	d, err := rs.run(rs.ctx, peerwire.RunActorCreate, r.id, r.inc, abi.TaskSpec{Func: rs.class, Options: rs.opts})
	switch {
	case err != nil:
	case d.Refused != "":
		err = fmt.Errorf("%w: the node refused the replica: %s", ErrBadRequest, d.Refused)
	case d.Error != nil:
		var ev abi.ErrorValue
		_ = wire.Unmarshal(d.Error, &ev)
		err = fmt.Errorf("the replica's constructor failed: %s", firstLineOf(ev.Message))
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if err != nil {
		if !r.dead.Swap(true) {
			r.cause = err.Error()
		}
		rs.replicas = slices.DeleteFunc(rs.replicas, func(x *replica) bool { return x == r })
		close(rs.readyNow) // waiters look again: none may be starting any more
		rs.readyNow = make(chan struct{})
		return err
	}
	if !r.dead.Load() {
		r.ready.Store(true)
		close(rs.readyNow)
		rs.readyNow = make(chan struct{})
	}
	return nil
}

// alive counts the replicas alive: ready, or starting.
func (rs *replicaSet) alive() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, r := range rs.replicas {
		if !r.dead.Load() {
			n++
		}
	}
	return n
}

// ready counts the replicas that take requests.
func (rs *replicaSet) ready() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, r := range rs.replicas {
		if r.ready.Load() && !r.dead.Load() {
			n++
		}
	}
	return n
}

// ongoing sums the requests the set's replicas hold.
func (rs *replicaSet) ongoing() int64 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var n int64
	for _, r := range rs.replicas {
		n += r.ongoing.Load()
	}
	return n
}

// loadWindow is how many load samples (one each loadSample) a set's
// reported load averages.
const (
	loadWindow = 10
	loadSample = serveInterval / loadWindow
)

// loadSamples is a set's recent load, for autoscaling: sampled every
// loadSample, the requests and calls its replicas hold (the more, for
// each replica, of the requests this agent sent it and the calls the node
// says it holds, which counts the calls other deployments make to it
// through handles), and whether any came since the sample before.
type loadSamples struct {
	mu     sync.Mutex
	held   [loadWindow]int64
	active [loadWindow]bool
	next   int
	given  map[objects.ID]uint64 // each replica's calls in all, at the last sample
}

// sample takes a load sample.
func (rs *replicaSet) sample() {
	rs.mu.Lock()
	ids := make([]objects.ID, len(rs.replicas))
	sent := make([]int64, len(rs.replicas))
	for i, r := range rs.replicas {
		ids[i], sent[i] = r.id, r.ongoing.Load()
	}
	rs.mu.Unlock()
	holds, given := rs.a.node.actorCalls(ids)
	var held int64
	for i := range ids {
		held += max(sent[i], int64(holds[i]))
	}
	l := &rs.loads
	l.mu.Lock()
	defer l.mu.Unlock()
	active := held > 0
	seen := make(map[objects.ID]uint64, len(ids))
	for i, id := range ids {
		seen[id] = given[i]
		if given[i] > l.given[id] {
			active = true
		}
	}
	l.given = seen
	l.held[l.next], l.active[l.next] = held, active
	l.next = (l.next + 1) % loadWindow
}

// load returns the requests and calls the set held on average over the
// last samples, and whether any came.
func (rs *replicaSet) load() (float64, bool) {
	l := &rs.loads
	l.mu.Lock()
	defer l.mu.Unlock()
	var sum int64
	active := false
	for i := range loadWindow {
		sum += l.held[i]
		active = active || l.active[i]
	}
	return float64(sum) / loadWindow, active
}

// prune forgets the replicas that died.
func (rs *replicaSet) prune() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.replicas = slices.DeleteFunc(rs.replicas, func(r *replica) bool { return r.dead.Load() })
}

// remove stops one replica: one that has not started, else the one
// with the fewest requests in flight, after replicaDrain (the node
// queues its kill behind the calls it holds then).
func (rs *replicaSet) remove() {
	rs.mu.Lock()
	var victim *replica
	better := func(r *replica) bool {
		if r.ready.Load() != victim.ready.Load() {
			return !r.ready.Load()
		}
		return r.ongoing.Load() < victim.ongoing.Load()
	}
	for _, r := range rs.replicas {
		if !r.dead.Load() && (victim == nil || better(r)) {
			victim = r
		}
	}
	if victim != nil {
		victim.dead.Store(true)
		victim.cause = "scaled down"
		rs.replicas = slices.DeleteFunc(rs.replicas, func(r *replica) bool { return r == victim })
	}
	rs.mu.Unlock()
	if victim == nil {
		return
	}
	kill := func() {
		if rs.ctx.Err() == nil { // else the set's job ended, and its replicas with it
			rs.step(&peerwire.KillActor{Job: rs.job, Actor: victim.id, Incarnation: victim.inc, NoRestart: true})
		}
	}
	if !victim.ready.Load() {
		kill() // it never took a request
		return
	}
	// Taken out of the picks now, it goes after replicaDrain: a call
	// through a handle that picked it a moment ago still finds it.
	time.AfterFunc(replicaDrain, kill)
}

// replicaDrain is how long a replica scaled down lives on, out of the
// picks, for the calls of handles that chose it before.
const replicaDrain = 2 * time.Second

// pick chooses a replica by the power of two choices: of two ready ones
// at random, the one with fewer requests in flight. With none ready, it
// returns a channel closed when one becomes ready, or nil when none is
// starting either.
func (rs *replicaSet) pick() (*replica, <-chan struct{}) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var alive []*replica
	starting := false
	for _, r := range rs.replicas {
		switch {
		case r.dead.Load():
		case r.ready.Load():
			alive = append(alive, r)
		default:
			starting = true
		}
	}
	switch len(alive) {
	case 0:
		if starting && !rs.closed {
			return nil, rs.readyNow
		}
		return nil, nil
	case 1:
		return alive[0], nil
	}
	i, j := randIntN(len(alive)), randIntN(len(alive)-1)
	if j >= i {
		j++
	}
	if alive[j].ongoing.Load() < alive[i].ongoing.Load() {
		return alive[j], nil
	}
	return alive[i], nil
}

// pickWait picks a ready replica; while none is ready and some are
// starting, it waits for one (up to coldStartWait).
func (rs *replicaSet) pickWait(ctx context.Context) (*replica, error) {
	r, readyNow := rs.pick()
	if r == nil && readyNow != nil {
		wait := time.NewTimer(coldStartWait)
		defer wait.Stop()
		for r == nil && readyNow != nil {
			select {
			case <-readyNow:
			case <-wait.C:
				return nil, fmt.Errorf("%w: none of its replicas here started within %s", ErrNoReplica, coldStartWait)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			r, readyNow = rs.pick()
		}
	}
	if r == nil {
		return nil, ErrNoReplica
	}
	return r, nil
}

// call sends req to a replica and returns its response. A deployment
// that streams its responses has them given to emit, item by item (the
// first has the status and headers), and call returns no response.
func (rs *replicaSet) call(ctx context.Context, req abi.ServeRequest, emit func(abi.ServeResponse) error) (abi.ServeResponse, error) {
	r, err := rs.pickWait(ctx)
	if err != nil {
		return abi.ServeResponse{}, err
	}
	if n := r.ongoing.Add(1); rs.maxOngoing > 0 && n > int64(rs.maxOngoing) {
		r.ongoing.Add(-1) // the less loaded of two is full: the set is
		return abi.ServeResponse{}, ErrOverloaded
	}
	defer r.ongoing.Add(-1)
	arg := req.AppendCBOR(nil)
	if rs.streaming.Load() {
		if emit == nil {
			return abi.ServeResponse{}, errStreams
		}
		return abi.ServeResponse{}, rs.stream(ctx, r, arg, emit)
	}
	spec := abi.TaskSpec{Func: rs.class + "." + abi.ServeMethod, Actor: r.id[:], NumReturns: 1, Args: []abi.Arg{{Value: arg}}}
	d, err := rs.run(ctx, peerwire.RunActorCall, r.id, r.inc, spec)
	if err != nil {
		return abi.ServeResponse{}, err
	}
	switch {
	case d.Refused != "":
		return abi.ServeResponse{}, fmt.Errorf("%w: %s", ErrReplicaDied, d.Refused)
	case d.Error != nil:
		var ev abi.ErrorValue
		_ = wire.Unmarshal(d.Error, &ev)
		if ev.Kind == abi.KindActorDied || ev.Kind == abi.KindWorkerDied {
			return abi.ServeResponse{}, fmt.Errorf("%w: %s", ErrReplicaDied, ev.Message)
		}
		return abi.ServeResponse{}, &CallError{Kind: string(ev.Kind), Message: ev.Message}
	case len(d.Results) != 1:
		rs.releaseAll(d.Results, d.Refs)
		return abi.ServeResponse{}, fmt.Errorf("fabric: the replica answered %d values, not one response", len(d.Results))
	}
	rs.releaseAll(nil, d.Refs)
	resp, err := rs.response(d.Results[0])
	if err == nil && resp.Status == abi.ServeStreamStatus {
		rs.streaming.Store(true) // this request and the next ones go to __stream__
		if emit == nil {
			return abi.ServeResponse{}, errStreams
		}
		return abi.ServeResponse{}, rs.stream(ctx, r, arg, emit)
	}
	return resp, err
}

// maxServeResponse bounds a response a replica answers whole (a larger
// one streams: sdk.StreamingDeployment).
const maxServeResponse = 64 << 20

// response decodes a replica's answer: inline, or held in this node's
// store (a large one), read and let go.
func (rs *replicaSet) response(res peerwire.Result) (abi.ServeResponse, error) {
	b := res.Value
	if res.Held {
		defer rs.step(&peerwire.Release{Job: rs.job, IDs: []objects.ID{res.ID}, Counts: []uint32{1}})
		if res.Size > maxServeResponse {
			return abi.ServeResponse{}, fmt.Errorf("fabric: the replica's response is %d bytes, past the %d a whole response may have (stream it: sdk.StreamingDeployment)", res.Size, maxServeResponse)
		}
		if !rs.a.serveBudget.fits(res.Size) {
			return abi.ServeResponse{}, fmt.Errorf("%w: this agent holds the most response bytes it may", ErrOverloaded)
		}
		held, release, err := rs.a.node.objectBytes(rs.peer, res.ID)
		if err != nil {
			return abi.ServeResponse{}, fmt.Errorf("fabric: the replica's response could not be read: %v", err)
		}
		b = slices.Clone(held) // the store's bytes are let go; the response aliases its copy
		release()
	}
	resp, ok := abi.ParseServeResponse(b)
	if !ok {
		if err := wire.Unmarshal(b, &resp); err != nil {
			return abi.ServeResponse{}, fmt.Errorf("fabric: the replica's answer is not a response (return an sdk.Response): %v", err)
		}
	}
	return resp, nil
}

// releaseAll lets go of the exports of held results and references.
func (rs *replicaSet) releaseAll(results []peerwire.Result, refs []objects.ID) {
	var ids []objects.ID
	for _, r := range results {
		if r.Held {
			ids = append(ids, r.ID)
		}
	}
	ids = append(ids, refs...)
	if len(ids) > 0 {
		counts := make([]uint32, len(ids))
		for i := range counts {
			counts[i] = 1
		}
		rs.step(&peerwire.Release{Job: rs.job, IDs: ids, Counts: counts})
	}
}

// maxStreamBuffer bounds the items of one streamed response that wait
// for its client: past it, the call is stopped (the client reads slower
// than the replica writes).
const maxStreamBuffer = 8 << 20

// itemQueue holds a streamed call's items until its request takes them:
// at most maxStreamBuffer bytes, past which it takes no more (over). Each
// item's bytes are also charged to the ingress's budget (byteBudget, the
// same as request bodies and whole responses) from the push until the
// request wrote or dropped the item, so that many streams to slow clients
// together hold no more than the budget; a push past the budget stops the
// call too (exhausted).
type itemQueue struct {
	mu        sync.Mutex
	items     []*peerwire.TaskYield
	bytes     int64
	over      bool
	exhausted bool
	budget    *byteBudget
	notify    chan struct{}
}

// itemBytes is what an item holds in the agent: its inline value, or its
// value in the store.
func itemBytes(m *peerwire.TaskYield) int64 { return int64(len(m.Result.Value)) + m.Result.Size }

// push queues an item; it reports whether the item was queued, and
// whether this push made the queue over its bound.
func (q *itemQueue) push(m *peerwire.TaskYield) (queued, overNow bool) {
	q.mu.Lock()
	if !q.over {
		switch n := itemBytes(m); {
		case !q.budget.take(n):
			q.over, q.exhausted, overNow = true, true, true
		default:
			q.items = append(q.items, m)
			q.bytes += n
			queued = true
			if q.bytes > maxStreamBuffer {
				q.over, overNow = true, true
			}
		}
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return queued, overNow
}

// take returns the queued items, each still charged to the budget until
// done gives it back.
func (q *itemQueue) take() ([]*peerwire.TaskYield, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items, q.bytes = nil, 0
	return items, q.over
}

// done gives back an item's bytes, written or dropped.
func (q *itemQueue) done(it *peerwire.TaskYield) { q.budget.give(itemBytes(it)) }

// stream calls r's __stream__ generator with the encoded request arg and
// gives emit each item as it comes.
func (rs *replicaSet) stream(ctx context.Context, r *replica, arg []byte, emit func(abi.ServeResponse) error) error {
	var task objects.ID
	_, _ = rand.Read(task[:16])
	q := &itemQueue{notify: make(chan struct{}, 1), budget: &rs.a.serveBudget}
	done := make(chan *peerwire.TaskDone, 1)
	rs.mu.Lock()
	if rs.closed {
		rs.mu.Unlock()
		return ErrClosed
	}
	rs.waiting[task], rs.yields[task] = done, q
	rs.mu.Unlock()
	finished := false
	defer func() {
		rs.mu.Lock()
		delete(rs.waiting, task)
		delete(rs.yields, task)
		rs.mu.Unlock()
		if !finished {
			rs.step(&peerwire.CancelTask{Job: rs.job, Task: task, Attempt: 1, Force: true})
		}
		items, _ := q.take()
		for _, it := range items {
			rs.releaseItem(it)
			q.done(it)
		}
	}()
	spec := abi.TaskSpec{Func: rs.class + "." + abi.ServeStreamMethod, Actor: r.id[:], NumReturns: 1, Args: []abi.Arg{{Value: arg}},
		Options: abi.Options{Generator: true}}
	rs.step(&peerwire.RunTask{Job: rs.job, Root: rs.peer, Digest: rs.digest, What: peerwire.RunActorCall, Task: task, Attempt: 1,
		Spec: spec.AppendCBOR(nil), Incarnation: r.inc, Tenant: rs.tenant, Grant: rs.grant})
	emitted := false
	var final *peerwire.TaskDone
	for {
		items, over := q.take()
		for i, it := range items {
			if over {
				rs.releaseItem(it)
				q.done(it)
				continue
			}
			resp, err := rs.item(it)
			if err == nil {
				err = emit(resp)
			}
			q.done(it)
			if err != nil {
				for _, rest := range items[i+1:] {
					rs.releaseItem(rest)
					q.done(rest)
				}
				return err
			}
			emitted = true
		}
		if over {
			q.mu.Lock()
			exhausted := q.exhausted
			q.mu.Unlock()
			if exhausted {
				return fmt.Errorf("%w: this agent holds the most streamed bytes it may (%d MiB) for its clients", ErrOverloaded, serveBudget>>20)
			}
			return fmt.Errorf("fabric: the client reads the streamed response slower than the replica writes it (past %d bytes waiting)", maxStreamBuffer)
		}
		if final != nil {
			break
		}
		select {
		case <-q.notify:
		case final = <-done: // the items before it are queued: take them, then end
			finished = true
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rs.releaseAll(final.Results, final.Refs)
	switch {
	case final.Refused != "":
		return fmt.Errorf("%w: %s", ErrReplicaDied, final.Refused)
	case final.Error != nil:
		var ev abi.ErrorValue
		_ = wire.Unmarshal(final.Error, &ev)
		if ev.Kind == abi.KindActorDied || ev.Kind == abi.KindWorkerDied {
			return fmt.Errorf("%w: %s", ErrReplicaDied, ev.Message)
		}
		return &CallError{Kind: string(ev.Kind), Message: ev.Message}
	case !emitted:
		return emit(abi.ServeResponse{}) // a generator that yielded nothing: an empty 200
	}
	return nil
}

// item decodes a streamed item (and lets go of what it holds).
func (rs *replicaSet) item(it *peerwire.TaskYield) (abi.ServeResponse, error) {
	rs.releaseAll(nil, it.Refs)
	if it.Error != nil {
		var ev abi.ErrorValue
		_ = wire.Unmarshal(it.Error, &ev)
		return abi.ServeResponse{}, fmt.Errorf("fabric: a streamed item was lost: %s", ev.Message)
	}
	return rs.response(it.Result)
}

// releaseItem lets go of an item not taken.
func (rs *replicaSet) releaseItem(it *peerwire.TaskYield) {
	if it.Error == nil {
		rs.releaseAll([]peerwire.Result{it.Result}, it.Refs)
	} else {
		rs.releaseAll(nil, it.Refs)
	}
}

func randIntN(n int) int { return mathrand.IntN(n) }

// message takes a message the node sent the set's pseudo-peer.
func (rs *replicaSet) message(m peerwire.Message) {
	switch m := m.(type) {
	case *peerwire.TaskDone:
		rs.mu.Lock()
		done := rs.waiting[m.Task]
		rs.mu.Unlock()
		if done != nil {
			select {
			case done <- m:
			default:
			}
		}
	case *peerwire.TaskYield:
		rs.mu.Lock()
		q := rs.yields[m.Task]
		rs.mu.Unlock()
		if q == nil {
			rs.orphans.Add(1)
			go rs.releaseItem(m) // the request is gone (not under the node's lock: step takes it)
			return
		}
		queued, overNow := q.push(m)
		if !queued {
			rs.orphans.Add(1)
			go rs.releaseItem(m)
		}
		if overNow { // the client reads slower than the replica writes: stop the call now
			go rs.step(&peerwire.CancelTask{Job: rs.job, Task: m.Task, Attempt: 1, Force: true})
		}
	case *peerwire.ActorDied:
		rs.mu.Lock()
		for _, r := range rs.replicas {
			if r.id == m.Actor && !r.dead.Load() {
				r.cause = m.Cause
				r.dead.Store(true)
			}
		}
		rs.mu.Unlock()
		rs.a.kickServe() // start another now
	case *peerwire.Output:
		rs.logs.write(m.Data)
	}
}

// close ends the set's job: its replicas die with it.
func (rs *replicaSet) close() {
	rs.mu.Lock()
	if rs.closed {
		rs.mu.Unlock()
		return
	}
	rs.closed = true
	rs.mu.Unlock()
	rs.cancel()
	rs.step(&peerwire.EndJob{Job: rs.job})
	rs.a.node.pool.Linger(rs.job, "", 0)
	rs.a.serveMu.Lock()
	delete(rs.a.replicaSets, rs.peer)
	rs.a.serveMu.Unlock()
}

// serveMessage routes a message the node sent a replica set's pseudo-peer.
func (a *Agent) serveMessage(peer string, m peerwire.Message) {
	a.serveMu.Lock()
	rs := a.replicaSets[peer]
	a.serveMu.Unlock()
	if rs != nil {
		rs.message(m)
	}
}

// maxReplicaLogs is how much of its replicas' latest output a replica
// set keeps (`fabric serve logs`).
const maxReplicaLogs = 64 << 10

// logTail keeps the latest maxReplicaLogs bytes written to it, from a
// line's start.
type logTail struct {
	mu  sync.Mutex
	buf []byte
}

func (l *logTail) write(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - maxReplicaLogs; over > 0 {
		cut := over
		if i := bytes.IndexByte(l.buf[over:], '\n'); i >= 0 && over+i+1 < len(l.buf) {
			cut = over + i + 1
		}
		l.buf = append(l.buf[:0:0], l.buf[cut:]...)
	}
}

func (l *logTail) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf)
}
