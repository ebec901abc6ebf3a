//go:build wasip1

package sdk

import (
	"encoding/binary"
	"runtime"

	"github.com/wasmfabric/fabric/internal/abi"
)

//go:wasmimport fabric serve_poll
func hostServePoll(events, room uint32, timeoutMs int64) int32

//go:wasmimport fabric call_take
func hostCallTake(handle uint32) int32

//go:wasmimport fabric call_enter
func hostCallEnter(handle uint32) int32

//go:wasmimport fabric call_finish
func hostCallFinish(handle, status uint32) int32

//go:wasmimport fabric get_start
func hostGetStart(ids, n uint32, timeoutMs int64) int32

//go:wasmimport fabric wait_start
func hostWaitStart(ids, n, numReady uint32, timeoutMs int64) int32

//go:wasmimport fabric op_take
func hostOpTake(token, readyOut uint32) int32

// serving is the serve loop while a concurrent actor's instance runs it
// (nil otherwise). Wasm runs one goroutine at a time, and a goroutine
// gives way only where it blocks, so its state needs no lock.
var serving *server

// server runs a concurrent actor's method calls on goroutines of their
// own. A call's Get and Wait start without blocking and park only its
// goroutine; the loop wakes it when the host says the operation is done.
type server struct {
	byGoroutine map[uint64]uint32 // call goroutines and their call handles
	entered     uint32            // the call the host acts for
	ops         map[uint32]*serveOp
	running     int // calls not finished
	parked      int // call goroutines parked in a Get or Wait, not yet woken
	// readied counts the call goroutines handed a call or woken from a
	// park that have not run since: the loop lets them run before it
	// polls.
	readied int
}

type serveOp struct {
	n    int // IDs, for a wait's flags
	wait bool
	call bool // a call's goroutine parked on it: counted in server.parked
	done chan serveResult
}

type serveResult struct {
	items []staged
	ready []bool
	err   error
}

// busyPoll is how long the loop waits for the host while some call's
// goroutine is neither parked here nor done: it may be asleep on a timer
// or a channel, which only the Go scheduler can wake.
const busyPoll = 1 // millisecond

// serve is fabric_call(abi.ServeFunc): it takes the actor's calls until
// the host says none runs or waits.
func serve() int32 {
	s := &server{byGoroutine: map[uint64]uint32{}, ops: map[uint32]*serveOp{}}
	serving = s
	defer func() { serving = nil }()
	events := make([]byte, 64*abi.EventSize)
	for {
		// The calls that can run do, until they block. One Gosched does
		// not promise to run them (the scheduler may pick this goroutine
		// again first), and a loop that polled before they ran waited for
		// the poll's timeout, a millisecond, now and then.
		runtime.Gosched()
		for s.readied > 0 {
			runtime.Gosched()
		}
		timeout := int64(-1)
		if s.running > s.parked {
			timeout = busyPoll
		}
		n := hostServePoll(ptr(events), 64, timeout)
		if n < 0 {
			return returnResult(nil, nil, stagedError())
		}
		for i := range int(n) {
			kind := binary.LittleEndian.Uint32(events[i*abi.EventSize:])
			id := binary.LittleEndian.Uint32(events[i*abi.EventSize+4:])
			switch kind {
			case abi.EventCall:
				s.start(id)
			case abi.EventOp:
				s.finishOp(id)
			case abi.EventIdle:
				if s.running == 0 {
					return returnResult([][]byte{{0xf6}}, nil, nil)
				}
			}
			// abi.EventCancel needs nothing: the call's operations end
			// as cancelled, and Cancelled reports it.
		}
	}
}

// start runs a new call on a goroutine of the call pool.
func (s *server) start(handle uint32) {
	if hostCallTake(handle) < 0 {
		return // the host has no such call
	}
	items, err := readStaged(3)
	if err != nil {
		return
	}
	s.running++
	var cw *callWorker
	if n := len(idleWorkers); n > 0 {
		cw, idleWorkers = idleWorkers[n-1], idleWorkers[:n-1]
	} else {
		cw = &callWorker{calls: make(chan callJob, 1)}
		go cw.loop()
	}
	s.readied++
	cw.calls <- callJob{s: s, handle: handle, name: string(items[0].data), args: items[1].data}
}

