// Package abi holds the guest ABI's shared constants and the CBOR shapes that
// guests send to the host (docs/ABI.md describes them for guest authors). It
// is imported by the Go guest SDK and by the host, so it stays small and
// builds for GOOS=wasip1.
package abi

import (
	"maps"
	"slices"

	"github.com/wasmfabric/fabric/internal/cborlite"
)

// Version is the value fabric_abi_version returns.
const Version = 1

// IDSize is the length of every object and actor ID in the ABI.
const IDSize = 20

// MaxReturns bounds the return values of one task.
const MaxReturns = 1024

// CBOR tags that mark references nested inside values.
const (
	TagObjectRef = 1717658226 // tag content: byte string of IDSize bytes
	TagActor     = 1717658227 // tag content: byte string of IDSize bytes
)

// Status codes returned by host functions.
const (
	OK        = 0
	TimedOut  = 1
	HostError = -1 // an error message is staged at index 0
	// Cancelled: the running call was cancelled (without force); a
	// blocking call (get, wait, pg_wait) returns it at once, with a
	// message staged at index 0 as for HostError.
	Cancelled = -2
)

// Staged item kinds returned by staged_kind.
const (
	StagedValue = 0 // a CBOR value
	StagedError = 1 // a CBOR ErrorValue: the object is an error
	StagedText  = 2 // UTF-8 text: the message of a failed host call
)

// Log levels for the log import.
const (
	LevelDebug = 0
	LevelInfo  = 1
	LevelWarn  = 2
	LevelError = 3
)

// Names the host passes to fabric_call for actors and the driver.
const (
	MainFunc        = "main"
	ActorInitSuffix = ".__init__" // "<Class>.__init__" constructs the actor
	// ServeFunc is the name the host passes to fabric_call to run a
	// concurrent actor's serve loop: the guest takes its method calls
	// with serve_poll and call_take, runs them side by side, and ends
	// each with call_finish.
	ServeFunc = "__serve__"
)

// Events that serve_poll writes, each as two little-endian u32: the kind,
// then a call handle or an operation token.
const (
	EventCall   = 1 // a new method call: call_take(handle) stages it
	EventOp     = 2 // a started get or wait is done: op_take(token)
	EventCancel = 3 // the call was cancelled: its blocking calls return Cancelled
	EventIdle   = 4 // no call runs or waits: the serve loop may return
	EventSize   = 8
)

// MaxConcurrency bounds an actor's MaxConcurrency and each of its
// concurrency groups' limits (Ray's default for an async actor is 1000).
const MaxConcurrency = 1000

// Arg is one argument of a task: an inline CBOR value or a reference.
type Arg struct {
	Value []byte `cbor:"v,omitempty"` // CBOR-encoded value, embedded as a byte string
	Ref   []byte `cbor:"r,omitempty"` // object ID: the object's value is passed
}

