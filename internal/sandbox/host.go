package sandbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Host is what guests reach through the fabric import module. The worker
// implements it by talking to its agent. Byte slices passed in are views
// of guest memory, valid only during the call: copy what you keep.
type Host interface {
	// Submit starts a task, a method call (n return IDs) or an actor (n is 1).
	Submit(spec []byte, actor bool, n int) (ids []objects.ID, err error)
	// Put stores the concatenation of parts as one object.
	Put(parts [][]byte, refs []objects.ID) (id objects.ID, err error)
	// Yield stores the concatenation of parts as the running generator's
	// item of return index index; ErrCallCancelled when the call was
	// cancelled.
	Yield(parts [][]byte, refs []objects.ID, index uint32) error
	// Get blocks until every object is ready or the timeout passes
	// (timeoutMs < 0: no timeout). release, when non-nil, is called once
	// the guest no longer needs the staged bytes.
	Get(ids []objects.ID, timeoutMs int64) (items []Staged, release func(), timedOut bool, err error)
	Wait(ids []objects.ID, numReady int, timeoutMs int64) (ready []bool, err error)
	Cancel(id objects.ID, force, recursive bool) error
	Release(ids []objects.ID)
	// ActorLookup finds a named actor in a namespace ("": the job's own).
	ActorLookup(namespace, name string) (objects.ID, error)
	// ActorList lists the named actors the job may look up, a CBOR array
	// of abi.ActorInfo.
	ActorList() ([]byte, error)
	ActorKill(id objects.ID, noRestart bool) error
	Log(level int32, msg []byte)
	// GroupCreate creates a placement group and returns its ID.
	GroupCreate(spec []byte) (objects.ID, error)
	// GroupWait waits until the group is placed; timedOut when it is not
	// within timeoutMs (< 0: no timeout).
	GroupWait(id objects.ID, timeoutMs int64) (timedOut bool, err error)
	GroupRemove(id objects.ID) error
	// NodeID names the node the call runs on.
	NodeID() string
	// Cancelled reports whether the running call was asked to cancel.
	Cancelled() bool
	// RuntimeContext is the running call's abi.RuntimeContext, in CBOR.
	RuntimeContext() ([]byte, error)
	// ClusterInfo is the cluster's abi.ClusterInfo, in CBOR.
	ClusterInfo() ([]byte, error)
	// PlacementGroups is the job's abi.GroupTable, in CBOR.
	PlacementGroups() ([]byte, error)
}

// Server is the host side of a concurrent actor's serve loop (the
// fabric_call of abi.ServeFunc). A Host that is not a Server fails the
// serve imports with a message.
type Server interface {
	// Poll waits until at least one event is there or timeoutMs passes
	// (< 0: no timeout), and returns at most max of them.
	Poll(timeoutMs int64, max int) ([]Event, error)
	// TakeCall returns a new call's function name, CBOR arguments and
	// task ID.
	TakeCall(handle uint32) (name string, args []byte, task objects.ID, err error)
	// Enter makes the host calls that follow act for call handle (0: for
	// the actor, none of its calls).
	Enter(handle uint32) error
	// FinishCall ends a call with its result.
	FinishCall(handle uint32, res CallResult) error
	// StartGet and StartWait begin a get or a wait for the entered call
	// without blocking, and return the operation's token.
	StartGet(ids []objects.ID, timeoutMs int64) (uint32, error)
	StartWait(ids []objects.ID, numReady int, timeoutMs int64) (uint32, error)
	// TakeOp returns a finished operation's outcome, once.
	TakeOp(token uint32) (OpResult, error)
}

// Event is one event of a serve loop (abi.EventCall and the others).
type Event struct {
	Kind uint32
	ID   uint32 // a call handle or an operation token
}

// OpResult is the outcome of a started get or wait.
type OpResult struct {
	Wait     bool
	Items    []Staged // a get's values
	Release  func()   // unpins Items
	TimedOut bool
	Ready    []bool // a wait's
	Err      error
}