// A callWorker is a goroutine that runs calls one after another. It
// learns its goroutine's ID once (runtime.Stack costs tens of
// microseconds on wasm), so that a call needs no lookup to start.
type callWorker struct {
	id    uint64
	calls chan callJob
}

type callJob struct {
	s      *server
	handle uint32
	name   string
	args   []byte
}

// idleWorkers are call workers waiting for a call, across serve loops;
// at most maxIdleWorkers are kept.
var idleWorkers []*callWorker

const maxIdleWorkers = 64

func (cw *callWorker) loop() {
	cw.id = goroutineID()
	for job := range cw.calls {
		s := job.s
		s.readied--
		s.byGoroutine[cw.id] = job.handle
		value, refs, err := dispatch(job.name, job.args)
		delete(s.byGoroutine, cw.id)
		s.enter(job.handle)
		hostCallFinish(job.handle, uint32(returnResult(value, refs, err)))
		s.entered = 0
		s.running--
		if len(idleWorkers) >= maxIdleWorkers {
			return
		}
		idleWorkers = append(idleWorkers, cw)
	}
}

// enter makes the host act for call handle.
func (s *server) enter(handle uint32) {
	if s.entered != handle {
		hostCallEnter(handle)
		s.entered = handle
	}
}

// enterCurrent makes the host act for the call whose goroutine runs, or
// for the actor, before a host call.
func enterCurrent() {
	if s := serving; s != nil {
		s.enter(s.byGoroutine[goroutineID()])
	}
}

// park waits for an operation the host started, parking only the
// calling goroutine.
func (s *server) park(tok int32, op *serveOp) serveResult {
	if tok < 0 {
		return serveResult{err: stagedError()}
	}
	op.done = make(chan serveResult, 1)
	s.ops[uint32(tok)] = op
	if _, op.call = s.byGoroutine[goroutineID()]; op.call {
		s.parked++
	}
	r := <-op.done
	if op.call {
		s.readied--
	}
	return r
}

func (s *server) get(ids []ObjectID, timeoutMs int64) ([]staged, error) {
	enterCurrent()
	b := joinIDs(ids)
	r := s.park(hostGetStart(ptr(b), uint32(len(ids)), timeoutMs), &serveOp{n: len(ids)})
	return r.items, r.err
}

func (s *server) wait(ids []ObjectID, numReady int, timeoutMs int64) ([]bool, error) {
	enterCurrent()
	b := joinIDs(ids)
	r := s.park(hostWaitStart(ptr(b), uint32(len(ids)), uint32(numReady), timeoutMs), &serveOp{n: len(ids), wait: true})
	return r.ready, r.err
}

// finishOp takes a finished operation's outcome and wakes its goroutine.
func (s *server) finishOp(tok uint32) {
	op := s.ops[tok]
	delete(s.ops, tok)
	if op == nil {
		hostOpTake(tok, 0) // nobody waits: drop it
		return
	}
	var r serveResult
	if op.wait {
		out := make([]byte, op.n+1)
		switch st := hostOpTake(tok, ptr(out)); {
		case st == abi.Cancelled:
			r.err = ErrCancelled
		case st < 0:
			r.err = stagedError()
		default:
			r.ready = make([]bool, op.n)
			for i := range r.ready {
				r.ready[i] = out[i] != 0
			}
		}
	} else {
		switch st := hostOpTake(tok, 0); {
		case st == abi.TimedOut:
			r.err = ErrGetTimeout
		case st == abi.Cancelled:
			r.err = ErrCancelled
		case st < 0:
			r.err = stagedError()
		default:
			r.items, r.err = readStaged(op.n)
		}
	}
	if op.call {
		// Woken, the goroutine is no longer parked, though it has not run
		// yet: the loop polls without blocking until it has. (Counting it
		// parked until it ran let the loop block in serve_poll for good
		// whenever the Go scheduler ran the loop again before it: a
		// Gosched does not promise to run the goroutine it readied.)
		s.parked--
		s.readied++
	}
	op.done <- r
}

// goroutineID is the running goroutine's number, from the first line of
// its stack trace ("goroutine 7 [running]:").
func goroutineID() uint64 {
	var buf [32]byte
	b := buf[:runtime.Stack(buf[:], false)]
	var id uint64
	for _, c := range b[len("goroutine "):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}
