package core

import (
	"cmp"
	"slices"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Task states as the state API names them.
const (
	// TaskPending waits for its arguments or for resources.
	TaskPending = "pending"
	// TaskRunning is placed: it runs, or its worker or node starts it.
	TaskRunning = "running"
	// TaskFinished ended with its results.
	TaskFinished = "finished"
	// TaskFailed ended with an error as its results.
	TaskFailed = "failed"
)

// DefaultTaskHistory is how many ended tasks a core keeps records of
// when Config.TaskHistory is 0.
const DefaultTaskHistory = 100_000

// maxRecordError bounds the error text a record keeps.
const maxRecordError = 4096

// TaskRecord is a task as the state API lists it: built on demand for a
// task that has not ended, kept (boundedly) for one that has.
type TaskRecord struct {
	ID     objects.ID
	Job    JobID
	Tenant string
	// Name is the function's (or the options' name); for an actor's
	// method, the method's.
	Name string
	// Kind is "task", "method" (an actor's) or "driver".
	Kind  string
	Actor objects.ID // a method's actor
	State string     // TaskPending, TaskRunning, TaskFinished or TaskFailed
	// Node runs (ran) it: this node's ID, or the one it was sent to.
	Node NodeID
	// For is the node that sent it here to run, which lists it as its
	// own ("" for this node's own tasks).
	For NodeID
	// Pid is the worker process's that ran it here (0: none yet, or on
	// another node).
	Pid int
	// Attempt counts the runs it took (1: no retry).
	Attempt int
	// Error is a failed task's error: its kind, the guest's message and
	// stack (at most 4 KiB).
	Error     string
	ErrorKind string
	// Submitted, Placed, Started and Ended are the core's times of each
	// (0: not yet, or not seen here: a task run on another node starts
	// there).
	Submitted, Placed, Started, Ended Time
}

// TaskFilter selects task records; zero fields select all.
type TaskFilter struct {
	// Tenant selects a tenant's tasks; AnyTenant every tenant's.
	Tenant    string
	AnyTenant bool
	Job       JobID
	State     string
	Name      string
	// Own leaves out the tasks other nodes sent here (which they list).
	Own bool
}

func (f *TaskFilter) match(r *TaskRecord) bool {
	return (f.AnyTenant || r.Tenant == f.Tenant) && (f.Job == "" || r.Job == f.Job) &&
		(f.State == "" || r.State == f.State) && (f.Name == "" || r.Name == f.Name) && (!f.Own || r.For == "")
}

// history keeps the records of ended tasks, at most max in all. When
// full, the tenant holding the most loses its oldest record of a task
// that finished, else of one that failed: one tenant's flood of tasks
// does not wipe out another's records, nor its own failures.
//
// The records it keeps hold no pointers: their strings are kept once,
// in strs, and named by index. A full history (100,000 records by
// default, about 12 MB) is then nothing a garbage collection has to
// scan, where records holding their strings were a million pointers
// that every collection walked, on every node under load.
type history struct {
	max      int
	n        int
	byTenant map[string]*tenantRecords
	strs     stringTable
	// errBytes counts the error texts the records hold (each record's
	// own, though equal texts are kept once), at most maxErrorBytes: past
	// it the tenant whose records hold the most loses its oldest failure.
	// A tenant's failures with long unique messages (4 KiB each) would
	// otherwise hold 400 MB at the record bound.
	errBytes int64
}

// maxErrorBytes bounds the error texts a core's records of ended tasks
// hold.
const maxErrorBytes = 32 << 20

// tenantRecords are one tenant's records, oldest first in each ring.
type tenantRecords struct {
	finished, failed recordRing
	errBytes         int64
}

func (t *tenantRecords) len() int { return t.finished.n + t.failed.n }

// The strings of a stored record, by index in storedRecord.strs.
const (
	strJob = iota
	strTenant
	strName
	strKind
	strState
	strNode
	strFor
	strError
	strErrorKind
	recordStrings
)

// storedRecord is a TaskRecord as the history keeps it: its strings as
// references into the history's stringTable.
type storedRecord struct {
	id, actor                         objects.ID
	strs                              [recordStrings]uint32
	pid, attempt                      int32
	submitted, placed, started, ended Time
}

// recordRing is a queue of stored records, oldest first, in a ring
// whose size is a power of two (grown and shrunk by halves).
type recordRing struct {
	buf     []storedRecord
	head, n int
}

func (q *recordRing) at(i int) *storedRecord { return &q.buf[(q.head+i)&(len(q.buf)-1)] }

func (q *recordRing) push(r *storedRecord) {
	if q.n == len(q.buf) {
		q.resize(max(16, 2*len(q.buf)))
	}
	*q.at(q.n) = *r
	q.n++
}

// popOldest removes the oldest record and returns it.
func (q *recordRing) popOldest() storedRecord {
	r := q.buf[q.head]
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	if len(q.buf) > 64 && q.n < len(q.buf)/4 {
		q.resize(len(q.buf) / 2)
	}
	return r
}

func (q *recordRing) resize(size int) {
	buf := make([]storedRecord, size)
	for i := range q.n {
		buf[i] = *q.at(i)
	}
	q.buf, q.head = buf, 0
}

// stringTable keeps each string of the stored records once, counted by
// the records that name it; reference 0 is "".
type stringTable struct {
	index map[string]uint32
	strs  []string
	refs  []int32
	free  []uint32
	// last is, per string of a record, the reference the last record
	// took: consecutive records mostly share their job, tenant, name,
	// kind, state and node, and a string comparison is cheaper than a
	// map lookup.
	last [recordStrings]uint32
}

// ref returns v's reference, counting one more record that names it.
func (s *stringTable) ref(field int, v string) uint32 {
	if v == "" {
		return 0
	}
	if i := s.last[field]; i != 0 && s.strs[i] == v {
		s.refs[i]++
		return i
	}
	i, ok := s.index[v]
	if !ok {
		if s.index == nil {
			s.index, s.strs, s.refs = map[string]uint32{}, []string{""}, []int32{0}
		}
		if n := len(s.free); n > 0 {
			i, s.free = s.free[n-1], s.free[:n-1]
			s.strs[i] = v
		} else {
			i = uint32(len(s.strs))
			s.strs, s.refs = append(s.strs, v), append(s.refs, 0)
		}
		s.index[v] = i
	}
	s.refs[i]++
	s.last[field] = i
	return i
}

// release counts one record less that names reference i.
func (s *stringTable) release(i uint32) {
	if i == 0 {
		return
	}
	if s.refs[i]--; s.refs[i] == 0 {
		delete(s.index, s.strs[i])
		s.strs[i] = ""
		s.free = append(s.free, i)
	}
}

// lookup returns v's reference, false when no record names v.
func (s *stringTable) lookup(v string) (uint32, bool) {
	if v == "" {
		return 0, true
	}
	i, ok := s.index[v]
	return i, ok
}

func (h *history) add(r TaskRecord) {
	if h.max <= 0 {
		return
	}
	if h.byTenant == nil {
		h.byTenant = map[string]*tenantRecords{}
	}
	if h.n >= h.max {
		h.dropOne()
	}
	t := h.byTenant[r.Tenant]
	if t == nil {
		t = &tenantRecords{}
		h.byTenant[r.Tenant] = t
	}
	q := &t.finished
	if r.State == TaskFailed {
		q = &t.failed
	}
	s := &h.strs
	sr := storedRecord{id: r.ID, actor: r.Actor, pid: int32(r.Pid), attempt: int32(r.Attempt),
		submitted: r.Submitted, placed: r.Placed, started: r.Started, ended: r.Ended}
	sr.strs = [recordStrings]uint32{
		strJob: s.ref(strJob, string(r.Job)), strTenant: s.ref(strTenant, r.Tenant), strName: s.ref(strName, r.Name),
		strKind: s.ref(strKind, r.Kind), strState: s.ref(strState, r.State), strNode: s.ref(strNode, string(r.Node)),
		strFor: s.ref(strFor, string(r.For)), strError: s.ref(strError, r.Error), strErrorKind: s.ref(strErrorKind, r.ErrorKind)}
	q.push(&sr)
	h.n++
	t.errBytes += int64(len(r.Error))
	h.errBytes += int64(len(r.Error))
	for h.errBytes > maxErrorBytes {
		h.dropError()
	}
}

// dropError drops the oldest failure (else finished record) of the
// tenant whose records hold the most error text.
func (h *history) dropError() {
	var most *tenantRecords
	var name string
	for n, t := range h.byTenant {
		if most == nil || t.errBytes > most.errBytes || t.errBytes == most.errBytes && n < name {
			most, name = t, n
		}
	}
	if most.failed.n > 0 {
		h.drop(name, most, &most.failed)
	} else {
		h.drop(name, most, &most.finished)
	}
}

// drop drops the oldest record of q, tenant name's.
func (h *history) drop(name string, t *tenantRecords, q *recordRing) {
	r := q.popOldest()
	errLen := int64(len(h.strs.strs[r.strs[strError]]))
	t.errBytes -= errLen
	h.errBytes -= errLen
	for _, i := range r.strs {
		h.strs.release(i)
	}
	h.n--
	if t.len() == 0 {
		delete(h.byTenant, name)
	}
}

// record returns r as a TaskRecord.
func (h *history) record(r *storedRecord) TaskRecord {
	s := h.strs.strs
	return TaskRecord{ID: r.id, Job: JobID(s[r.strs[strJob]]), Tenant: s[r.strs[strTenant]], Name: s[r.strs[strName]],
		Kind: s[r.strs[strKind]], Actor: r.actor, State: s[r.strs[strState]], Node: NodeID(s[r.strs[strNode]]),
		For: NodeID(s[r.strs[strFor]]), Pid: int(r.pid), Attempt: int(r.attempt), Error: s[r.strs[strError]],
		ErrorKind: s[r.strs[strErrorKind]], Submitted: r.submitted, Placed: r.placed, Started: r.started, Ended: r.ended}
}

// dropOne drops the oldest record of a finished task of the tenant that
// holds the most (ties: the first by name), else its oldest failure.
func (h *history) dropOne() {
	var largest *tenantRecords
	var name string
	for n, t := range h.byTenant {
		if largest == nil || t.len() > largest.len() || t.len() == largest.len() && n < name {
			largest, name = t, n
		}
	}
	if largest.finished.n > 0 {
		h.drop(name, largest, &largest.finished)
	} else {
		h.drop(name, largest, &largest.failed)
	}
}

// storedFilter is a TaskFilter's strings as references.
type storedFilter struct {
	job, state, name uint32
	own              bool
}

// storedFilter returns f's strings as references, false when f names
// a string no record holds (it selects none). f's tenant is for the
// caller to select.
func (h *history) storedFilter(f *TaskFilter) (storedFilter, bool) {
	job, ok1 := h.strs.lookup(string(f.Job))
	state, ok2 := h.strs.lookup(f.State)
	name, ok3 := h.strs.lookup(f.Name)
	return storedFilter{job: job, state: state, name: name, own: f.Own}, ok1 && ok2 && ok3
}

func (f *storedFilter) match(r *storedRecord) bool {
	return (f.job == 0 || r.strs[strJob] == f.job) && (f.state == 0 || r.strs[strState] == f.state) &&
		(f.name == 0 || r.strs[strName] == f.name) && (!f.own || r.strs[strFor] == 0)
}

// eachQueue calls fn with every ring of the tenants f selects and the
// filter for their records; nothing when f selects none.
func (h *history) eachQueue(f *TaskFilter, fn func(q *recordRing, sf *storedFilter)) {
	sf, ok := h.storedFilter(f)
	if !ok {
		return
	}
	for name, t := range h.byTenant {
		if f.AnyTenant || name == f.Tenant {
			fn(&t.finished, &sf)
			fn(&t.failed, &sf)
		}
	}
}

// each calls fn with every kept record f selects.
func (h *history) each(f *TaskFilter, fn func(*TaskRecord)) {
	h.eachQueue(f, func(q *recordRing, sf *storedFilter) {
		for i := range q.n {
			if r := q.at(i); sf.match(r) {
				rec := h.record(r)
				fn(&rec)
			}
		}
	})
}

// record describes t as it is now.
func (c *Core) record(t *task) TaskRecord {
	r := TaskRecord{ID: t.id, Job: t.job.id, Tenant: t.job.tenant, Name: t.name, Kind: "task", Node: c.cfg.Node,
		For: t.asker, Attempt: t.retried + 1, Submitted: t.submitted, Placed: t.placed, Error: t.failure, ErrorKind: t.failureKind}
	if t.asker != "" {
		r.ID = t.askerTask
	}
	switch t.kind {
	case wire.ExecActorMethod:
		r.Kind = "method"
		if t.actor != nil {
			r.Actor = t.actor.id
		}
	case wire.ExecMain:
		r.Kind = "driver"
	}
	if t.timed {
		r.Started, r.Pid = t.started, t.pid
	}
	if t.ranOn != "" {
		r.Node = t.ranOn
	}
	switch {
	case t.state == taskDone && t.failureKind != "":
		r.State = TaskFailed
	case t.state == taskDone:
		r.State = TaskFinished
	case t.state == taskRunning:
		r.State = TaskRunning
	default:
		r.State = TaskPending
	}
	return r
}

// keepRecord keeps the record of t, which ends now.
func (c *Core) keepRecord(t *task) {
	if t.kind == wire.ExecActorCreate {
		return // the actor's record tells
	}
	r := c.record(t)
	r.Ended = c.now
	c.counts.ended(&r)
	c.history.add(r)
}

// TaskRecords returns the newest limit records (all when limit <= 0) of
// the tasks f selects, oldest submission first, and how many f selects:
// the live tasks', and of each tenant's kept records the limit that
// ended last. It copies only those, since the shell holds the core's
// lock while it runs.
func (c *Core) TaskRecords(f TaskFilter, limit int) (recs []TaskRecord, total int) {
	for _, t := range c.tasks {
		if t.state == taskDone || t.kind == wire.ExecActorCreate {
			continue
		}
		if r := c.record(t); f.match(&r) {
			recs = append(recs, r)
		}
	}
	total = len(recs)
	c.history.eachQueue(&f, func(q *recordRing, sf *storedFilter) {
		taken := 0
		for i := q.n - 1; i >= 0; i-- {
			if r := q.at(i); sf.match(r) {
				total++
				if limit <= 0 || taken < limit {
					recs = append(recs, c.history.record(r))
					taken++
				}
			}
		}
	})
	return NewestTasks(recs, limit), total
}

// NewestTasks sorts records by submission (then ID and attempt) and
// keeps the newest limit of them (all when limit <= 0), oldest first.
func NewestTasks(recs []TaskRecord, limit int) []TaskRecord {
	slices.SortFunc(recs, func(a, b TaskRecord) int {
		return cmp.Or(cmp.Compare(a.Submitted, b.Submitted), slices.Compare(a.ID[:], b.ID[:]), cmp.Compare(a.Attempt, b.Attempt))
	})
	if limit > 0 && len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return recs
}

// TaskCount is one row of a task summary: a function's tasks in one
// state.
type TaskCount struct {
	Name, Kind, State string
	Count             int
}

// TaskRetries is the state of a summary's count of the runs again of
// a function's tasks (each task's attempts past its first).
const TaskRetries = "retries"

// TaskSummary counts the tasks f selects by function, kind and state,
// without building their records.
func (c *Core) TaskSummary(f TaskFilter) []TaskCount {
	type key struct{ name, kind, state string }
	counts := map[key]int{}
	count := func(r *TaskRecord) {
		counts[key{r.Name, r.Kind, r.State}]++
		if r.Attempt > 1 {
			counts[key{r.Name, r.Kind, TaskRetries}] += r.Attempt - 1
		}
	}
	for _, t := range c.tasks {
		if t.state == taskDone || t.kind == wire.ExecActorCreate {
			continue
		}
		if r := c.record(t); f.match(&r) {
			count(&r)
		}
	}
	// The kept records are counted by their strings' references, which
	// makes no TaskRecord of each.
	type refKey struct{ name, kind, state uint32 }
	kept := map[refKey]int{}
	retried := map[refKey]int{}
	c.history.eachQueue(&f, func(q *recordRing, sf *storedFilter) {
		for i := range q.n {
			if r := q.at(i); sf.match(r) {
				k := refKey{r.strs[strName], r.strs[strKind], r.strs[strState]}
				kept[k]++
				if r.attempt > 1 {
					retried[k] += int(r.attempt) - 1
				}
			}
		}
	})
	str := c.history.strs.strs
	for k, n := range kept {
		counts[key{str[k.name], str[k.kind], str[k.state]}] += n
	}
	for k, n := range retried {
		counts[key{str[k.name], str[k.kind], TaskRetries}] += n
	}
	out := make([]TaskCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, TaskCount{Name: k.name, Kind: k.kind, State: k.state, Count: n})
	}
	slices.SortFunc(out, func(a, b TaskCount) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.State, b.State))
	})
	return out
}

