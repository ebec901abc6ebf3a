//go:build wasip1

//lint:file-ignore U1000 the //go:wasmexport functions are called by the host, which staticcheck cannot see

package sdk

import (
	"bytes"
	"encoding/binary"
	"math"
	"runtime"
	"unsafe"

	"github.com/wasmfabric/fabric/internal/abi"
)

//go:wasmimport fabric return_value
func hostReturnValue(ptr, n uint32)

//go:wasmimport fabric return_error
func hostReturnError(ptr, n uint32)

//go:wasmimport fabric return_error_types
func hostReturnErrorTypes(ptr, n uint32)

//go:wasmimport fabric return_refs
func hostReturnRefs(ptr, n uint32)

//go:wasmimport fabric log
func hostLog(level, ptr, n uint32)

//go:wasmimport fabric submit
func hostSubmit(spec, specLen, idsOut, idsCap uint32) int32

//go:wasmimport fabric actor_create
func hostActorCreate(spec, specLen, idOut uint32) int32

//go:wasmimport fabric put_parts
func hostPutParts(iov, n, refs, nrefs, idOut uint32) int32

//go:wasmimport fabric yield_value
func hostYieldValue(iov, n, refs, nrefs, index uint32) int32

//go:wasmimport fabric return_value_parts
func hostReturnValueParts(iov, n uint32)

// iovec lays parts out as (ptr, len) pairs of little-endian u32 for the
// *_parts imports. The parts must stay alive until the host call returns.
func iovec(parts [][]byte) []byte {
	var b []byte
	if len(parts) <= len(iovBuf)/8 {
		b = iovBuf[:8*len(parts)] // the guest is single-threaded and no host call nests
	} else {
		b = make([]byte, 8*len(parts))
	}
	for i, p := range parts {
		binary.LittleEndian.PutUint32(b[i*8:], ptr(p))
		binary.LittleEndian.PutUint32(b[i*8+4:], uint32(len(p)))
	}
	return b
}

// iovBuf holds the iovec of calls with few parts, to spare an allocation.
var iovBuf = make([]byte, 8*4)

//go:wasmimport fabric get
func hostGet(ids, n uint32, timeoutMs int64) int32

//go:wasmimport fabric wait
func hostWait(ids, n, numReady uint32, timeoutMs int64, readyOut uint32) int32

//go:wasmimport fabric cancel
func hostCancel(id, force, recursive uint32) int32

//go:wasmimport fabric release
func hostRelease(ids, n uint32) int32

//go:wasmimport fabric actor_lookup
func hostActorLookup(name, n, idOut uint32) int32

//go:wasmimport fabric actor_lookup_ns
func hostActorLookupNS(ns, nsLen, name, n, idOut uint32) int32

//go:wasmimport fabric actor_list
func hostActorList(buf, capacity uint32) int32

//go:wasmimport fabric actor_kill
func hostActorKill(id, noRestart uint32) int32

//go:wasmimport fabric pg_create
func hostGroupCreate(spec, n, idOut uint32) int32

//go:wasmimport fabric pg_wait
func hostGroupWait(id uint32, timeoutMs int64) int32

//go:wasmimport fabric pg_remove
func hostGroupRemove(id uint32) int32

//go:wasmimport fabric node_id
func hostNodeID(buf, capacity uint32) int32

//go:wasmimport fabric cancelled
func hostCancelled() int32

//go:wasmimport fabric runtime_context
func hostRuntimeContext(buf, capacity uint32) int32

//go:wasmimport fabric pg_table
func hostGroupTable(buf, capacity uint32) int32

//go:wasmimport fabric cluster_info
func hostClusterInfo(buf, capacity uint32) int32

//go:wasmimport fabric staged_len
func hostStagedLen(i uint32) int64

//go:wasmimport fabric staged_read
func hostStagedRead(i, ptr, n uint32) int32

//go:wasmimport fabric staged_read_all
func hostStagedReadAll(ptr, capacity uint32) int64

// ptr returns the guest address of b's first byte (0 for an empty slice).
func ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

var allocs = map[uint32][]byte{}

//go:wasmexport fabric_abi_version
func exportABIVersion() int32 { return 1 }

//go:wasmexport fabric_alloc
func exportAlloc(size int32) int32 {
	n := int(uint32(size))
	if n == 0 {
		n = 1
	}
	b := make([]byte, n)
	p := ptr(b)
	allocs[p] = b
	return int32(p)
}

//go:wasmexport fabric_free
func exportFree(p int32) { delete(allocs, uint32(p)) }

