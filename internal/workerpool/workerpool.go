// Package workerpool starts and stops an agent's worker processes (`fabric
// worker`) and carries messages to and from them over the agent's Unix
// socket. It knows nothing of tasks: the agent's core decides what runs
// where, and the pool reports what happened to its workers.
//
// A worker, as the agent sees it, is one lane of a worker process: one
// instance of the job's module, which runs one execution at a time. A
// process hosts every lane of its group (the agent's job) on this node,
// each on goroutines of its own, so a worker costs an instance, not a
// process; groups never share a process. The pool starts a group's process
// with its first lane and stops it once its last lane is closed.
//
// Each process is of its own process group, killed with SIGKILL on the
// group, and dies with the agent (Pdeathsig). It maps the object arena
// (passed as file descriptor 3), connects to the socket and says Ready with
// its pid; the pool matches the pid to the process it started and then
// opens its lanes. One goroutine per process reads its frames, decodes
// them and hands them to the agent by lane; sends never block: they append
// to the connection's buffer, which Flush writes without waiting, leaving
// what a full socket does not take to the process's own writer goroutine.
// A process that stops reading past MaxOutbound bytes is stopped.
package workerpool

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wasmfabric/fabric/internal/wire"
)

// ID names a worker (a lane of a worker process); the agent chooses it,
// from 1.
type ID uint64

// MaxOutbound bounds what the pool buffers for one process.
const MaxOutbound = 256 << 20

// CloseGrace is how long a lane asked to close has to answer before its
// process is killed (with every other lane of its group): an instance that
// does not stop within it is stuck in a host call or defeats the
// interruption points.
const CloseGrace = 2 * time.Second

// Config configures a pool.
type Config struct {
	// Command starts a worker process; the pool appends the flags.
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
	// GuestMemoryLimit caps each guest's linear memory.
	GuestMemoryLimit int64
	// ProcessLimit caps each worker process's data segment (RLIMIT_DATA),
	// all its instances together (0: the machine's memory, and at least
	// GuestMemoryLimit + 2 GiB). It counts the guest memory instances
	// have grown to, touched or not (a Go guest starts at about 4 MiB of
	// which it touches about 0.5), so it is not a per-job memory quota:
	// it stops a runaway process before the machine's OOM killer has to,
	// and that killer picks worker processes first (oom_score_adj).
	ProcessLimit int64
	// OutputCap bounds the output kept per call.
	OutputCap int64
	// Profiling makes Kill send SIGTERM first, so that workers writing CPU
	// profiles flush them.
	Profiling bool

	// Ready is called when a worker's instance is ready (err empty) or
	// when its process could not load the module or it could not make the
	// instance (err says why).
	Ready func(id ID, err string)
	// Message is called with each message a worker sends, decoded; an
	// undecodable one stops its process.
	Message func(id ID, msg any)
	// Exited is called once for each worker that Start accepted, when it
	// is gone: closed, or its process ended (cause says how, with the last
	// lines the process wrote to stderr).
	Exited func(id ID, cause string)
	// Log receives the pool's own messages.
	Log func(string)
}

// Pool is the worker processes of one agent.
type Pool struct {
	cfg Config
	ln  net.Listener
	wg  sync.WaitGroup

	// startMu orders starts: a process that connects before its start was
	// recorded waits for it. mu guards the tables and is never held while
	// a process starts, so Send never waits for a fork.
	startMu sync.Mutex
	starts  int // connections that waited for a start to be recorded
	mu      sync.Mutex
	lanes   map[ID]*lane
	groups  map[string]*proc // the process that takes a group's new lanes
	procs   map[*proc]struct{}
	byPid   map[int]*proc
	dirty   []*proc
	closed  bool
	// warm are the modules a process has loaded (compiled into the cache
	// directory), and warming the ones a first process is compiling: the
	// others wait for it, so that a burst of new processes of one module
	// compiles it once, not once each at a fraction of the CPU.
	warm    map[string]bool
	warming map[string]chan struct{}
	// lingers are the groups whose process outlives its last lane, by
	// how long (Linger); lingering counts the processes that do now.
	lingers   map[string]lingerSpec
	lingering int
	// lingeringBy counts the lingering processes of each owner (a
	// tenant), and lingerSeq orders them by when they began.
	lingeringBy  map[string]int
	lingerSeq    uint64
	maxLingering int // MaxLingering; tests set fewer
}

