// Package abi holds the guest ABI's shared constants and the CBOR shapes that
// guests send to the host (docs/ABI.md describes them for guest authors). It
// is imported by the Go guest SDK and by the host, so it stays small and
// builds for GOOS=wasip1.
package abi

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
)

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
}

// GroupSpec is what pg_create takes: a placement group's bundles and how
// to spread them. A bundle maps resource names ("CPU", "GPU", "memory" in
// bytes, or a custom resource) to amounts.
type GroupSpec struct {
	Bundles  []map[string]float64 `cbor:"bundles"`
	Strategy string               `cbor:"strategy,omitempty"` // PACK (default), SPREAD, STRICT_PACK, STRICT_SPREAD
}

// TaskSpec is what submit takes: a task, an actor creation or a method call.
type TaskSpec struct {
	Func       string   `cbor:"fn"`              // task name, actor class, or method name
	Args       []Arg    `cbor:"args,omitempty"`  // arguments in order
	NumReturns int      `cbor:"n,omitempty"`     // 0 means 1
	Actor      []byte   `cbor:"actor,omitempty"` // for a method call: the actor's ID
	Refs       [][]byte `cbor:"refs,omitempty"`  // IDs nested inside inline argument values
	Options    Options  `cbor:"opts,omitempty"`
}

// ErrorValue is how an error is stored as an object's value.
type ErrorValue struct {
	Kind    string `cbor:"kind"`    // "task", "cancelled", "timeout", "worker_died", "actor_died", "infeasible", "owner_died"
	Message string `cbor:"message"` // the guest's message and stack, or the host's explanation
	Task    string `cbor:"task,omitempty"`
}
