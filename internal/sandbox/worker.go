package sandbox

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// InlineMax is the largest value sent inside a message; larger ones go
// through the shared-memory arena.
const InlineMax = 100 << 10

// ErrAgentGone is returned by host calls once the agent connection is lost.
var ErrAgentGone = errors.New("sandbox: agent connection lost")

// WorkerConfig configures a worker process.
type WorkerConfig struct {
	Socket      string // the agent's Unix socket
	Module      string // path of the .wasm file
	CacheDir    string // compile cache
	MemoryLimit int64  // per-guest linear memory cap in bytes
	OutputCap   int64  // output bytes kept per call
	ArenaFD     int    // inherited file descriptor of the arena (0: none)
	ArenaSize   int64
	// NodeID names the node, for guests that ask (node_id).
	NodeID string
	// ProcessLimit caps the worker's data segment (RLIMIT_DATA) so that
	// guests that escape the linear-memory cap (tables, deep recursion)
	// kill only this worker. 0: no cap.
	ProcessLimit int64
	// StartFD, when not 0, is an inherited descriptor to read one byte
	// from before anything else: the agent writes it once the process is
	// in its tenant's control group.
	StartFD int
}

// RunWorker is the body of `fabric worker`: it loads the module, tells the
// agent it is ready and hosts the lanes the agent opens (one instance of
// the module each, on goroutines of its own) until the agent closes the
// connection.
func RunWorker(ctx context.Context, cfg WorkerConfig) error {
	if cfg.StartFD > 0 {
		gate := os.NewFile(uintptr(cfg.StartFD), "start")
		var b [1]byte
		n, _ := gate.Read(b[:])
		gate.Close()
		if n != 1 {
			return errors.New("sandbox: the agent did not let this worker start")
		}
	}
	if cfg.ProcessLimit > 0 {
		lim := uint64(cfg.ProcessLimit)
		if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
			return fmt.Errorf("sandbox: set memory cap: %w", err)
		}
	}
	// Should the machine run out of memory, the kernel's OOM killer takes
	// a worker process (the largest) before the agent or anything else.
	// Raising one's own score needs no privilege; where it fails, the
	// worker runs all the same.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	c, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		return fmt.Errorf("sandbox: connect to agent: %w", err)
	}
	w := &worker{conn: wire.NewConn(c), cfg: cfg, lanes: map[wire.Lane]*lane{}, waiters: map[uint64]chan rpcResult{},
		queued: make(chan struct{}, 1), leases: map[string]*lane{}, local: map[objects.ID]*localTask{}}
	defer w.conn.Close()
	if cfg.ArenaFD > 0 {
		m, err := objects.OpenSharedMemory(os.NewFile(uintptr(cfg.ArenaFD), "arena"), cfg.ArenaSize)
		if err != nil {
			return w.fatal(err)
		}
		w.arena = m.Bytes()
	}
	if err := w.load(ctx); err != nil {
		return w.fatal(err)
	}
	if err := w.conn.Send(wire.ProcessLane, wire.TypeReady, wire.Ready{Pid: os.Getpid()}); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go w.flushLoop(stop)
	return w.readLoop(ctx)
}

// flushInterval bounds how long queued one-way messages (submissions,
// output) wait while the guest computes without making a blocking call.
const flushInterval = 5 * time.Millisecond

// flushLoop writes queued messages flushInterval after the first of them
// was queued, unless a Send wrote them first. It sleeps while nothing is
// queued: a ticker in each of hundreds of idle worker processes (one per
// job on a node) cost a CPU in wakeups.
func (w *worker) flushLoop(stop chan struct{}) {
	t := time.NewTimer(flushInterval)
	t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-w.queued:
		}
		t.Reset(flushInterval)
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if w.conn.Queued() {
			_ = w.conn.Flush()
		}
	}
}

// queue queues a one-way message for the agent; flushLoop writes it
// within flushInterval if nothing else does first.
func (w *worker) queue(lane wire.Lane, t wire.Type, msg any) error {
	err := w.conn.Queue(lane, t, msg)
	select {
	case w.queued <- struct{}{}:
	default:
	}
	return err
}

// append is queue that never writes, for callers that hold w.mu.
func (w *worker) append(lane wire.Lane, t wire.Type, msg any) error {
	_, err := w.conn.Append(lane, t, msg)
	select {
	case w.queued <- struct{}{}:
	default:
	}
	return err
}

