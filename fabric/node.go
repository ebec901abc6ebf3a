//go:build linux

package fabric

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/sandbox"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/internal/workerpool"
	"golang.org/x/sys/unix"
)

// Errors of the agent.
var (
	ErrClosed     = errors.New("fabric: node closed")
	ErrJobTimeout = errors.New("fabric: job timed out")
)

// Config configures a node.
type Config struct {
	// NumCPUs is the CPU resource of the node (0: the machine's core count).
	NumCPUs float64
	// Memory is the memory resource tasks reserve from (0: the machine's).
	Memory int64
	// GPUs is the GPU resource of the node.
	GPUs float64
	// Resources are custom resources of the node.
	Resources map[string]float64
	// GuestMemoryLimit caps each guest's linear memory (0: sandbox.DefaultMemoryLimit).
	GuestMemoryLimit int64
	// ObjectStoreMemory is the size of the shared arena (0: 1 GiB);
	// objects past it spill to disk. A quarter of it (at least 64 MiB)
	// bounds what the agent keeps in its own memory for jobs: object
	// records, small values and tasks' inline arguments.
	ObjectStoreMemory int64
	// SpillLimit bounds the disk space objects spill to (0: four times
	// ObjectStoreMemory). Past the arena and the spill limit, puts fail
	// with a clear error.
	SpillLimit int64
	// DataDir holds the socket, modules and spilled objects (empty: a temp
	// dir removed on Close).
	DataDir string
	// CacheDir holds compiled modules (empty: the user's cache dir).
	CacheDir string
	// WorkerCommand starts a worker; the agent appends worker flags
	// (empty: this executable with "worker").
	WorkerCommand []string
	// Stdout receives the driver's output and, prefixed, task output.
	Stdout io.Writer
	// Stderr receives the agent's own messages.
	Stderr io.Writer
	// OutputCap bounds the output kept per call (0: 8 MiB).
	OutputCap int64
	// MaxWorkers bounds the workers of the node that run at once (0: 8
	// per CPU, at least 32); workers blocked in get or wait, drivers and
	// actors do not count. A worker is one instance of a job's module in
	// the job's worker process.
	MaxWorkers int
	// NoShortPaths runs every task in its job's worker process. By
	// default a process whose executions submit short tasks runs them
	// itself, on a lane of its own that holds a lease (for the driver's
	// tasks, the driver's process), and keeps their results for its own
	// gets: no round trip to the agent each. Such a task shares the fate
	// of that process should it crash.
	NoShortPaths bool
	// MaxInstances bounds the workers of the node, parked ones included
	// (0: 32768); one job holds at most half of them.
	MaxInstances int
	// TaskHistory bounds the records of ended tasks the node keeps for
	// the state API (0: 100,000; < 0: none). Each holds some hundreds of
	// bytes and its error's text.
	TaskHistory int
	// NodeID names the node to its scheduler and its peers (empty: "local").
	NodeID string
	// Labels are the node's labels, for tasks' label selectors.
	Labels map[string]string
	// TenantCgroups puts each tenant's worker processes in a control
	// group of its own: CgroupsAuto where the kernel offers them,
	// CgroupsOn to require them, CgroupsOff or "" for none (the default
	// of an embedded node; agents default to auto). See tenantgroups.go.
	TenantCgroups string
	// TenantMemory bounds the memory a named tenant's workers on the node
	// hold together when its quota has no memory bound (0: half of
	// Memory). It takes control groups.
	TenantMemory int64

	// clustered lets tasks go to other nodes (set by StartAgent).
	clustered bool
	// registry makes the control plane hold actor names (set by
	// StartAgent, which gives the node its names).
	registry bool
	// verifyGrant checks a job's grant before a share of it opens here;
	// grant gets one for a job whose driver starts here (both set by
	// StartAgent).
	verifyGrant func(job, tenant, root, module string, grant []byte) error
	grant       func(ctx context.Context, job, tenant, root, controlJob, module string) []byte
}

