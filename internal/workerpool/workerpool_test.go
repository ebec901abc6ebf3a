package workerpool

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
// "echo" opens lanes, answers every Exec with a Done and closes lanes when
// asked; "deaf" is echo that never answers Close; "fail" cannot load its
// module; "garbage" sends a frame no worker sends; "crash" writes to
// stderr and exits.
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
	for i, a := range os.Args {
		if a == "--start-fd" && i+1 < len(os.Args) {
			fd, _ := strconv.Atoi(os.Args[i+1])
			var b [1]byte
			if n, _ := os.NewFile(uintptr(fd), "start").Read(b[:]); n != 1 {
				return 4
			}
		}
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
	if c.Send(wire.ProcessLane, wire.TypeReady, ready) != nil {
		return 1
	}
	for {
		lane, t, body, err := c.Recv()
		if err != nil {
			return 0
		}
		switch t {
		case wire.TypeOpen:
			if mode == "garbage" {
				_ = c.Send(lane, wire.TypeDone, "not a Done")
				continue
			}
			err = c.Send(lane, wire.TypeReady, wire.Ready{Pid: os.Getpid()})
		case wire.TypeClose:
			if mode != "deaf" {
				err = c.Send(lane, wire.TypeClosed, wire.Closed{})
			}
		case wire.TypeExec:
			var ex wire.Exec
			if wire.Unmarshal(body, &ex) != nil {
				return 2
			}
			err = c.Send(lane, wire.TypeDone, wire.Done{Task: ex.Task, OK: true, Value: wire.Piece{Inline: []byte{0x07}}})
		}
		if err != nil {
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

// Workers start, say they are ready, run what they are sent and answer;
// the workers of one group share a process, other groups get their own;
// a closed worker is reported gone, and a process goes with its last
// worker; Close leaves no goroutine behind.
func TestWorkerLifecycle(t *testing.T) {
	before := runtime.NumGoroutine()
	p, ev := newPool(t, "echo")
	pids := map[ID]int{}
	for _, w := range []struct {
		id    ID
		group string
	}{{1, "a"}, {2, "a"}, {3, "b"}} {
		if err := p.Start(w.id, w.group, "module.wasm", nil, func(n int) { pids[w.id] = n }); err != nil {
			t.Fatal(err)
		}
	}
	if pids[1] <= 0 || pids[1] != pids[2] || pids[3] == pids[1] || pids[3] <= 0 {
		t.Fatalf("pids %v: want workers 1 and 2 in one process, 3 in another", pids)
	}
	ev.await(t, "ready", func() bool { return len(ev.ready) == 3 })
	task := objects.ID{1, 2, 3}
	for range 3 {
		p.Send(1, wire.TypeExec, wire.Exec{Task: task, Name: "f"})
	}
	p.Send(2, wire.TypeExec, wire.Exec{Task: objects.ID{9}, Name: "f"})
	p.Flush()
	ev.await(t, "four answers", func() bool { return len(ev.messages[1]) == 3 && len(ev.messages[2]) == 1 })
	if d, ok := ev.messages[1][0].(wire.Done); !ok || d.Task != task || !d.OK {
		t.Fatalf("answer: %#v", ev.messages[1][0])
	}
	if d, ok := ev.messages[2][0].(wire.Done); !ok || d.Task != (objects.ID{9}) {
		t.Fatalf("answer on the second lane: %#v", ev.messages[2][0])
	}
	if p.Count() != 2 || p.Workers() != 3 {
		t.Fatalf("Count = %d, Workers = %d; want 2 and 3", p.Count(), p.Workers())
	}
	p.Kill(1)
	p.Flush()
	ev.await(t, "worker 1 gone", func() bool { _, ok := ev.exited[1]; return ok })
	if !strings.Contains(ev.exited[1], "stopped") {
		t.Fatalf("cause: %q", ev.exited[1])
	}
	if p.Count() != 2 {
		t.Fatalf("Count = %d after closing one of two workers of a process, want 2", p.Count())
	}
	p.Kill(2) // the last of its process: the process goes
	p.Flush()
	ev.await(t, "worker 2 gone", func() bool { _, ok := ev.exited[2]; return ok })
	deadline := time.Now().Add(5 * time.Second)
	for p.Count() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Count() != 1 {
		t.Fatalf("Count = %d after closing every worker of a process, want 1", p.Count())
	}
	// The group's next worker gets a new process.
	if err := p.Start(4, "a", "module.wasm", nil, func(n int) { pids[4] = n }); err != nil {
		t.Fatal(err)
	}
	if pids[4] == pids[1] {
		t.Fatalf("a new worker joined a process that was stopping")
	}
	ev.await(t, "ready", func() bool { _, ok := ev.ready[4]; return ok })
	p.Send(1, wire.TypeExec, wire.Exec{Task: task}) // to a gone worker: ignored
	p.Kill(1)
	p.Close()
	if _, ok := ev.exited[4]; !ok {
		t.Fatal("Close did not report the workers of the processes it killed")
	}
	if err := p.Start(5, "a", "module.wasm", nil, func(int) {}); err != ErrClosed {
		t.Fatalf("Start after Close: %v", err)
	}
	deadline = time.Now().Add(5 * time.Second)
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
			if err := p.Start(7, "g", "module.wasm", nil, func(int) {}); err != nil {
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

// A worker that does not answer Close within CloseGrace is stopped with
// its process, and so are the other workers of that process.
func TestCloseGrace(t *testing.T) {
	p, ev := newPool(t, "deaf")
	defer p.Close()
	for _, id := range []ID{1, 2} {
		if err := p.Start(id, "g", "module.wasm", nil, func(int) {}); err != nil {
			t.Fatal(err)
		}
	}
	ev.await(t, "ready", func() bool { return len(ev.ready) == 2 })
	start := time.Now()
	p.Kill(1)
	p.Flush()
	ev.await(t, "both gone", func() bool { return len(ev.exited) == 2 })
	if waited := time.Since(start); waited < CloseGrace {
		t.Fatalf("stopped after %s, before the grace of %s", waited, CloseGrace)
	}
	if !strings.Contains(ev.exited[2], "killed") {
		t.Fatalf("cause of the sibling: %q", ev.exited[2])
	}
	ev.await(t, "the log line", func() bool { return len(ev.logs) > 0 })
	if !strings.Contains(ev.logs[0], "did not stop") {
		t.Fatalf("logs: %q", ev.logs)
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
	if err := c.Send(wire.ProcessLane, wire.TypeReady, wire.Ready{Pid: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.Recv(); err == nil {
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

// DropCompiled removes a module's compiled code only while no process
// runs the module, and a process started after makes the module's
// directory again (with its time set: its use).
func TestDropCompiled(t *testing.T) {
	p, ev := newPool(t, "echo")
	defer p.Close()
	cache := t.TempDir()
	p.cfg.CacheDir = cache
	if err := p.Start(1, "a", "mods/m1.wasm", nil, func(int) {}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, "ready", func() bool { _, ok := ev.ready[1]; return ok })
	dir := CompiledDir(cache, "mods/m1.wasm")
	if err := os.WriteFile(filepath.Join(dir, "code"), []byte("compiled"), 0o600); err != nil {
		t.Fatalf("the pool made no directory for the module's code: %v", err)
	}
	if p.DropCompiled("mods/m1.wasm") {
		t.Fatal("dropped the code of a module a process runs")
	}
	if p.DropCompiled("mods/other.wasm") != true {
		t.Fatal("could not drop the code of a module no process runs")
	}
	p.Kill(1)
	p.Flush()
	ev.await(t, "worker 1 gone", func() bool { _, ok := ev.exited[1]; return ok })
	deadline := time.Now().Add(5 * time.Second)
	for !p.DropCompiled("mods/m1.wasm") {
		if time.Now().After(deadline) {
			t.Fatal("the code stays after its module's last process exited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the module's code is still there: %v", err)
	}
	if err := p.Start(2, "b", "mods/m1.wasm", nil, func(int) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("a new process of the module has no directory for its code: %v", err)
	}
}

// TestPlace: a new process is placed before it does anything (it waits
// for the pool's word), and a process that cannot be placed is killed
// and fails its start.
func TestPlace(t *testing.T) {
	p, ev := newPool(t, "echo")
	var placedPid int
	sockets := -1
	err := p.Start(1, "a", "module.wasm", func(pid int) error {
		// Ungated, the process would have dialled the pool by now.
		time.Sleep(300 * time.Millisecond)
		placedPid, sockets = pid, socketsOf(t, pid)
		return nil
	}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	ev.await(t, "worker 1 ready", func() bool { _, ok := ev.ready[1]; return ok })
	if sockets != 0 {
		t.Fatalf("the process had %d sockets open before it was placed, want none", sockets)
	}
	if n := socketsOf(t, placedPid); n == 0 {
		t.Fatal("the placed process has no socket: is it the pool's?")
	}
	var gotPid int
	err = p.Start(2, "b", "module.wasm", func(pid int) error {
		gotPid = pid
		return errors.New("no room in the group")
	}, func(int) { t.Error("started called for a process that was not placed") })
	if err == nil || !strings.Contains(err.Error(), "no room in the group") {
		t.Fatalf("a start whose place failed: %v", err)
	}
	if err := syscall.Kill(gotPid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the process that was not placed: %v, want gone", err)
	}
}

// socketsOf counts the sockets process pid has open.
func socketsOf(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// startReady starts worker id of group and waits until it is ready,
// noting its process in pids.
func startReady(t *testing.T, p *Pool, ev *events, id ID, group string, pids map[ID]int) {
	t.Helper()
	if err := p.Start(id, group, "module.wasm", nil, func(n int) { pids[id] = n }); err != nil {
		t.Fatal(err)
	}
	ev.await(t, "ready", func() bool { _, ok := ev.ready[id]; return ok })
}

// killGone stops worker id and waits until it is gone.
func killGone(t *testing.T, p *Pool, ev *events, id ID) {
	t.Helper()
	p.Kill(id)
	p.Flush()
	ev.await(t, "gone", func() bool { _, ok := ev.exited[id]; return ok })
}

// A lingering group's process outlives its last worker: the group's
// next worker opens in it (no new process), until the linger passes or
// Linger(0) ends it; another group's process does not linger.
func TestLinger(t *testing.T) {
	p, ev := newPool(t, "echo")
	defer p.Close()
	p.Linger("serve", "acme", time.Minute)
	pids := map[ID]int{}
	start := func(id ID, group string) { startReady(t, p, ev, id, group, pids) }
	stop := func(id ID) { killGone(t, p, ev, id) }
	start(1, "serve")
	start(2, "job")
	stop(1)
	stop(2)
	waitCount := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for p.Count() != n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if p.Count() != n {
			t.Fatalf("Count = %d, want %d", p.Count(), n)
		}
	}
	waitCount(1) // the job's process went; the lingering one stays
	if p.Lingering() != 1 {
		t.Fatalf("Lingering = %d, want 1", p.Lingering())
	}
	start(3, "serve")
	if pids[3] != pids[1] || p.Lingering() != 0 {
		t.Fatalf("the group's next worker is in process %d, the lingering one was %d (lingering %d)", pids[3], pids[1], p.Lingering())
	}
	stop(3)
	if p.Lingering() != 1 {
		t.Fatalf("Lingering = %d after the last worker again, want 1", p.Lingering())
	}
	p.Linger("serve", "", 0)
	waitCount(0)
	if p.Lingering() != 0 {
		t.Fatalf("Lingering = %d after Linger(0)", p.Lingering())
	}
	// A short linger passes on its own.
	p.Linger("short", "acme", 50*time.Millisecond)
	start(4, "short")
	stop(4)
	waitCount(0)
}

// TestLingerShared: the lingering places are shared by their owners. With
// two places, acme's two processes take both; beta's takes the older of
// acme's (which stops), and acme's third finds none it may take.
func TestLingerShared(t *testing.T) {
	p, ev := newPool(t, "echo")
	defer p.Close()
	p.maxLingering = 2
	groups := map[ID]string{1: "acme-1", 2: "acme-2", 3: "beta-1", 4: "acme-3"}
	for id, g := range groups {
		p.Linger(g, g[:4], time.Minute)
		startReady(t, p, ev, id, g, map[ID]int{})
	}
	stop := func(id ID) { killGone(t, p, ev, id) }
	lingering := func() map[string]bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		out := map[string]bool{}
		for pr := range p.procs {
			if pr.linger != nil {
				out[pr.group] = true
			}
		}
		return out
	}
	stop(1)
	stop(2)
	if l := lingering(); !l["acme-1"] || !l["acme-2"] || p.Lingering() != 2 {
		t.Fatalf("after acme's two: lingering %v", l)
	}
	stop(3)
	if l := lingering(); l["acme-1"] || !l["acme-2"] || !l["beta-1"] || p.Lingering() != 2 {
		t.Fatalf("after beta's: lingering %v, want acme-2 and beta-1", l)
	}
	stop(4)
	if l := lingering(); !l["acme-2"] || !l["beta-1"] || l["acme-3"] || p.Lingering() != 2 {
		t.Fatalf("after acme's third: lingering %v, want acme-2 and beta-1", l)
	}
	// acme-1's process, which gave its place up, is gone.
	deadline := time.Now().Add(5 * time.Second)
	for p.Count() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Count() != 2 {
		t.Fatalf("Count = %d, want the 2 lingering", p.Count())
	}
}
