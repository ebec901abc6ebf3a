// Package core is the agent's state machine: tasks, objects and their
// references, actors, placement groups, jobs and their shares on other
// nodes, workers as the agent sees them, and the scheduler's core.
//
// It does no I/O, reads no clock, starts no goroutines and draws no
// randomness of its own, in the manner of etcd's raft: the shell (package
// fabric) feeds it events with Step, each stamped with the time, and
// carries out the effects it returns, in order. The same events always
// give the same effects, so tests drive it step by step (testdata/*.txt)
// and through long random sequences.
//
// Events are what happened: a job was submitted, a worker sent a message,
// started or exited, a timer fired, a peer sent a message, came or went.
// Effects are what to do: send a worker a message, start or kill one, set
// a timer, send a peer a message, write a job's output, reserve room in
// the object store. Effects never wait for an answer; an answer, when
// there is one, comes back as an event.
//
// The object store (objects.Store) is the one thing the core calls into
// directly, for bookkeeping that does no I/O (seal, abort, pin where the
// bytes are, unpin, delete); what may write to disk (reserving room,
// which may spill, and storing a value) is an effect.
package core

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
)

// Time is the shell's clock: the time since the node started. The core
// keeps the time of the event it is handling.
type Time = time.Duration

// JobID names a job: 16 hex digits, the same on every node of the job.
type JobID string

// NodeID names a node of the cluster.
type NodeID = scheduler.NodeID

// WorkerID names a worker process of the node, from 1.
type WorkerID uint64

// TimerID names a timer the core set, from 1.
type TimerID uint64

// Store is the part of the object store the core uses directly: calls that
// do no I/O. objects.Store satisfies it.
type Store interface {
	Seal(id objects.ID) error
	Abort(id objects.ID)
	// PinInPlace keeps the object where it is (the arena, or its spill
	// file) until Unpin, without restoring it.
	PinInPlace(id objects.ID) (objects.Location, error)
	Unpin(id objects.ID)
	Delete(id objects.ID)
}

// Config configures a core.
type Config struct {
	// Node names this node.
	Node NodeID
	// Resources are the node's resources.
	Resources scheduler.Resources
	// Labels are the node's labels.
	Labels map[string]string
	// MaxWorkers bounds the workers of the node that run (0: 32):
	// parked ones (blocked in get or wait, drivers, actors) do not count.
	MaxWorkers int
	// MaxInstances bounds the workers of the node, parked ones included
	// (0: DefaultMaxInstances). Each is an instance of its job's module
	// in its job's worker process: kilobytes to megabytes of memory.
	MaxInstances int
	// InlineMax is the largest value kept in the agent's memory and sent
	// inline (0: 100 KiB); larger ones live in the object store.
	InlineMax int
	// HeapBudget bounds the bytes of values and task arguments the core
	// holds in memory for all jobs (0: 256 MiB). Past it, values go to the
	// object store and submissions with large inline arguments fail.
	HeapBudget int64
	// Seed seeds the IDs the core makes (tasks it starts for actors and
	// drivers, reservations).
	Seed uint64
	// Leases lets a worker process run the simple tasks its lanes submit
	// itself, on a lane that holds a lease (leases.go). The shell sets it;
	// tests of other things leave it off.
	Leases bool
	// Clustered says that other nodes may exist: tasks and actors may be
	// placed on them once PeerUp names them.
	Clustered bool
	// Registry says that the cluster's registry holds actor names
	// (names.go): the shell answers RegisterName and LookupName.
	Registry bool
	// VerifyGrant, when set, checks a job's grant (the servers'
	// signature of its ID, tenant, root and module's digest) before a
	// share of the job opens here; nil takes every share (no cluster, or
	// tests).
	VerifyGrant func(job, tenant, root, module string, grant []byte) error
	// TaskHistory bounds the records of ended tasks the core keeps for the
	// state API (0: DefaultTaskHistory; < 0: none).
	TaskHistory int
}