// maxEvents bounds the events one serve_poll returns.
const maxEvents = 4096

// Staged is one result waiting for the guest to read it.
type Staged struct {
	Kind int32 // abi.StagedValue, abi.StagedError or abi.StagedText
	Data []byte
}

// maxIDsPerCall bounds the IDs one host call takes.
const maxIDsPerCall = 1 << 20

type callKey struct{}

// callState is the host side of one fabric_call.
type callState struct {
	host     Host
	mod      api.Module
	intr     *interruptState // the instance's: a stopped call ends at its next host call
	staged   []Staged
	release  func()
	value    []byte
	valueSet bool
	refs     []objects.ID
	errText  string
	errSet   bool
	errTypes []abi.ErrorType // from return_error_types
	hostErr  string          // set when the guest misused a no-return import
}

func (cs *callState) unstage() {
	if cs.release != nil {
		cs.release()
		cs.release = nil
	}
	cs.staged = cs.staged[:0]
}

func (cs *callState) stage(items []Staged, release func()) {
	cs.unstage()
	cs.staged = append(cs.staged, items...)
	cs.release = release
}

// fail stages an error message for the guest and returns abi.HostError.
// writeSized answers a host call (name) of the form f(buf, cap) ->
// length: it writes b to buf when it fits in cap bytes, and returns b's
// length either way, so that the guest can call again with a larger
// buffer.
func (cs *callState) writeSized(name string, b []byte, st []uint64) {
	if len(b) > int(u32(st[1])) {
		st[0] = uint64(uint32(len(b)))
		return
	}
	if _, ok := cs.read(u32(st[0]), uint32(len(b))); !ok {
		st[0] = cs.fail("%s: buffer outside guest memory", name)
		return
	}
	cs.mod.Memory().Write(u32(st[0]), b)
	st[0] = uint64(uint32(len(b)))
}

func (cs *callState) fail(format string, a ...any) uint64 {
	cs.stage([]Staged{{Kind: abi.StagedText, Data: fmt.Appendf(nil, format, a...)}}, nil)
	return uint64(uint32(abi.HostError & 0xffffffff))
}

// failOrCancelled is a blocking call's status for err: abi.Cancelled when
// the running call was cancelled, else a failure with err's message.
func (cs *callState) failOrCancelled(err error) uint64 {
	if errors.Is(err, ErrCallCancelled) {
		cs.fail("the running task was cancelled")
		return uint64(uint32(abi.Cancelled & 0xffffffff))
	}
	return cs.fail("%v", err)
}

// server returns the call's Server, or stages a message for a call that
// is not a serve loop.
func (cs *callState) server(name string) (Server, bool) {
	srv, ok := cs.host.(Server)
	if !ok {
		cs.fail("%s: only a concurrent actor's serve loop (fabric_call of %q) may call it", name, abi.ServeFunc)
	}
	return srv, ok
}

// checkStop unwinds the guest's call when its instance was interrupted.
func (cs *callState) checkStop() {
	if cs.intr != nil {
		cs.intr.checkStop()
	}
}

func stateOf(ctx context.Context) *callState {
	cs, _ := ctx.Value(callKey{}).(*callState)
	return cs
}

func (cs *callState) read(ptr, n uint32) ([]byte, bool) {
	return cs.mod.Memory().Read(ptr, n)
}

// readIDs reads count IDs of abi.IDSize bytes.
func (cs *callState) readIDs(ptr, count uint32) ([]objects.ID, bool) {
	if count > maxIDsPerCall {
		return nil, false
	}
	b, ok := cs.read(ptr, count*abi.IDSize)
	if !ok {
		return nil, false
	}
	ids := make([]objects.ID, count)
	for i := range ids {
		ids[i] = objects.ID(b[i*abi.IDSize:])
	}
	return ids, true
}

// maxParts bounds the parts of one put_parts or return_value_parts.
const maxParts = 64