// lingerSpec is how long a group's process lingers, and whose it is.
type lingerSpec struct {
	d     time.Duration
	owner string
}

// MaxLingering bounds the processes that linger at once. The owners
// share the places: when all are taken, a process whose owner holds at
// least two fewer than the owner holding the most takes the oldest of
// that one's places; else it stops, lingering or not. One tenant's many
// deployments at zero do not keep another's from lingering.
const MaxLingering = 32

// proc is one worker process.
type proc struct {
	group   string
	cmd     *exec.Cmd
	pid     int
	conn    *wire.Conn    // set when it connected
	started chan struct{} // closed once the fork is done
	exited  chan struct{}
	wake    chan struct{}
	once    sync.Once
	// Under Pool.mu:
	startErr error // the fork failed
	dirty    bool
	sendErr  bool // a send failed: the process is being stopped
	loaded   bool // it said Ready: its lanes may be opened
	module   string
	gate     chan struct{} // closed when it loaded or failed, if it was the first of its module
	path     string        // its module's path
	// lanes are its workers, opened or not.
	lanes map[ID]*lane
	// retiring is set once it takes no new lanes: its last lane closed,
	// or it failed.
	retiring bool
	// linger stops it once it has lingered long enough (no lanes, kept
	// for its group's next one); nil when it has lanes. lingerOwner and
	// lingerSeq are its owner's and when it began, while it lingers.
	linger      *time.Timer
	lingerOwner string
	lingerSeq   uint64
}

// lane is one worker: an instance in a process. Under Pool.mu.
type lane struct {
	id      ID
	proc    *proc
	started bool // Start reported the pid: it may be opened
	opened  bool // Open was sent
	closing bool // Kill was called
	timer   *time.Timer
}

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("workerpool: closed")

// New listens on cfg.Socket and returns the pool.
func New(cfg Config) (*Pool, error) {
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("workerpool: listen on worker socket: %w", err)
	}
	p := &Pool{cfg: cfg, ln: ln, lanes: map[ID]*lane{}, groups: map[string]*proc{},
		procs: map[*proc]struct{}{}, byPid: map[int]*proc{}, warm: map[string]bool{}, warming: map[string]chan struct{}{},
		lingers: map[string]lingerSpec{}, lingeringBy: map[string]int{}, maxLingering: MaxLingering}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Start starts worker id of group, an instance of the module at
// modulePath, in the group's process (started first if the group has
// none), and returns once the process runs. A new process is passed to
// place, when it is not nil, before it runs anything of a guest's (the
// agent puts it in its tenant's control group); an error kills it and
// fails the start. started is called with its pid before any other
// callback of the worker. After a nil return, Exited follows for id,
// sooner or later.
func (p *Pool) Start(id ID, group, modulePath string, place func(pid int) error, started func(pid int)) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	pr := p.groups[group]
	fresh := pr == nil
	if pr != nil && pr.linger != nil { // a lingering process takes its group's lane
		p.unlingerLocked(pr)
	}
	if fresh {
		pr = &proc{group: group, started: make(chan struct{}), exited: make(chan struct{}),
			wake: make(chan struct{}, 1), lanes: map[ID]*lane{}, path: modulePath}
		p.groups[group] = pr
		p.procs[pr] = struct{}{}
	}
	l := &lane{id: id, proc: pr}
	pr.lanes[id] = l
	p.lanes[id] = l
	p.mu.Unlock()
	if fresh {
		p.awaitWarm(pr, modulePath)
		p.spawn(pr, modulePath, place)
	}
	<-pr.started
	p.mu.Lock()
	if err := pr.startErr; err != nil {
		delete(p.lanes, id)
		delete(pr.lanes, id)
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	started(pr.pid)
	p.mu.Lock()
	l.started = true
	if pr.loaded && p.lanes[id] == l && !l.closing {
		p.openLocked(l)
	}
	p.mu.Unlock()
	p.Flush()
	return nil
}