// Options are the per-task and per-actor options.
type Options struct {
	CPU             *float64           `cbor:"cpu,omitempty"`
	GPU             float64            `cbor:"gpu,omitempty"`
	Memory          int64              `cbor:"mem,omitempty"`
	Resources       map[string]float64 `cbor:"res,omitempty"`
	MaxRetries      *int               `cbor:"retries,omitempty"`
	RetryExceptions bool               `cbor:"retry_exc,omitempty"`
	TimeoutMs       int64              `cbor:"timeout_ms,omitempty"`
	Name            string             `cbor:"name,omitempty"`
	MaxRestarts     int                `cbor:"max_restarts,omitempty"`
	Labels          map[string]string  `cbor:"labels,omitempty"`
	Group           []byte             `cbor:"pg,omitempty"`     // a placement group's ID: run in one of its bundles
	Bundle          *int               `cbor:"bundle,omitempty"` // the bundle index in Group; absent: any bundle
	// GetIfExists makes an actor creation whose Name is taken return the
	// actor that has it (Ray's get_if_exists) instead of failing.
	GetIfExists bool `cbor:"get_if_exists,omitempty"`
	// MaxTaskRetries is how often an actor's method call that was running
	// or sent ahead when the actor died runs again once it restarted
	// (Ray's max_task_retries; -1 forever).
	MaxTaskRetries int `cbor:"max_task_retries,omitempty"`
	// RetryOn lists the error types (ErrorType.Name) whose errors are
	// retried under MaxRetries, as RetryExceptions retries every error.
	RetryOn []string `cbor:"retry_on,omitempty"`
	// Strategy is where tasks or actors go: "" (the default: pack, then
	// spread when nodes are half full) or "SPREAD" (the least used node
	// with room).
	Strategy string `cbor:"strategy,omitempty"`
	// Node asks for one node by ID (node affinity): only there, or,
	// with Soft, there when it has room and elsewhere otherwise.
	Node string `cbor:"node,omitempty"`
	Soft bool   `cbor:"soft,omitempty"`
	// Selector is a label selector with Ray's operators: every term must
	// hold on the node.
	Selector []LabelTerm `cbor:"selector,omitempty"`
	// MaxConcurrency is how many of an actor's method calls its instance
	// serves at once (0 or 1: one at a time). Above 1 the actor is
	// concurrent: its guest runs a serve loop (ServeFunc).
	MaxConcurrency int `cbor:"max_concurrency,omitempty"`
	// ConcurrencyGroups are an actor's named groups of methods, each
	// with its own limit of calls at once; a concurrent actor either way.
	ConcurrencyGroups map[string]int `cbor:"concurrency_groups,omitempty"`
	// ConcurrencyGroup names the group a method call runs in ("": the
	// default group, limited by MaxConcurrency).
	ConcurrencyGroup string `cbor:"concurrency_group,omitempty"`
	// Lifetime "detached" makes an actor outlive the job that created it
	// (Ray's lifetime="detached"): it lives on the node that created it
	// until it is killed, and later jobs find it by Namespace and Name.
	Lifetime string `cbor:"lifetime,omitempty"`
	// Namespace puts a named actor in a namespace that other jobs look it
	// up in ("": the job's own, which no other job sees).
	Namespace string `cbor:"namespace,omitempty"`
	// Generator marks a task that yields values one at a time
	// (yield_value): item i becomes object i+FirstItem of the task as
	// soon as it is yielded, and the task's own return object holds the
	// number of items, or its error, when it ends.
	Generator bool `cbor:"generator,omitempty"`
}

// LifetimeDetached is the Lifetime of an actor that outlives its job.
const LifetimeDetached = "detached"

// DefaultNamespace is a detached actor's namespace when it names none.
const DefaultNamespace = "default"

// ActorInfo is one entry of actor_list: a named actor the caller may look
// up.
type ActorInfo struct {
	Name      string `cbor:"name"`
	Namespace string `cbor:"namespace,omitempty"` // "": the caller's job's own
	Class     string `cbor:"class"`
	State     string `cbor:"state"` // "pending", "alive" or "restarting"
	Detached  bool   `cbor:"detached,omitempty"`
	ID        []byte `cbor:"id"`
}

// FirstItem is the return index of a generator's first item: index 1 is
// its end object.
const FirstItem = 2

// MaxItems bounds the items one generator yields.
const MaxItems = 1 << 20

// Concurrent reports whether an actor created with these options serves
// calls side by side.
func (o Options) Concurrent() bool {
	return o.MaxConcurrency > 1 || len(o.ConcurrencyGroups) > 0
}

// LabelTerm is one term of a label selector: Op is "in" (the node's
// value of Key is one of Values; one value is Ray's equals), "not_in"
// (it is none of them, or the node lacks Key; one value is not equals),
// "exists" or "not_exists".
type LabelTerm struct {
	Key    string   `cbor:"key"`
	Op     string   `cbor:"op"`
	Values []string `cbor:"values,omitempty"`
}

// Label selector operators.
const (
	LabelIn        = "in"
	LabelNotIn     = "not_in"
	LabelExists    = "exists"
	LabelNotExists = "not_exists"
)

// StrategySpread is the Strategy that spreads tasks over the nodes.
const StrategySpread = "SPREAD"

// RuntimeContext is what runtime_context writes: who and where the running
// call is.
type RuntimeContext struct {
	Job     string `cbor:"job"`
	Task    []byte `cbor:"task"`            // the running call's task ID (20 bytes)
	Actor   []byte `cbor:"actor,omitempty"` // the actor it runs in, for a constructor or method
	Node    string `cbor:"node"`
	Attempt int    `cbor:"attempt"` // 0 for the first run; each retry adds one
	// Resources are those the call holds: "CPU", "GPU", "memory" (bytes)
	// and custom ones; an actor's methods hold what its creation asked.
	Resources map[string]float64 `cbor:"res"`
	Group     []byte             `cbor:"pg,omitempty"`     // the placement group it runs in
	Bundle    *int               `cbor:"bundle,omitempty"` // its bundle there, when one was asked for
}