// A worker process hosts lanes: each is one instance of the job's module
// with a goroutine that runs the executions sent to it, one at a time, in
// the order they came. readLoop reads every frame the agent sends and
// routes it: executions to their lane's queue, replies to the host call
// waiting for them, stops to the execution they name. So the lanes run
// side by side, a Stop reaches a guest while it computes or waits in a
// host call, and a Drop reaches a queued execution at once.
type worker struct {
	conn   *wire.Conn
	cfg    WorkerConfig
	arena  []byte
	engine *Engine
	module *Module
	seq    atomic.Uint64 // numbers host calls' requests
	cache  valueCache    // small values got before, by any lane
	queued chan struct{} // wakes flushLoop: a message was queued

	mu    sync.Mutex
	lanes map[wire.Lane]*lane
	// waiters are the host calls waiting for their reply, by Seq.
	waiters map[uint64]chan rpcResult
	closed  bool // the connection is gone: no reply will come
	// leases are the lanes that hold a lease, by abi.LeaseKey; local are
	// the tasks the process runs under them, by return object, until they
	// end (lease.go).
	leases map[string]*lane
	local  map[objects.ID]*localTask
	nLease atomic.Int32 // len(leases), read without the lock
}

// lane is one instance and the executions sent to it.
type lane struct {
	id wire.Lane
	w  *worker
	// Under w.mu:
	cond    *sync.Cond  // signalled when pending grows or the lane closes
	pending []wire.Exec // executions sent ahead, not started
	current *execution  // the execution running, nil between them
	closing bool        // Close came, or the connection closed
	// leaseKey is the key of the lease it holds, "" for none.
	leaseKey string
	// serving is the serve loop of a concurrent actor while it runs.
	serving *serveLoop
	// sequential: the module has no serve loop (its fabric_call of
	// abi.ServeFunc failed without taking a call), so a concurrent
	// actor's calls run one at a time, as a plain actor's.
	sequential bool
	// Belong to the lane's goroutine:
	inst *Instance
	rng  *rand.ChaCha8 // makes task and actor IDs
}

// execution is one execution that a lane runs.
type execution struct {
	task objects.ID
	inst *Instance     // set once it has one; under worker.mu
	stop chan struct{} // closed by a Stop (soft or not) or a Close: wakes its waits
	// stopped is set by a Stop or a Close, closed by a Close (its Done
	// is not sent), cancelled by a soft Stop (a cancel without force);
	// woken once stop is closed. Under worker.mu.
	stopped, closed, cancelled, woken bool
}

// wakeLocked closes stop once. The caller holds worker.mu.
func (cur *execution) wakeLocked() {
	if !cur.woken {
		cur.woken = true
		close(cur.stop)
	}
}

// wokenErr is what a wait that stop woke returns: cancelled when only a
// soft Stop came.
func (w *worker) wokenErr(cur *execution) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur.cancelled && !cur.stopped {
		return ErrCallCancelled
	}
	return errStopped
}

// ErrCallCancelled is what the blocking host calls of a call that was
// cancelled without force return (abi.Cancelled to the guest).
var ErrCallCancelled = errors.New("sandbox: the running call was cancelled")

// rpcResult is what a host call waiting for a reply gets.
type rpcResult struct {
	r      wire.Reply
	closed bool // the connection closed first
}

// errStopped is the reason given to an instance that a Stop interrupts,
// and what a host call it waits in returns; errClosed is the same for a
// Close.
var (
	errStopped = errors.New("stopped")
	errClosed  = errors.New("its worker was closed")
)

func (w *worker) fatal(err error) error {
	_ = w.conn.Send(wire.ProcessLane, wire.TypeReady, wire.Ready{Pid: os.Getpid(), Error: err.Error()})
	return err
}

// load compiles the module. It also makes one instance, and throws it
// away, so that a module that cannot be instantiated fails the process's
// Ready, not each lane.
func (w *worker) load(ctx context.Context) error {
	wasm, err := os.ReadFile(w.cfg.Module)
	if err != nil {
		return err
	}
	w.engine, err = NewEngine(ctx, EngineConfig{CacheDir: w.cfg.CacheDir, MemoryLimit: w.cfg.MemoryLimit})
	if err != nil {
		return err
	}
	w.module, err = w.engine.Compile(ctx, wasm)
	if err != nil {
		return err
	}
	inst, err := w.module.Instantiate(ctx)
	if err != nil {
		return err
	}
	return inst.Close(ctx)
}

// readLoop reads the agent's frames until the connection closes. It
// returns an error for a frame it cannot take, after closing the
// connection (the agent then sees the process fail).
func (w *worker) readLoop(ctx context.Context) error {
	var err error
	for err == nil {
		var ln wire.Lane
		var t wire.Type
		var body []byte
		if ln, t, body, err = w.conn.Recv(); err != nil {
			err = nil // the agent closed the connection: the job is over
			break
		}
		err = w.route(ctx, ln, t, body)
	}
	w.mu.Lock()
	w.closed = true
	for seq, ch := range w.waiters {
		ch <- rpcResult{closed: true}
		delete(w.waiters, seq)
	}
	for _, l := range w.lanes {
		l.close()
	}
	w.mu.Unlock()
	if err != nil {
		_ = w.conn.Close()
	}
	return err
}