//go:wasmexport fabric_call
func exportCall(namePtr, nameLen, argsPtr, argsLen int32) int32 {
	name := string(guestBytes(namePtr, nameLen))
	if name == abi.ServeFunc {
		return serve()
	}
	args := guestBytes(argsPtr, argsLen)
	return returnResult(dispatch(name, args))
}

// returnResult hands a call's outcome to the host with the return
// imports, and returns fabric_call's status.
func returnResult(value [][]byte, refs []ObjectID, err error) int32 {
	if err != nil {
		if b := encodeErrorTypes(errorTypesOf(err)); b != nil {
			hostReturnErrorTypes(ptr(b), uint32(len(b)))
		}
		msg := []byte(err.Error())
		hostReturnError(ptr(msg), uint32(len(msg)))
		return 1
	}
	if len(refs) > 0 {
		b := joinIDs(refs)
		hostReturnRefs(ptr(b), uint32(len(refs)))
	}
	if len(value) == 1 {
		hostReturnValue(ptr(value[0]), uint32(len(value[0])))
	} else {
		iov := iovec(value)
		hostReturnValueParts(ptr(iov), uint32(len(value)))
		runtime.KeepAlive(value)
	}
	return 0
}

// guestBytes returns the bytes at a guest address the host passed in.
func guestBytes(p, n int32) []byte {
	if n <= 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), uintptr(uint32(p)))), int(uint32(n)))
}

type wasmHost struct{}

func (wasmHost) log(level int, msg []byte) {
	enterCurrent()
	hostLog(uint32(level), ptr(msg), uint32(len(msg)))
}

func (wasmHost) submit(spec []byte, n int) ([]ObjectID, error) {
	enterCurrent()
	out := make([]byte, n*IDSize)
	r := hostSubmit(ptr(spec), uint32(len(spec)), ptr(out), uint32(n))
	if r < 0 {
		return nil, stagedError()
	}
	return splitIDs(out[:int(r)*IDSize]), nil
}

func (wasmHost) actorCreate(spec []byte) (ObjectID, error) {
	enterCurrent()
	var id ObjectID
	if hostActorCreate(ptr(spec), uint32(len(spec)), ptr(id[:])) < 0 {
		return id, stagedError()
	}
	return id, nil
}

func (wasmHost) put(parts [][]byte, refs []ObjectID) (ObjectID, error) {
	enterCurrent()
	var id ObjectID
	rb := joinIDs(refs)
	iov := iovec(parts)
	r := hostPutParts(ptr(iov), uint32(len(parts)), ptr(rb), uint32(len(refs)), ptr(id[:]))
	runtime.KeepAlive(parts)
	if r < 0 {
		return id, stagedError()
	}
	return id, nil
}

func (wasmHost) yield(parts [][]byte, refs []ObjectID, index uint32) error {
	enterCurrent()
	rb := joinIDs(refs)
	iov := iovec(parts)
	r := hostYieldValue(ptr(iov), uint32(len(parts)), ptr(rb), uint32(len(refs)), index)
	runtime.KeepAlive(parts)
	switch {
	case r == abi.Cancelled:
		return ErrCancelled
	case r < 0:
		return stagedError()
	}
	return nil
}

func (wasmHost) get(ids []ObjectID, timeoutMs int64) ([]staged, error) {
	if s := serving; s != nil {
		return s.get(ids, timeoutMs)
	}
	b := joinIDs(ids)
	switch r := hostGet(ptr(b), uint32(len(ids)), timeoutMs); {
	case r == abi.TimedOut:
		return nil, ErrGetTimeout
	case r == abi.Cancelled:
		return nil, ErrCancelled
	case r < 0:
		return nil, stagedError()
	}
	return readStaged(len(ids))
}

// stagedScratch takes the staged items of a read that fits it; their
// bytes are then copied out in one block.
var stagedScratch = make([]byte, 4<<10)

// readStaged copies the n items a get (or call_take) staged, with one or
// two host calls (staged_read_all) and two allocations: the items'
// bytes are one block.
func readStaged(n int) ([]staged, error) {
	buf := stagedScratch
	need := hostStagedReadAll(ptr(buf), uint32(len(buf)))
	switch {
	case need < 0:
		return nil, errHost("get: cannot read results")
	case need <= int64(len(buf)):
		buf = bytes.Clone(buf[:need]) // the scratch is reused
	case need > math.MaxInt32:
		return nil, errHost("get: results too large")
	default: // read into a block of their own
		buf = make([]byte, need)
		if hostStagedReadAll(ptr(buf), uint32(need)) != need {
			return nil, errHost("get: cannot read results")
		}
	}
	out := make([]staged, n)
	for i := range out {
		if len(buf) < 8 {
			return nil, errHost("get: result missing")
		}
		size, kind := binary.LittleEndian.Uint32(buf), int32(binary.LittleEndian.Uint32(buf[4:]))
		if uint64(size) > uint64(len(buf)-8) {
			return nil, errHost("get: cannot read result")
		}
		out[i] = staged{kind: kind, data: buf[8 : 8+size : 8+size]}
		buf = buf[8+size:]
	}
	return out, nil
}