// awaitWarm waits, before pr's process starts, until its module is warm
// (compiled in the cache by a process that loaded it) or no other process
// is compiling it, in which case pr's process is the one that does.
func (p *Pool) awaitWarm(pr *proc, module string) {
	for {
		p.mu.Lock()
		if p.warm[module] || p.closed {
			p.mu.Unlock()
			return
		}
		ch := p.warming[module]
		if ch == nil {
			ch = make(chan struct{})
			p.warming[module] = ch
			pr.module, pr.gate = module, ch
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		<-ch
	}
}

// releaseGateLocked lets the processes waiting for pr's module start:
// warm when pr loaded it, else the next one compiles it.
func (p *Pool) releaseGateLocked(pr *proc, loaded bool) {
	if pr.gate == nil {
		return
	}
	if loaded {
		p.warm[pr.module] = true
	}
	delete(p.warming, pr.module)
	close(pr.gate)
	pr.gate = nil
}

// spawn starts pr's process and closes pr.started.
func (p *Pool) spawn(pr *proc, modulePath string, place func(pid int) error) {
	limit := p.cfg.ProcessLimit
	if limit <= 0 {
		limit = max(p.cfg.GuestMemoryLimit+2<<30, physicalMemory())
	}
	cacheDir := ""
	if p.cfg.CacheDir != "" {
		cacheDir = CompiledDir(p.cfg.CacheDir, modulePath)
		// Used now: the collector removes the least recently used first.
		if err := os.MkdirAll(cacheDir, 0o700); err == nil {
			now := time.Now()
			_ = os.Chtimes(cacheDir, now, now)
		}
	}
	args := append([]string(nil), p.cfg.Command[1:]...)
	args = append(args,
		"--socket", p.cfg.Socket,
		"--module", modulePath,
		"--cache-dir", cacheDir,
		"--node-id", p.cfg.NodeID,
		"--memory", strconv.FormatInt(p.cfg.GuestMemoryLimit, 10),
		"--output-cap", strconv.FormatInt(p.cfg.OutputCap, 10),
		"--arena-fd", "3",
		"--arena-size", strconv.FormatInt(p.cfg.ArenaSize, 10),
		"--process-limit", strconv.FormatInt(limit, 10),
	)
	// A process to place waits, before it does anything, for a byte on
	// a pipe (descriptor 4) that is written once it is placed.
	var gateR, gateW *os.File
	if place != nil {
		var err error
		if gateR, gateW, err = os.Pipe(); err != nil {
			p.mu.Lock()
			p.releaseGateLocked(pr, false)
			pr.startErr = fmt.Errorf("workerpool: start worker: %w", err)
			pr.retiring = true
			delete(p.procs, pr)
			if p.groups[pr.group] == pr {
				delete(p.groups, pr.group)
			}
			p.mu.Unlock()
			close(pr.started)
			return
		}
		defer gateW.Close()
		args = append(args, "--start-fd", "4")
	}
	cmd := exec.Command(p.cfg.Command[0], args...)
	cmd.Env = append(os.Environ(), "FABRIC_WORKER=1")
	cmd.ExtraFiles = []*os.File{p.cfg.Arena}
	if gateR != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, gateR)
	}
	cmd.Stdout = os.Stderr
	var stderr bytes.Buffer
	errTail := &tailBuffer{b: &stderr, max: 64 << 10}
	cmd.Stderr = errTail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr.cmd = cmd
	fail := func(err error) {
		p.mu.Lock()
		p.releaseGateLocked(pr, false)
		pr.startErr = err
		pr.retiring = true
		delete(p.procs, pr)
		if p.groups[pr.group] == pr {
			delete(p.groups, pr.group)
		}
		p.mu.Unlock()
		close(pr.started)
	}
	p.startMu.Lock()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.startMu.Unlock()
		if gateR != nil {
			gateR.Close()
		}
		fail(ErrClosed)
		return
	}
	err := cmd.Start()
	if gateR != nil {
		gateR.Close() // the process's copy stays open
	}
	if err != nil {
		p.startMu.Unlock()
		fail(fmt.Errorf("workerpool: start worker: %w", err))
		return
	}
	pr.pid = cmd.Process.Pid
	if place != nil {
		err := place(pr.pid)
		if err == nil {
			_, err = gateW.Write([]byte{1})
		}
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			p.startMu.Unlock()
			fail(fmt.Errorf("workerpool: start worker: %w", err))
			return
		}
	}
	p.mu.Lock()
	p.byPid[pr.pid] = pr
	p.mu.Unlock()
	p.startMu.Unlock()
	close(pr.started)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := cmd.Wait()
		close(pr.exited)
		cause := "worker process exited"
		if err != nil {
			cause = "worker process " + err.Error()
		}
		if s := errTail.String(); s != "" {
			cause += ": " + s
		}
		p.mu.Lock()
		p.releaseGateLocked(pr, false)
		delete(p.procs, pr)
		delete(p.byPid, pr.pid)
		if p.groups[pr.group] == pr {
			delete(p.groups, pr.group)
		}
		if pr.linger != nil { // it died lingering
			p.unlingerLocked(pr)
		}
		pr.retiring = true
		gone := p.dropLanesLocked(pr)
		p.mu.Unlock()
		for _, l := range gone {
			p.cfg.Exited(l.id, cause)
		}
	}()
}

