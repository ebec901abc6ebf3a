// Package workerpool starts and stops an agent's worker processes (`fabric
// worker`) and carries messages to and from them over the agent's Unix
// socket. It knows nothing of tasks: the agent's core decides what runs
// where, and the pool reports what happened to its processes.
//
// Each worker is a process of its own group, killed with SIGKILL on the
// group, and dies with the agent (Pdeathsig). It maps the object arena
// (passed as file descriptor 3), connects to the socket and says Ready with
// its pid; the pool matches the pid to the process it started. One
// goroutine per worker reads its frames, decodes them and hands them to
// the agent; sends never block: they append to the connection's buffer,
// which Flush writes without waiting, leaving what a full socket does not
// take to the worker's own writer goroutine. A worker that stops reading
// past MaxOutbound bytes is stopped.
package workerpool

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/wasmfabric/fabric/internal/wire"
)

// ID names a worker; the agent chooses it.
type ID uint64

// MaxOutbound bounds what the pool buffers for one worker.
const MaxOutbound = 256 << 20

// Config configures a pool.
type Config struct {
	// Command starts a worker; the pool appends the worker's flags.
	Command []string
	// Socket is the Unix socket path the pool listens on.
	Socket string
	// Arena is the object arena, passed to workers as file descriptor 3.
	Arena     *os.File
	ArenaSize int64
	// CacheDir holds compiled modules.
	CacheDir string
	// NodeID names the node, for guests that ask.
	NodeID string
	// GuestMemoryLimit caps each guest's linear memory; the process gets
	// 2 GiB more (RLIMIT_DATA).
	GuestMemoryLimit int64
	// OutputCap bounds the output kept per call.
	OutputCap int64
	// Profiling makes Kill send SIGTERM first, so that workers writing CPU
	// profiles flush them.
	Profiling bool

	// Ready is called when a worker loaded its module (err empty) or
	// failed to (err says why).
	Ready func(id ID, err string)
	// Message is called with each message a worker sends, decoded; an
	// undecodable one stops the worker.
	Message func(id ID, msg any)
	// Exited is called once when a started worker's process ended; cause
	// says how, with the last lines it wrote to stderr.
	Exited func(id ID, cause string)
	// Log receives the pool's own messages.
	Log func(string)
}

// Pool is the worker processes of one agent.
type Pool struct {
	cfg Config
	ln  net.Listener
	wg  sync.WaitGroup

	// startMu orders starts: a worker that connects before its start was
	// recorded waits for it. mu guards the tables and is never held while
	// a process starts, so Send never waits for a fork.
	startMu sync.Mutex
	starts  int // connections that waited for a start to be recorded
	mu      sync.Mutex
	workers map[ID]*proc
	byPid   map[int]*proc
	dirty   []*proc
	closed  bool
}

// proc is one worker process.
type proc struct {
	id      ID
	cmd     *exec.Cmd
	pid     int
	conn    *wire.Conn // set when it connected
	started chan struct{}
	exited  chan struct{}
	wake    chan struct{}
	once    sync.Once
	dirty   bool
	// sendErr is set when a send failed: the worker is being stopped.
	sendErr bool
}

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("workerpool: closed")

