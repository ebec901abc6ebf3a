// Package fabric is the agent: it composes the scheduler, the object store
// and the worker pool of one node, and runs jobs. It never executes guest
// code itself; guests run in worker processes (`fabric worker`) that talk to
// the agent over a Unix socket and share the object arena with it.
package fabric

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/sandbox"
	"github.com/wasmfabric/fabric/scheduler"
)

// Errors of the agent.
var (
	ErrClosed     = errors.New("fabric: node closed")
	ErrJobTimeout = errors.New("fabric: job timed out")
	ErrJobFailed  = errors.New("fabric: job failed")
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
	// objects past it spill to disk.
	ObjectStoreMemory int64
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
	// MaxWorkers bounds the worker processes of the node (0: 8 per CPU, at least 32).
	MaxWorkers int
	// NodeID names the node to its scheduler and its peers (empty: "local").
	NodeID string
	// Labels are the node's labels, for tasks' label selectors.
	Labels map[string]string
}

// Node is one agent with its workers.
type Node struct {
	cfg     Config
	dataDir string
	tmpDir  bool
	shm     *objects.SharedMemory
	store   *objects.Store
	ln      net.Listener
	sock    string
	nodeID  scheduler.NodeID

	mu      sync.Mutex
	sched   *scheduler.Core
	tasks   map[objects.ID]*task
	objs    map[objects.ID]*object
	actors  map[objects.ID]*actor
	named   map[string]objects.ID
	groups  map[objects.ID]*group
	jobs    map[string]*job
	workers map[int]*workerProc // by pid
	// handling is set while a worker's message is handled under mu;
	// sends then collect in dirty, written when handling ends.
	handling bool
	dirty    []*workerProc
	// peers reach the other nodes of the cluster; set by an Agent (nil:
	// tasks stay on this node).
	peers Peers
	// remoteRuns counts tasks running on other nodes, for Close;
	// remoteCtx ends their calls when the node closes.
	remoteRuns sync.WaitGroup
	remoteCtx  context.Context
	remoteStop context.CancelFunc
	// remoteCalls cancel the calls running on each other node.
	remoteCalls map[string]map[*task]context.CancelFunc
	// ended remembers the IDs of jobs that ended here lately, so that a
	// late request for one does not open a share nobody would end.
	ended    map[string]struct{}
	endedIDs []string
	nworkers int
	closed   bool
	closing  atomic.Bool // set when Close starts, for writers that do not take mu
	wg       sync.WaitGroup
	outMu    sync.Mutex
}

// Start starts a node: the object arena, the worker socket and the scheduler.
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
	n := &Node{cfg: cfg, dataDir: cfg.DataDir, nodeID: scheduler.NodeID(cfg.NodeID),
		remoteStop: func() {},
		remoteCtx:  context.Background(),
		sched:      scheduler.New(), tasks: map[objects.ID]*task{}, objs: map[objects.ID]*object{},
		actors: map[objects.ID]*actor{}, named: map[string]objects.ID{}, jobs: map[string]*job{},
		groups:  map[objects.ID]*group{},
		workers: map[int]*workerProc{},
	}
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
	shm, err := objects.CreateSharedMemory("fabric-arena", cfg.ObjectStoreMemory)
	if err != nil {
		n.cleanup()
		return nil, err
	}
	n.shm = shm
	n.store = objects.NewStore(shm.Bytes(), filepath.Join(n.dataDir, "spill"))
	n.store.SetReleaser(func(off, size int64) {
		if size >= 1<<20 {
			_ = shm.Release(off, size)
		}
	})
	n.sock = filepath.Join(n.dataDir, "agent.sock")
	ln, err := net.Listen("unix", n.sock)
	if err != nil {
		n.cleanup()
		return nil, fmt.Errorf("fabric: listen on worker socket: %w", err)
	}
	n.ln = ln
	total := scheduler.Resources{CPU: scheduler.Quantity(cfg.NumCPUs), GPU: scheduler.Quantity(cfg.GPUs), Memory: cfg.Memory}
	for k, v := range cfg.Resources {
		if total.Custom == nil {
			total.Custom = map[string]int64{}
		}
		total.Custom[k] = scheduler.Quantity(v)
	}
	n.sched.AddNode(n.nodeID, total, cfg.Labels)
	n.remoteCtx, n.remoteStop = context.WithCancel(context.Background())
	n.wg.Add(1)
	go n.acceptLoop()
	return n, nil
}

func (n *Node) cleanup() {
	if n.store != nil {
		_ = n.store.Close()
	}
	if n.shm != nil {
		_ = n.shm.Close()
	}
	if n.tmpDir {
		_ = os.RemoveAll(n.dataDir)
	}
}

// Close stops every worker and releases the node's resources.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.closing.Store(true)
	ws := make([]*workerProc, 0, len(n.workers))
	for _, w := range n.workers {
		ws = append(ws, w)
	}
	n.mu.Unlock()
	n.remoteStop()
	n.remoteRuns.Wait()
	for _, w := range ws {
		w.kill()
	}
	_ = n.ln.Close()
	n.wg.Wait()
	n.cleanup()
	return nil
}

func (n *Node) acceptLoop() {
	defer n.wg.Done()
	for {
		c, err := n.ln.Accept()
		if err != nil {
			return
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.serveWorker(wire.NewConn(c))
		}()
	}
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
	Store    objects.StoreStats
	CPUAvail float64
	CPUTotal float64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	avail, _ := n.sched.Available(n.nodeID)
	total, _ := n.sched.Total(n.nodeID)
	return Stats{Workers: len(n.workers), Objects: len(n.objs), Tasks: len(n.tasks), Store: n.store.Stats(),
		CPUAvail: float64(avail.CPU) / scheduler.Unit, CPUTotal: float64(total.CPU) / scheduler.Unit}
}

// NodeCount is how many nodes the node's scheduler knows, itself included.
func (n *Node) NodeCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.sched.Nodes())
}

// Usage is what a node offers and what of it is in use, in the units of
// `fabric status`: CPUs and GPUs as counts, memory in bytes.
type Usage struct {
	Total, Used map[string]float64
	// Pending counts tasks waiting for resources or for their arguments;
	// PendingDemand sums what they ask for.
	Pending       int
	PendingDemand map[string]float64
}

// Usage returns the node's resources and their use.
func (n *Node) Usage() Usage {
	n.mu.Lock()
	defer n.mu.Unlock()
	total, _ := n.sched.Total(n.nodeID)
	avail, _ := n.sched.Available(n.nodeID)
	return Usage{Total: amounts(total), Used: amounts(total.Sub(avail)), Pending: n.sched.Queued(),
		PendingDemand: amounts(n.sched.QueuedDemand())}
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

func afterFunc(d time.Duration, f func()) *time.Timer { return time.AfterFunc(d, f) }
