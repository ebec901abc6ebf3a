// Package sdk is the Go guest SDK for Fabric: Ray's programming model
// (remote tasks returning references, actors, Put, Get, Wait) for programs
// built to WebAssembly with `fabric build`.
//
// Register tasks, actor classes and the driver in package-level variables or
// init functions; the host instantiates the module and calls them by name:
//
//	var square = sdk.Task1("square", func(x int) (int, error) { return x * x, nil })
//
//	func init() { sdk.Main(run) }
//
//	func run(args []string) error {
//		refs := []sdk.Ref[int]{}
//		for i := 0; i < 4; i++ {
//			refs = append(refs, square.Remote(i))
//		}
//		vals, err := sdk.GetAll(refs)
//		fmt.Println(vals)
//		return err
//	}
//
//	func main() {}
//
// Values cross the sandbox boundary as CBOR; any type that
// github.com/fxamacker/cbor/v2 can encode may be an argument or a result.
// References and actor handles may be nested inside values.
//
// Beyond tasks and actors: WaitAny and GetEach take references of
// different types together; GetRuntimeContext says who and where the
// running code is (job, task, actor, node, attempt, resources, placement
// group); Nodes, ClusterResources and AvailableResources describe the
// cluster; Log, Logf, Warnf and Errorf write to the job's output. A task
// that calls os.Exit is a system failure, retried under MaxRetries; an
// actor method that does restarts its actor (MaxRestarts), and its call
// runs again under MaxTaskRetries.
//
// ActorPool and Queue are ray.util's actor pool and queue.
//
// Named actors live in the job's own names, or in a namespace (Namespace)
// where other jobs find them (GetActor with InNamespace); Detached ones
// outlive the job that made them.
//
// A generator (Generator1, NewGenMethod1, ...) yields values one at a
// time: each is an object as soon as it is yielded, and the caller's
// Stream gives its reference while the generator goes on.
//
// An actor created with MaxConcurrency above 1 (or ConcurrencyGroups) is
// concurrent, as Ray's async actors are: its methods run side by side on
// goroutines of its one instance, and a Get or Wait inside a method parks
// only that method's goroutine. Guard the state its methods share with a
// mutex, as for any goroutines.
//
// Errors keep their types across the trip: register error types with
// RegisterErrorType and sentinels with RegisterError, and a caller's
// errors.As and errors.Is see what the task returned. RetryOn and
// RetryExceptions with sentinels retry only those errors.
package sdk

//go:generate go run ./internal/arities

//lint:file-ignore U1000 dispatch and its helpers are called from imports_wasip1.go, which only the wasm build compiles

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/cborlite"
)

// IDSize is the length of an ObjectID.
const IDSize = abi.IDSize

// ObjectID names an object or an actor.
type ObjectID [IDSize]byte

// String returns the ID in hex.
func (id ObjectID) String() string { return fmt.Sprintf("%x", id[:]) }

// Errors returned by the SDK. A failed task's error is a *TaskError; use
// errors.Is with the sentinels below to tell its kind.
var (
	ErrNotInGuest     = errors.New("fabric: the SDK runs only inside a wasm guest; build with `fabric build`")
	ErrGetTimeout     = errors.New("fabric: get timed out")
	ErrTaskCancelled  = errors.New("fabric: task cancelled")
	ErrTaskTimeout    = errors.New("fabric: task timed out")
	ErrWorkerDied     = errors.New("fabric: worker died")
	ErrActorDied      = errors.New("fabric: actor died")
	ErrInfeasible     = errors.New("fabric: task can never be scheduled")
	ErrOwnerDied      = errors.New("fabric: owner died")
	ErrObjectLost     = errors.New("fabric: object lost")
	ErrNoSuchFunction = errors.New("fabric: no such function")
	ErrBadArguments   = errors.New("fabric: bad arguments")
	// ErrCancelled is what Get, Wait and a placement group's Ready return
	// inside a task that was cancelled without force: it should return
	// soon (see Cancelled).
	ErrCancelled = errors.New("fabric: this task was cancelled")
)