// New listens on cfg.Socket and returns the pool.
func New(cfg Config) (*Pool, error) {
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("workerpool: listen on worker socket: %w", err)
	}
	p := &Pool{cfg: cfg, ln: ln, workers: map[ID]*proc{}, byPid: map[int]*proc{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Start starts worker id for the module at modulePath and returns its
// pid. started is called once the process runs and before any other
// callback of the worker.
func (p *Pool) Start(id ID, modulePath string, started func(pid int)) error {
	args := append([]string(nil), p.cfg.Command[1:]...)
	args = append(args,
		"--socket", p.cfg.Socket,
		"--module", modulePath,
		"--cache-dir", p.cfg.CacheDir,
		"--node-id", p.cfg.NodeID,
		"--memory", strconv.FormatInt(p.cfg.GuestMemoryLimit, 10),
		"--output-cap", strconv.FormatInt(p.cfg.OutputCap, 10),
		"--arena-fd", "3",
		"--arena-size", strconv.FormatInt(p.cfg.ArenaSize, 10),
		"--process-limit", strconv.FormatInt(p.cfg.GuestMemoryLimit+2<<30, 10),
	)
	cmd := exec.Command(p.cfg.Command[0], args...)
	cmd.Env = append(os.Environ(), "FABRIC_WORKER=1")
	cmd.ExtraFiles = []*os.File{p.cfg.Arena}
	cmd.Stdout = os.Stderr
	var stderr bytes.Buffer
	cmd.Stderr = &tailBuffer{b: &stderr, max: 64 << 10}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	w := &proc{id: id, cmd: cmd, started: make(chan struct{}), exited: make(chan struct{}), wake: make(chan struct{}, 1)}
	p.startMu.Lock()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.startMu.Unlock()
		return ErrClosed
	}
	if err := cmd.Start(); err != nil {
		p.startMu.Unlock()
		return fmt.Errorf("workerpool: start worker: %w", err)
	}
	w.pid = cmd.Process.Pid
	p.mu.Lock()
	p.workers[id] = w
	p.byPid[w.pid] = w
	p.mu.Unlock()
	p.startMu.Unlock()
	started(w.pid)
	close(w.started)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := cmd.Wait()
		close(w.exited)
		p.mu.Lock()
		delete(p.workers, id)
		delete(p.byPid, w.pid)
		p.mu.Unlock()
		cause := "worker process exited"
		if err != nil {
			cause = "worker process " + err.Error()
		}
		if s := stderr.String(); s != "" {
			cause += ": " + lastLines(s, 8)
		}
		p.cfg.Exited(id, cause)
	}()
	return nil
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	b   *bytes.Buffer
	max int
}

func (l *tailBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if extra := l.b.Len() - l.max; extra > 0 {
		l.b.Next(extra)
	}
	return len(p), nil
}

