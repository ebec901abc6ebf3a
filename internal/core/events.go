package core

import (
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
)

// Event is something that happened, for Step.
type Event interface{ apply(c *Core) }

// SubmitJob starts a job whose driver runs here: the module (which the
// shell stored and validated) runs `main` with Args, a CBOR array.
type SubmitJob struct {
	Job    JobID
	Digest string
	Args   []byte
	Tenant string // its namespaces are the tenant's ("": the operator's)
	// Grant is the job's grant (the servers' signature of its ID, tenant
	// and this node), which its work on other nodes carries.
	Grant []byte
}

// Allowances bound what each tenant's tasks placed by this node may
// hold: its quota less what it holds on other nodes (the control plane
// says). Tenants not named have no bound; the last Allowances holds.
type Allowances struct {
	Tenants map[string]scheduler.Allowance
}

func (e Allowances) apply(c *Core) {
	c.sched.SetAllowances(e.Tenants)
	c.schedule()
}

// CancelJob ends a job that runs its driver here (its client went away or
// its time ran out); JobResult carries Reason.
type CancelJob struct {
	Job    JobID
	Reason string
}

// WorkerStarted says a worker's process runs, with its pid.
type WorkerStarted struct {
	Worker WorkerID
	Pid    int
}

// WorkerStartFailed says a worker's process could not start.
type WorkerStartFailed struct {
	Worker WorkerID
	Err    string
}

// WorkerReady says a worker loaded its module and takes executions.
type WorkerReady struct{ Worker WorkerID }

// WorkerLoadFailed says a worker could not load its job's module.
type WorkerLoadFailed struct {
	Worker WorkerID
	Err    string
}

// WorkerMessage is a message from a worker, decoded: a value of one of the
// wire package's worker-to-agent types (wire.Done, wire.Submit, ...).
type WorkerMessage struct {
	Worker WorkerID
	Msg    any
}

// WorkerExited says a worker's process ended; Cause says how.
type WorkerExited struct {
	Worker WorkerID
	Cause  string
}

// TimerFired says a timer's time came.
type TimerFired struct{ Timer TimerID }

// Reserved answers Reserve: the offset of the room in the arena, or Err.
type Reserved struct {
	Worker WorkerID
	Seq    uint64
	ID     objects.ID
	Off    int64
	Err    string
}

// ValueStored answers StoreValue.
type ValueStored struct {
	ID  objects.ID
	Err string
}

// PeerUp says another node is in the cluster, with its resources and
// labels (again when they change).
type PeerUp struct {
	Node      NodeID
	Resources scheduler.Resources
	Labels    map[string]string
}

// PeerDown says another node failed or left (Gone), or cannot be reached
// for now (!Gone): nothing is placed there until PeerUp, and what runs
// there runs again elsewhere. Only a gone node's holds and shares end.
type PeerDown struct {
	Node NodeID
	Gone bool
}

// PeerMessage is a message from another node.
type PeerMessage struct {
	From NodeID
	Msg  peerwire.Message
}

// ModuleReady answers FetchModule, and tells of modules the node holds
// (Err empty), for jobs other nodes send work of.
type ModuleReady struct {
	Digest string
	Err    string
}

// ObjectPulled answers PullObject: the bytes are in the store under ID
// (sealed), or Err says why not.
type ObjectPulled struct {
	Job  JobID
	ID   objects.ID
	Size int64
	Err  string
}

// AddObject records a ready object of no job, whose bytes the shell put
// in the store (Stored, Size) or passes inline, with one hold that
// DeleteObject gives back. Other nodes may pull it (tests, benchmarks).
type AddObject struct {
	ID     objects.ID
	Inline []byte
	Stored bool
	Size   int64
}

// DeleteObject gives back the hold of an object added with AddObject.
type DeleteObject struct{ ID objects.ID }

// Continue resumes work the core left off after a Yield.
type Continue struct{}

func (e TimerFired) apply(c *Core) {
	if fn, ok := c.timers[e.Timer]; ok {
		delete(c.timers, e.Timer)
		fn()
	}
}

// Every event is an Event.
var _ = []Event{SubmitJob{}, CancelJob{}, WorkerStarted{}, WorkerStartFailed{}, WorkerReady{}, WorkerLoadFailed{},
	WorkerMessage{}, WorkerExited{}, TimerFired{}, Reserved{}, ValueStored{}, PeerUp{}, PeerDown{}, PeerMessage{},
	ModuleReady{}, ObjectPulled{}, AddObject{}, DeleteObject{}, Continue{}}