// HostError is a failed host call: the host's message.
type HostError struct{ Message string }

func (e *HostError) Error() string { return "fabric: " + e.Message }

func errHost(msg string) error { return &HostError{Message: msg} }

// ErrorKind says why a task's result is an error.
type ErrorKind = abi.ErrorKind

// Error kinds, as TaskError.Kind holds them.
const (
	KindTask       = abi.KindTask       // the guest returned an error, panicked or trapped
	KindCancelled  = abi.KindCancelled  // the task was cancelled
	KindTimeout    = abi.KindTimeout    // the task ran past its timeout
	KindWorkerDied = abi.KindWorkerDied // its worker died or its guest exited, and no retries were left
	KindActorDied  = abi.KindActorDied  // the actor died, or was dead when called
	KindInfeasible = abi.KindInfeasible // no node can ever satisfy its demand
	KindOwnerDied  = abi.KindOwnerDied  // the node that made the object is gone
	KindObjectLost = abi.KindObjectLost // its bytes could not be fetched or stored
)

// TaskError is the error a failed task stored as its result: Get returns it.
type TaskError struct {
	Kind    ErrorKind
	Message string // for KindTask: the guest's message and stack
	Task    string // the task's name
	types   []abi.ErrorType
}

func (e *TaskError) Error() string {
	if e.Task != "" {
		return fmt.Sprintf("task %s failed: %s", e.Task, e.Message)
	}
	return e.Message
}

// kindErrors maps each kind but KindTask to its sentinel.
var kindErrors = map[ErrorKind]error{
	KindCancelled:  ErrTaskCancelled,
	KindTimeout:    ErrTaskTimeout,
	KindWorkerDied: ErrWorkerDied,
	KindActorDied:  ErrActorDied,
	KindInfeasible: ErrInfeasible,
	KindOwnerDied:  ErrOwnerDied,
	KindObjectLost: ErrObjectLost,
}

type staged struct {
	kind int32
	data []byte
}

type hostAPI interface {
	log(level int, msg []byte)
	submit(spec []byte, n int) ([]ObjectID, error)
	actorCreate(spec []byte) (ObjectID, error)
	put(parts [][]byte, refs []ObjectID) (ObjectID, error)
	yield(parts [][]byte, refs []ObjectID, index uint32) error
	get(ids []ObjectID, timeoutMs int64) ([]staged, error)
	wait(ids []ObjectID, numReady int, timeoutMs int64) ([]bool, error)
	cancel(id ObjectID, force, recursive bool) error
	release(ids []ObjectID)
	actorLookup(namespace, name string) (ObjectID, error)
	actorList() ([]byte, error)
	actorKill(id ObjectID, noRestart bool) error
	groupCreate(spec []byte) (ObjectID, error)
	groupWait(id ObjectID, timeoutMs int64) (timedOut bool, err error)
	groupRemove(id ObjectID) error
	nodeID() string
	cancelled() bool
	runtimeContext() ([]byte, error)
	clusterInfo() ([]byte, error)
	groupTable() ([]byte, error)
}

// invoker runs a registered function on decoded CBOR arguments and returns
// the value to encode.
type invoker func(args [][]byte) (any, error)

type registered struct {
	nargs  int
	invoke invoker
}

var (
	registry = map[string]registered{}
	mainFn   func(args []string) error
	actor    any // the state of the actor this instance hosts
)

func register(name string, nargs int, fn invoker) {
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("fabric: %q registered twice", name))
	}
	registry[name] = registered{nargs: nargs, invoke: fn}
}

// Main registers the job's driver: `fabric run` calls it with the
// command-line arguments after `--`. Call it from an init function.
func Main(fn func(args []string) error) { mainFn = fn }

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
	// collected gathers IDs of references encoded while a value is being
	// marshalled; the guest is single-threaded.
	collected []ObjectID
)

func init() {
	var err error
	if encMode, err = (cbor.EncOptions{}).EncMode(); err != nil {
		panic(err)
	}
	if decMode, err = (cbor.DecOptions{MaxArrayElements: 1 << 30, MaxMapPairs: 1 << 30, MaxNestedLevels: 64}).DecMode(); err != nil {
		panic(err)
	}
}

