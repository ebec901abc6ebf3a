package wire

import "github.com/wasmfabric/fabric/internal/objects"

// ExecKind says what an Exec runs.
type ExecKind uint8

// Kinds of execution.
const (
	ExecTask ExecKind = iota
	ExecMain
	ExecActorCreate
	ExecActorMethod
)

// Ready says that a worker process loaded its module (on ProcessLane, its
// first message) or that a lane's instance is ready for executions (on
// that lane, answering Open).
type Ready struct {
	_     struct{} `cbor:",toarray"`
	Pid   int
	Error string // non-empty when the worker could not load the module
}

// Piece is part of a byte sequence: inline bytes, a range of the shared
// arena, or a spill file (for objects larger than the arena).
type Piece struct {
	_      struct{} `cbor:",toarray"`
	Inline []byte
	Off    int64
	Size   int64
	Path   string
	Arena  bool
}

// Len returns the number of bytes the piece holds.
func (p Piece) Len() int64 {
	if p.Arena || p.Path != "" {
		return p.Size
	}
	return int64(len(p.Inline))
}

// Exec asks a worker to run one call in its guest.
type Exec struct {
	_    struct{}   `cbor:",toarray"`
	Task objects.ID // task ID
	Kind ExecKind
	Name string  // function name passed to fabric_call
	Args []Piece // concatenated, they are the CBOR array of arguments
	// Unpin lists arena objects the agent pinned for Args; the worker sends
	// Unpin for them once copied.
	Unpin []objects.ID
	// Serve marks a method call of a concurrent actor: the worker hands it
	// to the instance's serve loop, beside the calls running there, while
	// fewer than Limit calls of its concurrency Group run.
	Serve bool
	Group string
	Limit int
}

// Done reports the end of an Exec.
type Done struct {
	_      struct{} `cbor:",toarray"`
	Task   objects.ID
	OK     bool
	Value  Piece        // CBOR value when OK
	Error  string       // error text (message and stack) when !OK
	Kind   string       // error kind: "app" (guest returned an error), "trap", "exit"
	Refs   []objects.ID // object IDs nested in Value
	Output int64        // bytes of output dropped by the cap
	// Created names the object reserved with Create whose arena range
	// Value points at (results too large to send inline).
	Created objects.ID
	// Dropped answers a Drop: the execution was taken out of the worker's
	// queue and never ran.
	Dropped bool
	// ExitCode is the code the guest passed to proc_exit (os.Exit), when
	// Kind is "exit".
	ExitCode uint32
	// ErrorTypes are the registered error types the guest's error
	// matched, a CBOR array of abi.ErrorType, when Kind is "app".
	ErrorTypes []byte
}

// Output carries guest output of the running call.
type Output struct {
	_      struct{} `cbor:",toarray"`
	Task   objects.ID
	Stream uint8 // 1 stdout, 2 stderr, 3 log
	Data   []byte
}

// Reply answers a worker's request.
type Reply struct {
	_     struct{} `cbor:",toarray"`
	Seq   uint64
	Error string // non-empty: the request failed
	Code  int32  // guest-visible status when Error is empty (e.g. 1 = timed out)
	IDs   []objects.ID
	Items []Item
	Ready []bool
	Off   int64
}

// Item is one result of a Get: a value or an error value.
type Item struct {
	_       struct{} `cbor:",toarray"`
	IsError bool
	Data    Piece
}

// Submit asks the agent to run a task, create an actor or call a method.
// Spec is the guest's CBOR task spec (docs/ABI.md). The worker makes the
// IDs (a random task or actor ID, then the return objects' IDs). A task or
// method call has no reply, so the guest goes on at once; a spec the agent
// refuses makes its objects hold the error, which Get reports. An actor
// creation is answered, so that a refused one (a name in use) fails at once.
type Submit struct {
	_     struct{}   `cbor:",toarray"`
	Seq   uint64     // actor creations only: they are answered with a Reply
	Task  objects.ID // the submitting execution
	Actor bool       // Spec creates an actor
	Spec  []byte
	IDs   []objects.ID // for a task or call: its return objects; for an actor: the actor's ID
	// Lane, when not 0, is the lane of the submitting process that runs
	// the task already, under the lease the agent granted it (Lease): the
	// agent records the task as that lane's, and sends it no Exec.
	Lane uint64
}

// Put stores a value under ID, which the worker made (or, for a value in
// the arena, the ID that Create reserved). Either Data holds the value
// inline, or Created names an object reserved with Create that the worker
// has filled in the arena. It has no reply: a value the agent cannot store
// becomes an error value that Get reports.
type Put struct {
	_       struct{} `cbor:",toarray"`
	Task    objects.ID
	ID      objects.ID
	Data    []byte
	Created objects.ID
	Refs    []objects.ID
	// Item, when not 0, makes the Put a generator's yield: ID is the
	// running task's return ID of that index (abi.FirstItem and up).
	Item uint32
}

// Create reserves arena space for a large Put; the reply gives Off and the ID.
type Create struct {
	_    struct{} `cbor:",toarray"`
	Seq  uint64
	Task objects.ID
	Size int64
	// Result reserves the space for the running call's return value.
	Result bool
	// Item reserves it for a generator's item of that index.
	Item uint32
}

