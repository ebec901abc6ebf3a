package sandbox

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// This file is the host side of the interruption points that
// instrument.go inserts: the fabric.yield import, and stopping one
// instance without stopping its process.

// InterruptedError is the error of a call stopped by Instance.Interrupt.
type InterruptedError struct {
	// Reason is what Interrupt was given.
	Reason error
}

func (e *InterruptedError) Error() string { return "interrupted: " + e.Reason.Error() }

// Unwrap returns the reason.
func (e *InterruptedError) Unwrap() error { return e.Reason }

// interruptState is what yield needs to know of an instance.
type interruptState struct {
	stop atomic.Pointer[error]
	// stopped is closed by the first Interrupt, for what waits in the
	// host (sleep) rather than computing.
	stopped   chan struct{}
	closeOnce sync.Once
	// yields counts the calls of yield, for tests and benchmarks.
	yields atomic.Int64
	// shared is when the instance last gave its processor up (share);
	// only its goroutine touches it.
	shared time.Duration
}

// shareEvery is how long an instance computes before yield gives its
// processor to the other goroutines that wait for one.
const shareEvery = time.Millisecond

// epoch is the origin of the monotonic times share compares.
var epoch = time.Now()

// share lets the goroutines waiting for a processor run once the
// instance has computed for shareEvery. Go's scheduler would take the
// processor back itself only after 10 ms; sibling instances of a worker
// process, and the goroutine that reads the agent's messages (a Stop),
// would wait that long behind a guest that computes. Yields come tens of
// microseconds apart in some guests (Go's), so it reads the clock and
// does not call Gosched each time: that cost a tenth of a loop-heavy Go
// guest's speed.
func (st *interruptState) share() {
	now := time.Since(epoch)
	if now-st.shared >= shareEvery {
		st.shared = now
		runtime.Gosched()
	}
}

// instanceTable maps a wazero module to its instance's interrupt state,
// for yield, which is handed only the module.
type instanceTable struct{ m sync.Map } // api.Module -> *interruptState

func (t *instanceTable) add(mod api.Module, st *interruptState) { t.m.Store(mod, st) }
func (t *instanceTable) remove(mod api.Module)                  { t.m.Delete(mod) }

func (t *instanceTable) lookup(mod api.Module) *interruptState {
	v, ok := t.m.Load(mod)
	if !ok {
		return nil
	}
	return v.(*interruptState)
}

// defineYield adds fabric.yield to the host module: the guest calls it
// when it has spent its fuel. It stops an instance that was asked to
// stop, by unwinding the call with a panic that wazero turns into the
// call's error (the instance is then discarded, as after any trap).
//
// It need not call runtime.Gosched: Go code runs here, on the goroutine's
// own stack, and when the runtime wants the goroutine (the collector
// stopping the world, or the scheduler's sysmon taking back a processor
// held over 10 ms) it has marked it so that the next function prologue
// with a stack check, such as the table lookup below, parks it. What it
// cannot do while the guest runs compiled code, it does here.
func (e *Engine) defineYield(b wazero.HostModuleBuilder) {
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, _ []uint64) {
		st := e.instances.lookup(mod)
		if st == nil {
			return
		}
		st.yields.Add(1)
		st.checkStop()
		st.share()
	}), nil, nil).WithName(yieldImport).Export(yieldImport)
	// The guest calls fabric.stack_exhausted before a call that would
	// take its stack past StackBudget (stack.go): the call ends with
	// ErrStackExhausted and the instance is discarded, as after a trap.
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {
		panic(errStackBudget)
	}), nil, nil).WithName(stackExhaustedImport).Export(stackExhaustedImport)
}

// Interrupt asks the instance to stop: the call it runs returns within
// one fuel budget of guest code (about a millisecond) with an
// InterruptedError, and the instance is broken. A host call the guest is
// in is not interrupted: the Host must return from it on its own. Safe to
// call from any goroutine, more than once (the first reason stays).
func (i *Instance) Interrupt(reason error) {
	if reason == nil {
		reason = fmt.Errorf("stopped")
	}
	if i.intr.stop.CompareAndSwap(nil, &reason) {
		i.intr.closeOnce.Do(func() { close(i.intr.stopped) })
	}
}

// sleep is the guest's clock sleep (WASI poll_oneoff): a stop cuts it
// short and ends the call, so that a guest sleeping (Go's time.Sleep)
// stops as promptly as one computing.
func (st *interruptState) sleep(ns int64) {
	st.checkStop()
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-st.stopped:
		st.checkStop()
	}
}

// checkStop unwinds the guest's call when the instance was interrupted.
func (st *interruptState) checkStop() {
	if reason := st.stop.Load(); reason != nil {
		panic(&InterruptedError{Reason: *reason})
	}
}

// Interrupted reports the reason given to Interrupt, or nil.
func (i *Instance) Interrupted() error {
	if r := i.intr.stop.Load(); r != nil {
		return *r
	}
	return nil
}

// Yields counts the instance's calls of fabric.yield so far.
func (i *Instance) Yields() int64 { return i.intr.yields.Load() }