// ClusterInfo is what cluster_info writes: the nodes the running call's
// node knows, alive ones only.
type ClusterInfo struct {
	Nodes []NodeInfo `cbor:"nodes"`
}

// NodeInfo is one node of a ClusterInfo. Resources are keyed "CPU", "GPU",
// "memory" (bytes) and custom names; Available is what the node has free
// as the asking node's scheduler sees it.
type NodeInfo struct {
	ID        string             `cbor:"id"`
	Labels    map[string]string  `cbor:"labels,omitempty"`
	Total     map[string]float64 `cbor:"total"`
	Available map[string]float64 `cbor:"available"`
}

// GroupSpec is what pg_create takes: a placement group's bundles and how
// to spread them. A bundle maps resource names ("CPU", "GPU", "memory" in
// bytes, or a custom resource) to amounts.
type GroupSpec struct {
	Bundles  []map[string]float64 `cbor:"bundles"`
	Strategy string               `cbor:"strategy,omitempty"` // PACK (default), SPREAD, STRICT_PACK, STRICT_SPREAD
	// Name, when set, is the name pg_table lists the group under; it is
	// unique among the job's groups (among the node's detached groups,
	// for a detached one).
	Name string `cbor:"name,omitempty"`
	// Lifetime "detached" keeps the group when its job ends, until it is
	// removed; every job on the node sees it in pg_table and may use and
	// remove it.
	Lifetime string `cbor:"lifetime,omitempty"`
}

// GroupTable is what pg_table writes: the placement groups of the
// running call's job.
type GroupTable struct {
	Groups []GroupInfo `cbor:"groups"`
}

// GroupInfo is one placement group of a GroupTable. State is "pending"
// (waiting for room), "created" (its bundles are reserved) or "failed"
// (Reason says why: it can never be placed, or its spec was refused).
type GroupInfo struct {
	ID       []byte               `cbor:"id"`
	Name     string               `cbor:"name,omitempty"`
	Strategy string               `cbor:"strategy"`
	State    string               `cbor:"state"`
	Reason   string               `cbor:"reason,omitempty"`
	Bundles  []map[string]float64 `cbor:"bundles"`
	Nodes    []string             `cbor:"nodes,omitempty"` // the node of each bundle, once created
	Detached bool                 `cbor:"detached,omitempty"`
}

// TaskSpec is what submit takes: a task, an actor creation or a method call.
type TaskSpec struct {
	Func       string   `cbor:"fn"`              // task name, actor class, or method name
	Args       []Arg    `cbor:"args,omitempty"`  // arguments in order
	NumReturns int      `cbor:"n,omitempty"`     // 0 means 1
	Actor      []byte   `cbor:"actor,omitempty"` // for a method call: the actor's ID
	Refs       [][]byte `cbor:"refs,omitempty"`  // IDs nested inside inline argument values
	Options    Options  `cbor:"opts,omitempty"`
	// RawOptions, when set, is Options already encoded (a CBOR map),
	// which AppendCBOR writes instead: the SDK encodes a task's options
	// once, not on every call.
	RawOptions []byte `cbor:"-"`
}

// ErrorKind says why an object holds an error instead of a value. The host
// stores it and the SDK matches it: both use these constants.
type ErrorKind string

// Error kinds.
const (
	KindTask       ErrorKind = "task"        // the guest returned an error, panicked or trapped
	KindCancelled  ErrorKind = "cancelled"   // the task was cancelled
	KindTimeout    ErrorKind = "timeout"     // the task ran past its timeout
	KindWorkerDied ErrorKind = "worker_died" // its worker died and no retries were left
	KindActorDied  ErrorKind = "actor_died"  // the actor died, or was dead when called
	KindInfeasible ErrorKind = "infeasible"  // no node can ever satisfy its demand
	KindOwnerDied  ErrorKind = "owner_died"  // the node that made the object is gone
	KindObjectLost ErrorKind = "object_lost" // its bytes could not be fetched or stored
)

// ErrorKinds lists every error kind.
var ErrorKinds = []ErrorKind{KindTask, KindCancelled, KindTimeout, KindWorkerDied, KindActorDied, KindInfeasible, KindOwnerDied, KindObjectLost}