// route handles one frame from the agent. Frames for a lane that is gone
// (it closed while they were on their way) are dropped.
func (w *worker) route(ctx context.Context, ln wire.Lane, t wire.Type, body []byte) error {
	switch t {
	case wire.TypeReply:
		var r wire.Reply
		if err := wire.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("sandbox: malformed reply: %w", err)
		}
		w.mu.Lock()
		ch := w.waiters[r.Seq]
		delete(w.waiters, r.Seq)
		w.mu.Unlock()
		if ch != nil { // else a late reply to an abandoned request
			ch <- rpcResult{r: r}
		}
	case wire.TypeOpen:
		if ln == wire.ProcessLane {
			return errors.New("sandbox: open of the process lane")
		}
		w.mu.Lock()
		if w.lanes[ln] != nil {
			w.mu.Unlock()
			return fmt.Errorf("sandbox: lane %d opened twice", ln)
		}
		l := &lane{id: ln, w: w, rng: newRNG()}
		l.cond = sync.NewCond(&w.mu)
		w.lanes[ln] = l
		w.mu.Unlock()
		go l.run(ctx)
	case wire.TypeClose:
		w.mu.Lock()
		if l := w.lanes[ln]; l != nil {
			l.close()
		}
		w.mu.Unlock()
	case wire.TypeExec:
		var ex wire.Exec
		if err := wire.Unmarshal(body, &ex); err != nil {
			return fmt.Errorf("sandbox: malformed exec: %w", err)
		}
		w.mu.Lock()
		if l := w.lanes[ln]; l != nil && !l.closing {
			l.pending = append(l.pending, ex)
			l.cond.Signal()
			if l.serving != nil {
				l.serving.notify()
			}
		}
		w.mu.Unlock()
	case wire.TypeDrop:
		var d wire.Drop
		if err := wire.Unmarshal(body, &d); err != nil {
			return fmt.Errorf("sandbox: malformed drop: %w", err)
		}
		if ex, ok := w.take(ln, d.Task); ok {
			if len(ex.Unpin) > 0 {
				_ = w.queue(ln, wire.TypeUnpin, wire.Unpin{IDs: ex.Unpin})
			}
			err := w.conn.Send(ln, wire.TypeDone, wire.Done{Task: ex.Task, Dropped: true})
			w.releaseLocal(ex.Task) // its gets ask the agent, which runs it elsewhere
			return err
		}
		// An execution that already started: its Done follows. A
		// concurrent actor's call is cancelled as a soft Stop would.
		w.mu.Lock()
		if l := w.lanes[ln]; l != nil && l.serving != nil {
			l.serving.cancelLocked(d.Task)
		}
		w.mu.Unlock()
	case wire.TypeStop:
		var m wire.Stop
		if err := wire.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("sandbox: malformed stop: %w", err)
		}
		return w.stop(ln, m.Task, m.Soft)
	case wire.TypeLease:
		var m wire.Lease
		if err := wire.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("sandbox: malformed lease: %w", err)
		}
		w.grantLease(ln, m)
	case wire.TypeLeaseEnd:
		w.endLease(ln)
	default:
		return fmt.Errorf("sandbox: unexpected %s message from the agent", t)
	}
	return nil
}

func newRNG() *rand.ChaCha8 {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return rand.NewChaCha8(seed)
}

// close ends the lane: its queue is dropped and the execution it runs is
// interrupted, without a Done (the agent counts them lost when Closed
// comes). Caller holds w.mu.
func (l *lane) close() {
	if l.closing {
		return
	}
	l.closing = true
	l.pending = nil
	l.w.dropLeaseLocked(l)
	l.w.releaseLocalLocked(l, objects.NilID)
	if l.serving != nil {
		l.serving.closeLocked()
	}
	if cur := l.current; cur != nil {
		cur.closed = true
		cur.stopped = true
		cur.wakeLocked()
		if cur.inst != nil {
			cur.inst.Interrupt(errClosed)
		}
	}
	l.cond.Broadcast()
}

// run is the lane's goroutine: it makes the lane's instance, says Ready,
// runs the executions sent to it until the lane closes, and says Closed.
func (l *lane) run(ctx context.Context) {
	w := l.w
	defer func() {
		if l.inst != nil {
			_ = l.inst.Close(ctx)
		}
		w.mu.Lock()
		delete(w.lanes, l.id)
		closed := w.closed
		w.mu.Unlock()
		if !closed {
			_ = w.conn.Send(l.id, wire.TypeClosed, wire.Closed{})
		}
	}()
	boot := &execution{stop: make(chan struct{})}
	w.mu.Lock()
	if l.closing { // closed before it began
		w.mu.Unlock()
		return
	}
	l.current = boot
	w.mu.Unlock()
	inst, err := l.instantiate(ctx, boot)
	w.mu.Lock()
	l.current = nil
	closing := l.closing
	w.mu.Unlock()
	l.inst = inst
	if closing {
		return
	}
	ready := wire.Ready{Pid: os.Getpid()}
	if err != nil {
		ready.Error = err.Error()
	}
	_ = w.conn.Send(l.id, wire.TypeReady, ready)
	for {
		w.mu.Lock()
		for len(l.pending) == 0 && !l.closing {
			l.cond.Wait()
		}
		if l.closing {
			w.mu.Unlock()
			return
		}
		if l.servable() {
			w.mu.Unlock()
			l.serve(ctx)
			continue
		}
		ex := l.pending[0]
		l.pending = l.pending[1:]
		cur := &execution{task: ex.Task, stop: make(chan struct{})}
		l.current = cur
		w.mu.Unlock()
		l.exec(ctx, ex, cur)
		w.mu.Lock()
		l.current = nil
		w.mu.Unlock()
	}
}

