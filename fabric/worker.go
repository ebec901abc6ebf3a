package fabric

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
)

// workerProc is one worker process of a job.
type workerProc struct {
	n     *Node
	job   *job
	cmd   *exec.Cmd
	pid   int
	conn  *wire.Conn
	ready bool
	dead  bool
	// task is the execution it runs now (nil when idle).
	task *task
	// queued are executions sent to it behind task (actor calls are
	// pipelined: the worker runs them in order as soon as task is done).
	queued []*task
	// actor is set for a worker dedicated to one actor.
	actor *actor
	// killReason, when set before a kill, becomes the error of the task.
	killReason *abi.ErrorValue
	// pins are arena objects pinned for the worker, released on Unpin or death.
	pins map[objects.ID]int
	// partial output lines per stream, for prefixing.
	partial [4][]byte
	exited  chan struct{}
	wake    chan struct{} // tells writeLoop that send buffered something
	once    sync.Once
	// dirty is set while it is in Node.dirty.
	dirty bool
	// stopping is set by kill: a dying worker gets no more executions.
	stopping atomic.Bool
	// creates are arena reservations it made and has not stored yet;
	// they are aborted if it dies.
	creates map[objects.ID]struct{}
}

// startWorker launches a worker process for j. Caller holds n.mu.
func (n *Node) startWorker(j *job) (*workerProc, error) {
	args := append([]string(nil), n.cfg.WorkerCommand[1:]...)
	args = append(args,
		"--socket", n.sock,
		"--module", j.modulePath,
		"--cache-dir", n.cfg.CacheDir,
		"--node-id", string(n.nodeID),
		"--memory", strconv.FormatInt(n.cfg.GuestMemoryLimit, 10),
		"--output-cap", strconv.FormatInt(n.cfg.OutputCap, 10),
		"--arena-fd", "3",
		"--arena-size", strconv.FormatInt(n.shm.Size(), 10),
		"--process-limit", strconv.FormatInt(n.cfg.GuestMemoryLimit+2<<30, 10),
	)
	cmd := exec.Command(n.cfg.WorkerCommand[0], args...)
	cmd.Env = append(os.Environ(), "FABRIC_WORKER=1")
	cmd.ExtraFiles = []*os.File{n.shm.File()}
	cmd.Stdout = os.Stderr
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 64 << 10}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("fabric: start worker: %w", err)
	}
	w := &workerProc{n: n, job: j, cmd: cmd, pid: cmd.Process.Pid, pins: map[objects.ID]int{}, exited: make(chan struct{}), wake: make(chan struct{}, 1)}
	n.workers[w.pid] = w
	n.nworkers++
	j.workers[w] = struct{}{}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		err := cmd.Wait()
		close(w.exited)
		n.workerExited(w, err, stderr.String())
	}()
	return w, nil
}

type limitedBuffer struct {
	mu  sync.Mutex
	b   *bytes.Buffer
	max int
}

// Write keeps the last max bytes written.
func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if extra := l.b.Len() - l.max; extra > 0 {
		l.b.Next(extra)
	}
	return len(p), nil
}

// profiling is set when workers write CPU profiles and need a SIGTERM to
// flush them before they are killed.
var profiling = os.Getenv("FABRIC_CPUPROFILE") != ""

// inFlight counts the executions sent to the worker and not done.
func (w *workerProc) inFlight() int {
	n := len(w.queued)
	if w.task != nil {
		n++
	}
	return n
}

// kill stops the worker process; its exit is handled by workerExited.
func (w *workerProc) kill() {
	w.stopping.Store(true)
	w.once.Do(func() {
		if w.cmd.Process != nil && profiling && w.killReason == nil {
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
			go func() {
				select {
				case <-w.exited:
				case <-time.After(time.Second):
					_ = syscall.Kill(-w.pid, syscall.SIGKILL)
				}
			}()
			return
		}
		if w.cmd.Process != nil {
			_ = syscall.Kill(-w.pid, syscall.SIGKILL)
			_ = w.cmd.Process.Kill()
		}
	})
}

// maxOutbound bounds what the agent buffers for one worker; a worker that
// stops reading past it is stopped.
const maxOutbound = 256 << 20

// send buffers a message for the worker's writer goroutine. It never
// blocks, so it is safe under n.mu.
func (w *workerProc) send(t wire.Type, msg any) {
	if w.conn == nil {
		return
	}
	n, err := w.conn.Append(t, msg)
	if err != nil || n > maxOutbound {
		w.kill()
		return
	}
	if w.n.handling {
		// A worker's message is being handled: write at its end, from
		// the reading goroutine (flushDirty), sparing a hand-off.
		if !w.dirty {
			w.dirty = true
			w.n.dirty = append(w.n.dirty, w)
		}
		return
	}
	w.wakeWriter()
}

