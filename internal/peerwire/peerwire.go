// Package peerwire holds the messages agents send each other about the
// jobs they share, and their encoding: one enumeration of kinds, one typed
// struct per kind, and one table that decodes them.
//
// Every message is one-way. A request that takes long (running a task,
// fetching an object that is still being made) is answered by a message of
// its own when its work is done, so no stream stays open while a task runs.
// The peer link (internal/peerlink) carries messages to each peer in order,
// batched, and retried until the peer acknowledges them.
//
// A message travels as an Envelope: its Kind and its body in CBOR (an array
// of the struct's fields in order). Object, task and actor IDs are byte
// strings of exactly 20 bytes.
package peerwire

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Kind names a message's type.
type Kind uint8

// Kinds of messages. Numbers are part of the protocol: never reuse one.
const (
	KindRunTask Kind = iota + 1
	KindTaskDone
	KindCancelTask
	KindGetObject
	KindObjectValue
	KindRelease
	KindEndJob
	KindOutput
	KindActorDied
	KindRegisterActor
	KindActorRegistered
	KindKillActor
	KindShareOpened
	KindTaskYield
	kindEnd
)

var kindNames = [kindEnd]string{
	KindRunTask: "run_task", KindTaskDone: "task_done", KindCancelTask: "cancel_task",
	KindGetObject: "get_object", KindObjectValue: "object_value", KindRelease: "release",
	KindEndJob: "end_job", KindOutput: "output", KindActorDied: "actor_died",
	KindRegisterActor: "register_actor", KindActorRegistered: "actor_registered", KindKillActor: "kill_actor",
	KindShareOpened: "share_opened", KindTaskYield: "task_yield",
}