// truncateError bounds a record's error text.
func truncateError(s string) string {
	if len(s) <= maxRecordError {
		return s
	}
	return s[:maxRecordError-3] + "..."
}

// ActorRecord is an actor as the state API lists it, from its owner: the
// node whose job created it (a node it was placed on, and a share's
// stand-in, leave it to the owner).
type ActorRecord struct {
	ID        objects.ID
	Job       JobID
	Tenant    string
	Class     string
	Name      string
	Namespace string
	// State is "pending" (not yet placed or started), "alive",
	// "restarting" or "dead".
	State    string
	Node     NodeID // where it lives (lived)
	Pid      int    // its worker process's, when it lives here
	Restarts int
	Detached bool
	// Cause is why it died.
	Cause   string
	Created Time
}

// ActorFilter selects actor records; zero fields select all.
type ActorFilter struct {
	Tenant    string
	AnyTenant bool
	Job       JobID
	State     string
	Class     string
}

// ActorRecords returns the records of the actors this node owns that f
// selects, in no order.
func (c *Core) ActorRecords(f ActorFilter) []ActorRecord {
	var out []ActorRecord
	for _, a := range c.actors {
		if a.stub || a.reportTo != "" || !f.AnyTenant && a.job.tenant != f.Tenant || f.Job != "" && a.job.id != f.Job || f.Class != "" && a.class != f.Class {
			continue
		}
		r := ActorRecord{ID: a.id, Job: a.job.id, Tenant: a.job.tenant, Class: a.class, Name: a.name, Namespace: a.namespace,
			Node: cmp.Or(a.node, c.cfg.Node), Restarts: a.restarts, Detached: a.detached, Created: a.create.submitted}
		if a.create.ranOn != "" && a.node == "" {
			r.Node = a.create.ranOn
		}
		switch {
		case a.state == actorDead:
			r.State, r.Cause = "dead", a.cause
		case a.state == actorAlive:
			r.State = "alive"
		case a.restarts > 0:
			r.State = "restarting"
		default:
			r.State = "pending"
		}
		if a.worker != nil {
			r.Pid, r.Node = a.worker.pid, c.cfg.Node
		}
		if f.State == "" || r.State == f.State {
			out = append(out, r)
		}
	}
	return out
}

