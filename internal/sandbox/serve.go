package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// A concurrent actor's lane runs its method calls side by side in one
// instance (a module whose fabric_call(abi.ServeFunc) fails at once, one
// without a serve loop, runs them one at a time instead): the lane calls
// fabric_call(abi.ServeFunc) and the guest's serve loop takes the calls
// (serve_poll, call_take), runs each on a goroutine of its own, and ends
// each with call_finish. A call's get or wait does not block the
// instance: get_start and wait_start hand it to a goroutine of the
// worker, and serve_poll says when it is done. While no call runs,
// serve_poll waits for the next; the loop returns when no call runs and
// the lane closes or has an execution of another kind to run.

// maxServeOps bounds the gets and waits a serve loop may have started and
// not taken.
const maxServeOps = 4096

// serveLoop is one run of a serve loop, and the Host and Server of its
// fabric_call. Its fields are under worker.mu unless noted.
type serveLoop struct {
	l    *lane
	exec *execution // the loop's own: the actor's waits, and its interruption
	wake chan struct{}

	calls   map[uint32]*serveCall
	nextID  uint32
	running map[string]int // calls per concurrency group
	took    int            // calls taken in all
	events  []Event
	ops     map[uint32]*serveOp
	nextOp  uint32
	ended   bool // fabric_call returned: late operations are dropped

	// entered is the call the host calls act for (0: the actor); only
	// the instance's goroutine uses it.
	entered uint32
	actor   *workerHost
}

// serveCall is one call the serve loop took.
type serveCall struct {
	ex    wire.Exec
	cur   *execution
	host  *workerHost
	taken bool // call_take gave it to the guest
}

// serveOp is a get or wait started without blocking.
type serveOp struct {
	done bool
	res  OpResult
}

// servable reports whether the lane's next execution is a concurrent
// actor's call. The caller holds worker.mu.
func (l *lane) servable() bool {
	return !l.sequential && len(l.pending) > 0 && l.pending[0].Serve
}

// serve runs the serve loop until the guest returns from it, then ends
// the calls it left, as failed.
func (l *lane) serve(ctx context.Context) {
	w := l.w
	s := &serveLoop{l: l, exec: &execution{stop: make(chan struct{})}, wake: make(chan struct{}, 1),
		calls: map[uint32]*serveCall{}, running: map[string]int{}, ops: map[uint32]*serveOp{}}
	s.actor = &workerHost{w: w, l: l, cur: s.exec}
	w.mu.Lock()
	l.current, l.serving = s.exec, s
	w.mu.Unlock()
	var res CallResult
	err := l.ensureInstance(ctx, s.exec)
	if err == nil {
		w.mu.Lock()
		s.exec.attachLocked(l.inst)
		w.mu.Unlock()
		emit := func(stream uint8, p []byte) {
			_ = w.queue(l.id, wire.TypeOutput, wire.Output{Task: s.outputTask(), Stream: stream, Data: append([]byte(nil), p...)})
		}
		res, err = l.inst.Call(ctx, s, abi.ServeFunc, ArgSource{Len: 1, Write: func(dst []byte) error {
			dst[0] = 0x80 // no arguments
			return nil
		}}, emit, w.cfg.OutputCap)
	}
	w.mu.Lock()
	s.exec.inst = nil
	s.ended = true
	l.current, l.serving = nil, nil
	closed := s.exec.closed
	left := make([]*serveCall, 0, len(s.calls))
	for _, c := range s.calls {
		left = append(left, c)
	}
	for _, op := range s.ops {
		if op.done && op.res.Release != nil {
			op.res.Release()
		}
	}
	var unserved []wire.Exec
	if s.took == 0 && !closed && err == nil && !res.OK && res.Kind == "app" {
		// A module without a serve loop (a C guest's fabric_call knows no
		// such function): its calls run one at a time.
		l.sequential = true
	} else if s.took == 0 && !closed { // a module that cannot serve: its calls fail
		for len(l.pending) > 0 && l.pending[0].Serve {
			unserved = append(unserved, l.pending[0])
			l.pending = l.pending[1:]
		}
	}
	w.mu.Unlock()
	if closed {
		return // the agent counts them lost
	}
	fail := wire.Done{Kind: "app", Error: "the actor's serve loop returned while the call ran"}
	switch {
	case err != nil:
		fail.Kind, fail.Error = "trap", err.Error()
		var ie *InterruptedError
		if errors.As(err, &ie) {
			fail.Kind = "interrupted"
		}
	case !res.OK && res.Kind != "app":
		fail.Kind, fail.Error, fail.ExitCode = res.Kind, res.Error, res.ExitCode
	}
	for _, c := range left {
		d := fail
		d.Task = c.ex.Task
		l.sendDone(c.ex.Task, &c.ex.Unpin, d)
	}
	for _, ex := range unserved {
		why := "the module cannot serve concurrent calls: its fabric_call(\"" + abi.ServeFunc + "\") returned without taking one"
		if err != nil || !res.OK {
			why = fmt.Sprintf("the module cannot serve concurrent calls: fabric_call(%q) failed: %s", abi.ServeFunc, fail.Error)
			if err == nil && res.Kind == "app" {
				why = fmt.Sprintf("the module cannot serve concurrent calls: fabric_call(%q) failed: %s", abi.ServeFunc, res.Error)
			}
		}
		l.sendDone(ex.Task, &ex.Unpin, wire.Done{Task: ex.Task, Kind: "app", Error: why})
	}
}