// String names the kind.
func (k Kind) String() string {
	if k > 0 && k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// newMessage is the dispatch table: an empty message of each kind.
var newMessage = [kindEnd]func() Message{
	KindRunTask:         func() Message { return new(RunTask) },
	KindTaskDone:        func() Message { return new(TaskDone) },
	KindCancelTask:      func() Message { return new(CancelTask) },
	KindGetObject:       func() Message { return new(GetObject) },
	KindObjectValue:     func() Message { return new(ObjectValue) },
	KindRelease:         func() Message { return new(Release) },
	KindEndJob:          func() Message { return new(EndJob) },
	KindOutput:          func() Message { return new(Output) },
	KindActorDied:       func() Message { return new(ActorDied) },
	KindRegisterActor:   func() Message { return new(RegisterActor) },
	KindActorRegistered: func() Message { return new(ActorRegistered) },
	KindKillActor:       func() Message { return new(KillActor) },
	KindShareOpened:     func() Message { return new(ShareOpened) },
	KindTaskYield:       func() Message { return new(TaskYield) },
}

// Message is one of the structs of this package.
type Message interface {
	Kind() Kind
	// JobID names the job the message is about.
	JobID() string
}

// Errors of the package.
var (
	ErrUnknownKind = errors.New("peerwire: unknown message kind")
	ErrMalformed   = errors.New("peerwire: malformed message")
)

// Run says what a RunTask asks for.
type Run uint8

// What a RunTask may ask for.
const (
	RunPlainTask   Run = iota // a task
	RunActorCreate            // create an actor (answered once accepted, or with Ready once created)
	RunActorCall              // call a method of an actor that lives there
)

// RunTask asks a node to run a task, create an actor or call one, for its
// share of a job. It is answered by a TaskDone naming Task and Attempt.
type RunTask struct {
	_      struct{} `cbor:",toarray"`
	Job    string
	Root   string // the node running the job's driver
	Digest string // the module's SHA-256 (hex); the sender has it
	What   Run
	// Task is the sender's ID of the execution; the receiver runs it under
	// an ID of its own and answers with TaskDone naming this one.
	Task    objects.ID
	Attempt uint32
	Spec    []byte // an abi.TaskSpec in CBOR
	// Refs are the objects Spec refers to by reference, each exported by
	// the sender to the receiver (one hold each).
	Refs        []objects.ID
	Actor       objects.ID // creation: the actor (a call names it in Spec)
	Incarnation uint64     // actors: the owner's count of its placements
	// Retried counts the retries the sender spent on the task before
	// this run: the attempt its runtime context reports.
	Retried uint32
	// Group and Bundle are the placement group and bundle (-1: any) the
	// task runs in, which Spec no longer names (it runs in the sender's
	// reservation there), for its runtime context.
	Group  []byte
	Bundle int64
	// Tenant is the job's tenant ("": the cluster's operator): a share
	// of the job finds names in its tenant's namespaces only.
	Tenant string
	// Grant is the job's grant, the servers' signature of its ID, tenant
	// and root: a node opens a share of the job only with it, and takes
	// more of the job's work only with the same.
	Grant []byte
	// Ready asks that a creation be answered once the actor's
	// constructor ran (its TaskDone then carries the constructor's error,
	// if it failed), not once accepted.
	Ready bool
}

// TaskDone answers a RunTask: the values of its results, its error
// value, or why the receiver refused to run it.
type TaskDone struct {
	_       struct{} `cbor:",toarray"`
	Job     string
	Task    objects.ID
	Attempt uint32
	// Refused says why the receiver did not run the task (it may run
	// elsewhere).
	Refused string
	// Error is the task's error value (an abi.ErrorValue in CBOR), when
	// it failed.
	Error []byte
	// Results are the task's return values, in order.
	Results []Result
	// Refs are the references inside the values, each exported to the
	// asker.
	Refs []objects.ID
	// Ran is how long the task ran on its worker, in nanoseconds (not how
	// long it waited there), for the asker's estimate of its run time.
	Ran int64
	// Busy, when set, says that the receiver did not take the task
	// because it lacks the room now (other nodes place work there too):
	// what it has free, a scheduler.Resources in CBOR. The asker places
	// the task again, elsewhere if it can.
	Busy []byte
}

// Result is one return value of a task: inline, or Held on the answering
// node under ID (exported to the asker, which fetches it when needed).
type Result struct {
	_     struct{} `cbor:",toarray"`
	Value []byte
	Held  bool
	ID    objects.ID
	Size  int64
}

// CancelTask stops a task the sender asked the receiver to run.
type CancelTask struct {
	_       struct{} `cbor:",toarray"`
	Job     string
	Task    objects.ID
	Attempt uint32
	// Force stops a running task at once; without it, the task is asked
	// to return and stopped after a grace period.
	Force bool
}

// GetObject asks for an object's value once it is ready; the receiver
// answers with an ObjectValue.
type GetObject struct {
	_   struct{} `cbor:",toarray"`
	Job string
	ID  objects.ID
	// For is the asker's ID of the object (the answer repeats it): the
	// same as ID, except for a task's result that its node keeps under
	// another ID (Result.ID).
	For objects.ID
}

// ObjectValue answers a GetObject: the value inline, or Stored (the asker
// pulls the bytes by ID), or Missing (why it cannot be had). Refs are the
// references inside the value; the object and each of them are exported
// to the asker.
type ObjectValue struct {
	_       struct{} `cbor:",toarray"`
	Job     string
	ID      objects.ID
	For     objects.ID
	Missing string
	IsError bool
	Inline  []byte
	Stored  bool
	Size    int64
	Refs    []objects.ID
}

// Release gives back exports: Counts[i] holds on object IDs[i].
type Release struct {
	_      struct{} `cbor:",toarray"`
	Job    string
	IDs    []objects.ID
	Counts []uint32
}

// EndJob ends the receiver's share of a job.
type EndJob struct {
	_   struct{} `cbor:",toarray"`
	Job string
}

// Output carries output of a share's tasks to the job's root, each line
// already prefixed with its task's name and worker.
type Output struct {
	_      struct{} `cbor:",toarray"`
	Job    string
	Stderr bool
	Data   []byte
}

// ActorDied tells an actor's owner that the actor died on the sender.
type ActorDied struct {
	_           struct{} `cbor:",toarray"`
	Job         string
	Actor       objects.ID
	Incarnation uint64
	Cause       string
}

// RegisterActor tells a job's root of an actor a share created, so that
// calls from other nodes, which go to the root, reach it. The root
// answers with ActorRegistered.
type RegisterActor struct {
	_     struct{} `cbor:",toarray"`
	Job   string
	Actor objects.ID
	Class string
}

// ActorRegistered answers RegisterActor; Err says why the root refused.
type ActorRegistered struct {
	_     struct{} `cbor:",toarray"`
	Job   string
	Actor objects.ID
	Err   string
}

// KillActor stops an incarnation of an actor living on the receiver.
type KillActor struct {
	_           struct{} `cbor:",toarray"`
	Job         string
	Actor       objects.ID
	Incarnation uint64
	NoRestart   bool
}

// ShareOpened tells a job's root that the sender opened a share of the
// job for work another node sent it, so that the root ends that share
// too when the job ends, whatever became of the node in between.
type ShareOpened struct {
	_   struct{} `cbor:",toarray"`
	Job string
	// Grant is the job's grant, which the share was opened with: the
	// root takes the notice only with its own.
	Grant []byte
}

// TaskYield carries one item of a generator that runs for the receiver,
// as soon as it is yielded (before the TaskDone): its index among the
// task's returns (abi.FirstItem and up) and its value, inline or held by
// the sender and exported to the receiver with the references inside it.
type TaskYield struct {
	_       struct{} `cbor:",toarray"`
	Job     string
	Task    objects.ID // the receiver's ID of the execution
	Attempt uint32
	Index   uint32
	Result  Result
	Refs    []objects.ID
	// Error, when set, is the item's error value (an abi.ErrorValue in
	// CBOR): the sender could not store it.
	Error []byte
}

// Kind implementations.
func (*RunTask) Kind() Kind         { return KindRunTask }
func (*TaskDone) Kind() Kind        { return KindTaskDone }
func (*CancelTask) Kind() Kind      { return KindCancelTask }
func (*GetObject) Kind() Kind       { return KindGetObject }
func (*ObjectValue) Kind() Kind     { return KindObjectValue }
func (*Release) Kind() Kind         { return KindRelease }
func (*EndJob) Kind() Kind          { return KindEndJob }
func (*Output) Kind() Kind          { return KindOutput }
func (*ActorDied) Kind() Kind       { return KindActorDied }
func (*RegisterActor) Kind() Kind   { return KindRegisterActor }
func (*ActorRegistered) Kind() Kind { return KindActorRegistered }
func (*KillActor) Kind() Kind       { return KindKillActor }
func (*ShareOpened) Kind() Kind     { return KindShareOpened }
func (*TaskYield) Kind() Kind       { return KindTaskYield }

// JobID implementations.
func (m *RunTask) JobID() string         { return m.Job }
func (m *TaskDone) JobID() string        { return m.Job }
func (m *CancelTask) JobID() string      { return m.Job }
func (m *GetObject) JobID() string       { return m.Job }
func (m *ObjectValue) JobID() string     { return m.Job }
func (m *Release) JobID() string         { return m.Job }
func (m *EndJob) JobID() string          { return m.Job }
func (m *Output) JobID() string          { return m.Job }
func (m *ActorDied) JobID() string       { return m.Job }
func (m *RegisterActor) JobID() string   { return m.Job }
func (m *ActorRegistered) JobID() string { return m.Job }
func (m *KillActor) JobID() string       { return m.Job }
func (m *ShareOpened) JobID() string     { return m.Job }
func (m *TaskYield) JobID() string       { return m.Job }

// Envelope is a message on the wire: its kind and its CBOR body.
type Envelope struct {
	_    struct{} `cbor:",toarray"`
	Kind Kind
	Body cbor.RawMessage
}

// Encode wraps a message in an envelope.
func Encode(m Message) (Envelope, error) {
	if b, ok := encodeFast(m); ok {
		return Envelope{Kind: m.Kind(), Body: b}, nil
	}
	b, err := wire.Marshal(m)
	if err != nil {
		return Envelope{}, fmt.Errorf("peerwire: encode %s: %w", m.Kind(), err)
	}
	return Envelope{Kind: m.Kind(), Body: b}, nil
}

// Decode returns the message in an envelope.
func Decode(e Envelope) (Message, error) {
	if e.Kind == 0 || e.Kind >= kindEnd {
		return nil, fmt.Errorf("%w %d (is the sender a newer version?)", ErrUnknownKind, e.Kind)
	}
	if m, ok := decodeFast(e.Kind, e.Body); ok {
		return m, nil
	}
	m := newMessage[e.Kind]()
	if err := wire.Unmarshal(e.Body, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, e.Kind, err)
	}
	if m, ok := m.(*Release); ok && len(m.IDs) != len(m.Counts) {
		return nil, fmt.Errorf("%w: release of %d IDs with %d counts", ErrMalformed, len(m.IDs), len(m.Counts))
	}
	return m, nil
}

// Batch is what the peer link sends in one go: messages in order, numbered
// by the sender's session and a sequence number, so that the receiver
// applies each batch once although the sender may send it again.
type Batch struct {
	_       struct{} `cbor:",toarray"`
	Session uint64
	Seq     uint64
	Msgs    []Envelope
}

// EncodeBatch encodes a batch.
func EncodeBatch(b Batch) ([]byte, error) {
	if !fast {
		return wire.Marshal(b)
	}
	n := 16
	for _, e := range b.Msgs {
		n += 4 + len(e.Body)
	}
	return appendBatch(make([]byte, 0, n), b), nil
}

// DecodeBatch decodes a batch and the messages in it.
func DecodeBatch(body []byte) (Batch, []Message, error) {
	b, ok := splitBatch(body)
	if !ok {
		b = Batch{}
		if err := wire.Unmarshal(body, &b); err != nil {
			return Batch{}, nil, fmt.Errorf("%w: batch: %v", ErrMalformed, err)
		}
	}
	msgs := make([]Message, len(b.Msgs))
	for i, e := range b.Msgs {
		m, err := Decode(e)
		if err != nil {
			return Batch{}, nil, err
		}
		msgs[i] = m
	}
	return b, msgs, nil
}
