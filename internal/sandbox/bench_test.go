package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/cborlite"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/testrig"
)

func compileGuest(b testing.TB, dir string) (*Engine, *Module) {
	b.Helper()
	wasm, err := os.ReadFile(testrig.Guest(b, dir))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	e, err := NewEngine(ctx, EngineConfig{CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	m, err := e.Compile(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	return e, m
}

// BenchmarkGoGuestColdStart is the time from a compiled Go guest to a fresh
// instance ready for its first call (_initialize and the ABI check).
func BenchmarkGoGuestColdStart(b *testing.B) {
	ctx := context.Background()
	e, m := compileGuest(b, "internal/testguests/bench")
	defer e.Close(ctx)
	b.ResetTimer()
	for range b.N {
		inst, err := m.Instantiate(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = inst.Close(ctx)
		b.StartTimer()
	}
}

// BenchmarkBaselineWazeroCall is the limit for entering a sandbox: a bare
// call of an exported function that does nothing (fabric_abi_version).
func BenchmarkBaselineWazeroCall(b *testing.B) {
	ctx := context.Background()
	e, m := compileGuest(b, "internal/testguests/bench")
	defer e.Close(ctx)
	inst, err := m.Instantiate(ctx)
	if err != nil {
		b.Fatal(err)
	}
	f := inst.mod.ExportedFunction("fabric_abi_version")
	b.ResetTimer()
	for range b.N {
		if _, err := f.Call(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuestCall is one fabric_call of a registered no-op task through
// the host side of the ABI (allocation, argument copy, result copy).
func BenchmarkGuestCall(b *testing.B) {
	ctx := context.Background()
	e, m := compileGuest(b, "internal/testguests/bench")
	defer e.Close(ctx)
	inst, err := m.Instantiate(ctx)
	if err != nil {
		b.Fatal(err)
	}
	args := ArgSource{Len: 1, Write: func(dst []byte) error { dst[0] = 0x80; return nil }}
	b.ResetTimer()
	for range b.N {
		res, err := inst.Call(ctx, fakeHost{}, "noop", args, nil, 0)
		if err != nil || !res.OK {
			b.Fatalf("%v %+v", err, res)
		}
	}
}

// bodyEchoReplica is an instance of the serve guest whose BodyEcho
// constructor ran, and the arguments of a request as the ingress sends
// it: a body and four headers.
func bodyEchoReplica(b *testing.B) (*Instance, []byte) {
	ctx := context.Background()
	e, m := compileGuest(b, "internal/testguests/serve")
	b.Cleanup(func() { e.Close(ctx) })
	inst, err := m.Instantiate(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if res, err := inst.Call(ctx, fakeHost{}, "BodyEcho.__init__", emptyArgs, nil, 0); err != nil || !res.OK {
		b.Fatalf("the constructor: %v %+v", err, res)
	}
	req := abi.ServeRequest{Method: "POST", Path: "/echo", Route: "/echo", Body: []byte(`{"input": 42}`),
		Header: map[string][]string{"Content-Type": {"application/json"}, "User-Agent": {"Go-http-client/1.1"},
			"Accept-Encoding": {"gzip"}, "Content-Length": {"13"}}}
	return inst, req.AppendCBOR(cborlite.AppendHead(nil, cborlite.MajorArray, 1))
}

// emptyArgs are a call's arguments when it has none.
var emptyArgs = ArgSource{Len: 1, Write: func(dst []byte) error { dst[0] = 0x80; return nil }}

// BenchmarkServeCall is one request to a Go guest's deployment replica
// (the serve guest's BodyEcho, an actor) as the ingress sends it: a
// request with a body and four headers decoded, a response with a
// header encoded. BenchmarkGuestCall is its floor.
func BenchmarkServeCall(b *testing.B) {
	ctx := context.Background()
	inst, arg := bodyEchoReplica(b)
	args := ArgSource{Len: int64(len(arg)), Write: func(dst []byte) error { copy(dst, arg); return nil }}
	b.ResetTimer()
	for range b.N {
		res, err := inst.Call(ctx, fakeHost{}, "BodyEcho.__call__", args, nil, 0)
		if err != nil || !res.OK {
			b.Fatalf("%v %+v", err, res)
		}
		if resp, ok := abi.ParseServeResponse(res.Value); !ok || string(resp.Body) != `{"input": 42}` {
			b.Fatalf("the response: %x", res.Value)
		}
	}
}

// benchServer feeds a serve loop calls of one method, batch at a time
// (as the worker's loop takes them when requests arrive together), until
// n finished.
type benchServer struct {
	fakeHost
	method      string
	args        []byte
	batch, n    int
	next, done  int
	outstanding int
	b           *testing.B
}

func (s *benchServer) Poll(timeoutMs int64, room int) ([]Event, error) {
	if s.done == s.n {
		return []Event{{abi.EventIdle, 0}}, nil
	}
	var evs []Event
	for s.outstanding < s.batch && s.next < s.n && len(evs) < room {
		s.next++
		s.outstanding++
		evs = append(evs, Event{abi.EventCall, uint32(s.next)})
	}
	return evs, nil
}
func (s *benchServer) TakeCall(handle uint32) (string, []byte, objects.ID, error) {
	return s.method, s.args, objects.ID{byte(handle)}, nil
}
func (s *benchServer) Enter(handle uint32) error { return nil }
func (s *benchServer) FinishCall(handle uint32, res CallResult) error {
	if !res.OK {
		s.b.Fatalf("call %d: %+v", handle, res)
	}
	s.done++
	s.outstanding--
	return nil
}
func (s *benchServer) StartGet(ids []objects.ID, timeoutMs int64) (uint32, error) {
	return 0, errors.New("no gets")
}
func (s *benchServer) StartWait(ids []objects.ID, n int, timeoutMs int64) (uint32, error) {
	return 0, errors.New("no waits")
}
func (s *benchServer) TakeOp(token uint32) (OpResult, error) { return OpResult{}, errors.New("no ops") }

// BenchmarkServeLoop is BenchmarkServeCall's request through a Go
// guest's serve loop (a concurrent actor's), calls arriving one or 8 at
// a time: what the loop adds to each call.
func BenchmarkServeLoop(b *testing.B) {
	ctx := context.Background()
	inst, arg := bodyEchoReplica(b)
	for _, batch := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			s := &benchServer{method: "BodyEcho.__call__", args: arg, batch: batch, n: b.N, b: b}
			res, err := inst.Call(ctx, s, abi.ServeFunc, emptyArgs, nil, 0)
			if err != nil || !res.OK || s.done != b.N {
				b.Fatalf("%v %+v: %d of %d calls", err, res, s.done, b.N)
			}
		})
	}
}