// physicalMemory returns the machine's memory in bytes (0 if unknown).
func physicalMemory() int64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// dropLanesLocked removes every lane of pr and returns them in ID order.
func (p *Pool) dropLanesLocked(pr *proc) []*lane {
	gone := make([]*lane, 0, len(pr.lanes))
	for _, l := range pr.lanes {
		gone = append(gone, l)
		delete(p.lanes, l.id)
		if l.timer != nil {
			l.timer.Stop()
		}
	}
	pr.lanes = map[ID]*lane{}
	slices.SortFunc(gone, func(a, b *lane) int { return compareIDs(a.id, b.id) })
	return gone
}

func compareIDs(a, b ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// openLocked sends Open for l.
func (p *Pool) openLocked(l *lane) {
	l.opened = true
	p.sendLocked(l.proc, wire.Lane(l.id), wire.TypeOpen, wire.Open{})
}

// removeLaneLocked forgets a lane and reports whether its process is now
// empty and must go.
func (p *Pool) removeLaneLocked(l *lane) bool {
	pr := l.proc
	delete(p.lanes, l.id)
	delete(pr.lanes, l.id)
	if l.timer != nil {
		l.timer.Stop()
	}
	if len(pr.lanes) > 0 || pr.retiring || pr.linger != nil {
		return false
	}
	if spec := p.lingers[pr.group]; spec.d > 0 && pr.loaded && !pr.sendErr && !p.closed && p.groups[pr.group] == pr && p.placeToLingerLocked(spec.owner) {
		p.lingering++
		p.lingeringBy[spec.owner]++
		p.lingerSeq++
		pr.lingerOwner, pr.lingerSeq = spec.owner, p.lingerSeq
		pr.linger = time.AfterFunc(spec.d, func() { p.stopLingering(pr) })
		return false
	}
	pr.retiring = true
	if p.groups[pr.group] == pr {
		delete(p.groups, pr.group)
	}
	return true
}

// placeToLingerLocked reports whether a process of owner may linger
// now: a place is free, or it takes the oldest place of the owner that
// holds the most, if that one holds at least two more (whose process
// stops). The caller holds p.mu.
func (p *Pool) placeToLingerLocked(owner string) bool {
	if p.lingering < p.maxLingering {
		return true
	}
	most := ""
	for o, n := range p.lingeringBy {
		if n > p.lingeringBy[most] || n == p.lingeringBy[most] && o < most {
			most = o
		}
	}
	if p.lingeringBy[most] < p.lingeringBy[owner]+2 {
		return false
	}
	var victim *proc
	for pr := range p.procs {
		if pr.linger != nil && pr.lingerOwner == most && (victim == nil || pr.lingerSeq < victim.lingerSeq) {
			victim = pr
		}
	}
	if victim == nil {
		return false
	}
	p.unlingerLocked(victim)
	victim.retiring = true
	if p.groups[victim.group] == victim {
		delete(p.groups, victim.group)
	}
	p.kill(victim, false)
	return true
}

// unlingerLocked ends pr's lingering: it takes a lane, stops or died.
// The caller holds p.mu.
func (p *Pool) unlingerLocked(pr *proc) {
	pr.linger.Stop()
	pr.linger = nil
	p.lingering--
	if p.lingeringBy[pr.lingerOwner]--; p.lingeringBy[pr.lingerOwner] == 0 {
		delete(p.lingeringBy, pr.lingerOwner)
	}
}

// Linger keeps the process of group, owner's (a tenant), once its last
// lane closes, for d more: a lane the group starts meanwhile opens in it
// at once, with its module loaded (a deployment's replicas scaled to zero
// and back). d = 0 ends that, and stops the group's process if it
// lingers now.
func (p *Pool) Linger(group, owner string, d time.Duration) {
	p.mu.Lock()
	if d > 0 {
		p.lingers[group] = lingerSpec{d: d, owner: owner}
		p.mu.Unlock()
		return
	}
	delete(p.lingers, group)
	pr := p.groups[group]
	p.mu.Unlock()
	if pr != nil {
		p.stopLingering(pr)
	}
}

// stopLingering stops pr if it lingers.
func (p *Pool) stopLingering(pr *proc) {
	p.mu.Lock()
	if pr.linger == nil || len(pr.lanes) > 0 {
		p.mu.Unlock()
		return
	}
	p.unlingerLocked(pr)
	pr.retiring = true
	if p.groups[pr.group] == pr {
		delete(p.groups, pr.group)
	}
	p.mu.Unlock()
	p.kill(pr, false)
}

// Lingering counts the processes that linger now.
func (p *Pool) Lingering() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lingering
}

