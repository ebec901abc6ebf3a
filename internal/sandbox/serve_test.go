package sandbox

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// TestServeWithoutSupport: calls to a concurrent actor whose module has
// no serve loop (its fabric_call does not know abi.ServeFunc, as a C
// guest's) run one at a time, as a plain actor's, each answered as the
// module answers it; the worker does not start the loop again and again.
func TestServeWithoutSupport(t *testing.T) {
	dir := t.TempDir()
	module := filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(module, valMinimal(), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan error, 1)
	go func() {
		exited <- RunWorker(ctx, WorkerConfig{Socket: ln.Addr().String(), Module: module, CacheDir: filepath.Join(dir, "cache"), MemoryLimit: 16 << 20})
	}()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := wire.NewConn(nc)
	recv := func(want wire.Type) []byte {
		t.Helper()
		_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			_, typ, body, err := c.Recv()
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if typ == want {
				return body
			}
		}
	}
	recv(wire.TypeReady) // the process
	if err := c.Send(1, wire.TypeOpen, wire.Open{}); err != nil {
		t.Fatal(err)
	}
	recv(wire.TypeReady) // the lane
	for i := byte(1); i <= 3; i++ {
		ex := wire.Exec{Task: objects.ID{i}, Kind: wire.ExecActorMethod, Name: "C.m", Args: []wire.Piece{{Inline: []byte{0x80}}}, Serve: true, Limit: 2}
		if err := c.Send(1, wire.TypeExec, ex); err != nil {
			t.Fatal(err)
		}
	}
	for i := byte(1); i <= 3; i++ {
		var d wire.Done
		if err := wire.Unmarshal(recv(wire.TypeDone), &d); err != nil {
			t.Fatal(err)
		}
		if d.Task != (objects.ID{i}) || strings.Contains(d.Error, "serve") {
			t.Fatalf("Done = %+v, want call %d answered as a plain call", d, i)
		}
	}
	// A plain execution still runs (and fails as the module fails it).
	if err := c.Send(1, wire.TypeExec, wire.Exec{Task: objects.ID{9}, Kind: wire.ExecActorMethod, Name: "C.m", Args: []wire.Piece{{Inline: []byte{0x80}}}}); err != nil {
		t.Fatal(err)
	}
	var d wire.Done
	if err := wire.Unmarshal(recv(wire.TypeDone), &d); err != nil || d.Task != (objects.ID{9}) {
		t.Fatalf("plain execution: %+v %v", d, err)
	}
	nc.Close()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not end when its agent went")
	}
}

// fakeServer is a Server whose answers are fixed and well formed.
type fakeServer struct{ fakeHost }

func (fakeServer) Poll(timeoutMs int64, room int) ([]Event, error) {
	evs := []Event{{abi.EventCall, 1}, {abi.EventOp, 2}, {abi.EventCancel, 1}, {abi.EventIdle, 0}}
	return evs[:min(room, len(evs))], nil
}
func (fakeServer) TakeCall(handle uint32) (string, []byte, objects.ID, error) {
	return "C.m", []byte{0x80}, objects.ID{1}, nil
}
func (fakeServer) Enter(handle uint32) error                    { return nil }
func (fakeServer) FinishCall(handle uint32, _ CallResult) error { return nil }
func (fakeServer) StartGet(ids []objects.ID, timeoutMs int64) (uint32, error) {
	return 1, nil
}
func (fakeServer) StartWait(ids []objects.ID, n int, timeoutMs int64) (uint32, error) {
	return 2, nil
}
func (fakeServer) TakeOp(token uint32) (OpResult, error) {
	if token%2 == 0 {
		return OpResult{Wait: true, Ready: []bool{true, false, true}}, nil
	}
	return OpResult{Items: []Staged{{Data: []byte{0x01}}}}, nil
}

var serveImports = []string{"serve_poll", "call_take", "call_enter", "call_finish", "get_start", "wait_start", "op_take"}