// instantiate makes a new instance for the lane; a Stop or Close that
// comes while it initializes stops it there.
func (l *lane) instantiate(ctx context.Context, cur *execution) (*Instance, error) {
	w := l.w
	return w.module.InstantiateWatched(ctx, func(inst *Instance) {
		w.mu.Lock()
		cur.attachLocked(inst)
		w.mu.Unlock()
	})
}

// attachLocked gives the execution its instance, which a Stop or Close
// that came first interrupts at once. The caller holds worker.mu.
func (cur *execution) attachLocked(inst *Instance) {
	cur.inst = inst
	if cur.stopped {
		inst.Interrupt(errStopped)
	}
	if cur.closed {
		inst.Interrupt(errClosed)
	}
}

// take removes a queued execution of lane ln that has not started.
func (w *worker) take(ln wire.Lane, task objects.ID) (wire.Exec, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.lanes[ln]
	if l == nil {
		return wire.Exec{}, false
	}
	return l.takeLocked(task)
}

// takeLocked removes a queued execution; the caller holds w.mu.
func (l *lane) takeLocked(task objects.ID) (wire.Exec, bool) {
	for i, ex := range l.pending {
		if ex.Task == task {
			l.pending = append(l.pending[:i], l.pending[i+1:]...)
			return ex, true
		}
	}
	return wire.Exec{}, false
}

// stop interrupts the execution of task on lane ln: the one running, or
// one queued (which then ends as interrupted without running). One that
// already ended is left alone.
func (w *worker) stop(ln wire.Lane, task objects.ID, soft bool) error {
	w.mu.Lock()
	l := w.lanes[ln]
	if l == nil {
		w.mu.Unlock()
		return nil
	}
	if s := l.serving; s != nil {
		if soft && s.cancelLocked(task) {
			w.mu.Unlock()
			return nil
		}
		if !soft {
			for _, c := range s.calls {
				if c.ex.Task == task { // the calls share an instance: all stop
					task = objects.NilID
				}
			}
		}
	}
	if cur := l.current; cur != nil && cur.task == task {
		switch {
		case soft:
			cur.cancelled = true
			cur.wakeLocked()
		case !cur.stopped:
			cur.stopped = true
			cur.wakeLocked()
			if cur.inst != nil {
				cur.inst.Interrupt(errStopped)
			}
		}
		w.mu.Unlock()
		return nil
	}
	// Under the same lock: the lane cannot start it in between.
	ex, ok := l.takeLocked(task)
	if ok {
		w.releaseLocalLocked(nil, task) // its gets ask the agent
	}
	w.mu.Unlock()
	if ok {
		if len(ex.Unpin) > 0 {
			_ = w.queue(ln, wire.TypeUnpin, wire.Unpin{IDs: ex.Unpin})
		}
		return w.conn.Send(ln, wire.TypeDone, wire.Done{Task: task, Kind: "interrupted", Error: "interrupted: stopped before it started"})
	}
	return nil
}

// rpc sends a request whose Seq field is set by fill and waits for its
// reply, or for the execution cur to be stopped, or, for a request that
// blocks (get, wait, pg_wait), cancelled.
func (l *lane) rpc(cur *execution, t wire.Type, fill func(seq uint64) any) (wire.Reply, error) {
	w := l.w
	seq := w.seq.Add(1)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return wire.Reply{}, ErrAgentGone
	}
	// A channel per request, with room for its one reply: a reply that
	// comes after a stop abandoned the request goes nowhere, and the
	// reader never waits for a lane to take one.
	reply := make(chan rpcResult, 1)
	w.waiters[seq] = reply
	w.mu.Unlock()
	if err := w.conn.Send(l.id, t, fill(seq)); err != nil {
		w.forget(seq)
		return wire.Reply{}, ErrAgentGone
	}
	stop := cur.stop
	for {
		select {
		case res := <-reply:
			if res.closed {
				return wire.Reply{}, ErrAgentGone
			}
			if res.r.Error != "" {
				return res.r, errors.New(res.r.Error)
			}
			return res.r, nil
		case <-stop:
			err := w.wokenErr(cur)
			if err == ErrCallCancelled && t != wire.TypeGet && t != wire.TypeWait && t != wire.TypeGroupWait {
				// A cancel wakes only the calls that block; the agent
				// answers the others at once.
				stop = nil
				continue
			}
			w.forget(seq)
			return wire.Reply{}, err
		}
	}
}