// Node is one agent with its workers.
type Node struct {
	cfg     Config
	dataDir string
	tmpDir  bool
	lock    *os.File // holds the data directory (lockDataDir)
	shm     *objects.SharedMemory
	store   *objects.Store
	pool    *workerpool.Pool
	start   time.Time
	log     *jobOutput    // the agent's own messages, to cfg.Stderr
	storeq  *workQueue    // store operations that may write to disk
	history sampleRing    // the last hour, sampled by the agent (GET /v1/history)
	groups  *tenantGroups // nil without control groups
	// sweepQueued is set while a Sweep of deleted objects' spill files
	// waits on storeq.
	sweepQueued atomic.Bool
	ctx         context.Context
	stop        context.CancelFunc
	wg          sync.WaitGroup

	mu     sync.Mutex
	core   *core.Core
	timers map[core.TimerID]*time.Timer
	jobs   map[core.JobID]*jobHandle
	// lossless are the workers of lossless jobs, whose output waits for
	// room in the job's output before it goes in.
	lossless map[core.WorkerID]*jobOutput
	cluster  cluster
	names    names
	closed   bool
}

// cluster is how a node reaches the other nodes of its cluster; an Agent
// gives its node one.
type cluster interface {
	// Send queues a message for a node (the peer link).
	Send(node string, m peerwire.Message)
	// Pull copies an object's bytes from a node into memory alloc gives.
	Pull(ctx context.Context, node string, id objects.ID, alloc func(size int64) ([]byte, error)) error
	// PullModule copies a module from a node into this node's modules.
	PullModule(ctx context.Context, node, digest string, proof []byte) error
}

// jobHandle is the shell's side of a job that runs its driver here.
type jobHandle struct {
	out    *jobOutput
	result chan core.JobResult
	ended  chan struct{}
}