// tailBuffer keeps what a process writes to stderr: the first line
// that says why Go's runtime gave up (a crash dump lists every goroutine,
// and a process hosting thousands of lanes has thousands), and the last
// max bytes.
type tailBuffer struct {
	mu    sync.Mutex
	b     *bytes.Buffer
	max   int
	head  []byte // the first headMax bytes
	fatal string // the first "fatal error:" or "panic:" line
}

const headMax = 4 << 10

func (l *tailBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := headMax - len(l.head); room > 0 {
		l.head = append(l.head, p[:min(room, len(p))]...)
		if l.fatal == "" {
			for _, line := range bytes.Split(l.head, []byte("\n")) {
				if bytes.HasPrefix(line, []byte("fatal error:")) || bytes.HasPrefix(line, []byte("panic:")) ||
					bytes.HasPrefix(line, []byte("runtime:")) {
					l.fatal = string(line)
					break
				}
			}
		}
	}
	l.b.Write(p)
	if extra := l.b.Len() - l.max; extra > 0 {
		l.b.Next(extra)
	}
	return len(p), nil
}

// String is the last lines written, after the line that says why the
// process crashed when they do not hold it.
func (l *tailBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	tail := lastLines(l.b.String(), 8)
	if tail == "" || l.fatal == "" || strings.Contains(tail, l.fatal) {
		return tail
	}
	return l.fatal + " ... " + tail
}

func lastLines(s string, k int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// Kill closes a worker: its instance is discarded, and the execution it
// runs ends without a Done. Exited follows. Like Send, it queues its
// message for Flush. A worker that does not close
// within CloseGrace is stopped with its whole process. Unknown IDs are
// ignored. Kill never blocks and never calls back before it returns.
func (p *Pool) Kill(id ID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lanes[id]
	if l == nil || l.closing {
		return
	}
	l.closing = true
	pr := l.proc
	if !l.opened { // nothing of it runs
		last := p.removeLaneLocked(l)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.cfg.Exited(id, "worker stopped before it started")
		}()
		if last {
			p.kill(pr, false)
		}
		return
	}
	p.sendLocked(pr, wire.Lane(id), wire.TypeClose, wire.Close{})
	l.timer = time.AfterFunc(CloseGrace, func() {
		p.mu.Lock()
		stuck := p.lanes[id] == l
		p.mu.Unlock()
		if stuck {
			if p.cfg.Log != nil {
				p.cfg.Log(fmt.Sprintf("fabric: a worker of process %d did not stop within %s of being closed; stopping the process", pr.pid, CloseGrace))
			}
			p.kill(pr, true)
		}
	})
}