// forget abandons a request: its reply, should it come, is dropped.
func (w *worker) forget(seq uint64) {
	w.mu.Lock()
	delete(w.waiters, seq)
	w.mu.Unlock()
}

// pieceBytes returns the bytes of a piece: inline, an arena view or a file.
func (w *worker) pieceBytes(p wire.Piece) ([]byte, error) {
	switch {
	case p.Arena:
		if p.Off < 0 || p.Size < 0 || p.Off+p.Size > int64(len(w.arena)) {
			return nil, fmt.Errorf("sandbox: arena range %d+%d out of bounds", p.Off, p.Size)
		}
		return w.arena[p.Off : p.Off+p.Size], nil
	case p.Path != "":
		return os.ReadFile(p.Path)
	default:
		return p.Inline, nil
	}
}

func (l *lane) exec(ctx context.Context, ex wire.Exec, cur *execution) {
	w := l.w
	done := wire.Done{Task: ex.Task}
	defer func() {
		w.mu.Lock()
		closed := cur.closed
		w.mu.Unlock()
		if !closed { // else the agent counts it lost, and unpins what it pinned
			l.sendDone(ex.Task, &ex.Unpin, done)
		}
	}()
	if err := l.ensureInstance(ctx, cur); err != nil {
		done.Kind, done.Error = "trap", err.Error()
		var ie *InterruptedError
		if errors.As(err, &ie) {
			done.Kind = "interrupted"
		}
		return
	}
	w.mu.Lock()
	cur.attachLocked(l.inst) // stopped while it started: interrupted now
	w.mu.Unlock()
	pieces, total, err := w.argPieces(ex)
	if err != nil {
		done.Kind, done.Error = "trap", err.Error()
		return
	}
	args := ArgSource{Len: total, Write: func(dst []byte) error {
		off := 0
		for _, b := range pieces {
			off += copy(dst[off:], b)
		}
		// The arguments are in guest memory now: release the arena pins.
		if len(ex.Unpin) > 0 {
			_ = w.conn.Send(l.id, wire.TypeUnpin, wire.Unpin{IDs: ex.Unpin})
			ex.Unpin = nil
		}
		return nil
	}}
	h := &workerHost{w: w, l: l, task: ex.Task, cur: cur}
	emit := func(stream uint8, p []byte) {
		_ = w.queue(l.id, wire.TypeOutput, wire.Output{Task: ex.Task, Stream: stream, Data: append([]byte(nil), p...)})
	}
	res, err := l.inst.Call(ctx, h, ex.Name, args, emit, w.cfg.OutputCap)
	w.mu.Lock()
	cur.inst = nil // a Stop that comes now finds the call over
	w.mu.Unlock()
	if len(ex.Unpin) > 0 {
		_ = w.conn.Send(l.id, wire.TypeUnpin, wire.Unpin{IDs: ex.Unpin})
		ex.Unpin = nil
	}
	if err != nil {
		done.Kind, done.Error = "trap", err.Error()
		return
	}
	h.result(&done, res)
}

// ensureInstance gives the lane a working instance: a new one when it has
// none, or its last one trapped or was interrupted.
func (l *lane) ensureInstance(ctx context.Context, cur *execution) error {
	if l.inst != nil && !l.inst.Broken() && l.inst.Interrupted() == nil {
		return nil
	}
	if l.inst != nil {
		_ = l.inst.Close(ctx)
		l.inst = nil
	}
	inst, err := l.instantiate(ctx, cur)
	if err != nil {
		return err
	}
	l.inst = inst
	return nil
}

// argPieces returns the bytes of an execution's argument pieces and
// their total length.
func (w *worker) argPieces(ex wire.Exec) ([][]byte, int64, error) {
	pieces := make([][]byte, len(ex.Args))
	var total int64
	for i, p := range ex.Args {
		b, err := w.pieceBytes(p)
		if err != nil {
			return nil, 0, err
		}
		pieces[i] = b
		total += int64(len(b))
	}
	return pieces, total, nil
}

// sendDone unpins what the execution still pins and sends its Done; a
// result too large for a frame becomes an error.
func (l *lane) sendDone(task objects.ID, unpin *[]objects.ID, done wire.Done) {
	w := l.w
	if len(*unpin) > 0 { // the call failed before its arguments were copied
		_ = w.queue(l.id, wire.TypeUnpin, wire.Unpin{IDs: *unpin})
		*unpin = nil
	}
	err := w.conn.Send(l.id, wire.TypeDone, done)
	if errors.Is(err, wire.ErrFrameTooLarge) {
		_ = w.conn.Send(l.id, wire.TypeDone, wire.Done{Task: task, Kind: "app",
			Error: fmt.Sprintf("the result is too large to return (%d bytes; the limit is %d)", done.Value.Len(), wire.MaxFrame)})
		done.OK = false
	}
	w.localDone(task, done)
}

