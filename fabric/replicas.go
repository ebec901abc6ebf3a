//go:build linux

package fabric

import (
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

// Errors of a replica set.
var (
	// ErrNoReplica: the deployment has no replica alive to take the request.
	ErrNoReplica = errors.New("fabric: no replica of the deployment is alive")
	// ErrReplicaDied: the replica died while it held the request.
	ErrReplicaDied = errors.New("fabric: the replica died while it held the request")
	// ErrOverloaded: every replica holds its max ongoing requests.
	ErrOverloaded = errors.New("fabric: every replica of the deployment is at its max ongoing requests")
)

// replicaSet hosts replicas of one deployment on this node.
type replicaSet struct {
	a                         *Agent
	peer, job                 string
	tenant, digest, class     string
	grant                     []byte
	opts                      abi.Options
	mu                        sync.Mutex
	replicas                  []*replica
	waiting                   map[objects.ID]chan *peerwire.TaskDone // calls and creations by task ID
	closed                    bool
	ctx                       context.Context // ended by close
	cancel                    context.CancelFunc
	readyNow                  chan struct{} // closed (and replaced) when a replica becomes ready
	started, died, dispatched atomic.Int64
	output                    atomic.Int64
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
		class: class, opts: opts, waiting: map[objects.ID]chan *peerwire.TaskDone{}, readyNow: make(chan struct{})}
	rs.ctx, rs.cancel = context.WithCancel(context.Background())
	rs.grant = a.grantFor(ctx, rs.job, tenant, rs.peer, "", digest)
	if !a.node.HasModule(digest) {
		if err := a.node.pullModuleFrom(ctx, digest, a.moduleHolders(ctx, digest), encodeModuleProof(rs.job, tenant, rs.peer, digest, rs.grant)); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoModuleHere, digest, err)
		}
	}
	a.node.touchModule(digest)
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
// constructor ran), or failed. The replica counts as alive (starting)
// from the first moment: it may wait long, for its tenant's quota or the
// node's room, and the set must not start another in its place.
func (rs *replicaSet) add() error {
	var id objects.ID
	_, _ = rand.Read(id[:16])
	r := &replica{id: id, inc: 1}
	rs.mu.Lock()
	if rs.closed {
		rs.mu.Unlock()
		return ErrClosed
	}
	rs.replicas = append(rs.replicas, r)
	rs.mu.Unlock()
	rs.started.Add(1)
	d, err := rs.run(rs.ctx, peerwire.RunActorCreate, id, r.inc, abi.TaskSpec{Func: rs.class, Options: rs.opts})
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

// prune forgets the replicas that died.
func (rs *replicaSet) prune() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.replicas = slices.DeleteFunc(rs.replicas, func(r *replica) bool { return r.dead.Load() })
}

// remove stops one replica: one that has not started, else the one
// with the fewest requests in flight, once those are answered (the node
// queues its kill behind them).
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
	if victim != nil {
		rs.step(&peerwire.KillActor{Job: rs.job, Actor: victim.id, Incarnation: victim.inc, NoRestart: true})
	}
}

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

// call sends req to a replica and returns its response.
func (rs *replicaSet) call(ctx context.Context, req abi.ServeRequest) (abi.ServeResponse, error) {
	r, err := rs.pickWait(ctx)
	if err != nil {
		return abi.ServeResponse{}, err
	}
	if n := r.ongoing.Add(1); rs.maxOngoing > 0 && n > int64(rs.maxOngoing) {
		r.ongoing.Add(-1) // the less loaded of two is full: the set is
		return abi.ServeResponse{}, ErrOverloaded
	}
	defer r.ongoing.Add(-1)
	rs.dispatched.Add(1)
	arg := req.AppendCBOR(nil)
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
		return abi.ServeResponse{}, fmt.Errorf("fabric: the replica answered %d values, not one response", len(d.Results))
	case d.Results[0].Held:
		rs.step(&peerwire.Release{Job: rs.job, IDs: []objects.ID{d.Results[0].ID}, Counts: []uint32{1}})
		return abi.ServeResponse{}, fmt.Errorf("fabric: the replica's response is %d bytes, past the %d a response may have", d.Results[0].Size, maxResponseInline)
	}
	if resp, ok := abi.ParseServeResponse(d.Results[0].Value); ok {
		return resp, nil
	}
	var resp abi.ServeResponse
	if err := wire.Unmarshal(d.Results[0].Value, &resp); err != nil {
		return abi.ServeResponse{}, fmt.Errorf("fabric: the replica's answer is not a response (return an sdk.Response): %v", err)
	}
	return resp, nil
}

func randIntN(n int) int { return mathrand.IntN(n) }

// maxResponseInline is the largest response a replica's answer carries
// inline (larger ones stay in the node's store).
const maxResponseInline = 100 << 10

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
	case *peerwire.ActorDied:
		rs.mu.Lock()
		for _, r := range rs.replicas {
			if r.id == m.Actor && !r.dead.Load() {
				r.cause = m.Cause
				r.dead.Store(true)
				rs.died.Add(1)
			}
		}
		rs.mu.Unlock()
		rs.a.kickServe() // start another now
	case *peerwire.Output:
		rs.output.Add(int64(len(m.Data))) // a replica's prints are counted, not kept (yet)
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