func (p *Pool) kill(pr *proc, hard bool) {
	pr.once.Do(func() {
		if pr.cmd == nil || pr.cmd.Process == nil {
			return
		}
		if p.cfg.Profiling && !hard {
			_ = syscall.Kill(pr.pid, syscall.SIGTERM)
			go func() {
				select {
				case <-pr.exited:
				case <-time.After(time.Second):
					_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
				}
			}()
			return
		}
		_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
		_ = pr.cmd.Process.Kill()
	})
}

// Send queues a message for a worker. It never blocks; Flush writes.
func (p *Pool) Send(id ID, t wire.Type, msg any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.lanes[id]; l != nil && l.opened {
		p.sendLocked(l.proc, wire.Lane(id), t, msg)
	}
}

// sendLocked appends a frame to pr's buffer and marks it for Flush.
func (p *Pool) sendLocked(pr *proc, lane wire.Lane, t wire.Type, msg any) {
	c := pr.conn
	if c == nil || pr.sendErr {
		return
	}
	n, err := c.Append(lane, t, msg)
	if err != nil || n > MaxOutbound {
		if p.cfg.Log != nil {
			p.cfg.Log(fmt.Sprintf("fabric: worker process %d does not take its messages (%d bytes queued); stopping it", pr.pid, n))
		}
		pr.sendErr = true
		p.kill(pr, true)
		return
	}
	if !pr.dirty {
		pr.dirty = true
		p.dirty = append(p.dirty, pr)
	}
}