// result fills done from a call's result: a value over InlineMax goes
// into the arena, under a reservation made for the call's return object.
func (h *workerHost) result(done *wire.Done, res CallResult) {
	done.OK, done.Error, done.Kind, done.Output, done.ExitCode = res.OK, res.Error, res.Kind, res.Dropped, res.ExitCode
	done.Refs = append(done.Refs, res.Refs...)
	if !res.OK {
		if len(res.ErrorTypes) > 0 {
			done.ErrorTypes, _ = wire.Marshal(res.ErrorTypes)
		}
		return
	}
	if len(res.Value) <= InlineMax || h.w.arena == nil {
		done.Value = wire.Piece{Inline: res.Value}
		return
	}
	id, off, err := h.create(int64(len(res.Value)), true)
	if err != nil {
		done.Value = wire.Piece{Inline: res.Value}
		return
	}
	copy(h.w.arena[off:], res.Value)
	done.Value = wire.Piece{Arena: true, Off: off, Size: int64(len(res.Value))}
	done.Created = id
}

// workerHost serves the host calls of one Exec.
type workerHost struct {
	w      *worker
	l      *lane
	task   objects.ID
	cur    *execution
	logged int64 // log bytes sent in this call
}

// Submit sends the spec without waiting: the worker makes the IDs (random,
// so unguessable) and the agent turns a spec it refuses into errors stored
// in those objects.
func (h *workerHost) Submit(spec []byte, actor bool, n int) ([]objects.ID, error) {
	var base objects.ID
	h.l.rng.Read(base[:16])
	ids := make([]objects.ID, n)
	for i := range ids {
		ids[i] = base
		if !actor {
			ids[i] = base.WithIndex(uint32(i + 1))
		}
	}
	msg := wire.Submit{Task: h.task, Actor: actor, Spec: append([]byte(nil), spec...), IDs: ids}
	if !actor && h.w.nLease.Load() > 0 && h.w.runLeased(h.l, h.cur, msg) {
		return ids, nil
	}
	if actor { // answered, so that a refused creation fails at once
		r, err := h.l.rpc(h.cur, wire.TypeSubmit, func(seq uint64) any { msg.Seq = seq; return msg })
		if err != nil {
			return nil, err
		}
		if len(r.IDs) == 1 && len(ids) == 1 {
			return r.IDs, nil // get_if_exists: the actor that has the name
		}
		return ids, nil
	}
	if err := h.w.queue(h.l.id, wire.TypeSubmit, msg); err != nil {
		return nil, err
	}
	return ids, nil
}

func (h *workerHost) create(size int64, result bool) (objects.ID, int64, error) {
	return h.reserve(wire.Create{Task: h.task, Size: size, Result: result})
}

// reserve asks the agent for arena space (Create).
func (h *workerHost) reserve(m wire.Create) (objects.ID, int64, error) {
	size := m.Size
	r, err := h.l.rpc(h.cur, wire.TypeCreate, func(seq uint64) any {
		m.Seq = seq
		return m
	})
	if err != nil {
		return objects.NilID, 0, err
	}
	if len(r.IDs) != 1 || r.Off < 0 || r.Off+size > int64(len(h.w.arena)) {
		return objects.NilID, 0, errors.New("sandbox: bad create reply")
	}
	return r.IDs[0], r.Off, nil
}

// Put stores the concatenated parts without waiting for the agent: a
// value over InlineMax is copied straight into an arena range that Create
// reserved (one copy from guest memory), a small one travels inline in a
// queued message under an ID the worker made.
func (h *workerHost) Put(parts [][]byte, refs []objects.ID) (objects.ID, error) {
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	msg := wire.Put{Task: h.task, Refs: refs}
	if total > InlineMax && h.w.arena != nil {
		if id, off, err := h.create(int64(total), false); err == nil {
			for _, p := range parts {
				off += int64(copy(h.w.arena[off:], p))
			}
			msg.Created, msg.ID = id, id
		}
	}
	if msg.Created.IsNil() {
		h.l.rng.Read(msg.ID[:16])
		msg.Data = make([]byte, 0, total)
		for _, p := range parts {
			msg.Data = append(msg.Data, p...)
		}
	}
	if err := h.w.queue(h.l.id, wire.TypePut, msg); err != nil {
		return objects.NilID, err
	}
	return msg.ID, nil
}