func (w *workerProc) wakeWriter() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// flushDirty writes what handlers buffered for workers, without waiting:
// what a socket does not take at once goes to that worker's writer
// goroutine.
func (n *Node) flushDirty() {
	n.mu.Lock()
	dirty := n.dirty
	n.dirty = nil
	for _, w := range dirty {
		w.dirty = false
	}
	n.mu.Unlock()
	for _, w := range dirty {
		if !w.conn.TryFlush() {
			w.wakeWriter()
		}
	}
}

// writeLoop writes what send buffered, outside every lock of the agent.
func (w *workerProc) writeLoop() {
	for {
		select {
		case <-w.exited:
			return
		case <-w.wake:
			if err := w.conn.Flush(); err != nil {
				w.kill()
				return
			}
		}
	}
}

// serveWorker reads one worker connection until it closes.
func (n *Node) serveWorker(c *wire.Conn) {
	defer c.Close()
	t, body, err := c.Recv()
	if err != nil || t != wire.TypeReady {
		return
	}
	var r wire.Ready
	if wire.Unmarshal(body, &r) != nil {
		return
	}
	n.mu.Lock()
	w := n.workers[r.Pid]
	if w == nil || w.dead {
		n.mu.Unlock()
		return
	}
	if w.conn != nil {
		n.mu.Unlock()
		return // a second connection claiming the same worker
	}
	w.conn = c
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		w.writeLoop()
	}()
	if r.Error != "" {
		j := w.job
		n.mu.Unlock()
		j.fail(fmt.Errorf("worker could not load the module: %s", r.Error))
		w.kill()
		return
	}
	w.ready = true
	if w.actor == nil {
		w.job.starting = max(0, w.job.starting-1)
	}
	n.workerIdle(w)
	n.mu.Unlock()
	for {
		t, body, err := c.Recv()
		if err != nil {
			w.kill()
			return
		}
		err = n.handle(w, t, body)
		if err != nil || !c.FrameReady() {
			n.flushDirty() // replies go out once the frames at hand are handled
		}
		if err != nil {
			fmt.Fprintf(n.cfg.Stderr, "fabric: worker %d sent a bad %s message: %v; stopping it\n", w.pid, t, err)
			w.kill()
			return
		}
	}
}

// workerExited cleans up after a worker process ended.
func (n *Node) workerExited(w *workerProc, waitErr error, stderr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !w.ready && w.actor == nil {
		w.job.starting = max(0, w.job.starting-1)
	}
	w.dead = true
	delete(n.workers, w.pid)
	n.nworkers--
	delete(w.job.workers, w)
	w.job.removeIdle(w)
	for id, c := range w.pins {
		for range c {
			n.store.Unpin(id)
		}
	}
	w.pins = nil
	for id := range w.creates {
		n.store.Abort(id)
	}
	w.creates = nil
	cause := "worker process exited"
	if waitErr != nil {
		cause = "worker process " + waitErr.Error()
	}
	if stderr != "" {
		cause += ": " + lastLines(stderr, 8)
	}
	if t := w.task; t != nil {
		w.task = nil
		n.flushOutput(w, t)
		n.executionLost(t, w, cause)
	}
	w.killReason = nil // it was for the running execution only
	queued := w.queued
	w.queued = nil
	for _, t := range queued {
		if t.kind == wire.ExecTask {
			n.requeueUnstarted(t)
			continue
		}
		n.executionLost(t, w, cause)
	}
	if a := w.actor; a != nil && a.worker == w {
		n.actorLost(a, w, cause)
	}
	n.schedule()
	n.pump(w.job)
}

func lastLines(s string, k int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// workerIdle hands an idle task worker the next queued execution. Caller holds n.mu.
func (n *Node) workerIdle(w *workerProc) {
	if w.dead || !w.ready || w.stopping.Load() {
		return
	}
	if w.actor != nil {
		n.actorWorkerReady(w.actor, w)
		return
	}
	j := w.job
	if j.done {
		w.kill()
		return
	}
	if len(j.queue) > 0 {
		t := j.queue[0]
		j.queue = j.queue[1:]
		n.run(w, t)
		n.topUp(w)
		return
	}
	j.idle = append(j.idle, w)
}

// pump starts workers for queued executions of j. Caller holds n.mu.
func (n *Node) pump(j *job) {
	for !j.done && len(j.queue) > 0 && len(j.idle) > 0 {
		w := j.idle[len(j.idle)-1]
		j.idle = j.idle[:len(j.idle)-1]
		t := j.queue[0]
		j.queue = j.queue[1:]
		n.run(w, t)
		n.topUp(w)
	}
	for !j.done && len(j.queue) > j.starting && n.nworkers < n.cfg.MaxWorkers && !n.closed {
		if _, err := n.startWorker(j); err != nil {
			fmt.Fprintf(n.cfg.Stderr, "fabric: %v\n", err)
			return
		}
		j.starting++
	}
}