// encodeParts is encode for values about to leave the guest: a numeric
// slice comes back as its head and its own memory, so the host copies it
// once, straight from the slice.
func encodeParts(v any) ([][]byte, []ObjectID, error) {
	if head, body, ok := typedParts(v); ok {
		return [][]byte{head, body}, nil, nil
	}
	b, refs, err := encode(v)
	return [][]byte{b}, refs, err
}

// encode marshals v and returns the references nested in it.
func encode(v any) ([]byte, []ObjectID, error) {
	if b, ok := encodeTyped(v); ok {
		return b, nil, nil
	}
	if b, ok := encodeScalar(v); ok {
		return b, nil, nil
	}
	collected = collected[:0]
	b, err := encMode.Marshal(v)
	refs := append([]ObjectID(nil), collected...)
	collected = collected[:0]
	return b, refs, err
}

func decode(b []byte, v any) error {
	if decodeTyped(b, v) || decodeScalar(b, v) {
		return nil
	}
	return decMode.Unmarshal(b, v)
}

// dispatch runs the function named by the host. It recovers panics into an
// error carrying the panic value and the stack.
func dispatch(name string, args []byte) (value [][]byte, refs []ObjectID, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n\n%s", r, debug.Stack())
		}
	}()
	var raw [][]byte
	if len(args) > 0 {
		if raw, err = cborlite.SplitArray(args); err != nil {
			return nil, nil, fmt.Errorf("%w: arguments of %s are not a CBOR array: %v", ErrBadArguments, name, err)
		}
	}
	var result any
	switch {
	case name == abi.MainFunc:
		if mainFn == nil {
			return nil, nil, fmt.Errorf("%w: the module registers no driver; call sdk.Main in an init function", ErrNoSuchFunction)
		}
		var argv []string
		if len(raw) > 0 {
			if err := decode(raw[0], &argv); err != nil {
				return nil, nil, fmt.Errorf("%w: main takes a list of strings: %v", ErrBadArguments, err)
			}
		}
		if err := mainFn(argv); err != nil {
			return nil, nil, err
		}
	default:
		reg, ok := registry[name]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %q is not registered in this module (registered: %s)", ErrNoSuchFunction, name, registeredNames())
		}
		if len(raw) != reg.nargs {
			return nil, nil, fmt.Errorf("%w: %s takes %d arguments, got %d", ErrBadArguments, name, reg.nargs, len(raw))
		}
		result, err = reg.invoke(raw)
		if err != nil {
			return nil, nil, err
		}
	}
	return encodeParts(result)
}

func registeredNames() string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func joinIDs(ids []ObjectID) []byte {
	if len(ids) == 0 {
		return nil
	}
	b := make([]byte, len(ids)*IDSize)
	for i := range ids {
		copy(b[i*IDSize:], ids[i][:])
	}
	return b
}

func splitIDs(b []byte) []ObjectID {
	ids := make([]ObjectID, len(b)/IDSize)
	for i := range ids {
		copy(ids[i][:], b[i*IDSize:])
	}
	return ids
}

// NodeID returns the ID of the node running the caller ("local" on an
// embedded node): for logs, and to see where work ran.
func NodeID() string { return host.nodeID() }

// Cancelled reports whether the running task was cancelled (Cancel
// without Force). The task then has a second to return before it is
// stopped, and its Get, Wait and Ready calls return ErrCancelled at once;
// whatever it returns, its result is ErrTaskCancelled. A long loop can
// check it to stop early and clean up:
//
//	for _, item := range work {
//		if sdk.Cancelled() {
//			return 0, sdk.ErrCancelled
//		}
//		...
//	}
func Cancelled() bool { return host.cancelled() }