// readParts reads count (ptr, len) pairs of little-endian u32 and returns
// views of the guest memory they name.
func (cs *callState) readParts(ptr, count uint32) ([][]byte, bool) {
	if count > maxParts {
		return nil, false
	}
	iov, ok := cs.read(ptr, count*8)
	if !ok {
		return nil, false
	}
	parts := make([][]byte, count)
	for i := range parts {
		p := uint32(iov[i*8]) | uint32(iov[i*8+1])<<8 | uint32(iov[i*8+2])<<16 | uint32(iov[i*8+3])<<24
		n := uint32(iov[i*8+4]) | uint32(iov[i*8+5])<<8 | uint32(iov[i*8+6])<<16 | uint32(iov[i*8+7])<<24
		b, ok := cs.read(p, n)
		if !ok {
			return nil, false
		}
		parts[i] = b
	}
	return parts, true
}

func (cs *callState) writeIDs(ptr uint32, ids []objects.ID) bool {
	buf := make([]byte, 0, len(ids)*abi.IDSize)
	for _, id := range ids {
		buf = append(buf, id[:]...)
	}
	return cs.mod.Memory().Write(ptr, buf)
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      func(cs *callState, st []uint64)
}

func u32(v uint64) uint32 { return uint32(v) }

const hostErr = uint64(uint32(0xffffffff)) // abi.HostError as i32