// ObjectRecord is an object as the state API lists it, from one node:
// the record its core keeps. An object held on several nodes has a
// record on each (the shell merges them by ID).
type ObjectRecord struct {
	ID     objects.ID
	Job    JobID // "" for an object of no job
	Tenant string
	Size   int64
	Ready  bool
	Error  bool // its value is an error
	// Where its bytes are, for this node: "inline" (in the agent's
	// memory), "store" (the node's object store), "remote" (held on
	// Remote, for this node), or "pending" (not made yet).
	Where    string
	Remote   NodeID
	Refs     int
	Borrows  int
	Producer string // the task that makes (made) it, while it is known
	// Copies are the other nodes that pulled its bytes from here.
	Copies []NodeID
}

// ObjectFilter selects object records; zero fields select all.
type ObjectFilter struct {
	Tenant    string
	AnyTenant bool
	Job       JobID
}

// ObjectRecords returns the records of the objects f selects, in no
// order.
func (c *Core) ObjectRecords(f ObjectFilter) []ObjectRecord {
	var out []ObjectRecord
	for id, o := range c.objs {
		var job JobID
		tenant := ""
		if o.job != nil {
			job, tenant = o.job.id, o.job.tenant
		}
		if !f.AnyTenant && tenant != f.Tenant || f.Job != "" && job != f.Job {
			continue
		}
		r := ObjectRecord{ID: id, Job: job, Tenant: tenant, Size: o.size, Ready: o.ready, Error: o.isError, Refs: o.refs, Borrows: o.borrows}
		switch {
		case o.remote != "":
			r.Where, r.Remote = "remote", o.remote
		case !o.ready:
			r.Where = "pending"
		case o.stored:
			r.Where = "store"
		default:
			r.Where = "inline"
			r.Size = max(r.Size, int64(len(o.inline)))
		}
		if o.producer != nil {
			r.Producer = o.producer.name
		}
		for n := range o.copies {
			r.Copies = append(r.Copies, n)
		}
		slices.Sort(r.Copies)
		out = append(out, r)
	}
	return out
}

