package workerpool

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// The test binary doubles as a worker: started by a pool with
// FAKE_WORKER set, it plays the worker's side of the protocol as the
// variable says.
func TestMain(m *testing.M) {
	if mode := os.Getenv("FAKE_WORKER"); mode != "" {
		os.Exit(fakeWorker(mode))
	}
	os.Exit(m.Run())
}

// fakeWorker connects to the pool's socket and behaves as mode says:
// "echo" answers every Exec with a Done; "fail" cannot load its module;
// "garbage" sends a frame no worker sends; "crash" writes to stderr and
// exits.
func fakeWorker(mode string) int {
	var socket string
	for i, a := range os.Args {
		if a == "--socket" && i+1 < len(os.Args) {
			socket = os.Args[i+1]
		}
	}
	if mode == "crash" {
		os.Stderr.WriteString("loading the module\npanic: out of luck\n")
		return 3
	}
	nc, err := net.Dial("unix", socket)
	if err != nil {
		return 1
	}
	c := wire.NewConn(nc)
	ready := wire.Ready{Pid: os.Getpid()}
	if mode == "fail" {
		ready.Error = "invalid module: no fabric_call export"
	}
	if c.Send(wire.TypeReady, ready) != nil {
		return 1
	}
	if mode == "garbage" {
		_ = c.Send(wire.TypeDone, "not a Done")
	}
	for {
		t, body, err := c.Recv()
		if err != nil {
			return 0
		}
		if t != wire.TypeExec {
			continue
		}
		var ex wire.Exec
		if wire.Unmarshal(body, &ex) != nil {
			return 2
		}
		if c.Send(wire.TypeDone, wire.Done{Task: ex.Task, OK: true, Value: wire.Piece{Inline: []byte{0x07}}}) != nil {
			return 0
		}
	}
}

// events records what the pool reports.
type events struct {
	mu       sync.Mutex
	ready    map[ID]string
	messages map[ID][]any
	exited   map[ID]string
	logs     []string
	changed  chan struct{}
}

func newEvents() *events {
	return &events{ready: map[ID]string{}, messages: map[ID][]any{}, exited: map[ID]string{}, changed: make(chan struct{}, 1)}
}

func (e *events) note(f func()) {
	e.mu.Lock()
	f()
	e.mu.Unlock()
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// await waits until cond holds (under e.mu).
func (e *events) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		e.mu.Lock()
		ok := cond()
		e.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-e.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func newPool(t *testing.T, mode string) (*Pool, *events) {
	t.Helper()
	t.Setenv("FAKE_WORKER", mode)
	dir := t.TempDir()
	arena, err := os.Create(filepath.Join(dir, "arena"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arena.Close() })
	ev := newEvents()
	p, err := New(Config{
		Command: []string{os.Args[0]},
		Socket:  filepath.Join(dir, "agent.sock"),
		Arena:   arena, ArenaSize: 1 << 20, GuestMemoryLimit: 64 << 20,
		Ready:   func(id ID, err string) { ev.note(func() { ev.ready[id] = err }) },
		Message: func(id ID, msg any) { ev.note(func() { ev.messages[id] = append(ev.messages[id], msg) }) },
		Exited:  func(id ID, cause string) { ev.note(func() { ev.exited[id] = cause }) },
		Log:     func(s string) { ev.note(func() { ev.logs = append(ev.logs, s) }) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, ev
}

// A worker starts, says it is ready, runs what it is sent and answers;
// killed, it is reported gone; Close leaves no goroutine behind.
func TestWorkerLifecycle(t *testing.T) {
	before := runtime.NumGoroutine()
	p, ev := newPool(t, "echo")
	var pid int
	if err := p.Start(1, "module.wasm", func(n int) { pid = n }); err != nil {
		t.Fatal(err)
	}
	if pid <= 0 {
		t.Fatalf("started with pid %d", pid)
	}
	ev.await(t, "ready", func() bool { _, ok := ev.ready[1]; return ok })
	task := objects.ID{1, 2, 3}
	for range 3 {
		p.Send(1, wire.TypeExec, wire.Exec{Task: task, Name: "f"})
	}
	p.Flush()
	ev.await(t, "three answers", func() bool { return len(ev.messages[1]) == 3 })
	if d, ok := ev.messages[1][0].(wire.Done); !ok || d.Task != task || !d.OK {
		t.Fatalf("answer: %#v", ev.messages[1][0])
	}
	if p.Count() != 1 {
		t.Fatalf("Count = %d, want 1", p.Count())
	}
	p.Kill(1)
	ev.await(t, "exit", func() bool { _, ok := ev.exited[1]; return ok })
	if !strings.Contains(ev.exited[1], "killed") {
		t.Fatalf("cause: %q", ev.exited[1])
	}
	p.Send(1, wire.TypeExec, wire.Exec{Task: task}) // to a gone worker: ignored
	p.Kill(1)
	p.Close()
	if err := p.Start(2, "module.wasm", func(int) {}); err != ErrClosed {
		t.Fatalf("Start after Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}

// Workers that fail: to load their module (stopped, with the reason), by
// sending garbage (stopped, logged), or by dying at once (their last
// stderr lines are the cause).
func TestWorkerFailures(t *testing.T) {
	for _, tc := range []struct {
		mode, ready, cause, log string
	}{
		{mode: "fail", ready: "invalid module"},
		{mode: "garbage", log: "bad done message"},
		{mode: "crash", cause: "panic: out of luck"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			p, ev := newPool(t, tc.mode)
			defer p.Close()
			if err := p.Start(7, "module.wasm", func(int) {}); err != nil {
				t.Fatal(err)
			}
			ev.await(t, "exit", func() bool { _, ok := ev.exited[7]; return ok })
			if tc.ready != "" && !strings.Contains(ev.ready[7], tc.ready) {
				t.Errorf("ready: %q, want %q", ev.ready[7], tc.ready)
			}
			if tc.cause != "" && !strings.Contains(ev.exited[7], tc.cause) {
				t.Errorf("cause: %q, want %q", ev.exited[7], tc.cause)
			}
			if tc.log != "" && (len(ev.logs) == 0 || !strings.Contains(ev.logs[0], tc.log)) {
				t.Errorf("logs: %q, want %q", ev.logs, tc.log)
			}
			if len(ev.messages[7]) != 0 {
				t.Errorf("messages from a failed worker: %v", ev.messages[7])
			}
		})
	}
}

// A process that is not one of the pool's cannot pose as a worker.
func TestStrangerConnection(t *testing.T) {
	p, ev := newPool(t, "echo")
	defer p.Close()
	nc, err := net.Dial("unix", p.cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	c := wire.NewConn(nc)
	if err := c.Send(wire.TypeReady, wire.Ready{Pid: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Recv(); err == nil {
		t.Fatal("the pool kept a connection from a stranger")
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.ready) != 0 {
		t.Fatalf("a stranger was reported ready: %v", ev.ready)
	}
}

// FuzzDecode: any frame body of any type decodes to a message or an
// error, never a panic.
func FuzzDecode(f *testing.F) {
	done, _ := wire.Marshal(wire.Done{Task: objects.ID{1}, OK: true, Value: wire.Piece{Inline: []byte{1}}})
	f.Add(byte(wire.TypeDone), done)
	f.Add(byte(wire.TypeSubmit), []byte{0x80})
	f.Add(byte(0), []byte{})
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		msg, err := Decode(wire.Type(typ), body)
		if err == nil && msg == nil {
			t.Fatalf("type %d: no message and no error", typ)
		}
	})
}