// Core is the state machine. It is not safe for concurrent use: the shell
// serializes Steps and queries.
type Core struct {
	cfg   Config
	store Store
	now   Time
	rng   *rand.Rand
	sched *scheduler.Core
	out   []Effect

	tasks  map[objects.ID]*task
	objs   map[objects.ID]*object
	actors map[objects.ID]*actor
	named  map[string]objects.ID // nameKey: job ID + "/" + name, or a namespace's
	// naming are the creations waiting for the registry to record their
	// names, by actor and by nameKey; lookups, the lookups waiting for
	// it; located, the actors of other nodes lookups found (names.go).
	naming map[objects.ID]*nameRequest
	// namingGroups are the detached groups waiting for the registry to
	// record their names (groups.go).
	namingGroups map[objects.ID]*groupNaming
	namingKeys   map[string]objects.ID
	lookups      map[uint64]*lookupRequest
	nextLookup   uint64
	located      map[objects.ID]locatedActor
	locatedIDs   []objects.ID
	// detached are the jobs that hold detached actors, by namespace and
	// module digest (detachedJob).
	detached     map[string]*job
	nextDetached int
	// departed remembers, for a while, why actors of a namespace that
	// are gone died, so that a later call fails as actor_died (remember).
	departed    map[objects.ID]string
	departedIDs []objects.ID
	groups      map[objects.ID]*group
	jobs        map[JobID]*job
	workers     map[WorkerID]*worker
	// leases are the workers that hold a lease, by leaseGroupKey;
	// leasedTasks counts the tasks run under one.
	leases      map[string]*worker
	leasedTasks int
	// live counts workers started and not exited; parked counts those
	// of them that MaxWorkers does not count (worker.parked).
	live, parked int
	// procWaiters are the jobs that wanted a worker while the node had
	// as many as it may, in the order they asked; reclaiming counts idle
	// workers stopped to make room for them.
	procWaiters []*job
	reclaiming  int
	nextWorker  WorkerID
	nextTimer   TimerID
	timers      map[TimerID]func()
	// modules are the module digests this node holds.
	modules map[string]bool
	// fetchingModules are digests being fetched, with the RunTasks that
	// wait for them.
	fetchingModules map[string][]pendingRun
	// peers are the other nodes this node may talk to (true: the
	// scheduler places work there); gone are those declared gone.
	peers map[NodeID]bool
	gone  map[NodeID]bool
	// remote are the executions running on each other node, for node loss.
	remote map[NodeID]map[*task]struct{}
	// ended remembers jobs that ended here lately, so that a late message
	// for one does not open a share nobody would end.
	ended    map[JobID]NodeID // by whom: "" here, else the root that said so
	endedIDs []JobID
	// releases are holds to give back to other nodes, sent at the end of
	// the step, one message per job and node.
	releases map[releaseKey]map[objects.ID]uint32
	// heap counts the bytes of values and arguments held in memory;
	// tenantHeap what of it each tenant's jobs hold (chargeHeap).
	heap       int64
	tenantHeap map[string]int64
	// stored counts the objects whose bytes are in the object store.
	stored int
	// dropping is the work list of objects being dropped (no recursion a
	// guest controls).
	dropping   []objects.ID
	inDrop     bool
	continuing bool // a Yield is out: Continue will come
	// asked are the tasks other nodes asked this node to run.
	asked map[askKey]*task
	// askedTasks counts the plain tasks of asked by each node.
	askedTasks map[NodeID]int
	// busyUntil is when the last busy answer of each node stops shaping
	// placements (scheduler.ObserveFree); a timer per node clears it.
	busyUntil map[NodeID]Time
	// groupNames maps job ID + "/" + name to the named placement group.
	groupNames map[string]objects.ID
	// history keeps the records of ended tasks (history.go); counts the
	// running totals (counters.go).
	history history
	counts  counters
	// later is work deferred to the end of the step, out of loops that
	// must not see its effects.
	later []func()
	// reschedule is set when an object became ready: tasks waiting for it
	// may be placed at the end of the step.
	reschedule bool
}