// Start starts a node: the object arena, the worker socket and the core.
func Start(cfg Config) (*Node, error) {
	if cfg.NumCPUs <= 0 {
		cfg.NumCPUs = float64(runtime.NumCPU())
	}
	if cfg.Memory <= 0 {
		cfg.Memory = systemMemory()
	}
	if cfg.ObjectStoreMemory <= 0 {
		cfg.ObjectStoreMemory = 1 << 30
	}
	if cfg.SpillLimit <= 0 {
		cfg.SpillLimit = 4 * cfg.ObjectStoreMemory
	}
	if cfg.GuestMemoryLimit <= 0 {
		cfg.GuestMemoryLimit = sandbox.DefaultMemoryLimit
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = max(32, int(cfg.NumCPUs*8))
	}
	if cfg.CacheDir == "" {
		if d, err := os.UserCacheDir(); err == nil {
			cfg.CacheDir = filepath.Join(d, "fabric", "compiled")
		}
	}
	if len(cfg.WorkerCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("fabric: find own executable for workers: %w", err)
		}
		cfg.WorkerCommand = []string{exe, "worker"}
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "local"
	}
	n := &Node{cfg: cfg, dataDir: cfg.DataDir, start: time.Now(), timers: map[core.TimerID]*time.Timer{},
		jobs: map[core.JobID]*jobHandle{}, lossless: map[core.WorkerID]*jobOutput{}}
	n.ctx, n.stop = context.WithCancel(context.Background())
	if n.dataDir == "" {
		d, err := os.MkdirTemp("", "fabric-")
		if err != nil {
			return nil, err
		}
		n.dataDir, n.tmpDir = d, true
	}
	for _, sub := range []string{"modules", "spill"} {
		if err := os.MkdirAll(filepath.Join(n.dataDir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if err := n.lockDataDir(); err != nil {
		n.cleanup()
		return nil, err
	}
	shm, err := objects.CreateSharedMemory("fabric-arena", cfg.ObjectStoreMemory)
	if err != nil {
		n.cleanup()
		return nil, err
	}
	n.shm = shm
	n.store = objects.NewStore(shm.Bytes(), filepath.Join(n.dataDir, "spill"))
	n.store.SetSpillLimit(cfg.SpillLimit)
	n.store.SetReleaser(func(off, size int64) {
		if size >= 1<<20 {
			_ = shm.Release(off, size)
		}
	})
	n.log = newJobOutput(cfg.Stderr, cfg.Stderr, 0, nil)
	n.storeq = newWorkQueue()
	pool, err := workerpool.New(workerpool.Config{
		Command: cfg.WorkerCommand, Socket: n.WorkerSocket(),
		Arena: shm.File(), ArenaSize: shm.Size(), CacheDir: cfg.CacheDir, NodeID: cfg.NodeID,
		GuestMemoryLimit: cfg.GuestMemoryLimit, OutputCap: cfg.OutputCap, Profiling: os.Getenv("FABRIC_CPUPROFILE") != "",
		Ready: func(id workerpool.ID, err string) {
			if err != "" {
				n.step(core.WorkerLoadFailed{Worker: core.WorkerID(id), Err: err})
				return
			}
			n.step(core.WorkerReady{Worker: core.WorkerID(id)})
		},
		Message: func(id workerpool.ID, msg any) {
			if out, ok := msg.(wire.Output); ok {
				n.mu.Lock()
				o := n.lossless[core.WorkerID(id)]
				n.mu.Unlock()
				if o != nil {
					o.waitRoom(len(out.Data) + 64) // outside the lock: only this worker waits
				}
			}
			n.stepQuiet(core.WorkerMessage{Worker: core.WorkerID(id), Msg: msg})
		},
		Exited: func(id workerpool.ID, cause string) {
			n.step(core.WorkerExited{Worker: core.WorkerID(id), Cause: cause})
			n.mu.Lock()
			delete(n.lossless, core.WorkerID(id))
			n.mu.Unlock()
		},
		Log: func(s string) { n.log.write(true, []byte(s+"\n")) },
	})
	if err != nil {
		n.storeq.close()
		n.log.close()
		n.cleanup()
		return nil, err
	}
	n.pool = pool
	if n.groups, err = openTenantGroups(cfg); err != nil {
		n.pool.Close()
		n.storeq.close()
		n.log.close()
		n.cleanup()
		return nil, err
	}
	total := scheduler.Resources{CPU: scheduler.Quantity(cfg.NumCPUs), GPU: scheduler.Quantity(cfg.GPUs), Memory: cfg.Memory}
	for k, v := range cfg.Resources {
		if total.Custom == nil {
			total.Custom = map[string]int64{}
		}
		total.Custom[k] = scheduler.Quantity(v)
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	n.core = core.New(core.Config{Node: scheduler.NodeID(cfg.NodeID), Resources: total, Labels: cfg.Labels,
		MaxWorkers: cfg.MaxWorkers, MaxInstances: cfg.MaxInstances, Leases: !cfg.NoShortPaths, InlineMax: sandbox.InlineMax, HeapBudget: max(64<<20, cfg.ObjectStoreMemory/4),
		Seed: binary.LittleEndian.Uint64(seed[:]), Clustered: cfg.clustered, Registry: cfg.registry, VerifyGrant: cfg.verifyGrant, TaskHistory: cfg.TaskHistory}, n.store)
	if n.groups != nil {
		n.wg.Add(1)
		go n.weighLoop()
	}
	return n, nil
}

func (n *Node) cleanup() {
	if n.store != nil {
		_ = n.store.Close()
	}
	if n.lock != nil {
		_ = n.lock.Close() // the lock goes with it
	}
	if n.shm != nil {
		_ = n.shm.Close()
	}
	if n.tmpDir {
		_ = os.RemoveAll(n.dataDir)
	}
}

// Close ends every job, stops every worker and releases the node's
// resources.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	handles := make([]*jobHandle, 0, len(n.jobs))
	for id, h := range n.jobs {
		handles = append(handles, h)
		n.core.Step(n.now(), core.CancelJob{Job: id, Reason: "the node is closing"})
	}
	n.apply(n.core.Effects())
	n.mu.Unlock()
	n.pool.Flush()
	for _, h := range handles {
		select {
		case <-h.ended:
		case <-time.After(10 * time.Second):
		}
	}
	n.stop()
	n.pool.Close()
	n.mu.Lock()
	for id, t := range n.timers {
		t.Stop()
		delete(n.timers, id)
	}
	n.mu.Unlock()
	n.wg.Wait()
	if n.groups != nil {
		if err := n.groups.m.Close(5 * time.Second); err != nil {
			n.log.write(true, []byte(err.Error()+"\n"))
		}
	}
	n.storeq.close()
	n.log.close()
	n.cleanup()
	return nil
}

// now is the shell's clock for the core.
func (n *Node) now() core.Time { return time.Since(n.start) }

// step applies one event and carries out its effects, then writes what
// they queued for workers.
func (n *Node) step(ev core.Event) {
	n.mu.Lock()
	n.core.Step(n.now(), ev)
	n.apply(n.core.Effects())
	n.mu.Unlock()
	n.pool.Flush()
}

// stepQuiet is step for a worker's own reading goroutine, which flushes
// once the frames at hand are handled.
func (n *Node) stepQuiet(ev core.Event) {
	n.mu.Lock()
	n.core.Step(n.now(), ev)
	n.apply(n.core.Effects())
	n.mu.Unlock()
}

// stepAll applies several events under one lock (a batch from a peer).
func (n *Node) stepAll(evs []core.Event) {
	n.mu.Lock()
	now := n.now()
	for _, ev := range evs {
		n.core.Step(now, ev)
	}
	n.apply(n.core.Effects())
	n.mu.Unlock()
	n.pool.Flush()
}

// apply carries out effects. Caller holds n.mu: nothing here blocks.
func (n *Node) apply(effs []core.Effect) {
	for _, e := range effs {
		switch e := e.(type) {
		case core.SendWorker:
			n.pool.Send(workerpool.ID(e.Worker), e.Type, e.Msg)
		case core.StartWorker:
			if h := n.jobs[e.Job]; h != nil && h.out.lossless {
				n.lossless[e.Worker] = h.out
			}
			if !n.closed {
				n.startWorker(e)
			}
		case core.KillWorker:
			n.pool.Kill(workerpool.ID(e.Worker))
		case core.SetTimer:
			id := e.Timer
			n.timers[id] = time.AfterFunc(e.At-n.now(), func() {
				n.mu.Lock()
				_, live := n.timers[id]
				delete(n.timers, id)
				n.mu.Unlock()
				if live {
					n.step(core.TimerFired{Timer: id})
				}
			})
		case core.StopTimer:
			if t := n.timers[e.Timer]; t != nil {
				t.Stop()
				delete(n.timers, e.Timer)
			}
		case core.JobOutput:
			if h := n.jobs[e.Job]; h != nil {
				h.out.write(e.Stderr, e.Data)
			}
		case core.JobResult:
			if h := n.jobs[e.Job]; h != nil {
				select {
				case h.result <- e:
				default:
				}
			}
		case core.JobEnded:
			if h := n.jobs[e.Job]; h != nil {
				delete(n.jobs, e.Job)
				close(h.ended)
			}
		case core.Log:
			n.log.write(true, []byte(e.Text+"\n"))
			if h := n.jobs[e.Job]; e.Job != "" && h != nil && !sameWriter(h.out.stderr, n.cfg.Stderr) {
				h.out.write(true, []byte(e.Text+"\n")) // a retry or restart notice, for the job's reader too
			}
		case core.Reserve:
			n.storeq.push(func() {
				off, err := n.store.CreateFor(e.Tenant, e.ID, e.Size)
				ev := core.Reserved{Worker: e.Worker, Seq: e.Seq, ID: e.ID, Off: off}
				if err != nil {
					ev.Err = err.Error()
				}
				n.step(ev)
			})
		case core.StoreValue:
			n.storeq.push(func() {
				ev := core.ValueStored{ID: e.ID}
				if err := n.store.PutFor(e.Tenant, e.ID, e.Data); err != nil {
					ev.Err = err.Error()
				}
				n.step(ev)
			})
		case core.TrimStore:
			n.storeq.push(n.store.Trim)
		case core.Yield:
			n.wg.Add(1)
			go func() { // once this step has released the lock
				defer n.wg.Done()
				n.step(core.Continue{})
			}()
		case core.PeerSend:
			if n.cluster != nil {
				n.cluster.Send(string(e.Node), e.Msg)
			}
		case core.FetchModule:
			n.fetchModule(e)
		case core.PullObject:
			n.pullObject(e)
		case core.RegisterName:
			n.registerName(e)
		case core.UnregisterName:
			n.unregisterName(e)
		case core.LookupName:
			n.lookupName(e)
		}
	}
	// Deleting spilled objects left files to remove: on the store's
	// queue, not under the lock.
	if n.store.Doomed() > 0 && n.sweepQueued.CompareAndSwap(false, true) {
		n.storeq.push(func() {
			n.sweepQueued.Store(false)
			n.store.Sweep()
		})
	}
}

// startWorker starts a worker process on a goroutine of its own (a fork
// takes milliseconds): WorkerStarted, or WorkerStartFailed, follows.
func (n *Node) startWorker(e core.StartWorker) {
	path := n.modulePath(e.Digest)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		group := string(e.Job)
		if e.Process != "" {
			group += "/" + e.Process // the driver's: a task that crashes its process leaves the driver be
		}
		var place func(int) error
		if n.groups != nil {
			place = n.groups.place(e.Tenant)
		}
		err := n.pool.Start(workerpool.ID(e.Worker), group, path, place, func(pid int) {
			n.step(core.WorkerStarted{Worker: e.Worker, Pid: pid})
		})
		if err != nil {
			n.step(core.WorkerStartFailed{Worker: e.Worker, Err: err.Error()})
		}
	}()
}

// sameWriter reports whether a and b are one writer (false for writers
// that cannot be compared).
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// ErrDataDirInUse is returned by Start when another agent or node holds
// the data directory.
var ErrDataDirInUse = errors.New("fabric: the data directory is in use")

// lockDataDir takes the data directory for this node: a lock on its
// file "lock" (held while the process lives, so one killed with SIGKILL
// leaves it free), then clears what a node that died there left: the
// worker socket, spilled objects, which belonged to its jobs, and
// uploads it was receiving.
func (n *Node) lockDataDir() error {
	path := filepath.Join(n.dataDir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("fabric: lock the data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		return fmt.Errorf("%w: %s is held by process %s; give each agent its own --data-dir", ErrDataDirInUse, n.dataDir, cmp.Or(strings.TrimSpace(string(holder)), "(unknown)"))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	n.lock = f
	if err := os.Remove(n.WorkerSocket()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("fabric: remove the worker socket a dead node left: %w", err)
	}
	spill := filepath.Join(n.dataDir, "spill")
	entries, _ := os.ReadDir(spill)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(spill, e.Name()))
	}
	partial, _ := filepath.Glob(filepath.Join(n.dataDir, "modules", "upload.*.tmp"))
	for _, p := range partial {
		_ = os.Remove(p)
	}
	return nil
}

// WorkerSocket returns the Unix socket the node's worker processes
// connect to; their command lines name it, which is how tools find them.
func (n *Node) WorkerSocket() string { return filepath.Join(n.dataDir, "agent.sock") }

// WorkerMemory returns the memory the node's worker processes hold now:
// the sum of their proportional set sizes (PSS, from /proc), in bytes; 0
// where /proc does not tell. Each process is found by the socket its
// command line names.
func (n *Node) WorkerMemory() int64 {
	socket := []byte(n.WorkerSocket())
	var total int64
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, socket) {
			total += processPSS(p.Name())
		}
	}
	return total
}