// Yield stores a generator's item under its return ID, as Put stores a
// value, without waiting for the agent.
func (h *workerHost) Yield(parts [][]byte, refs []objects.ID, index uint32) error {
	h.w.mu.Lock()
	cancelled := h.cur.cancelled || h.cur.stopped
	h.w.mu.Unlock()
	if cancelled {
		return ErrCallCancelled
	}
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	msg := wire.Put{Task: h.task, ID: h.task.WithIndex(index), Refs: refs, Item: index}
	if total > InlineMax && h.w.arena != nil {
		if id, off, err := h.reserve(wire.Create{Task: h.task, Size: int64(total), Item: index}); err == nil {
			for _, p := range parts {
				off += int64(copy(h.w.arena[off:], p))
			}
			msg.Created = id
		}
	}
	if msg.Created.IsNil() {
		msg.Data = make([]byte, 0, total)
		for _, p := range parts {
			msg.Data = append(msg.Data, p...)
		}
	}
	return h.w.queue(h.l.id, wire.TypePut, msg)
}

func (h *workerHost) Get(ids []objects.ID, timeoutMs int64) ([]Staged, func(), bool, error) {
	if items, ok := h.w.cache.lookup(ids); ok {
		return items, nil, false, nil
	}
	if h.w.nLease.Load() > 0 {
		timedOut, err := h.w.awaitLocal(h.cur, ids, timeoutMs)
		if err != nil || timedOut {
			return nil, nil, timedOut, err
		}
		if items, ok := h.w.cache.lookup(ids); ok {
			return items, nil, false, nil
		}
	}
	r, err := h.l.rpc(h.cur, wire.TypeGet, func(seq uint64) any {
		return wire.Get{Seq: seq, Task: h.task, IDs: ids, TimeoutMs: timeoutMs}
	})
	if err != nil {
		return nil, nil, false, err
	}
	var pinned []objects.ID
	release := func() {
		if len(pinned) > 0 {
			_ = h.w.conn.Send(h.l.id, wire.TypeUnpin, wire.Unpin{IDs: pinned})
		}
	}
	if r.Code == abi.TimedOut {
		return nil, nil, true, nil
	}
	if len(r.Items) != len(ids) {
		return nil, nil, false, errors.New("sandbox: bad get reply")
	}
	items := make([]Staged, len(ids))
	for i, it := range r.Items {
		b, err := h.w.pieceBytes(it.Data)
		if err != nil {
			release()
			return nil, nil, false, err
		}
		if it.Data.Arena || it.Data.Path != "" {
			pinned = append(pinned, ids[i])
		}
		items[i] = Staged{Kind: abi.StagedValue, Data: b}
		if it.IsError {
			items[i].Kind = abi.StagedError
		}
		if !it.Data.Arena && it.Data.Path == "" {
			h.w.cache.add(ids[i], items[i])
		}
	}
	return items, release, false, nil
}

// valueCache keeps the values of small objects this worker got. Objects
// are immutable, so a second Get of one (Ray's get benchmark, or a task
// reading the same small object in a loop) needs no round trip to the
// agent, as Ray's in-process memory store serves small objects. Released
// objects leave the cache; it is emptied when it outgrows its budget.
type valueCache struct {
	mu    sync.Mutex // the lanes share it
	m     map[objects.ID]Staged
	bytes int
}

const (
	cacheBudget  = 16 << 20
	cacheItemMax = 16 << 10
)

func (c *valueCache) lookup(ids []objects.ID) ([]Staged, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return nil, false
	}
	items := make([]Staged, len(ids))
	for i, id := range ids {
		it, ok := c.m[id]
		if !ok {
			return nil, false
		}
		items[i] = it
	}
	return items, true
}

func (c *valueCache) add(id objects.ID, it Staged) {
	if len(it.Data) > cacheItemMax {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || c.bytes+len(it.Data) > cacheBudget {
		c.m, c.bytes = map[objects.ID]Staged{}, 0
	}
	if _, ok := c.m[id]; !ok {
		c.m[id] = Staged{Kind: it.Kind, Data: append([]byte(nil), it.Data...)}
		c.bytes += len(it.Data)
	}
}

func (c *valueCache) drop(ids []objects.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if it, ok := c.m[id]; ok {
			c.bytes -= len(it.Data)
			delete(c.m, id)
		}
	}
}

func (h *workerHost) Wait(ids []objects.ID, numReady int, timeoutMs int64) ([]bool, error) {
	r, err := h.l.rpc(h.cur, wire.TypeWait, func(seq uint64) any {
		return wire.Wait{Seq: seq, Task: h.task, IDs: ids, NumReady: numReady, TimeoutMs: timeoutMs}
	})
	if err == nil && len(r.Ready) != len(ids) {
		err = errors.New("sandbox: bad wait reply")
	}
	return r.Ready, err
}

func (h *workerHost) Cancel(id objects.ID, force, recursive bool) error {
	_, err := h.l.rpc(h.cur, wire.TypeCancel, func(seq uint64) any {
		return wire.Cancel{Seq: seq, Task: h.task, ID: id, Force: force, Recursive: recursive}
	})
	return err
}

func (h *workerHost) Release(ids []objects.ID) {
	h.w.cache.drop(ids)
	_ = h.w.queue(h.l.id, wire.TypeRelease, wire.Release{Task: h.task, IDs: ids})
}