// hostFuncs is the fabric import module. Every pointer and length is
// checked; a bad one fails that call, never the host.
var hostFuncs = []hostFunc{
	{"return_value", []api.ValueType{i32, i32}, nil, func(cs *callState, st []uint64) {
		b, ok := cs.read(u32(st[0]), u32(st[1]))
		if !ok {
			cs.hostErr = fmt.Sprintf("return_value: pointer %d length %d is outside guest memory", u32(st[0]), u32(st[1]))
			return
		}
		cs.value, cs.valueSet = append([]byte(nil), b...), true
	}},
	{"return_error", []api.ValueType{i32, i32}, nil, func(cs *callState, st []uint64) {
		b, ok := cs.read(u32(st[0]), u32(st[1]))
		if !ok {
			cs.hostErr = fmt.Sprintf("return_error: pointer %d length %d is outside guest memory", u32(st[0]), u32(st[1]))
			return
		}
		cs.errText, cs.errSet = string(b), true
	}},
	{"return_error_types", []api.ValueType{i32, i32}, nil, func(cs *callState, st []uint64) {
		// return_error_types(ptr, len): the registered error types the
		// call's error matched, a CBOR array of {"name", "value"} maps.
		if u32(st[1]) > abi.MaxErrorTypes {
			cs.hostErr = fmt.Sprintf("return_error_types: %d bytes; the limit is %d", u32(st[1]), abi.MaxErrorTypes)
			return
		}
		b, ok := cs.read(u32(st[0]), u32(st[1]))
		if !ok {
			cs.hostErr = fmt.Sprintf("return_error_types: pointer %d length %d is outside guest memory", u32(st[0]), u32(st[1]))
			return
		}
		var types []abi.ErrorType
		if err := wire.Unmarshal(b, &types); err != nil {
			cs.hostErr = fmt.Sprintf("return_error_types: not a CBOR array of error types: %v", err)
			return
		}
		cs.errTypes = types
	}},
	{"return_refs", []api.ValueType{i32, i32}, nil, func(cs *callState, st []uint64) {
		ids, ok := cs.readIDs(u32(st[0]), u32(st[1]))
		if !ok {
			cs.hostErr = "return_refs: IDs outside guest memory"
			return
		}
		cs.refs = ids
	}},
	{"log", []api.ValueType{i32, i32, i32}, nil, func(cs *callState, st []uint64) {
		b, ok := cs.read(u32(st[1]), u32(st[2]))
		if !ok {
			return
		}
		cs.host.Log(int32(u32(st[0])), b)
	}},
	{"submit", []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		spec, ok := cs.read(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("submit: spec outside guest memory")
			return
		}
		if u32(st[3]) > abi.MaxReturns {
			st[0] = cs.fail("submit: room for %d IDs is more than the %d return values a task may have", u32(st[3]), abi.MaxReturns)
			return
		}
		if _, ok := cs.read(u32(st[2]), u32(st[3])*abi.IDSize); !ok {
			st[0] = cs.fail("submit: ID buffer outside guest memory")
			return
		}
		if u32(st[3]) == 0 {
			st[0] = cs.fail("submit: room for no IDs; pass the number of return values as ids_cap")
			return
		}
		ids, err := cs.host.Submit(spec, false, int(u32(st[3])))
		if err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		if uint32(len(ids)) > u32(st[3]) {
			st[0] = cs.fail("submit: %d return IDs but room for %d", len(ids), u32(st[3]))
			return
		}
		if !cs.writeIDs(u32(st[2]), ids) {
			st[0] = cs.fail("submit: ID buffer outside guest memory")
			return
		}
		st[0] = uint64(len(ids))
	}},
	{"actor_create", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		spec, ok := cs.read(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("actor_create: spec outside guest memory")
			return
		}
		if _, ok := cs.read(u32(st[2]), abi.IDSize); !ok {
			st[0] = cs.fail("actor_create: ID buffer outside guest memory")
			return
		}
		ids, err := cs.host.Submit(spec, true, 1)
		if err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		if len(ids) != 1 || !cs.writeIDs(u32(st[2]), ids[:1]) {
			st[0] = cs.fail("actor_create: ID buffer outside guest memory")
			return
		}
		st[0] = 0
	}},
	{"put", []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		data, ok := cs.read(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("put: value outside guest memory")
			return
		}
		refs, ok := cs.readIDs(u32(st[2]), u32(st[3]))
		if !ok {
			st[0] = cs.fail("put: nested refs outside guest memory")
			return
		}
		if _, ok := cs.read(u32(st[4]), abi.IDSize); !ok {
			st[0] = cs.fail("put: ID buffer outside guest memory")
			return
		}
		id, err := cs.host.Put([][]byte{data}, refs)
		if err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		cs.mod.Memory().Write(u32(st[4]), id[:])
		st[0] = 0
	}},
	{"put_parts", []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		parts, ok := cs.readParts(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("put_parts: parts outside guest memory, or more than %d of them", maxParts)
			return
		}
		refs, ok := cs.readIDs(u32(st[2]), u32(st[3]))
		if !ok {
			st[0] = cs.fail("put_parts: nested refs outside guest memory")
			return
		}
		if _, ok := cs.read(u32(st[4]), abi.IDSize); !ok {
			st[0] = cs.fail("put_parts: ID buffer outside guest memory")
			return
		}
		id, err := cs.host.Put(parts, refs)
		if err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		cs.mod.Memory().Write(u32(st[4]), id[:])
		st[0] = 0
	}},
	{"yield_value", []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// yield_value(iov, count, refs, nrefs, index): the running
		// generator's next item, as put_parts.
		parts, ok := cs.readParts(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("yield_value: parts outside guest memory, or more than %d of them", maxParts)
			return
		}
		refs, ok := cs.readIDs(u32(st[2]), u32(st[3]))
		if !ok {
			st[0] = cs.fail("yield_value: nested refs outside guest memory")
			return
		}
		index := u32(st[4])
		if index < abi.FirstItem || index-abi.FirstItem >= abi.MaxItems {
			st[0] = cs.fail("yield_value: index %d is not between %d and %d", index, abi.FirstItem, abi.FirstItem+abi.MaxItems-1)
			return
		}
		if err := cs.host.Yield(parts, refs, index); err != nil {
			st[0] = cs.failOrCancelled(err)
			return
		}
		st[0] = 0
	}},
	{"return_value_parts", []api.ValueType{i32, i32}, nil, func(cs *callState, st []uint64) {
		parts, ok := cs.readParts(u32(st[0]), u32(st[1]))
		if !ok {
			cs.hostErr = fmt.Sprintf("return_value_parts: parts outside guest memory, or more than %d of them", maxParts)
			return
		}
		n := 0
		for _, p := range parts {
			n += len(p)
		}
		v := make([]byte, 0, n)
		for _, p := range parts {
			v = append(v, p...)
		}
		cs.value, cs.valueSet = v, true
	}},
	{"get", []api.ValueType{i32, i32, i64}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		ids, ok := cs.readIDs(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("get: IDs outside guest memory")
			return
		}
		cs.unstage()
		items, release, timedOut, err := cs.host.Get(ids, int64(st[2]))
		if err != nil {
			st[0] = cs.failOrCancelled(err)
			return
		}
		if timedOut {
			cs.stage(nil, release)
			st[0] = abi.TimedOut
			return
		}
		cs.stage(items, release)
		st[0] = 0
	}},
	{"wait", []api.ValueType{i32, i32, i32, i64, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		ids, ok := cs.readIDs(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("wait: IDs outside guest memory")
			return
		}
		if _, ok := cs.read(u32(st[4]), u32(st[1])); !ok {
			st[0] = cs.fail("wait: result buffer outside guest memory")
			return
		}
		n := int(int32(u32(st[2])))
		if n < 0 || n > len(ids) {
			st[0] = cs.fail("wait: num_ready %d is not between 0 and %d", n, len(ids))
			return
		}
		ready, err := cs.host.Wait(ids, n, int64(st[3]))
		if err != nil {
			st[0] = cs.failOrCancelled(err)
			return
		}
		out := make([]byte, len(ids))
		cnt := 0
		for i, r := range ready {
			if r {
				out[i] = 1
				cnt++
			}
		}
		cs.mod.Memory().Write(u32(st[4]), out)
		st[0] = uint64(cnt)
	}},
	{"cancel", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		id, ok := cs.read(u32(st[0]), abi.IDSize)
		if !ok {
			st[0] = cs.fail("cancel: ID outside guest memory")
			return
		}
		if err := cs.host.Cancel(objects.ID(id), u32(st[1]) != 0, u32(st[2]) != 0); err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		st[0] = 0
	}},
	{"release", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		ids, ok := cs.readIDs(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("release: IDs outside guest memory")
			return
		}
		cs.host.Release(ids)
		st[0] = 0
	}},
	{"node_id", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// node_id(buf, cap) -> length: the ID of the node running the call.
		cs.writeSized("node_id", []byte(cs.host.NodeID()), st)
	}},
	{"cancelled", nil, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// cancelled() -> 1 when the running call was asked to cancel.
		st[0] = 0
		if cs.host.Cancelled() {
			st[0] = 1
		}
	}},
	{"runtime_context", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// runtime_context(buf, cap) -> length: the running call's context,
		// a CBOR map.
		b, err := cs.host.RuntimeContext()
		if err != nil {
			st[0] = cs.fail("runtime_context: %v", err)
			return
		}
		cs.writeSized("runtime_context", b, st)
	}},
	{"cluster_info", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// cluster_info(buf, cap) -> length: the cluster's nodes, a CBOR map.
		b, err := cs.host.ClusterInfo()
		if err != nil {
			st[0] = cs.fail("cluster_info: %v", err)
			return
		}
		cs.writeSized("cluster_info", b, st)
	}},
	{"pg_table", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// pg_table(buf, cap) -> length: the job's placement groups, a CBOR map.
		b, err := cs.host.PlacementGroups()
		if err != nil {
			st[0] = cs.fail("pg_table: %v", err)
			return
		}
		cs.writeSized("pg_table", b, st)
	}},
	{"actor_lookup", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		name, ok := cs.read(u32(st[0]), u32(st[1]))
		if !ok || len(name) > 1024 {
			st[0] = cs.fail("actor_lookup: name outside guest memory or longer than 1024 bytes")
			return
		}
		if _, ok := cs.read(u32(st[2]), abi.IDSize); !ok {
			st[0] = cs.fail("actor_lookup: ID buffer outside guest memory")
			return
		}
		id, err := cs.host.ActorLookup("", string(name))
		if err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		cs.mod.Memory().Write(u32(st[2]), id[:])
		st[0] = 0
	}},
	{"actor_lookup_ns", []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// actor_lookup_ns(ns, ns_len, name, name_len, id_out): find a named
		// actor in a namespace.
		ns, ok := cs.read(u32(st[0]), u32(st[1]))
		if !ok || len(ns) > 256 {
			st[0] = cs.fail("actor_lookup_ns: namespace outside guest memory or longer than 256 bytes")
			return
		}
		name, ok := cs.read(u32(st[2]), u32(st[3]))
		if !ok || len(name) > 1024 {
			st[0] = cs.fail("actor_lookup_ns: name outside guest memory or longer than 1024 bytes")
			return
		}
		if _, ok := cs.read(u32(st[4]), abi.IDSize); !ok {
			st[0] = cs.fail("actor_lookup_ns: ID buffer outside guest memory")
			return
		}
		id, err := cs.host.ActorLookup(string(ns), string(name))
		if err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		cs.mod.Memory().Write(u32(st[4]), id[:])
		st[0] = 0
	}},
	{"actor_list", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// actor_list(buf, cap) -> length: the named actors the job may
		// look up, a CBOR array.
		b, err := cs.host.ActorList()
		if err != nil {
			st[0] = cs.fail("actor_list: %v", err)
			return
		}
		cs.writeSized("actor_list", b, st)
	}},
	{"actor_kill", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		id, ok := cs.read(u32(st[0]), abi.IDSize)
		if !ok {
			st[0] = cs.fail("actor_kill: ID outside guest memory")
			return
		}
		if err := cs.host.ActorKill(objects.ID(id), u32(st[1]) != 0); err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		st[0] = 0
	}},
	{"pg_create", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		spec, ok := cs.read(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("pg_create: spec outside guest memory")
			return
		}
		if _, ok := cs.read(u32(st[2]), abi.IDSize); !ok {
			st[0] = cs.fail("pg_create: ID buffer outside guest memory")
			return
		}
		id, err := cs.host.GroupCreate(append([]byte(nil), spec...))
		if err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		cs.mod.Memory().Write(u32(st[2]), id[:])
		st[0] = 0
	}},
	{"pg_wait", []api.ValueType{i32, i64}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		id, ok := cs.read(u32(st[0]), abi.IDSize)
		if !ok {
			st[0] = cs.fail("pg_wait: ID outside guest memory")
			return
		}
		timedOut, err := cs.host.GroupWait(objects.ID(id), int64(st[1]))
		switch {
		case err != nil:
			st[0] = cs.failOrCancelled(err)
		case timedOut:
			st[0] = abi.TimedOut
		default:
			st[0] = 0
		}
	}},
	{"pg_remove", []api.ValueType{i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		id, ok := cs.read(u32(st[0]), abi.IDSize)
		if !ok {
			st[0] = cs.fail("pg_remove: ID outside guest memory")
			return
		}
		if err := cs.host.GroupRemove(objects.ID(id)); err != nil {
			st[0] = cs.fail("%v", err)
			return
		}
		st[0] = 0
	}},
	{"serve_poll", []api.ValueType{i32, i32, i64}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// serve_poll(events_out, cap, timeout_ms) -> count: wait for the
		// serve loop's events (abi.EventSize bytes each).
		srv, ok := cs.server("serve_poll")
		if !ok {
			st[0] = hostErr
			return
		}
		room := u32(st[1])
		if room == 0 || room > maxEvents {
			st[0] = cs.fail("serve_poll: room for %d events; pass 1 to %d", room, maxEvents)
			return
		}
		if _, ok := cs.read(u32(st[0]), room*abi.EventSize); !ok {
			st[0] = cs.fail("serve_poll: event buffer outside guest memory")
			return
		}
		evs, err := srv.Poll(int64(st[2]), int(room))
		if err != nil {
			st[0] = cs.fail("serve_poll: %v", err)
			return
		}
		buf := make([]byte, 0, len(evs)*abi.EventSize)
		for _, e := range evs {
			buf = binary.LittleEndian.AppendUint32(buf, e.Kind)
			buf = binary.LittleEndian.AppendUint32(buf, e.ID)
		}
		cs.mod.Memory().Write(u32(st[0]), buf)
		st[0] = uint64(len(evs))
	}},
	{"call_take", []api.ValueType{i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// call_take(handle): stage a new call's name (text), arguments
		// (a CBOR array) and task ID (20 bytes).
		srv, ok := cs.server("call_take")
		if !ok {
			st[0] = hostErr
			return
		}
		name, args, task, err := srv.TakeCall(u32(st[0]))
		if err != nil {
			st[0] = cs.fail("call_take: %v", err)
			return
		}
		cs.stage([]Staged{{Kind: abi.StagedText, Data: []byte(name)}, {Kind: abi.StagedValue, Data: args}, {Kind: abi.StagedValue, Data: task[:]}}, nil)
		st[0] = 0
	}},
	{"call_enter", []api.ValueType{i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// call_enter(handle): the host calls that follow act for this call.
		srv, ok := cs.server("call_enter")
		if !ok {
			st[0] = hostErr
			return
		}
		if err := srv.Enter(u32(st[0])); err != nil {
			st[0] = cs.fail("call_enter: %v", err)
			return
		}
		st[0] = 0
	}},
	{"call_finish", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// call_finish(handle, status): end the call with what the return
		// imports set since the last call_finish (status as fabric_call's).
		srv, ok := cs.server("call_finish")
		if !ok {
			st[0] = hostErr
			return
		}
		if err := srv.FinishCall(u32(st[0]), cs.result("the call", u32(st[1]))); err != nil {
			st[0] = cs.fail("call_finish: %v", err)
			return
		}
		st[0] = 0
	}},
	{"get_start", []api.ValueType{i32, i32, i64}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// get_start(ids, count, timeout_ms) -> token: get without blocking.
		srv, ok := cs.server("get_start")
		if !ok {
			st[0] = hostErr
			return
		}
		ids, ok := cs.readIDs(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("get_start: IDs outside guest memory")
			return
		}
		tok, err := srv.StartGet(ids, int64(st[2]))
		if err != nil {
			st[0] = cs.fail("get_start: %v", err)
			return
		}
		st[0] = uint64(tok)
	}},
	{"wait_start", []api.ValueType{i32, i32, i32, i64}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// wait_start(ids, count, num_ready, timeout_ms) -> token.
		srv, ok := cs.server("wait_start")
		if !ok {
			st[0] = hostErr
			return
		}
		ids, ok := cs.readIDs(u32(st[0]), u32(st[1]))
		if !ok {
			st[0] = cs.fail("wait_start: IDs outside guest memory")
			return
		}
		n := int(int32(u32(st[2])))
		if n < 0 || n > len(ids) {
			st[0] = cs.fail("wait_start: num_ready %d is not between 0 and %d", n, len(ids))
			return
		}
		tok, err := srv.StartWait(ids, n, int64(st[3]))
		if err != nil {
			st[0] = cs.fail("wait_start: %v", err)
			return
		}
		st[0] = uint64(tok)
	}},
	{"op_take", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		// op_take(token, ready_out): a finished get's status with its
		// values staged, or a finished wait's count with its flags at
		// ready_out.
		srv, ok := cs.server("op_take")
		if !ok {
			st[0] = hostErr
			return
		}
		r, err := srv.TakeOp(u32(st[0]))
		if err != nil {
			st[0] = cs.fail("op_take: %v", err)
			return
		}
		if r.Err != nil {
			if r.Release != nil {
				r.Release()
			}
			st[0] = cs.failOrCancelled(r.Err)
			return
		}
		if !r.Wait {
			cs.stage(r.Items, r.Release)
			st[0] = 0
			if r.TimedOut {
				st[0] = abi.TimedOut
			}
			return
		}
		out := make([]byte, len(r.Ready))
		cnt := 0
		for i, ok := range r.Ready {
			if ok {
				out[i] = 1
				cnt++
			}
		}
		if !cs.mod.Memory().Write(u32(st[1]), out) {
			st[0] = cs.fail("op_take: result buffer outside guest memory")
			return
		}
		st[0] = uint64(cnt)
	}},
	{"staged_count", nil, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		st[0] = uint64(len(cs.staged))
	}},
	{"staged_len", []api.ValueType{i32}, []api.ValueType{i64}, func(cs *callState, st []uint64) {
		i := u32(st[0])
		if int(i) >= len(cs.staged) {
			st[0] = uint64(0xffffffffffffffff)
			return
		}
		st[0] = uint64(len(cs.staged[i].Data))
	}},
	{"staged_kind", []api.ValueType{i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		i := u32(st[0])
		if int(i) >= len(cs.staged) {
			st[0] = hostErr
			return
		}
		st[0] = uint64(uint32(cs.staged[i].Kind))
	}},
	{"staged_read", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, func(cs *callState, st []uint64) {
		i := u32(st[0])
		if int(i) >= len(cs.staged) {
			st[0] = hostErr
			return
		}
		d := cs.staged[i].Data
		if uint64(u32(st[2])) < uint64(len(d)) {
			st[0] = hostErr
			return
		}
		if !cs.mod.Memory().Write(u32(st[1]), d) {
			st[0] = hostErr
			return
		}
		st[0] = 0
	}},
	{"staged_read_all", []api.ValueType{i32, i32}, []api.ValueType{i64}, func(cs *callState, st []uint64) {
		// staged_read_all(dst, cap): every staged item in order, each a
		// little-endian u32 length and u32 kind, then its bytes. Returns
		// the bytes that takes, written only when they fit in cap (-1: a
		// buffer outside memory). One host call where staged_len,
		// staged_kind and staged_read take three per item.
		need := uint64(0)
		for _, it := range cs.staged {
			need += 8 + uint64(len(it.Data))
		}
		if need > uint64(u32(st[1])) {
			st[0] = need
			return
		}
		buf, ok := cs.mod.Memory().Read(u32(st[0]), uint32(need))
		if !ok {
			st[0] = uint64(0xffffffffffffffff)
			return
		}
		off := 0
		for _, it := range cs.staged {
			binary.LittleEndian.PutUint32(buf[off:], uint32(len(it.Data)))
			binary.LittleEndian.PutUint32(buf[off+4:], uint32(it.Kind))
			off += 8 + copy(buf[off+8:], it.Data)
		}
		st[0] = need
	}},
}

func instantiateHostModule(ctx context.Context, rt wazero.Runtime, extra func(wazero.HostModuleBuilder)) error {
	b := rt.NewHostModuleBuilder("fabric")
	extra(b)
	for _, hf := range hostFuncs {
		hf := hf
		f := hf.fn
		name := hf.name
		nres := len(hf.results)
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, st []uint64) {
			cs := stateOf(ctx)
			if cs == nil {
				// Called outside fabric_call (e.g. from _initialize): no host to serve it.
				if nres > 0 {
					st[0] = hostErr
					if hf.results[0] == i64 {
						st[0] = ^uint64(0) // -1 as i64
					}
				}
				return
			}
			cs.checkStop()
			f(cs, st)
			cs.checkStop() // a host call the stop cut short ends the call
		}), hf.params, hf.results).WithName(name).Export(name)
	}
	_, err := b.Instantiate(ctx)
	return err
}