// processPSS reads the proportional set size of process pid ("self" for
// this one) in bytes, or 0.
func processPSS(pid string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "smaps_rollup"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// modulePath is where the module with the digest is kept.
func (n *Node) modulePath(digest string) string {
	return filepath.Join(n.dataDir, "modules", digest+".wasm")
}

func systemMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil && kb > 0 {
			return kb << 10
		}
	}
	return 8 << 30
}

// Stats are counters of a node, for tests and `fabric status`.
type Stats struct {
	Workers  int
	Objects  int
	Tasks    int
	Jobs     int
	Stored   int // objects whose bytes are in the store
	Heap     int64
	Store    objects.StoreStats
	CPUAvail float64
	CPUTotal float64
	// LeasedTasks counts the tasks that ran on the short path: in their
	// submitter's process, under a lease, without the agent sending them.
	LeasedTasks int
}

// actorCalls returns the calls each actor holds, and was given in all
// (core.ActorCalls).
func (n *Node) actorCalls(ids []objects.ID) ([]int, []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.ActorCalls(ids)
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	st := n.core.Stats()
	n.mu.Unlock()
	return Stats{Workers: st.Workers, Objects: st.Objects, Tasks: st.Tasks, Jobs: st.Jobs, Stored: st.Stored, Heap: st.Heap,
		Store: n.store.Stats(), CPUAvail: float64(st.Available.CPU) / scheduler.Unit, CPUTotal: float64(st.Total.CPU) / scheduler.Unit,
		LeasedTasks: st.LeasedTasks}
}