// RuntimeContext says who and where the running code is, as Ray's
// get_runtime_context does.
type RuntimeContext struct {
	JobID   string
	TaskID  ObjectID // the running call: a task, an actor's constructor or method call, or the driver
	ActorID ObjectID // the actor it runs in; zero outside one
	NodeID  string
	// Attempt is 0 on the first run and grows by one with each retry.
	Attempt int
	// Resources are those the call holds: "CPU", "GPU", "memory" (bytes)
	// and custom ones. An actor's methods hold what the actor was
	// created with.
	Resources map[string]float64
	// PlacementGroup is the group it runs in (its ID is zero outside one),
	// and Bundle its bundle there (-1 when it asked for any).
	PlacementGroup PlacementGroup
	Bundle         int
}

// GetRuntimeContext returns the running code's RuntimeContext.
func GetRuntimeContext() (RuntimeContext, error) {
	b, err := host.runtimeContext()
	if err != nil {
		return RuntimeContext{}, err
	}
	var rc abi.RuntimeContext
	if err := decMode.Unmarshal(b, &rc); err != nil {
		return RuntimeContext{}, fmt.Errorf("fabric: malformed runtime context: %w", err)
	}
	out := RuntimeContext{JobID: rc.Job, NodeID: rc.Node, Attempt: rc.Attempt, Resources: rc.Resources, Bundle: -1}
	copy(out.TaskID[:], rc.Task)
	copy(out.ActorID[:], rc.Actor)
	copy(out.PlacementGroup.id[:], rc.Group)
	if rc.Bundle != nil {
		out.Bundle = *rc.Bundle
	}
	return out, nil
}

// Node is one live node of the cluster, as ray.nodes() lists them.
// Resources are keyed "CPU", "GPU", "memory" (bytes) and custom names;
// Available is what the node has free as the caller's node sees it.
type Node struct {
	ID               string
	Labels           map[string]string
	Total, Available map[string]float64
}

// Nodes lists the cluster's live nodes, as the caller's node knows them.
func Nodes() ([]Node, error) {
	b, err := host.clusterInfo()
	if err != nil {
		return nil, err
	}
	var ci abi.ClusterInfo
	if err := decMode.Unmarshal(b, &ci); err != nil {
		return nil, fmt.Errorf("fabric: malformed cluster info: %w", err)
	}
	nodes := make([]Node, len(ci.Nodes))
	for i, n := range ci.Nodes {
		nodes[i] = Node{ID: n.ID, Labels: n.Labels, Total: n.Total, Available: n.Available}
	}
	return nodes, nil
}

// ClusterResources sums the live nodes' resources (ray.cluster_resources).
func ClusterResources() (map[string]float64, error) {
	return sumResources(func(n Node) map[string]float64 { return n.Total })
}

// AvailableResources sums what the live nodes have free
// (ray.available_resources).
func AvailableResources() (map[string]float64, error) {
	return sumResources(func(n Node) map[string]float64 { return n.Available })
}

func sumResources(of func(Node) map[string]float64) (map[string]float64, error) {
	nodes, err := Nodes()
	if err != nil {
		return nil, err
	}
	sum := map[string]float64{}
	for _, n := range nodes {
		for k, v := range of(n) {
			sum[k] += v
		}
	}
	return sum, nil
}

// LogLevel is the level of a log line.
type LogLevel int

// The log levels, as the job's output shows them ("INFO: ...").
const (
	LevelDebug LogLevel = abi.LevelDebug
	LevelInfo  LogLevel = abi.LevelInfo
	LevelWarn  LogLevel = abi.LevelWarn
	LevelError LogLevel = abi.LevelError
)

// Log writes a log line at a level to the job's output.
func Log(level LogLevel, msg string) { host.log(int(level), []byte(msg)) }

// Logf writes a formatted info log line.
func Logf(format string, a ...any) { Log(LevelInfo, fmt.Sprintf(format, a...)) }

// Warnf writes a formatted warning log line.
func Warnf(format string, a ...any) { Log(LevelWarn, fmt.Sprintf(format, a...)) }

// Errorf writes a formatted error log line (it returns nothing: for an
// error value, use fmt.Errorf).
func Errorf(format string, a ...any) { Log(LevelError, fmt.Sprintf(format, a...)) }