// outputTask is the task that output written now belongs to: the entered
// call, or the actor (nil: the agent gives it to one of the calls).
func (s *serveLoop) outputTask() objects.ID {
	s.l.w.mu.Lock()
	defer s.l.w.mu.Unlock()
	if c := s.calls[s.entered]; c != nil {
		return c.ex.Task
	}
	return objects.NilID
}

// notify wakes a Poll.
func (s *serveLoop) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// admitLocked takes the pending calls whose group has room, in order,
// and queues their events. The caller holds worker.mu.
func (s *serveLoop) admitLocked() {
	l := s.l
	kept := l.pending[:0]
	for i, ex := range l.pending {
		if !ex.Serve {
			kept = append(kept, l.pending[i:]...) // an execution of another kind waits for the loop to end
			break
		}
		if s.running[ex.Group] >= max(1, ex.Limit) {
			kept = append(kept, ex)
			continue
		}
		s.running[ex.Group]++
		s.took++
		s.nextID++
		for s.nextID == 0 || s.calls[s.nextID] != nil {
			s.nextID++
		}
		cur := &execution{task: ex.Task, stop: make(chan struct{})}
		c := &serveCall{ex: ex, cur: cur, host: &workerHost{w: l.w, l: l, task: ex.Task, cur: cur}}
		s.calls[s.nextID] = c
		s.events = append(s.events, Event{Kind: abi.EventCall, ID: s.nextID})
	}
	clear(l.pending[len(kept):])
	l.pending = kept
}

// cancelLocked cancels a call the loop runs, as a soft Stop: its waits
// end as cancelled and the guest hears of it. The caller holds worker.mu.
func (s *serveLoop) cancelLocked(task objects.ID) bool {
	for id, c := range s.calls {
		if c.ex.Task == task {
			if !c.cur.cancelled {
				c.cur.cancelled = true
				c.cur.wakeLocked()
				s.events = append(s.events, Event{Kind: abi.EventCancel, ID: id})
				s.notify()
			}
			return true
		}
	}
	return false
}

// closeLocked wakes every call's waits when the lane closes. The caller
// holds worker.mu.
func (s *serveLoop) closeLocked() {
	for _, c := range s.calls {
		c.cur.closed, c.cur.stopped = true, true
		c.cur.wakeLocked()
	}
	s.notify()
}