// TaskProgress counts the tasks and actor calls (not drivers) the node
// owned since it started: ended finished, ended failed, and in all (ended
// and not), for a progress line.
func (n *Node) TaskProgress() (finished, failed, total int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	finished, failed, live := n.core.Progress()
	return finished, failed, finished + failed + live
}

// NodeCount is how many nodes the node's scheduler knows, itself included.
func (n *Node) NodeCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Stats().Nodes
}

// Usage is what a node offers and what of it is in use, in the units of
// `fabric status`: CPUs and GPUs as counts, memory in bytes.
type Usage struct {
	Total, Used map[string]float64
	// Pending counts tasks waiting for resources or for their arguments;
	// PendingDemand sums what they ask for.
	Pending       int
	PendingDemand map[string]float64
	// Workers: running an execution or an actor (parked: of them, those
	// blocked in get or wait, drivers and actors), kept idle for their
	// job, the most the node runs at once and holds, and executions
	// placed here that wait for one; the worker processes that host them.
	WorkersBusy, WorkersParked, WorkersIdle int
	MaxWorkers, MaxInstances                int
	WaitingForWorker, Processes             int
}

// Usage returns the node's resources and their use.
func (n *Node) Usage() Usage {
	n.mu.Lock()
	st := n.core.Stats()
	n.mu.Unlock()
	return Usage{Total: amounts(st.Total), Used: amounts(st.Total.Sub(st.Available)), Pending: st.Queued,
		PendingDemand: amounts(st.QueuedDemand), WorkersBusy: st.Busy, WorkersParked: st.Parked, WorkersIdle: st.Idle,
		MaxWorkers: st.MaxWorkers, MaxInstances: st.MaxInstances, WaitingForWorker: st.WaitingForWorker,
		Processes: n.pool.Count()}
}