// GroupRecord is a placement group as the state API lists it, from the
// node whose job made it.
type GroupRecord struct {
	abi.GroupInfo
	Job    JobID
	Tenant string
}

// GroupRecords returns the placement groups of the tenants f selects, in
// no order (f's State and Name unused).
func (c *Core) GroupRecords(f TaskFilter) []GroupRecord {
	var out []GroupRecord
	for id, g := range c.groups {
		if !f.AnyTenant && g.job.tenant != f.Tenant || f.Job != "" && g.job.id != f.Job {
			continue
		}
		gi := abi.GroupInfo{ID: append([]byte(nil), id[:]...), Name: g.spec.Name, Strategy: cmp.Or(g.spec.Strategy, "PACK"), State: "pending",
			Bundles: g.spec.Bundles, Reason: g.failed, Detached: g.job.detachedKey != ""}
		switch {
		case g.failed != "":
			gi.State = "failed"
		case g.placed:
			gi.State = "created"
			nodes, _ := c.sched.GroupNodes(g.schedID())
			for _, n := range nodes {
				gi.Nodes = append(gi.Nodes, string(n))
			}
		}
		out = append(out, GroupRecord{GroupInfo: gi, Job: g.job.id, Tenant: g.job.tenant})
	}
	return out
}

// WorkerRecord is a worker (a sandbox instance of a job's module, in its
// job's worker process) as the state API lists it.
type WorkerRecord struct {
	ID     WorkerID
	Job    JobID
	Tenant string
	Pid    int
	// State is "starting", "loading", "idle", "busy", "parked" (busy,
	// blocked in get or wait) or "stopping".
	State string
	// Kind is "driver", "actor" (its class in Running) or "task".
	Kind    string
	Running string // the function or actor class it runs now
	Leased  bool   // it holds a lease: runs its process's short tasks itself
}

// WorkerRecords returns the workers of the tenants f selects, in no
// order (f's State and Name unused).
func (c *Core) WorkerRecords(f TaskFilter) []WorkerRecord {
	var out []WorkerRecord
	for _, w := range c.workers {
		if w.state == workerDead || !f.AnyTenant && w.job.tenant != f.Tenant || f.Job != "" && w.job.id != f.Job {
			continue
		}
		r := WorkerRecord{ID: w.id, Job: w.job.id, Tenant: w.job.tenant, Pid: w.pid, Kind: "task", Leased: w.lease != nil}
		switch {
		case w.driver != nil:
			r.Kind = "driver"
		case w.actor != nil:
			r.Kind, r.Running = "actor", w.actor.class
		}
		if w.task != nil && r.Running == "" {
			r.Running = w.task.name
		}
		switch {
		case w.state == workerStarting:
			r.State = "starting"
		case w.state == workerLoading:
			r.State = "loading"
		case w.state == workerStopping:
			r.State = "stopping"
		case w.parked:
			r.State = "parked"
		case w.task != nil || w.actor != nil:
			r.State = "busy"
		default:
			r.State = "idle"
		}
		out = append(out, r)
	}
	return out
}