// Poll waits for events.
func (s *serveLoop) Poll(timeoutMs int64, room int) ([]Event, error) {
	w := s.l.w
	var timeout <-chan time.Time
	if timeoutMs >= 0 {
		t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	for {
		w.mu.Lock()
		if !s.l.closing {
			s.admitLocked()
		}
		if len(s.events) > 0 {
			n := min(room, len(s.events))
			evs := append([]Event(nil), s.events[:n]...)
			s.events = append(s.events[:0], s.events[n:]...)
			w.mu.Unlock()
			return evs, nil
		}
		// With no call to run the loop ends when the lane closes or an
		// execution of another kind waits (a call admitLocked left). Else it
		// waits here for the next call: a loop started again per request
		// cost a Go guest a fifth of a millisecond each.
		if len(s.calls) == 0 && (s.l.closing || len(s.l.pending) > 0) {
			w.mu.Unlock()
			return []Event{{Kind: abi.EventIdle}}, nil
		}
		w.mu.Unlock()
		select {
		case <-s.wake:
		case <-timeout:
			return nil, nil
		case <-s.exec.stop:
			return nil, errStopped // the instance is interrupted: the call unwinds
		}
	}
}

// call returns a call the loop runs.
func (s *serveLoop) call(handle uint32) (*serveCall, error) {
	s.l.w.mu.Lock()
	defer s.l.w.mu.Unlock()
	c := s.calls[handle]
	if c == nil {
		return nil, fmt.Errorf("no call %d runs", handle)
	}
	return c, nil
}

// TakeCall hands a new call to the guest.
func (s *serveLoop) TakeCall(handle uint32) (string, []byte, objects.ID, error) {
	c, err := s.call(handle)
	if err != nil {
		return "", nil, objects.NilID, err
	}
	if c.taken {
		return "", nil, objects.NilID, fmt.Errorf("call %d was taken already", handle)
	}
	pieces, total, err := s.l.w.argPieces(c.ex)
	if err != nil {
		return "", nil, objects.NilID, err
	}
	args := make([]byte, 0, total)
	for _, p := range pieces {
		args = append(args, p...)
	}
	c.taken = true
	if len(c.ex.Unpin) > 0 { // copied: the arena may drop them
		_ = s.l.w.conn.Send(s.l.id, wire.TypeUnpin, wire.Unpin{IDs: c.ex.Unpin})
		c.ex.Unpin = nil
	}
	return c.ex.Name, args, c.ex.Task, nil
}

// Enter makes the host calls that follow act for a call.
func (s *serveLoop) Enter(handle uint32) error {
	if handle != 0 {
		if _, err := s.call(handle); err != nil {
			return err
		}
	}
	s.entered = handle
	return nil
}

// FinishCall sends a call's Done.
func (s *serveLoop) FinishCall(handle uint32, res CallResult) error {
	c, err := s.call(handle)
	if err != nil {
		return err
	}
	if !c.taken {
		return fmt.Errorf("call %d was not taken", handle)
	}
	done := wire.Done{Task: c.ex.Task}
	c.host.result(&done, res)
	w := s.l.w
	w.mu.Lock()
	delete(s.calls, handle)
	s.running[c.ex.Group]--
	w.mu.Unlock()
	if s.entered == handle {
		s.entered = 0
	}
	s.l.sendDone(c.ex.Task, &c.ex.Unpin, done)
	return nil
}

// host is the Host that the entered call's host calls go to.
func (s *serveLoop) host() *workerHost {
	if s.entered != 0 {
		if c, err := s.call(s.entered); err == nil {
			return c.host
		}
	}
	return s.actor
}

// startOp runs op on a goroutine of its own for the entered call.
func (s *serveLoop) startOp(op func(h *workerHost) OpResult) (uint32, error) {
	w := s.l.w
	h := s.host()
	w.mu.Lock()
	if len(s.ops) >= maxServeOps {
		w.mu.Unlock()
		return 0, fmt.Errorf("%d gets and waits started and not taken; the limit is %d", len(s.ops), maxServeOps)
	}
	s.nextOp++
	for s.nextOp == 0 || s.ops[s.nextOp] != nil {
		s.nextOp++
	}
	tok := s.nextOp
	o := &serveOp{}
	s.ops[tok] = o
	w.mu.Unlock()
	go func() {
		res := op(h)
		w.mu.Lock()
		defer w.mu.Unlock()
		if s.ended {
			if res.Release != nil {
				res.Release()
			}
			return
		}
		o.done, o.res = true, res
		s.events = append(s.events, Event{Kind: abi.EventOp, ID: tok})
		s.notify()
	}()
	return tok, nil
}

// StartGet begins a get.
func (s *serveLoop) StartGet(ids []objects.ID, timeoutMs int64) (uint32, error) {
	ids = append([]objects.ID(nil), ids...)
	return s.startOp(func(h *workerHost) OpResult {
		items, release, timedOut, err := h.Get(ids, timeoutMs)
		return OpResult{Items: items, Release: release, TimedOut: timedOut, Err: err}
	})
}

// StartWait begins a wait.
func (s *serveLoop) StartWait(ids []objects.ID, numReady int, timeoutMs int64) (uint32, error) {
	ids = append([]objects.ID(nil), ids...)
	return s.startOp(func(h *workerHost) OpResult {
		ready, err := h.Wait(ids, numReady, timeoutMs)
		return OpResult{Wait: true, Ready: ready, Err: err}
	})
}

// TakeOp returns a finished operation's outcome.
func (s *serveLoop) TakeOp(token uint32) (OpResult, error) {
	w := s.l.w
	w.mu.Lock()
	defer w.mu.Unlock()
	o := s.ops[token]
	switch {
	case o == nil:
		return OpResult{}, fmt.Errorf("no operation %d", token)
	case !o.done:
		return OpResult{}, fmt.Errorf("operation %d is not done; wait for its event", token)
	}
	delete(s.ops, token)
	return o.res, nil
}

// The Host calls go to the entered call's host.

func (s *serveLoop) Submit(spec []byte, actor bool, n int) ([]objects.ID, error) {
	return s.host().Submit(spec, actor, n)
}
func (s *serveLoop) Put(parts [][]byte, refs []objects.ID) (objects.ID, error) {
	return s.host().Put(parts, refs)
}
func (s *serveLoop) Yield(parts [][]byte, refs []objects.ID, index uint32) error {
	return s.host().Yield(parts, refs, index)
}
func (s *serveLoop) Get(ids []objects.ID, timeoutMs int64) ([]Staged, func(), bool, error) {
	return s.host().Get(ids, timeoutMs)
}
func (s *serveLoop) Wait(ids []objects.ID, numReady int, timeoutMs int64) ([]bool, error) {
	return s.host().Wait(ids, numReady, timeoutMs)
}
func (s *serveLoop) Cancel(id objects.ID, force, recursive bool) error {
	return s.host().Cancel(id, force, recursive)
}
func (s *serveLoop) Release(ids []objects.ID) { s.host().Release(ids) }
func (s *serveLoop) ActorLookup(namespace, name string) (objects.ID, error) {
	return s.host().ActorLookup(namespace, name)
}
func (s *serveLoop) ActorList() ([]byte, error) { return s.host().ActorList() }
func (s *serveLoop) ActorKill(id objects.ID, noRestart bool) error {
	return s.host().ActorKill(id, noRestart)
}
func (s *serveLoop) Log(level int32, msg []byte)                 { s.host().Log(level, msg) }
func (s *serveLoop) GroupCreate(spec []byte) (objects.ID, error) { return s.host().GroupCreate(spec) }
func (s *serveLoop) GroupWait(id objects.ID, timeoutMs int64) (bool, error) {
	return s.host().GroupWait(id, timeoutMs)
}
func (s *serveLoop) GroupRemove(id objects.ID) error  { return s.host().GroupRemove(id) }
func (s *serveLoop) NodeID() string                   { return s.host().NodeID() }
func (s *serveLoop) Cancelled() bool                  { return s.host().Cancelled() }
func (s *serveLoop) RuntimeContext() ([]byte, error)  { return s.host().RuntimeContext() }
func (s *serveLoop) ClusterInfo() ([]byte, error)     { return s.host().ClusterInfo() }
func (s *serveLoop) PlacementGroups() ([]byte, error) { return s.host().PlacementGroups() }