// amounts converts scheduler quantities to plain numbers by resource name.
func amounts(r scheduler.Resources) map[string]float64 {
	out := map[string]float64{}
	put := func(k string, v float64) {
		if v != 0 {
			out[k] = v
		}
	}
	put("CPU", float64(r.CPU)/scheduler.Unit)
	put("GPU", float64(r.GPU)/scheduler.Unit)
	put("memory", float64(r.Memory))
	for k, v := range r.Custom {
		put(k, float64(v)/scheduler.Unit)
	}
	return out
}

// resources converts plain numbers by resource name to scheduler quantities.
func resources(m map[string]float64) scheduler.Resources {
	r := scheduler.Resources{CPU: scheduler.Quantity(m["CPU"]), GPU: scheduler.Quantity(m["GPU"]), Memory: int64(m["memory"])}
	for k, v := range m {
		if k != "CPU" && k != "GPU" && k != "memory" {
			if r.Custom == nil {
				r.Custom = map[string]int64{}
			}
			r.Custom[k] = scheduler.Quantity(v)
		}
	}
	return r
}

// workQueue runs functions in order on one goroutine of its own; push
// never blocks.
type workQueue struct {
	mu    sync.Mutex
	queue []func()
	wake  chan struct{}
	done  chan struct{}
	stop  bool
}

func newWorkQueue() *workQueue {
	q := &workQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *workQueue) push(f func()) {
	q.mu.Lock()
	q.queue = append(q.queue, f)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *workQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		for len(q.queue) == 0 && !q.stop {
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		if len(q.queue) == 0 {
			q.mu.Unlock()
			return
		}
		f := q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		q.mu.Unlock()
		f()
	}
}

// close runs what is queued and stops.
func (q *workQueue) close() {
	q.mu.Lock()
	q.stop = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	<-q.done
}

// debugState describes the node's core and its shell's pending work.
func debugState(n *Node) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("%s  shell: %d timers, %d jobs with handles, %d worker processes\n", n.core.Describe(), len(n.timers), len(n.jobs), n.pool.Count())
}