// ErrorValue is how an error is stored as an object's value.
type ErrorValue struct {
	Kind    ErrorKind `cbor:"kind"`
	Message string    `cbor:"message"` // the guest's message and stack, or the host's explanation
	Task    string    `cbor:"task,omitempty"`
	// Types are the registered error types the guest's error matched
	// (return_error_types), outermost first.
	Types []ErrorType `cbor:"types,omitempty"`
}

// ErrorType is one registered error type that a guest's error matched:
// its name and, for a typed error, its value in CBOR (absent for a
// sentinel error, which is matched by name alone).
type ErrorType struct {
	Name  string `cbor:"name"`
	Value []byte `cbor:"value,omitempty"`
}

// MaxErrorTypes bounds the bytes a guest passes to return_error_types.
const MaxErrorTypes = 64 << 10

// MatchesAny reports whether one of the error's types is named in names.
func (ev *ErrorValue) MatchesAny(names []string) bool {
	for _, t := range ev.Types {
		if slices.Contains(names, t.Name) {
			return true
		}
	}
	return false
}

// AppendCBOR appends the spec's CBOR encoding: the same map, field for
// field, that github.com/fxamacker/cbor/v2 writes for the struct tags
// above, written by hand because reflection is slow in wasm guests.
func (s *TaskSpec) AppendCBOR(dst []byte) []byte {
	n := uint64(1)
	opts := s.RawOptions
	if opts == nil {
		opts = s.Options.appendFields(nil)
	}
	for _, present := range []bool{len(s.Args) > 0, s.NumReturns != 0, len(s.Actor) > 0, len(s.Refs) > 0, opts != nil} {
		if present {
			n++
		}
	}
	dst = cborlite.AppendHead(dst, cborlite.MajorMap, n)
	dst = cborlite.AppendString(cborlite.AppendString(dst, "fn"), s.Func)
	if len(s.Args) > 0 {
		dst = cborlite.AppendHead(cborlite.AppendString(dst, "args"), cborlite.MajorArray, uint64(len(s.Args)))
		for _, a := range s.Args {
			dst = a.appendCBOR(dst)
		}
	}
	if s.NumReturns != 0 {
		dst = cborlite.AppendInt(cborlite.AppendString(dst, "n"), int64(s.NumReturns))
	}
	if len(s.Actor) > 0 {
		dst = cborlite.AppendBytes(cborlite.AppendString(dst, "actor"), s.Actor)
	}
	if len(s.Refs) > 0 {
		dst = cborlite.AppendHead(cborlite.AppendString(dst, "refs"), cborlite.MajorArray, uint64(len(s.Refs)))
		for _, r := range s.Refs {
			dst = cborlite.AppendBytes(dst, r)
		}
	}
	if opts != nil {
		dst = append(cborlite.AppendString(dst, "opts"), opts...)
	}
	return dst
}

func (a *Arg) appendCBOR(dst []byte) []byte {
	n := uint64(0)
	if len(a.Value) > 0 {
		n++
	}
	if len(a.Ref) > 0 {
		n++
	}
	dst = cborlite.AppendHead(dst, cborlite.MajorMap, n)
	if len(a.Value) > 0 {
		dst = cborlite.AppendBytes(cborlite.AppendString(dst, "v"), a.Value)
	}
	if len(a.Ref) > 0 {
		dst = cborlite.AppendBytes(cborlite.AppendString(dst, "r"), a.Ref)
	}
	return dst
}

// LeaseKey names the tasks that one lease may run (see the agent's
// leases): the function, then the options in their one encoding
// (AppendCBOR, whose map keys are sorted).
func LeaseKey(fn string, o *Options) string {
	return fn + "\x00" + string(o.AppendCBOR(nil))
}

// AppendCBOR appends the options as a CBOR map, or returns dst unchanged
// when every option is at its default: what TaskSpec.RawOptions holds.
func (o *Options) AppendCBOR(dst []byte) []byte { return o.appendFields(dst) }