// Flush writes what Send queued, without waiting: what a socket does not
// take at once goes to that worker's writer goroutine.
func (p *Pool) Flush() {
	p.mu.Lock()
	dirty := p.dirty
	p.dirty = nil
	for _, pr := range dirty {
		pr.dirty = false
	}
	p.mu.Unlock()
	for _, pr := range dirty {
		if !pr.conn.TryFlush() {
			select {
			case pr.wake <- struct{}{}:
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

// serve reads one worker process's connection until it closes.
func (p *Pool) serve(c *wire.Conn) {
	defer c.Close()
	lane, t, body, err := c.Recv()
	if err != nil || t != wire.TypeReady || lane != wire.ProcessLane {
		return
	}
	var r wire.Ready
	if wire.Unmarshal(body, &r) != nil {
		return
	}
	p.mu.Lock()
	pr := p.byPid[r.Pid]
	if pr == nil {
		// Its start may not be recorded yet: wait for the starts under way.
		p.mu.Unlock()
		p.awaitStarts()
		p.mu.Lock()
		pr = p.byPid[r.Pid]
	}
	if pr == nil || pr.conn != nil {
		p.mu.Unlock()
		return // not ours, or a second connection claiming the same process
	}
	pr.conn = c
	p.mu.Unlock()
	<-pr.started
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.writeLoop(pr)
	}()
	if r.Error != "" {
		p.loadFailed(pr, r.Error)
		return
	}
	p.mu.Lock()
	pr.loaded = true
	p.releaseGateLocked(pr, true)
	for _, l := range pr.lanes {
		if l.started && !l.opened && !l.closing {
			p.openLocked(l)
		}
	}
	p.mu.Unlock()
	p.Flush()
	for {
		lane, t, body, err := c.Recv()
		if err != nil {
			p.kill(pr, true)
			return
		}
		if err := p.handle(pr, ID(lane), t, body); err != nil {
			if p.cfg.Log != nil {
				p.cfg.Log(fmt.Sprintf("fabric: worker process %d sent a bad %s message: %v; stopping it", pr.pid, t, err))
			}
			p.kill(pr, true)
			return
		}
		if !c.FrameReady() {
			p.Flush() // replies go out once the frames at hand are handled
		}
	}
}

// loadFailed reports a process that could not load its module to each
// of its lanes that may hear it, and stops the process.
func (p *Pool) loadFailed(pr *proc, reason string) {
	p.mu.Lock()
	p.releaseGateLocked(pr, false)
	var told []ID
	for _, l := range pr.lanes {
		if l.started && !l.closing {
			told = append(told, l.id)
		}
	}
	p.mu.Unlock()
	slices.Sort(told)
	for _, id := range told {
		p.cfg.Ready(id, reason)
	}
	p.kill(pr, true)
}

// handle takes one frame of a process, on one of its lanes.
func (p *Pool) handle(pr *proc, id ID, t wire.Type, body []byte) error {
	p.mu.Lock()
	l := pr.lanes[id]
	p.mu.Unlock()
	if l == nil {
		if id == ID(wire.ProcessLane) {
			return fmt.Errorf("a %s message on the process lane", t)
		}
		return nil // a lane that closed, or that Kill forgot before it opened
	}
	switch t {
	case wire.TypeReady:
		var r wire.Ready
		if err := wire.Unmarshal(body, &r); err != nil {
			return err
		}
		p.cfg.Ready(id, r.Error)
	case wire.TypeClosed:
		p.mu.Lock()
		if p.lanes[id] != l || !l.closing {
			p.mu.Unlock()
			return errors.New("closed a worker it was not asked to close")
		}
		last := p.removeLaneLocked(l)
		p.mu.Unlock()
		p.cfg.Exited(id, "worker stopped")
		if last {
			p.kill(pr, false)
		}
	default:
		msg, err := Decode(t, body)
		if err != nil {
			return err
		}
		p.cfg.Message(id, msg)
	}
	return nil
}

// awaitStarts waits for the starts under way to be recorded.
func (p *Pool) awaitStarts() {
	p.startMu.Lock()
	p.starts++ // counted, and a critical section that is not empty
	p.startMu.Unlock()
}

// writeLoop writes what Flush left, outside every lock of the agent.
func (p *Pool) writeLoop(pr *proc) {
	for {
		select {
		case <-pr.exited:
			return
		case <-pr.wake:
			if err := pr.conn.Flush(); err != nil {
				p.kill(pr, true)
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
	case wire.TypeContext:
		var m wire.Context
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeCluster:
		var m wire.Cluster
		err = wire.Unmarshal(body, &m)
		msg = m
	case wire.TypeGroups:
		var m wire.Groups
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
	case wire.TypeLeaseOver:
		var m wire.LeaseOver
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
	return len(p.procs)
}

// Workers returns the number of workers (lanes) started and not gone.
func (p *Pool) Workers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lanes)
}

// Close kills every worker process, stops listening and waits for the
// pool's goroutines.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	prs := make([]*proc, 0, len(p.procs))
	for pr := range p.procs {
		prs = append(prs, pr)
	}
	p.mu.Unlock()
	for _, pr := range prs {
		<-pr.started
		p.kill(pr, true)
	}
	_ = p.ln.Close()
	p.wg.Wait()
}

// CompiledDir is where the workers of the module at modulePath keep its
// compiled code under the pool's cache directory: a directory of its own
// per module (named by the module file's name, its digest), so that the
// code of one module can be told apart, by use, and removed.
func CompiledDir(cacheDir, modulePath string) string {
	return filepath.Join(cacheDir, "modules", strings.TrimSuffix(filepath.Base(modulePath), ".wasm"))
}

// DropCompiled removes the compiled code of the module at modulePath,
// unless a process of the pool runs or starts it, and reports whether it
// did. Processes that start meanwhile wait until it is gone, and the first
// of them compiles the module again, once for all.
func (p *Pool) DropCompiled(modulePath string) bool {
	if p.cfg.CacheDir == "" {
		return false
	}
	p.mu.Lock()
	if p.closed || p.warming[modulePath] != nil {
		p.mu.Unlock()
		return false
	}
	for pr := range p.procs {
		if pr.path == modulePath {
			p.mu.Unlock()
			return false
		}
	}
	gate := make(chan struct{})
	p.warming[modulePath] = gate // starts wait in awaitWarm
	delete(p.warm, modulePath)
	p.mu.Unlock()
	err := os.RemoveAll(CompiledDir(p.cfg.CacheDir, modulePath))
	p.mu.Lock()
	delete(p.warming, modulePath)
	close(gate)
	p.mu.Unlock()
	return err == nil
}