// New returns a core for a node with cfg's resources.
func New(cfg Config, store Store) *Core {
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = 32
	}
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = DefaultMaxInstances
	}
	cfg.MaxInstances = max(cfg.MaxInstances, cfg.MaxWorkers)
	if cfg.InlineMax <= 0 {
		cfg.InlineMax = 100 << 10
	}
	if cfg.HeapBudget <= 0 {
		cfg.HeapBudget = 256 << 20
	}
	c := &Core{cfg: cfg, store: store, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		sched: scheduler.New(), tasks: map[objects.ID]*task{}, objs: map[objects.ID]*object{}, tenantHeap: map[string]int64{},
		actors: map[objects.ID]*actor{}, named: map[string]objects.ID{}, groups: map[objects.ID]*group{}, detached: map[string]*job{},
		departed: map[objects.ID]string{}, naming: map[objects.ID]*nameRequest{}, namingGroups: map[objects.ID]*groupNaming{}, namingKeys: map[string]objects.ID{},
		lookups: map[uint64]*lookupRequest{}, located: map[objects.ID]locatedActor{},
		jobs: map[JobID]*job{}, workers: map[WorkerID]*worker{}, leases: map[string]*worker{}, timers: map[TimerID]func(){},
		modules: map[string]bool{}, fetchingModules: map[string][]pendingRun{}, peers: map[NodeID]bool{},
		remote: map[NodeID]map[*task]struct{}{}, ended: map[JobID]NodeID{}, releases: map[releaseKey]map[objects.ID]uint32{},
		asked: map[askKey]*task{}, askedTasks: map[NodeID]int{}, busyUntil: map[NodeID]Time{}, groupNames: map[string]objects.ID{}, gone: map[NodeID]bool{}}
	c.sched.AddNode(cfg.Node, cfg.Resources, cfg.Labels)
	c.history.max = cmp.Or(cfg.TaskHistory, DefaultTaskHistory)
	return c
}

// Step applies one event that happened at now.
func (c *Core) Step(now Time, ev Event) {
	if now > c.now {
		c.now = now
	}
	ev.apply(c)
	for len(c.later) > 0 {
		fn := c.later[0]
		c.later = c.later[1:]
		fn()
	}
	if c.reschedule {
		c.reschedule = false
		c.schedule()
	}
	c.flushReleases()
}

// Effects returns the effects of the steps since the last call, in order,
// and forgets them.
func (c *Core) Effects() []Effect {
	out := c.out
	c.out = nil
	return out
}

// emit appends an effect.
func (c *Core) emit(e Effect) { c.out = append(c.out, e) }

// logf emits a line for the agent's log.
func (c *Core) logf(format string, args ...any) {
	c.emit(Log{Text: fmt.Sprintf(format, args...)})
}

// jobLogf logs a line about job j: in the node's log, and in the job's
// own output (at its root, for a share).
func (c *Core) jobLogf(j *job, format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	if j.root != "" {
		c.emit(Log{Text: text})
		c.sendPeer(j.root, &peerwire.Output{Job: string(j.id), Stderr: true, Data: []byte(text + "\n")})
		return
	}
	c.emit(Log{Text: text, Job: j.id})
}

// newID returns a fresh random ID with index 0.
func (c *Core) newID() objects.ID {
	var id objects.ID
	binary.LittleEndian.PutUint64(id[0:], c.rng.Uint64())
	binary.LittleEndian.PutUint64(id[8:], c.rng.Uint64())
	return id
}

// setTimer arms a timer that calls fn after d; it returns its ID.
func (c *Core) setTimer(d Time, fn func()) TimerID {
	c.nextTimer++
	id := c.nextTimer
	c.timers[id] = fn
	c.emit(SetTimer{Timer: id, At: c.now + d})
	return id
}

// stopTimer disarms a timer (0: none).
func (c *Core) stopTimer(id TimerID) {
	if id == 0 {
		return
	}
	if _, ok := c.timers[id]; ok {
		delete(c.timers, id)
		c.emit(StopTimer{Timer: id})
	}
}

// sendPeer queues a message for another node.
func (c *Core) sendPeer(node NodeID, m peerwire.Message) {
	c.emit(PeerSend{Node: node, Msg: m})
}

// sortedJobs returns the node's jobs in the order of their IDs, so that
// what the core does for each is the same from run to run.
func (c *Core) sortedJobs() []*job {
	jobs := make([]*job, 0, len(c.jobs))
	for _, j := range c.jobs {
		jobs = append(jobs, j)
	}
	slices.SortFunc(jobs, func(a, b *job) int { return strings.Compare(string(a.id), string(b.id)) })
	return jobs
}

// sortedIDs returns the keys of a map of IDs in order, so that what the
// core does for each is the same from run to run.
func sortedIDs[V any](m map[objects.ID]V) []objects.ID {
	ids := make([]objects.ID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b objects.ID) int { return compareIDs(a, b) })
	return ids
}

func compareIDs(a, b objects.ID) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// schedID is an ID as the scheduler names tasks and objects.
func schedID(id objects.ID) scheduler.TaskID { return scheduler.TaskID(id) }

func schedKey(id objects.ID) scheduler.ObjectKey { return scheduler.ObjectKey(id) }