func lastLines(s string, k int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// Kill stops a worker; Exited follows. Unknown IDs are ignored.
func (p *Pool) Kill(id ID) {
	p.mu.Lock()
	w := p.workers[id]
	p.mu.Unlock()
	if w != nil {
		p.kill(w, false)
	}
}

func (p *Pool) kill(w *proc, hard bool) {
	w.once.Do(func() {
		if p.cfg.Profiling && !hard {
			_ = syscall.Kill(w.pid, syscall.SIGTERM)
			go func() {
				select {
				case <-w.exited:
				case <-time.After(time.Second):
					_ = syscall.Kill(-w.pid, syscall.SIGKILL)
				}
			}()
			return
		}
		_ = syscall.Kill(-w.pid, syscall.SIGKILL)
		_ = w.cmd.Process.Kill()
	})
}

// Send queues a message for a worker. It never blocks; Flush writes.
func (p *Pool) Send(id ID, t wire.Type, msg any) {
	p.mu.Lock()
	w := p.workers[id]
	var c *wire.Conn
	if w != nil {
		c = w.conn
	}
	p.mu.Unlock()
	if c == nil {
		return
	}
	n, err := c.Append(t, msg)
	if err != nil || n > MaxOutbound {
		if p.cfg.Log != nil && !w.sendErr {
			p.cfg.Log(fmt.Sprintf("fabric: worker %d does not take its messages (%d bytes queued); stopping it", w.pid, n))
		}
		w.sendErr = true
		p.kill(w, true)
		return
	}
	// Marked for Flush after the append: a Flush that took the dirty list
	// before the message was in would otherwise leave it unwritten.
	p.mu.Lock()
	if !w.dirty {
		w.dirty = true
		p.dirty = append(p.dirty, w)
	}
	p.mu.Unlock()
}

// Flush writes what Send queued, without waiting: what a socket does not
// take at once goes to that worker's writer goroutine.
func (p *Pool) Flush() {
	p.mu.Lock()
	dirty := p.dirty
	p.dirty = nil
	for _, w := range dirty {
		w.dirty = false
	}
	p.mu.Unlock()
	for _, w := range dirty {
		if !w.conn.TryFlush() {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (p *Pool) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(wire.NewConn(c))
		}()
	}
}

// serve reads one worker connection until it closes.
func (p *Pool) serve(c *wire.Conn) {
	defer c.Close()
	t, body, err := c.Recv()
	if err != nil || t != wire.TypeReady {
		return
	}
	var r wire.Ready
	if wire.Unmarshal(body, &r) != nil {
		return
	}
	p.mu.Lock()
	w := p.byPid[r.Pid]
	if w == nil {
		// Its start may not be recorded yet: wait for the starts under way.
		p.mu.Unlock()
		p.awaitStarts()
		p.mu.Lock()
		w = p.byPid[r.Pid]
	}
	if w == nil || w.conn != nil {
		p.mu.Unlock()
		return // not ours, or a second connection claiming the same worker
	}
	w.conn = c
	p.mu.Unlock()
	<-w.started
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.writeLoop(w)
	}()
	p.cfg.Ready(w.id, r.Error)
	if r.Error != "" {
		p.kill(w, true)
		return
	}
	for {
		t, body, err := c.Recv()
		if err != nil {
			p.kill(w, true)
			return
		}
		msg, err := Decode(t, body)
		if err != nil {
			if p.cfg.Log != nil {
				p.cfg.Log(fmt.Sprintf("fabric: worker %d sent a bad %s message: %v; stopping it", w.pid, t, err))
			}
			p.kill(w, true)
			return
		}
		p.cfg.Message(w.id, msg)
		if !c.FrameReady() {
			p.Flush() // replies go out once the frames at hand are handled
		}
	}
}

// awaitStarts waits for the starts under way to be recorded.
func (p *Pool) awaitStarts() {
	p.startMu.Lock()
	p.starts++ // counted, and a critical section that is not empty
	p.startMu.Unlock()
}

// writeLoop writes what Flush left, outside every lock of the agent.
func (p *Pool) writeLoop(w *proc) {
	for {
		select {
		case <-w.exited:
			return
		case <-w.wake:
			if err := w.conn.Flush(); err != nil {
				p.kill(w, true)
				return
			}
		}
	}
}

// Decode decodes a message a worker sends to the agent.
func Decode(t wire.Type, body []byte) (any, error) {
	var err error
	var msg any
	switch t {
	case wire.TypeDone:
		msg, err = wire.DecodeDone(body)
	case wire.TypeOutput:
		var m wire.Output
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeUnpin:
		var m wire.Unpin
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeSubmit:
		msg, err = wire.DecodeSubmit(body)
	case wire.TypeCreate:
		var m wire.Create
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypePut:
		var m wire.Put
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeGet:
		var m wire.Get
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeWait:
		var m wire.Wait
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeCancel:
		var m wire.Cancel
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeRelease:
		var m wire.Release
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeActorLookup:
		var m wire.ActorLookup
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeActorKill:
		var m wire.ActorKill
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeGroupCreate:
		var m wire.GroupCreate
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeGroupWait:
		var m wire.GroupWait
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeGroupRemove:
		var m wire.GroupRemove
		err = wire.Unmarshal(body, &m)
		msg = m
	default:
		return nil, fmt.Errorf("%w %s", wire.ErrUnknownType, t)
	}
	return msg, err
}

// Count returns the number of live worker processes.
func (p *Pool) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.workers)
}

// Close kills every worker, stops listening and waits for the pool's
// goroutines.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	ws := make([]*proc, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	for _, w := range ws {
		p.kill(w, true)
	}
	_ = p.ln.Close()
	p.wg.Wait()
}