// ActorList asks the agent for the named actors the job may look up.
func (h *workerHost) ActorList() ([]byte, error) {
	return h.askBytes(wire.TypeActorLookup, "actor list", func(seq uint64) any {
		return wire.ActorLookup{Seq: seq, Task: h.task, List: true}
	})
}

func (h *workerHost) ActorLookup(namespace, name string) (objects.ID, error) {
	r, err := h.l.rpc(h.cur, wire.TypeActorLookup, func(seq uint64) any {
		return wire.ActorLookup{Seq: seq, Task: h.task, Name: name, Namespace: namespace}
	})
	if err != nil {
		return objects.NilID, err
	}
	if len(r.IDs) != 1 {
		return objects.NilID, errors.New("sandbox: bad lookup reply")
	}
	return r.IDs[0], nil
}

func (h *workerHost) ActorKill(id objects.ID, noRestart bool) error {
	_, err := h.l.rpc(h.cur, wire.TypeActorKill, func(seq uint64) any {
		return wire.ActorKill{Seq: seq, Task: h.task, Actor: id, NoRestart: noRestart}
	})
	return err
}

func (h *workerHost) Log(level int32, msg []byte) {
	limit := h.w.cfg.OutputCap
	if limit <= 0 {
		limit = DefaultOutputCap
	}
	if h.logged >= limit {
		return
	}
	line := append([]byte(levelName(level)+": "), stripControl(new(escState), msg)...)
	if room := limit - h.logged; int64(len(line)) >= room {
		line = append(line[:room], "\n[fabric: log output of this call reached its cap; the rest is dropped]"...)
	}
	h.logged += int64(len(line))
	line = append(line, '\n')
	_ = h.w.queue(h.l.id, wire.TypeOutput, wire.Output{Task: h.task, Stream: 3, Data: line})
}

func levelName(l int32) string {
	switch l {
	case abi.LevelDebug:
		return "DEBUG"
	case abi.LevelWarn:
		return "WARN"
	case abi.LevelError:
		return "ERROR"
	}
	return "INFO"
}

// GroupCreate queues the creation under an ID the worker makes, without
// waiting: pg_wait reports a group the agent refused.
func (h *workerHost) GroupCreate(spec []byte) (objects.ID, error) {
	var id objects.ID
	h.l.rng.Read(id[:16])
	if err := h.w.queue(h.l.id, wire.TypeGroupCreate, wire.GroupCreate{Task: h.task, Spec: spec, ID: id}); err != nil {
		return objects.NilID, err
	}
	return id, nil
}

func (h *workerHost) GroupWait(id objects.ID, timeoutMs int64) (bool, error) {
	r, err := h.l.rpc(h.cur, wire.TypeGroupWait, func(seq uint64) any {
		return wire.GroupWait{Seq: seq, Task: h.task, Group: id, TimeoutMs: timeoutMs}
	})
	if err != nil {
		return false, err
	}
	return r.Code == abi.TimedOut, nil
}

// NodeID names the worker's node.
func (h *workerHost) NodeID() string { return h.w.cfg.NodeID }

// Cancelled reports whether the call was asked to cancel.
func (h *workerHost) Cancelled() bool {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	return h.cur.cancelled || h.cur.stopped
}

// ClusterInfo asks the agent for the nodes it knows (abi.ClusterInfo).
func (h *workerHost) ClusterInfo() ([]byte, error) {
	return h.askBytes(wire.TypeCluster, "cluster info", func(seq uint64) any { return wire.Cluster{Seq: seq, Task: h.task} })
}

// PlacementGroups asks the agent for the job's abi.GroupTable.
func (h *workerHost) PlacementGroups() ([]byte, error) {
	return h.askBytes(wire.TypeGroups, "placement groups", func(seq uint64) any { return wire.Groups{Seq: seq, Task: h.task} })
}

// RuntimeContext asks the agent for the call's abi.RuntimeContext.
func (h *workerHost) RuntimeContext() ([]byte, error) {
	return h.askBytes(wire.TypeContext, "runtime context", func(seq uint64) any { return wire.Context{Seq: seq, Task: h.task} })
}

// askBytes sends a request whose Reply carries one inline item (what),
// and returns its bytes.
func (h *workerHost) askBytes(t wire.Type, what string, fill func(seq uint64) any) ([]byte, error) {
	r, err := h.l.rpc(h.cur, t, fill)
	if err != nil {
		return nil, err
	}
	if len(r.Items) != 1 || r.Items[0].Data.Inline == nil {
		return nil, fmt.Errorf("sandbox: bad %s reply", what)
	}
	return r.Items[0].Data.Inline, nil
}

// GroupRemove queues the removal without waiting.
func (h *workerHost) GroupRemove(id objects.ID) error {
	return h.w.queue(h.l.id, wire.TypeGroupRemove, wire.GroupRemove{Task: h.task, Group: id})
}