// FuzzServeImports calls the serve loop's imports with arbitrary
// pointers, lengths, handles and tokens against a one-page guest memory:
// a bad one is that call's error, never a host crash.
func FuzzServeImports(f *testing.F) {
	inst := minimalInstance(f)
	f.Add(uint8(0), []byte{16, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(5), []byte{16, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0})
	f.Add(uint8(6), []byte{2, 0, 0, 0, 0xf0, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		hf := hostFuncNamed(t, serveImports[int(which)%len(serveImports)])
		st := make([]uint64, max(len(hf.params), len(hf.results)))
		for i := range hf.params {
			if len(raw) >= 4 {
				st[i] = uint64(binary.LittleEndian.Uint32(raw))
				raw = raw[4:]
			}
		}
		cs := &callState{host: fakeServer{}, mod: inst.mod}
		hf.fn(cs, st)
	})
}

// TestServeImports: the serve imports fail, with a message, outside a
// serve loop and for bad pointers; within bounds they write what the
// Server says.
func TestServeImports(t *testing.T) {
	inst := minimalInstance(t)
	mem := inst.mod.Memory()
	call := func(host Host, name string, args ...uint64) (int32, string) {
		hf := hostFuncNamed(t, name)
		st := make([]uint64, max(len(hf.params), len(hf.results)))
		copy(st, args)
		cs := &callState{host: host, mod: inst.mod}
		hf.fn(cs, st)
		msg := ""
		if len(cs.staged) > 0 && cs.staged[0].Kind == abi.StagedText {
			msg = string(cs.staged[0].Data)
		}
		return int32(uint32(st[0])), msg
	}
	for _, name := range serveImports {
		if rc, msg := call(fakeHost{}, name, 16, 1, 0, 0); rc != -1 || !strings.Contains(msg, "only a concurrent actor's serve loop") {
			t.Errorf("%s outside a serve loop: %d %q", name, rc, msg)
		}
	}
	if rc, _ := call(fakeServer{}, "serve_poll", 16, 4, 0); rc != 4 {
		t.Fatalf("serve_poll: %d", rc)
	}
	if b, _ := mem.Read(16, 8); binary.LittleEndian.Uint32(b) != abi.EventCall || binary.LittleEndian.Uint32(b[4:]) != 1 {
		t.Errorf("first event: %x", b)
	}
	cases := []struct {
		name string
		args []uint64
		want string
	}{
		{"serve_poll", []uint64{16, 0, 0}, "room for 0 events"},
		{"serve_poll", []uint64{16, maxEvents + 1, 0}, "room for 4097 events"},
		{"serve_poll", []uint64{1 << 30, 4, 0}, "outside guest memory"},
		{"get_start", []uint64{1 << 30, 2, 0}, "outside guest memory"},
		{"wait_start", []uint64{16, 2, 3, 0}, "num_ready 3 is not between 0 and 2"},
		{"op_take", []uint64{2, 1 << 30}, "outside guest memory"},
	}
	for _, c := range cases {
		if rc, msg := call(fakeServer{}, c.name, c.args...); rc != -1 || !strings.Contains(msg, c.want) {
			t.Errorf("%s%v: %d %q, want -1 and %q", c.name, c.args, rc, msg, c.want)
		}
	}
	if rc, _ := call(fakeServer{}, "op_take", 2, 64); rc != 2 {
		t.Errorf("op_take of a wait: %d ready, want 2", rc)
	}
	if rc, _ := call(fakeServer{}, "call_take", 1); rc != 0 {
		t.Errorf("call_take: %d", rc)
	}
}

// TestServeOpsBounded: a serve loop that starts gets without taking them
// is refused past maxServeOps, and what finishes after the loop ended is
// released, not kept.
func TestServeOpsBounded(t *testing.T) {
	w := &worker{lanes: map[wire.Lane]*lane{}}
	l := &lane{id: 1, w: w}
	s := &serveLoop{l: l, exec: &execution{stop: make(chan struct{})}, wake: make(chan struct{}, 1),
		calls: map[uint32]*serveCall{}, running: map[string]int{}, ops: map[uint32]*serveOp{}}
	s.actor = &workerHost{w: w, l: l, cur: s.exec}
	block := make(chan struct{})
	released := make(chan struct{}, maxServeOps)
	op := func(*workerHost) OpResult {
		<-block
		return OpResult{Release: func() { released <- struct{}{} }}
	}
	for i := range maxServeOps {
		if _, err := s.startOp(op); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	if _, err := s.startOp(op); err == nil || !strings.Contains(err.Error(), "the limit is 4096") {
		t.Fatalf("op past the limit: %v", err)
	}
	w.mu.Lock()
	s.ended = true
	w.mu.Unlock()
	close(block)
	for range maxServeOps {
		select {
		case <-released:
		case <-time.After(10 * time.Second):
			t.Fatal("an operation that ended after its loop kept its pins")
		}
	}
	if len(s.events) != 0 {
		t.Fatalf("%d events queued for a loop that ended", len(s.events))
	}
}
