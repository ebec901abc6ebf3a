package core

import (
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Effect is something the shell must do. None of them waits for an
// answer; answers come back as events.
type Effect interface{ effect() }

// StartWorker starts a worker process for a job's module. The shell
// answers with WorkerStarted (then WorkerReady or WorkerLoadFailed, and
// at the end WorkerExited), or WorkerStartFailed.
type StartWorker struct {
	Worker WorkerID
	Job    JobID
	Tenant string // the job's: its processes go in the tenant's control group
	Digest string
	// Process names the job's worker process it goes in: "" for the one
	// of its tasks and actors, "driver" for its driver's own (a task that
	// crashes its process must not take the job with it); a lease's lane
	// goes in the process of the worker that asked.
	Process string
}

// KillWorker stops a worker process; WorkerExited follows.
type KillWorker struct{ Worker WorkerID }

// SendWorker sends a worker a message (a wire.Exec, Reply or Drop).
type SendWorker struct {
	Worker WorkerID
	Type   wire.Type
	Msg    any
}

// SetTimer asks for TimerFired at At.
type SetTimer struct {
	Timer TimerID
	At    Time
}

// StopTimer cancels a timer; a TimerFired for it that was on its way is
// ignored anyway.
type StopTimer struct{ Timer TimerID }

// JobOutput is output of a job that runs its driver here, for its reader.
type JobOutput struct {
	Job    JobID
	Stderr bool
	Data   []byte
}

// JobResult is the end of a job's driver: Err is empty when it succeeded.
// ExitCode is the code the driver passed to os.Exit (proc_exit) when it
// exited with one other than 0.
type JobResult struct {
	Job      JobID
	Err      string
	ExitCode uint32
}

// JobEnded says that nothing of a job is left on this node: its tasks,
// objects and actors are gone and its workers have exited.
type JobEnded struct{ Job JobID }

// Log is a line for the agent's own log.
type Log struct {
	Text string
	// Job, when set, is the job the line is about (a retry, a restart):
	// the shell also writes it to that job's output, unless that output
	// is the node's log.
	Job JobID
}

// Reserve asks for room in the object store for a worker's large value
// (objects.Store.Create, which may spill): the shell answers with
// Reserved.
type Reserve struct {
	Worker WorkerID
	Seq    uint64
	ID     objects.ID
	Size   int64
	Tenant string // charged with the object's bytes
}

// StoreValue stores a value in the object store (objects.Store.Put, which
// may spill): the shell answers with ValueStored.
type StoreValue struct {
	ID     objects.ID
	Data   []byte
	Tenant string // charged with the object's bytes
}

// PeerSend sends another node a message, through the peer link.
type PeerSend struct {
	Node NodeID
	Msg  peerwire.Message
}

// FetchModule copies a module from a node that has it, checks it against
// its digest and validates it: the shell answers with ModuleReady.
type FetchModule struct {
	Digest string
	From   NodeID
}

// PullObject copies a stored object's bytes from another node into this
// node's store under ID: the shell answers with ObjectPulled.
type PullObject struct {
	Job    JobID
	Tenant string     // the job's, charged with the copy's bytes
	ID     objects.ID // the ID here
	From   NodeID
	As     objects.ID // the ID the holder keeps it under
	Size   int64
}

// TrimStore gives the pages of freed objects back to the OS.
type TrimStore struct{}

// Yield says the core has work left that it stopped to let other events
// in: the shell steps Continue once it has released its lock.
type Yield struct{}

func (StartWorker) effect() {}
func (KillWorker) effect()  {}
func (SendWorker) effect()  {}
func (SetTimer) effect()    {}
func (StopTimer) effect()   {}
func (JobOutput) effect()   {}
func (JobResult) effect()   {}
func (JobEnded) effect()    {}
func (Log) effect()         {}
func (Reserve) effect()     {}
func (StoreValue) effect()  {}
func (PeerSend) effect()    {}
func (FetchModule) effect() {}
func (PullObject) effect()  {}
func (TrimStore) effect()   {}
func (Yield) effect()       {}