// Get waits for objects and returns their values.
type Get struct {
	_         struct{} `cbor:",toarray"`
	Seq       uint64
	Task      objects.ID
	IDs       []objects.ID
	TimeoutMs int64 // < 0: no timeout
}

// Unpin releases arena pins taken for a Get reply or an Exec.
type Unpin struct {
	_   struct{} `cbor:",toarray"`
	IDs []objects.ID
}

// Wait waits until NumReady of IDs are ready or the timeout passes.
type Wait struct {
	_         struct{} `cbor:",toarray"`
	Seq       uint64
	Task      objects.ID
	IDs       []objects.ID
	NumReady  int
	TimeoutMs int64
}

// Cancel cancels the task that makes object ID.
type Cancel struct {
	_         struct{} `cbor:",toarray"`
	Seq       uint64
	Task      objects.ID
	ID        objects.ID
	Force     bool
	Recursive bool
}

// Release drops the guest's references to objects.
type Release struct {
	_    struct{} `cbor:",toarray"`
	Task objects.ID
	IDs  []objects.ID
}

// ActorLookup finds a named actor.
type ActorLookup struct {
	_    struct{} `cbor:",toarray"`
	Seq  uint64
	Task objects.ID
	Name string
	// Namespace is where to look ("": the job's own).
	Namespace string
	// List asks for every named actor the job may look up instead: the
	// Reply's one Item is a CBOR array of abi.ActorInfo.
	List bool
}

// Context asks for the runtime context of the running execution Task: the
// Reply's single Item is an abi.RuntimeContext in CBOR.
type Context struct {
	_    struct{} `cbor:",toarray"`
	Seq  uint64
	Task objects.ID
}

// Cluster asks for the cluster's nodes as the agent sees them: the
// Reply's single Item is an abi.ClusterInfo in CBOR.
type Cluster struct {
	_    struct{} `cbor:",toarray"`
	Seq  uint64
	Task objects.ID
}

// Groups asks for the placement groups of the running execution's job:
// the Reply's single Item is an abi.GroupTable in CBOR.
type Groups struct {
	_    struct{} `cbor:",toarray"`
	Seq  uint64
	Task objects.ID
}

// ActorKill kills an actor.
type ActorKill struct {
	_         struct{} `cbor:",toarray"`
	Seq       uint64
	Task      objects.ID
	Actor     objects.ID
	NoRestart bool
}

// GroupCreate creates a placement group from a guest's CBOR GroupSpec,
// under an ID the worker made. It has no reply: a spec the agent refuses
// makes the group fail, which GroupWait reports.
type GroupCreate struct {
	_    struct{} `cbor:",toarray"`
	Task objects.ID
	Spec []byte
	ID   objects.ID
}

// GroupWait waits until a placement group is placed (Reply.Code 1: timed out).
type GroupWait struct {
	_         struct{} `cbor:",toarray"`
	Seq       uint64
	Task      objects.ID
	Group     objects.ID
	TimeoutMs int64
}

// GroupRemove removes a placement group. It has no reply.
type GroupRemove struct {
	_     struct{} `cbor:",toarray"`
	Task  objects.ID
	Group objects.ID
}

// Drop asks a worker to take an execution it has queued and not started
// out of its queue (the agent sends tasks ahead; see Exec). The worker
// answers with a Done whose Dropped is set, or not at all when the
// execution already started: its usual Done follows.
type Drop struct {
	_    struct{} `cbor:",toarray"`
	Task objects.ID
}

// Stop asks a worker to stop the execution of Task: the guest is
// interrupted at its next interruption point or host call, and its Done
// has Kind "interrupted". An execution that already ended is left alone.
type Stop struct {
	_    struct{} `cbor:",toarray"`
	Task objects.ID
	// Soft asks the running call to return by itself (cancel without
	// force): its cancelled host call says so and its blocking calls
	// return at once; it is not interrupted.
	Soft bool
}

// Open asks a worker process for a new lane: an instance of its module
// that runs the executions sent on that lane, one at a time. The process
// answers Ready on the lane.
type Open struct {
	_ struct{} `cbor:",toarray"`
}

// Close asks a worker process to end a lane: the execution it runs is
// interrupted and sends no Done, the ones queued are dropped without a
// word, and the instance is discarded. The process answers Closed on the
// lane once nothing of it runs.
type Close struct {
	_ struct{} `cbor:",toarray"`
}

// Closed answers Close: the lane's instance is gone.
type Closed struct {
	_ struct{} `cbor:",toarray"`
}

// Lease tells a lane that it holds a lease: its process may run on it,
// without asking the agent, the tasks its lanes submit whose function is
// Fn and whose options encode (canonically, Marshal) as Opts, with inline
// arguments and one return value, while the lane is idle. It sends a
// Submit with Lane set for each, which the agent accounts in the lease's
// reservation. The lane runs them one at a time, in the order submitted.
type Lease struct {
	_    struct{} `cbor:",toarray"`
	Fn   string
	Opts []byte
}

// LeaseEnd ends a lane's lease; the process answers LeaseOver once it runs
// no more tasks on the lane by itself (every Submit with the lane set was
// sent before it).
type LeaseEnd struct {
	_ struct{} `cbor:",toarray"`
}

// LeaseOver answers LeaseEnd.
type LeaseOver struct {
	_ struct{} `cbor:",toarray"`
}
