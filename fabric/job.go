package fabric

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/sandbox"
)

// job is one run of a module's driver with everything it started.
type job struct {
	id         string
	modulePath string
	workers    map[*workerProc]struct{}
	idle       []*workerProc
	queue      []*task // placed executions waiting for a worker
	starting   int
	done       bool
	driver     *task
	result     chan error
	once       sync.Once
	runTimes   map[string]time.Duration // mean run time of each task function
	// root is the node whose driver runs the job ("": this node); a job
	// with a root elsewhere is this node's share of it (peers.go).
	root string
	// ctx ends with the job: calls and fetches made for it end too.
	ctx    context.Context
	cancel context.CancelFunc
	// sentTo are the nodes this job sent work to, told when it ends.
	sentTo map[string]struct{}
	// exports are holds on objects kept for other nodes.
	exports map[exportKey]int
	// stdout and stderr receive guest output; at the job's root they
	// write to out, which never blocks.
	stdout, stderr io.Writer
	out            *jobOutput
}

// digest is the SHA-256 of the job's module, its name among the node's modules.
func (j *job) digest() string { return strings.TrimSuffix(filepath.Base(j.modulePath), ".wasm") }

func (j *job) fail(err error) {
	j.once.Do(func() { j.result <- err })
}

func (j *job) removeIdle(w *workerProc) {
	for i, x := range j.idle {
		if x == w {
			j.idle = append(j.idle[:i], j.idle[i+1:]...)
			return
		}
	}
}

func newID() objects.ID {
	var id objects.ID
	if _, err := rand.Read(id[:16]); err != nil {
		panic(err)
	}
	return id
}

// RunJob runs the module's `main` with args on this node and returns its
// error. ctx bounds the whole job: when it ends, the job's workers are killed.
// Output goes to the node's Stdout and Stderr.
func (n *Node) RunJob(ctx context.Context, wasm []byte, args []string) error {
	return n.RunJobWith(ctx, wasm, args, JobOptions{})
}

// JobOptions are per-job settings of RunJobWith.
type JobOptions struct {
	// Stdout and Stderr receive the job's guest output (nil: the node's).
	// A writer that blocks holds up only this job's output: past
	// OutputBuffer bytes not yet written, output is dropped, and a notice
	// on Stderr says how much.
	Stdout, Stderr io.Writer
	// OutputBuffer bounds the output held for the writers (0:
	// DefaultOutputBuffer).
	OutputBuffer int
	// Abort, when set, makes a blocked write to Stdout or Stderr return.
	// It is called when the job has ended and its writer has made no
	// progress for 5 s (the HTTP API sets a write deadline).
	Abort func()
}

// newJob validates a module, keeps it in the node's modules and returns a
// job for it, not yet registered.
func (n *Node) newJob(wasm []byte, o JobOptions) (*job, error) {
	if _, err := sandbox.Validate(wasm, sandbox.Limits{MaxMemoryPages: uint32(n.cfg.GuestMemoryLimit / sandbox.WasmPageSize)}); err != nil {
		return nil, err
	}
	digest := sandbox.Digest(wasm)
	path := filepath.Join(n.dataDir, "modules", digest+".wasm")
	if _, err := os.Stat(path); err != nil {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, wasm, 0o600); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return nil, err
		}
	}
	j := &job{id: newID().String()[:16], modulePath: path, workers: map[*workerProc]struct{}{}, result: make(chan error, 1)}
	j.ctx, j.cancel = context.WithCancel(n.remoteCtx)
	j.out = newJobOutput(cmp.Or[io.Writer](o.Stdout, n.cfg.Stdout), cmp.Or[io.Writer](o.Stderr, n.cfg.Stderr), o.OutputBuffer, o.Abort)
	j.stdout, j.stderr = j.out.Stdout(), j.out.Stderr()
	return j, nil
}

// RunJobWith is RunJob with per-job options.
func (n *Node) RunJobWith(ctx context.Context, wasm []byte, args []string, o JobOptions) error {
	j, err := n.newJob(wasm, o)
	if err != nil {
		return err
	}
	argv, err := wire.Marshal([]any{args})
	if err != nil {
		j.out.close()
		return err
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		j.out.close()
		return ErrClosed
	}
	n.jobs[j.id] = j
	zero := 0.0
	spec := abi.TaskSpec{Func: abi.MainFunc, Options: abi.Options{CPU: &zero, MaxRetries: new(int)}}
	t := n.newTask(j, nil, spec, wire.ExecMain, newID())
	t.rawArgs = argv
	j.driver = t
	n.submit(t)
	n.mu.Unlock()

	var res error
	start := time.Now()
	select {
	case res = <-j.result:
	case <-ctx.Done():
		res = fmt.Errorf("%w after %s", ErrJobTimeout, time.Since(start).Round(time.Millisecond))
		if ctx.Err() == context.Canceled {
			res = fmt.Errorf("fabric: job cancelled")
		}
	}
	n.endJob(j)
	j.out.close()
	return res
}

// maxEndedJobs bounds how many ended job IDs a node remembers.
const maxEndedJobs = 4096

// endJob stops the job's workers and drops its tasks, objects and actors.
func (n *Node) endJob(j *job) {
	n.mu.Lock()
	if j.done {
		n.mu.Unlock()
		return
	}
	j.done = true
	j.cancel()
	if n.ended == nil {
		n.ended = map[string]struct{}{}
	}
	n.ended[j.id] = struct{}{}
	n.endedIDs = append(n.endedIDs, j.id)
	if len(n.endedIDs) > maxEndedJobs {
		delete(n.ended, n.endedIDs[0])
		n.endedIDs = n.endedIDs[1:]
	}
	for node := range j.sentTo {
		n.sendAsync(node, msgEndJob, jobRequest{Job: j.id})
	}
	ws := make([]*workerProc, 0, len(j.workers))
	for w := range j.workers {
		ws = append(ws, w)
	}
	for id, t := range n.tasks {
		if t.job == j {
			if t.state == taskQueued {
				n.sched.Cancel(t.schedID())
			}
			if t.state == taskRunning && t.kind != wire.ExecActorMethod {
				n.sched.Finished(t.schedID())
			}
			t.state = taskDone
			t.stopTimer()
			delete(n.tasks, id)
		}
	}
	for id, a := range n.actors {
		if a.job == j {
			a.state = actorDead // its worker's exit must not restart it
			delete(n.actors, id)
			if a.name != "" {
				delete(n.named, j.id+"/"+a.name)
			}
		}
	}
	for _, g := range n.groups {
		if g.job == j {
			n.removeGroup(g, "was removed when its job ended")
		}
	}
	for id, o := range n.objs {
		if o.job == j {
			n.dropObject(id, o)
		}
	}
	j.queue = nil
	j.idle = nil
	delete(n.jobs, j.id)
	n.mu.Unlock()
	for _, w := range ws {
		w.kill()
	}
	for _, w := range ws {
		<-w.exited
	}
	n.mu.Lock()
	n.schedule()
	n.mu.Unlock()
	n.store.Trim() // give the pages of the job's freed objects back
}