func (wasmHost) wait(ids []ObjectID, numReady int, timeoutMs int64) ([]bool, error) {
	if s := serving; s != nil {
		return s.wait(ids, numReady, timeoutMs)
	}
	b := joinIDs(ids)
	out := make([]byte, len(ids)+1)
	switch r := hostWait(ptr(b), uint32(len(ids)), uint32(numReady), timeoutMs, ptr(out)); {
	case r == abi.Cancelled:
		return nil, ErrCancelled
	case r < 0:
		return nil, stagedError()
	}
	ready := make([]bool, len(ids))
	for i := range ready {
		ready[i] = out[i] != 0
	}
	return ready, nil
}

func (wasmHost) cancel(id ObjectID, force, recursive bool) error {
	enterCurrent()
	if hostCancel(ptr(id[:]), b2u(force), b2u(recursive)) < 0 {
		return stagedError()
	}
	return nil
}

func (wasmHost) release(ids []ObjectID) {
	enterCurrent()
	b := joinIDs(ids)
	hostRelease(ptr(b), uint32(len(ids)))
}

func (wasmHost) actorLookup(namespace, name string) (ObjectID, error) {
	enterCurrent()
	var id ObjectID
	nb := []byte(name)
	if namespace == "" {
		if hostActorLookup(ptr(nb), uint32(len(nb)), ptr(id[:])) < 0 {
			return id, stagedError()
		}
		return id, nil
	}
	ns := []byte(namespace)
	if hostActorLookupNS(ptr(ns), uint32(len(ns)), ptr(nb), uint32(len(nb)), ptr(id[:])) < 0 {
		return id, stagedError()
	}
	return id, nil
}

func (wasmHost) actorList() ([]byte, error) {
	enterCurrent()
	return sized(hostActorList)
}

func (wasmHost) actorKill(id ObjectID, noRestart bool) error {
	enterCurrent()
	if hostActorKill(ptr(id[:]), b2u(noRestart)) < 0 {
		return stagedError()
	}
	return nil
}

func (wasmHost) groupCreate(spec []byte) (ObjectID, error) {
	enterCurrent()
	var id ObjectID
	if hostGroupCreate(ptr(spec), uint32(len(spec)), ptr(id[:])) < 0 {
		return id, stagedError()
	}
	return id, nil
}

func (wasmHost) groupWait(id ObjectID, timeoutMs int64) (bool, error) {
	enterCurrent()
	switch r := hostGroupWait(ptr(id[:]), timeoutMs); {
	case r == abi.TimedOut:
		return true, nil
	case r == abi.Cancelled:
		return false, ErrCancelled
	case r < 0:
		return false, stagedError()
	}
	return false, nil
}

func (wasmHost) groupRemove(id ObjectID) error {
	enterCurrent()
	if hostGroupRemove(ptr(id[:])) < 0 {
		return stagedError()
	}
	return nil
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// stagedError reads the message the host staged for a failed call.
func stagedError() error {
	n := hostStagedLen(0)
	if n < 0 {
		return errHost("host call failed")
	}
	msg := make([]byte, n)
	hostStagedRead(0, ptr(msg), uint32(n))
	return errHost(string(msg))
}

func (wasmHost) nodeID() string {
	buf := make([]byte, 64)
	for {
		n := hostNodeID(ptr(buf), uint32(len(buf)))
		if n < 0 {
			return ""
		}
		if int(n) <= len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, n)
	}
}

func (wasmHost) cancelled() bool {
	enterCurrent()
	return hostCancelled() == 1
}

func (wasmHost) runtimeContext() ([]byte, error) {
	enterCurrent()
	return sized(hostRuntimeContext)
}

func (wasmHost) clusterInfo() ([]byte, error) { return sized(hostClusterInfo) }

func (wasmHost) groupTable() ([]byte, error) { return sized(hostGroupTable) }

// sized calls a host function of the form f(buf, cap) -> length until
// its answer fits.
func sized(f func(buf, capacity uint32) int32) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n := f(ptr(buf), uint32(len(buf)))
		if n < 0 {
			return nil, stagedError()
		}
		if int(n) <= len(buf) {
			return buf[:n], nil
		}
		buf = make([]byte, n)
	}
}

var host hostAPI = wasmHost{}