// appendFields appends the options as a CBOR map, or returns dst unchanged
// (nil when dst is nil) when every option is at its default.
func (o *Options) appendFields(dst []byte) []byte {
	var body []byte
	n := uint64(0)
	field := func(key string) {
		n++
		body = cborlite.AppendString(body, key)
	}
	if o.CPU != nil {
		field("cpu")
		body = cborlite.AppendFloat64(body, *o.CPU)
	}
	if o.GPU != 0 {
		field("gpu")
		body = cborlite.AppendFloat64(body, o.GPU)
	}
	if o.Memory != 0 {
		field("mem")
		body = cborlite.AppendInt(body, o.Memory)
	}
	if len(o.Resources) > 0 {
		field("res")
		body = cborlite.AppendHead(body, cborlite.MajorMap, uint64(len(o.Resources)))
		for _, k := range slices.Sorted(maps.Keys(o.Resources)) {
			body = cborlite.AppendFloat64(cborlite.AppendString(body, k), o.Resources[k])
		}
	}
	if o.MaxRetries != nil {
		field("retries")
		body = cborlite.AppendInt(body, int64(*o.MaxRetries))
	}
	if o.RetryExceptions {
		field("retry_exc")
		body = cborlite.AppendBool(body, true)
	}
	if o.TimeoutMs != 0 {
		field("timeout_ms")
		body = cborlite.AppendInt(body, o.TimeoutMs)
	}
	if o.Name != "" {
		field("name")
		body = cborlite.AppendString(body, o.Name)
	}
	if o.MaxRestarts != 0 {
		field("max_restarts")
		body = cborlite.AppendInt(body, int64(o.MaxRestarts))
	}
	if len(o.Labels) > 0 {
		field("labels")
		body = cborlite.AppendHead(body, cborlite.MajorMap, uint64(len(o.Labels)))
		for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
			body = cborlite.AppendString(cborlite.AppendString(body, k), o.Labels[k])
		}
	}
	if len(o.Group) > 0 {
		field("pg")
		body = cborlite.AppendBytes(body, o.Group)
	}
	if o.Bundle != nil {
		field("bundle")
		body = cborlite.AppendInt(body, int64(*o.Bundle))
	}
	if o.GetIfExists {
		field("get_if_exists")
		body = cborlite.AppendBool(body, true)
	}
	if o.MaxTaskRetries != 0 {
		field("max_task_retries")
		body = cborlite.AppendInt(body, int64(o.MaxTaskRetries))
	}
	if len(o.RetryOn) > 0 {
		field("retry_on")
		body = appendTexts(body, o.RetryOn)
	}
	if o.Strategy != "" {
		field("strategy")
		body = cborlite.AppendString(body, o.Strategy)
	}
	if o.Node != "" {
		field("node")
		body = cborlite.AppendString(body, o.Node)
	}
	if o.Soft {
		field("soft")
		body = cborlite.AppendBool(body, true)
	}
	if len(o.Selector) > 0 {
		field("selector")
		body = cborlite.AppendHead(body, cborlite.MajorArray, uint64(len(o.Selector)))
		for _, t := range o.Selector {
			n := uint64(2)
			if len(t.Values) > 0 {
				n++
			}
			body = cborlite.AppendHead(body, cborlite.MajorMap, n)
			body = cborlite.AppendString(cborlite.AppendString(body, "key"), t.Key)
			body = cborlite.AppendString(cborlite.AppendString(body, "op"), t.Op)
			if len(t.Values) > 0 {
				body = appendTexts(cborlite.AppendString(body, "values"), t.Values)
			}
		}
	}
	if o.MaxConcurrency != 0 {
		field("max_concurrency")
		body = cborlite.AppendInt(body, int64(o.MaxConcurrency))
	}
	if len(o.ConcurrencyGroups) > 0 {
		field("concurrency_groups")
		body = cborlite.AppendHead(body, cborlite.MajorMap, uint64(len(o.ConcurrencyGroups)))
		for _, k := range slices.Sorted(maps.Keys(o.ConcurrencyGroups)) {
			body = cborlite.AppendInt(cborlite.AppendString(body, k), int64(o.ConcurrencyGroups[k]))
		}
	}
	if o.ConcurrencyGroup != "" {
		field("concurrency_group")
		body = cborlite.AppendString(body, o.ConcurrencyGroup)
	}
	if o.Generator {
		field("generator")
		body = cborlite.AppendBool(body, true)
	}
	if o.Lifetime != "" {
		field("lifetime")
		body = cborlite.AppendString(body, o.Lifetime)
	}
	if o.Namespace != "" {
		field("namespace")
		body = cborlite.AppendString(body, o.Namespace)
	}
	if n == 0 {
		return dst
	}
	return append(cborlite.AppendHead(dst, cborlite.MajorMap, n), body...)
}

// appendTexts appends a CBOR array of text strings.
func appendTexts(dst []byte, list []string) []byte {
	dst = cborlite.AppendHead(dst, cborlite.MajorArray, uint64(len(list)))
	for _, v := range list {
		dst = cborlite.AppendString(dst, v)
	}
	return dst
}
