// Package scheduler is the deterministic placement core of Fabric.
//
// A Core holds the cluster's nodes and their resources, the tasks waiting for
// them, and the tasks placed on each node. It does no I/O, reads no clock and
// starts no goroutines: the caller feeds it events (AddNode, RemoveNode,
// Submit, ObjectReady, Finished, Blocked, Unblocked, Cancel) and asks for a
// Plan with Schedule, in the manner of etcd's raft. The same sequence of
// calls always yields the same plans, so tests drive it step by step.
//
// Placement follows Ray's hybrid policy: a task goes to the first node, in
// NodeID order, whose utilization stays below one half after placing it
// ("pack"); when no such node has room, to the node with the lowest
// utilization after placing ("spread"). A task that prefers a node (the
// one holding most of its arguments' bytes) goes there first when it has
// room. Tasks with equal demand, label selector and node affinity and
// preference form a scheduling class; once a task of a class
// finds no room, Schedule skips the rest of that class until its next call,
// and tasks of other classes still get their turn (no head-of-line blocking).
//
// Placement groups (Group, CreateGroup) reserve bundles of resources on
// nodes by a PACK, SPREAD, STRICT_PACK or STRICT_SPREAD strategy; tasks
// naming a group run in its bundles' reservations.
//
// A Core is not safe for concurrent use; the caller serializes calls.
package scheduler

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// NodeID names a node of the cluster.
type NodeID string

// IDSize is the size of task, object and group IDs: the agent's 20-byte
// object IDs, used as they are.
const IDSize = 20

// TaskID names a task. IDs are unique among the tasks a Core knows.
type TaskID [IDSize]byte

// ObjectKey names an object that tasks may depend on.
type ObjectKey [IDSize]byte

// String shows an ID that holds text (tests name IDs "t1") as that text,
// and any other in hex.
func (id TaskID) String() string { return idString(id) }

// String is as TaskID's.
func (k ObjectKey) String() string { return idString(k) }

// String is as TaskID's.
func (id GroupID) String() string { return idString(id) }

func idString(id [IDSize]byte) string {
	n := bytes.IndexByte(id[:], 0)
	if n < 0 {
		n = IDSize
	}
	text := n > 0 && bytes.Count(id[n:], []byte{0}) == IDSize-n
	for _, c := range id[:n] {
		text = text && c >= 0x20 && c < 0x7f
	}
	if text {
		return string(id[:n])
	}
	return hex.EncodeToString(id[:])
}

// compareIDs orders IDs by their bytes.
func compareIDs[T ~[IDSize]byte](a, b T) int { return bytes.Compare(a[:], b[:]) }

// Task is a unit of work waiting for resources.
type Task struct {
	ID     TaskID
	Demand Resources
	// Deps are objects not yet available; the task is not placed before
	// ObjectReady was called for each. The Core does not remember objects
	// that became ready before Submit: list only objects still missing.
	Deps []ObjectKey
	// Labels is a node selector: the node's labels must contain each key
	// with the equal value.
	Labels map[string]string
	// Selector is a label selector with operators: every term must hold
	// on the node.
	Selector []LabelTerm
	// Spread places the task on the least used node with room instead of
	// packing (Ray's SPREAD strategy).
	Spread bool
	// Node, when non-empty, is the only node the task may run on (hard
	// affinity).
	Node NodeID
	// Prefer, when non-empty, is the node the task should run on when it
	// has room (soft affinity): the node holding most of its arguments'
	// bytes. Without room there, the hybrid policy places it.
	Prefer NodeID
	// Group, when non-empty, is the placement group whose reserved
	// resources the task runs in: it waits until the group is placed and
	// then runs on a node holding one of its bundles.
	Group GroupID
	// Bundle is the index of the group's bundle the task runs in; -1 means
	// any bundle of the group (the first with room, in index order).
	// Ignored when Group is empty.
	Bundle int
	// Tenant and Job are whom the task's resources are charged to while
	// it runs, for fair sharing: queued tasks go by their tenant's
	// dominant share of what this Core placed first, then by their job's
	// within the tenant, then in submission order (dominant-resource
	// fairness, between tenants and between the jobs of one tenant).
	Tenant, Job string
	// Actor marks an actor's creation: it holds its resources while the
	// actor lives, and counts against its tenant's bound on actors.
	Actor bool
	// Uncharged marks a task charged to no one: a job's driver, which
	// holds nothing and is the job itself, not one of its tasks.
	Uncharged bool
	// Forwarded marks a task another node's scheduler placed here: it
	// counts in fair shares here, but against its tenant's quota only
	// there (see Allowance).
	Forwarded bool
}

// LabelOp is the operator of a LabelTerm.
type LabelOp uint8

// Label operators, as Ray's label selectors have them.
const (
	LabelIn        LabelOp = iota // the node's value is one of Values (one value: equals)
	LabelNotIn                    // it is none of them, or the node lacks the key (one value: not equals)
	LabelExists                   // the node has the key
	LabelNotExists                // the node lacks the key
)

// LabelTerm is one term of a label selector.
type LabelTerm struct {
	Key    string
	Op     LabelOp
	Values []string
}

// holds reports whether the term holds for a node's labels.
func (t *LabelTerm) holds(labels map[string]string) bool {
	v, ok := labels[t.Key]
	switch t.Op {
	case LabelIn:
		return ok && slices.Contains(t.Values, v)
	case LabelNotIn:
		return !ok || !slices.Contains(t.Values, v)
	case LabelExists:
		return ok
	case LabelNotExists:
		return !ok
	}
	return false
}

// String writes the term as Ray's selector syntax does: "key=v",
// "key!=v", "key in (a,b)", "key not in (a,b)", "key", "!key".
func (t *LabelTerm) String() string {
	switch {
	case t.Op == LabelIn && len(t.Values) == 1:
		return t.Key + "=" + t.Values[0]
	case t.Op == LabelNotIn && len(t.Values) == 1:
		return t.Key + "!=" + t.Values[0]
	case t.Op == LabelIn:
		return t.Key + " in (" + strings.Join(t.Values, ",") + ")"
	case t.Op == LabelNotIn:
		return t.Key + " not in (" + strings.Join(t.Values, ",") + ")"
	case t.Op == LabelExists:
		return t.Key
	}
	return "!" + t.Key
}

// Placement says that a task was placed on a node and holds its resources there.
type Placement struct {
	Task TaskID
	Node NodeID
}

// Infeasible says that a task was dropped because no node of the cluster can
// ever run it; Reason says why, for people.
type Infeasible struct {
	Task   TaskID
	Reason string
	// Quota is set when the task asks more than its tenant's quota,
	// rather than any node holds.
	Quota bool
}

// Plan is the outcome of one Schedule call.
type Plan struct {
	// Placements are the tasks placed by this call, in the order placed.
	Placements []Placement
	// Infeasible are the tasks dropped by this call because no node can
	// ever run them.
	Infeasible []Infeasible
	// Groups are the placement groups placed by this call, in the order
	// placed.
	Groups []GroupPlacement
	// GroupsInfeasible are the placement groups dropped by this call
	// because the current nodes can never hold them.
	GroupsInfeasible []GroupInfeasible
}

type taskStatus uint8

const (
	statusWaiting taskStatus = iota // waiting on deps
	statusQueued                    // ready, in its class queue
	statusRunning                   // placed on a node
)

type taskState struct {
	t       Task
	seq     uint64
	key     string // scheduling class key
	status  taskStatus
	missing map[ObjectKey]struct{} // unmet deps while waiting
	cls     *class                 // while queued
	idx     int                    // index in cls.queue while queued
	node    *node                  // while running
	blocked bool                   // while running: CPU given back
	grp     *group                 // while running in a bundle
	bundle  int                    // while running in a bundle: its index
	leased  bool                   // placed behind another task, charged nothing yet (see Lease)
	charged bool                   // its demand counts in its tenant's and job's shares
	accts   [2]*account            // while charged: its tenant's and job's
}

// class is a scheduling class: tasks with equal demand, labels and node
// affinity. Its queue is a min-heap by submission sequence.
type class struct {
	key    string
	demand Resources
	labels map[string]string
	sel    []LabelTerm
	spread bool
	node   NodeID
	prefer NodeID
	group  GroupID // placement group; empty for none
	bundle int     // bundle index in group; -1 for any
	queue  []*taskState
	gen    uint64 // Schedule call in which feasibility was last checked
	// feasibleIn is the Core's nodesGen in which the class was found
	// feasible: it stays so until a node is added, changed or removed.
	feasibleIn uint64
	// tenant and job are the accounts its tasks are charged to; tshare
	// and jshare their dominant shares when last looked at (Schedule).
	tenant, job    *account
	tshare, jshare float64
	served         uint64 // job.served when last looked at
	uncharged      bool   // its tasks are Uncharged
	forwarded      bool   // its tasks are Forwarded
	actor          bool   // its tasks are Actor
}

// account is what a tenant's or a job's running tasks hold.
type account struct {
	key  string
	used Resources
	// own and ownTasks are what used and tasks hold of tasks this Core
	// placed itself (not Forwarded): what counts against a quota.
	own       Resources
	ownTasks  int
	ownActors int    // of ownTasks, the actors
	tasks     int    // charged tasks
	queued    int    // queued tasks: the account is dropped when both are 0
	served    uint64 // a job's: when Schedule last placed one of its tasks (0: never)
}

type node struct {
	id    NodeID
	total Resources
	used  Resources
	// foreign is what the node said others use there (ObserveFree):
	// counted as used until ClearObserved.
	foreign Resources
	labels  map[string]string
	running map[TaskID]*taskState
	groups  map[GroupID]*group // groups with a bundle reserved here
}

// Core is the scheduler's state. Create one with New.
type Core struct {
	nodes   map[NodeID]*node
	order   []NodeID // sorted IDs of nodes
	tasks   map[TaskID]*taskState
	classes map[string]*class // classes with a non-empty queue
	keyBuf  []byte            // scratch for class keys
	waiters map[ObjectKey]map[uint64]*taskState
	seq     uint64
	queued  int
	gen     uint64
	// nodesGen counts changes to the nodes (added, changed, removed),
	// from 1; feasibility found in one generation holds until the next.
	nodesGen uint64
	visits   uint64 // task placements attempted by Schedule; for tests
	// spreadNext is where pickSpread starts looking among equal nodes.
	spreadNext int

	// accounts are the tenants' and jobs' charges, by accountKey;
	// placed counts the placements Schedule made, to mark when each job
	// was last served.
	accounts map[string]*account
	placed   uint64
	// allowances bound tenants' tasks (SetAllowances).
	allowances map[string]Allowance
	// total is what the nodes hold, for shares; totalGen the nodesGen it
	// was summed in.
	total    Resources
	totalGen uint64

	groups     map[GroupID]*group
	gqueue     []*group // groups not fully placed, by creation sequence
	gseq       uint64
	groupTasks map[GroupID]map[TaskID]*taskState // known tasks by Task.Group
}

// New returns an empty Core: no nodes, no tasks.
func New() *Core {
	return &Core{
		nodes:    make(map[NodeID]*node),
		tasks:    make(map[TaskID]*taskState),
		classes:  make(map[string]*class),
		waiters:  make(map[ObjectKey]map[uint64]*taskState),
		accounts: make(map[string]*account),

		groups:     make(map[GroupID]*group),
		groupTasks: make(map[GroupID]map[TaskID]*taskState),
	}
}

// AddNode adds a node with the given total resources and labels. Adding a node
// that exists updates its total and labels and keeps its used amounts and
// running tasks.
func (c *Core) AddNode(id NodeID, total Resources, labels map[string]string) {
	c.nodesGen++
	n := c.nodes[id]
	if n == nil {
		n = &node{id: id, running: make(map[TaskID]*taskState)}
		c.nodes[id] = n
		i := sort.Search(len(c.order), func(i int) bool { return c.order[i] >= id })
		c.order = append(c.order, "")
		copy(c.order[i+1:], c.order[i:])
		c.order[i] = id
	}
	n.total = total.clone()
	n.labels = copyLabels(labels)
}

// RemoveNode removes a node and forgets the tasks running there. It returns
// their IDs, sorted, for the caller to resubmit. Removing an unknown node
// returns nil. Placement groups with bundles on the node lose those bundles
// and go back to the group queue, to be placed again; their other bundles
// stay reserved.
func (c *Core) RemoveNode(id NodeID) []TaskID {
	n := c.nodes[id]
	if n == nil {
		return nil
	}
	c.nodesGen++
	delete(c.nodes, id)
	i := sort.Search(len(c.order), func(i int) bool { return c.order[i] >= id })
	c.order = append(c.order[:i], c.order[i+1:]...)
	var ids []TaskID
	for tid, ts := range n.running {
		ids = append(ids, tid)
		c.forget(ts)
	}
	sort.Slice(ids, func(i, j int) bool { return compareIDs(ids[i], ids[j]) < 0 })
	c.dropBundles(n)
	return ids
}

// Submit enqueues a task. Tasks are considered in submission order within
// their class. Submitting an ID that the Core already knows (waiting, queued
// or running) is ignored. The Core copies t and keeps no reference to its
// slices or maps.
func (c *Core) Submit(t Task) {
	if _, ok := c.tasks[t.ID]; ok {
		return
	}
	t.Demand = t.Demand.clone()
	t.Labels = copyLabels(t.Labels)
	t.Selector = copySelector(t.Selector)
	t.Deps = append([]ObjectKey(nil), t.Deps...)
	if t.Group == (GroupID{}) {
		t.Bundle = 0
	}
	c.seq++
	c.keyBuf = appendClassKey(c.keyBuf[:0], &t)
	key := ""
	if cl := c.classes[string(c.keyBuf)]; cl != nil {
		key = cl.key // no copy of a key its class has
	} else {
		key = string(c.keyBuf)
	}
	ts := &taskState{t: t, seq: c.seq, key: key}
	c.tasks[t.ID] = ts
	if t.Group != (GroupID{}) {
		m := c.groupTasks[t.Group]
		if m == nil {
			m = make(map[TaskID]*taskState)
			c.groupTasks[t.Group] = m
		}
		m[t.ID] = ts
	}
	c.queued++
	for _, k := range t.Deps {
		if ts.missing == nil {
			ts.missing = make(map[ObjectKey]struct{}, len(t.Deps))
		}
		ts.missing[k] = struct{}{}
	}
	if len(ts.missing) == 0 {
		c.enqueue(ts)
		return
	}
	ts.status = statusWaiting
	for k := range ts.missing {
		w := c.waiters[k]
		if w == nil {
			w = make(map[uint64]*taskState)
			c.waiters[k] = w
		}
		w[ts.seq] = ts
	}
}

// ObjectReady satisfies dependency k for every task waiting on it. A task
// whose last dependency is met becomes ready, keeping its submission order
// within its class. Calling it again for the same object is a no-op.
func (c *Core) ObjectReady(k ObjectKey) {
	w := c.waiters[k]
	if w == nil {
		return
	}
	delete(c.waiters, k)
	ready := make([]*taskState, 0, len(w))
	for _, ts := range w {
		ready = append(ready, ts)
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].seq < ready[j].seq })
	for _, ts := range ready {
		delete(ts.missing, k)
		if len(ts.missing) == 0 {
			ts.missing = nil
			c.enqueue(ts)
		}
	}
}

// Finished records that a placed task ended: its resources return to its
// node, or to its bundle for a task in a placement group. An unknown ID, or
// a task not placed, is a no-op.
func (c *Core) Finished(id TaskID) {
	ts := c.tasks[id]
	if ts == nil || ts.status != statusRunning {
		return
	}
	if !ts.leased {
		d := ts.t.Demand
		if ts.blocked {
			d.CPU = 0
		}
		pool := c.pool(ts)
		*pool = pool.Sub(d)
	}
	delete(ts.node.running, id)
	c.forget(ts)
}

// Lease places up to max queued tasks of the running task id's scheduling
// class (equal demand, labels, affinity and group) behind it, on its node
// and in its bundle, without charging them: each is to run in the
// reservation id holds, after id, on the same worker. Handoff passes the
// reservation on. Tasks are taken in submission order while accept
// approves them. It returns the tasks leased, in order; none for a task
// that is not running, is blocked, or is itself leased.
//
// Leasing lets an agent send a worker its next task before the current
// one ends, so that short tasks do not wait a round trip each.
func (c *Core) Lease(id TaskID, max int, accept func(TaskID) bool) []TaskID {
	ts := c.tasks[id]
	if ts == nil || ts.status != statusRunning || ts.blocked || ts.leased {
		return nil
	}
	cl := c.classes[ts.key]
	if cl != nil && c.othersFirst(cl) {
		return nil // the reservation goes back to Schedule, for them
	}
	var out []TaskID
	for cl != nil && len(cl.queue) > 0 && len(out) < max {
		next := cl.queue[0]
		if !accept(next.t.ID) {
			break
		}
		cl.remove(0)
		c.dequeued(cl)
		next.cls, next.idx = nil, -1
		next.status = statusRunning
		next.leased = true
		next.node, next.grp, next.bundle = ts.node, ts.grp, ts.bundle
		ts.node.running[next.t.ID] = next
		c.queued--
		out = append(out, next.t.ID)
	}
	if cl != nil && len(cl.queue) == 0 {
		delete(c.classes, cl.key)
	}
	return out
}

// Adopt places task t, new to the Core, behind the running task holder,
// on its node and in its bundle, without charging it: t runs in the
// reservation holder keeps (an agent's lease to a worker, which holds one
// task's resources while the worker runs its tasks one after another), and
// Finished forgets it. It reports false, doing nothing, when holder is not
// running and charged, when t is known, or when t names a placement group.
func (c *Core) Adopt(holder TaskID, t Task) bool {
	h := c.tasks[holder]
	if h == nil || h.status != statusRunning || h.leased || t.Group != (GroupID{}) {
		return false
	}
	if _, ok := c.tasks[t.ID]; ok {
		return false
	}
	t.Demand = t.Demand.clone()
	t.Labels = copyLabels(t.Labels)
	t.Deps = nil
	c.seq++
	ts := &taskState{t: t, seq: c.seq, key: h.key, status: statusRunning, leased: true, idx: -1,
		node: h.node, grp: h.grp, bundle: h.bundle}
	c.tasks[t.ID] = ts
	h.node.running[t.ID] = ts
	return true
}

// Detach moves the reservation of the running task id to holder, a new
// entry that keeps it until Finished(holder); id stays placed, adopted
// behind holder (as Adopt places a task). It reports false, doing
// nothing, unless id is running, charged, not blocked and in no placement
// group, and holder is new.
func (c *Core) Detach(id, holder TaskID) bool {
	ts := c.tasks[id]
	if ts == nil || ts.status != statusRunning || ts.leased || ts.blocked || ts.t.Group != (GroupID{}) {
		return false
	}
	if _, ok := c.tasks[holder]; ok {
		return false
	}
	h := &taskState{t: ts.t, seq: ts.seq, key: ts.key, status: statusRunning, idx: -1,
		node: ts.node, grp: ts.grp, bundle: ts.bundle}
	h.t.ID = holder
	c.tasks[holder] = h
	ts.node.running[holder] = h
	ts.leased = true
	h.charged, ts.charged = ts.charged, false // the reservation's charge goes with it
	h.accts, ts.accts = ts.accts, [2]*account{}
	return true
}

// Handoff records that the running task from ended and that to, a task
// leased behind it, now runs in its reservation. When from was blocked, to
// takes the CPU back (even past the node's total, as Unblocked does). It
// reports false, doing nothing, unless from is running and charged and to
// is leased in the same place.
func (c *Core) Handoff(from, to TaskID) bool {
	f, t := c.tasks[from], c.tasks[to]
	if f == nil || t == nil || f.status != statusRunning || f.leased || !t.leased ||
		t.status != statusRunning || f.node != t.node || f.grp != t.grp || f.bundle != t.bundle {
		return false
	}
	if f.blocked {
		c.pool(f).CPU += f.t.Demand.CPU
	}
	t.leased = false
	c.charge(t, c.classes[t.key]) // before f's charge goes: the accounts stay
	delete(f.node.running, from)
	c.forget(f)
	return true
}

// Blocked records that a placed task blocks (waiting in get): its CPU returns
// to the node (or to its bundle) while it is blocked. Other kinds stay held. Idempotent; a no-op
// for tasks not placed.
func (c *Core) Blocked(id TaskID) {
	ts := c.tasks[id]
	if ts == nil || ts.status != statusRunning || ts.blocked || ts.leased {
		return
	}
	ts.blocked = true
	c.pool(ts).CPU -= ts.t.Demand.CPU
	c.chargeCPU(ts, -ts.t.Demand.CPU)
}

// Unblocked records that a blocked task runs again: it takes its CPU back,
// even if that makes the node's available CPU negative. Idempotent; a no-op
// for tasks not blocked.
func (c *Core) Unblocked(id TaskID) {
	ts := c.tasks[id]
	if ts == nil || ts.status != statusRunning || !ts.blocked || ts.leased {
		return
	}
	ts.blocked = false
	c.pool(ts).CPU += ts.t.Demand.CPU
	c.chargeCPU(ts, ts.t.Demand.CPU)
}

// Cancel removes a task that is not placed yet, whether waiting on deps or
// queued. It reports whether the task was removed; placed and unknown tasks
// are left alone.
func (c *Core) Cancel(id TaskID) bool {
	ts := c.tasks[id]
	if ts == nil || !c.unqueue(ts) {
		return false
	}
	c.forget(ts)
	return true
}

// unqueue takes a task that is not placed out of the waiters or its class
// queue and counts it out of Queued. It reports false, doing nothing, for a
// placed task.
func (c *Core) unqueue(ts *taskState) bool {
	switch ts.status {
	case statusWaiting:
		for k := range ts.missing {
			if w := c.waiters[k]; w != nil {
				delete(w, ts.seq)
				if len(w) == 0 {
					delete(c.waiters, k)
				}
			}
		}
		ts.missing = nil
	case statusQueued:
		cl := ts.cls
		cl.remove(ts.idx)
		c.dequeued(cl)
		if len(cl.queue) == 0 {
			delete(c.classes, cl.key)
		}
	default:
		return false
	}
	c.queued--
	return true
}

// forget deletes a task from the Core's indexes of known tasks.
func (c *Core) forget(ts *taskState) {
	c.uncharge(ts)
	delete(c.tasks, ts.t.ID)
	if g := ts.t.Group; g != (GroupID{}) {
		if m := c.groupTasks[g]; m != nil {
			delete(m, ts.t.ID)
			if len(m) == 0 {
				delete(c.groupTasks, g)
			}
		}
	}
}

// pool returns the used amounts that a running task's demand counts in: its
// bundle's for a task in a placement group, else its node's.
func (c *Core) pool(ts *taskState) *Resources {
	if ts.grp != nil {
		return &ts.grp.used[ts.bundle]
	}
	return &ts.node.used
}

// Schedule first places queued placement groups, in creation order, each
// atomically (see Group), and drops the groups the nodes can never hold
// (Plan.GroupsInfeasible). It then places every ready task that fits now,
// and drops the queued tasks that no node can ever run (reported in
// Plan.Infeasible). When the cluster has no nodes, groups and tasks stay
// queued: a node may join.
//
// Tasks are walked in submission order, but once a task of a class finds no
// node with room, the rest of its class is skipped for this call. The cost is
// O((placed + classes) * (nodes + log queue)), however long the queue.
func (c *Core) Schedule() Plan {
	var plan Plan
	if len(c.nodes) == 0 {
		return plan
	}
	c.scheduleGroups(&plan)
	if len(c.classes) == 0 {
		return plan
	}
	c.gen++
	// A heap of classes by the sequence of their head task. Sorted is a heap.
	h := make(classHeap, 0, len(c.classes))
	for _, cl := range c.classes {
		h = append(h, cl)
	}
	for _, cl := range h {
		c.refreshShares(cl)
	}
	sort.Slice(h, h.less)
	for len(h) > 0 {
		cl := h[0]
		if c.refreshShares(cl) && len(h) > 1 {
			// Its tenant or job was charged since it was ordered: it
			// may no longer come first.
			h.down(0)
			if h[0] != cl {
				continue
			}
		}
		if cl.gen != c.gen && (cl.group != (GroupID{}) || cl.feasibleIn != c.nodesGen) {
			cl.gen = c.gen
			infeasible := c.infeasible
			if cl.group != (GroupID{}) {
				infeasible = c.groupTaskInfeasible
			}
			reason, ok := infeasible(cl)
			quota := false
			if r := c.pastQuota(cl); r != "" {
				reason, ok, quota = r, false, true
			}
			if ok && cl.group == (GroupID{}) {
				cl.feasibleIn = c.nodesGen // a group's bundles change without the nodes
			}
			if !ok {
				for len(cl.queue) > 0 {
					ts := cl.queue[0]
					cl.remove(0)
					c.dequeued(cl)
					c.forget(ts)
					c.queued--
					plan.Infeasible = append(plan.Infeasible, Infeasible{Task: ts.t.ID, Reason: reason, Quota: quota})
				}
				delete(c.classes, cl.key)
				h.pop()
				continue
			}
		}
		if c.overAllowance(cl) {
			h.pop() // the tenant holds its allowance: the class waits
			continue
		}
		c.visits++
		var n *node
		var g *group
		b := -1
		if cl.group != (GroupID{}) {
			g, b = c.pickBundle(cl)
			if g != nil {
				n = g.nodes[b]
			}
		} else {
			n = c.pick(cl)
		}
		if n == nil {
			h.pop() // the rest of this class waits for the next call
			continue
		}
		ts := cl.queue[0]
		cl.remove(0)
		c.placed++
		if cl.job != nil {
			cl.job.served = c.placed
		}
		ts.cls, ts.idx = nil, -1
		ts.status = statusRunning
		ts.node = n
		if g != nil {
			ts.grp, ts.bundle = g, b
			g.used[b] = g.used[b].Add(cl.demand)
		} else {
			n.used = n.used.Add(cl.demand)
		}
		n.running[ts.t.ID] = ts
		c.charge(ts, cl)
		c.dequeued(cl) // after the charge: the accounts stay while it runs
		c.queued--
		plan.Placements = append(plan.Placements, Placement{Task: ts.t.ID, Node: n.id})
		if len(cl.queue) == 0 {
			delete(c.classes, cl.key)
			h.pop()
		} else {
			h.down(0)
		}
	}
	return plan
}

// Available returns what the node has free now (total minus used), which may
// be negative for CPU after Unblocked. The bool is false for unknown nodes.
func (c *Core) Available(id NodeID) (Resources, bool) {
	n := c.nodes[id]
	if n == nil {
		return Resources{}, false
	}
	return n.total.Sub(n.used).Sub(n.foreign), true
}

// Total returns the node's total resources. The bool is false for unknown nodes.
func (c *Core) Total(id NodeID) (Resources, bool) {
	n := c.nodes[id]
	if n == nil {
		return Resources{}, false
	}
	return n.total.clone(), true
}

// Labels returns a copy of the node's labels. The bool is false for unknown nodes.
func (c *Core) Labels(id NodeID) (map[string]string, bool) {
	n := c.nodes[id]
	if n == nil {
		return nil, false
	}
	return copyLabels(n.labels), true
}

// Nodes returns the IDs of all nodes, sorted.
func (c *Core) Nodes() []NodeID {
	return append([]NodeID(nil), c.order...)
}

// QueuedDemand sums the demand of the tasks submitted and not yet placed,
// including those waiting on deps: the resources the cluster lacks now.
func (c *Core) QueuedDemand() Resources {
	var sum Resources
	for _, ts := range c.tasks {
		if ts.status != statusRunning {
			sum = sum.Add(ts.t.Demand)
		}
	}
	return sum
}

// Queued returns the number of tasks submitted and not yet placed, including
// those waiting on deps.
func (c *Core) Queued() int {
	return c.queued
}

// Running returns the number of tasks placed on the node and not finished.
func (c *Core) Running(id NodeID) int {
	n := c.nodes[id]
	if n == nil {
		return 0
	}
	return len(n.running)
}

// RunningTasks returns the IDs of the tasks placed on the node and not
// finished, sorted.
func (c *Core) RunningTasks(id NodeID) []TaskID {
	n := c.nodes[id]
	if n == nil {
		return nil
	}
	ids := make([]TaskID, 0, len(n.running))
	for tid := range n.running {
		ids = append(ids, tid)
	}
	sort.Slice(ids, func(i, j int) bool { return compareIDs(ids[i], ids[j]) < 0 })
	return ids
}

// enqueue puts a ready task into its class queue.
func (c *Core) enqueue(ts *taskState) {
	cl := c.classes[ts.key]
	if cl == nil {
		cl = &class{key: ts.key, demand: ts.t.Demand, labels: ts.t.Labels, sel: ts.t.Selector, spread: ts.t.Spread, node: ts.t.Node, prefer: ts.t.Prefer,
			group: ts.t.Group, bundle: ts.t.Bundle, uncharged: ts.t.Uncharged, forwarded: ts.t.Forwarded, actor: ts.t.Actor}
		c.classes[ts.key] = cl
	}
	c.queuedIn(cl, ts)
	ts.status = statusQueued
	ts.cls = cl
	cl.push(ts)
}

// matches reports whether node n satisfies the class's labels and affinity.
func (cl *class) matches(n *node) bool {
	if cl.node != "" && n.id != cl.node {
		return false
	}
	for k, v := range cl.labels {
		if nv, ok := n.labels[k]; !ok || nv != v {
			return false
		}
	}
	for i := range cl.sel {
		if !cl.sel[i].holds(n.labels) {
			return false
		}
	}
	return true
}

// pick chooses the node for the class's next task by the hybrid policy, or
// returns nil when no matching node has room now.
func (c *Core) pick(cl *class) *node {
	candidates := c.order
	if cl.node != "" {
		candidates = []NodeID{cl.node}
	}
	if p := c.nodes[cl.prefer]; p != nil && cl.node == "" && cl.matches(p) && fitsAvail(cl.demand, p) {
		return p // locality: where the arguments are
	}
	if cl.spread && cl.node == "" {
		return c.pickSpread(cl)
	}
	var best *node
	var bestU float64
	for _, id := range candidates {
		n := c.nodes[id]
		if n == nil || !cl.matches(n) || !cl.demand.Fits(n.total) || !fitsAvail(cl.demand, n) {
			continue
		}
		low, u := utilAfter(n, cl.demand)
		if low {
			return n // pack: first node in ID order that stays below half
		}
		if best == nil || u < bestU {
			best, bestU = n, u
		}
	}
	return best
}

// pickSpread chooses for a SPREAD class the next matching node with room
// after the one the last spread task went to, in ID order, as Ray's
// spread policy takes nodes in turn.
func (c *Core) pickSpread(cl *class) *node {
	for i := range c.order {
		at := (c.spreadNext + i) % len(c.order)
		if n := c.nodes[c.order[at]]; cl.matches(n) && fitsAvail(cl.demand, n) {
			c.spreadNext = at + 1
			return n
		}
	}
	return nil
}

// fitsAvail reports whether d fits the node's free resources, without
// allocating when nothing foreign was observed there.
func fitsAvail(d Resources, n *node) bool {
	if n.foreign.IsZero() {
		return fitsWithin(d, n.total, n.used)
	}
	return fitsWithin(d, n.total, n.used.Add(n.foreign))
}

// ObserveFree records what a node said it has free now: another node's
// scheduler places work there too, so the node refused a task this Core
// placed. Until ClearObserved, the part of the node's resources that this
// Core believed free and the node did not (total - used - free, each kind
// at least zero) counts as used by others. Unknown nodes are ignored.
func (c *Core) ObserveFree(id NodeID, free Resources) {
	n := c.nodes[id]
	if n == nil {
		return
	}
	f := n.total.Sub(n.used).Sub(free)
	f.CPU, f.Memory, f.GPU = max(f.CPU, 0), max(f.Memory, 0), max(f.GPU, 0)
	for k, v := range f.Custom {
		if v <= 0 {
			delete(f.Custom, k)
		}
	}
	if len(f.Custom) == 0 {
		f.Custom = nil
	}
	n.foreign = f
}

// ClearObserved forgets what ObserveFree recorded for the node.
func (c *Core) ClearObserved(id NodeID) {
	if n := c.nodes[id]; n != nil {
		n.foreign = Resources{}
	}
}

// fitsWithin reports whether d fits total-used, without allocating.
func fitsWithin(d, total, used Resources) bool {
	if d.CPU > 0 && d.CPU > total.CPU-used.CPU {
		return false
	}
	if d.Memory > 0 && d.Memory > total.Memory-used.Memory {
		return false
	}
	if d.GPU > 0 && d.GPU > total.GPU-used.GPU {
		return false
	}
	for k, v := range d.Custom {
		if v > 0 && v > total.Custom[k]-used.Custom[k] {
			return false
		}
	}
	return true
}

// utilAfter returns the node's utilization after placing d: the maximum over
// all kinds of used/total. low reports whether every kind stays strictly
// below one half, computed exactly in integers. A kind in use with a total of
// zero counts as fully used. The result does not depend on map order.
func utilAfter(n *node, d Resources) (low bool, u float64) {
	low = true
	add := func(used, total int64) {
		if total <= 0 {
			if used > 0 {
				low = false
				u = max(u, 1)
			}
			return
		}
		if used >= total-used { // used/total >= 1/2
			low = false
		}
		u = max(u, float64(used)/float64(total))
	}
	add(n.used.CPU+d.CPU, n.total.CPU)
	add(n.used.Memory+d.Memory, n.total.Memory)
	add(n.used.GPU+d.GPU, n.total.GPU)
	for k, t := range n.total.Custom {
		add(n.used.Custom[k]+d.Custom[k], t)
	}
	for k, v := range n.used.Custom {
		if _, ok := n.total.Custom[k]; !ok {
			add(v+d.Custom[k], 0)
		}
	}
	for k, v := range d.Custom {
		if _, ok := n.total.Custom[k]; !ok {
			add(v+n.used.Custom[k], 0)
		}
	}
	return low, u
}

// infeasible checks whether any node can ever run the class. When none can,
// it returns a reason for people and false.
func (c *Core) infeasible(cl *class) (string, bool) {
	var matching []*node
	for _, id := range c.order {
		n := c.nodes[id]
		if cl.matches(n) {
			if cl.demand.Fits(n.total) {
				return "", true
			}
			matching = append(matching, n)
		}
	}
	needs := "task needs " + cl.demand.String()
	if cl.node != "" && c.nodes[cl.node] == nil {
		return needs + " on node " + string(cl.node) + " but that node is not in the cluster", false
	}
	if len(matching) == 0 {
		if cl.node != "" {
			return needs + " but node " + string(cl.node) + " does not have labels " + formatSelector(cl), false
		}
		return needs + " but no node has labels " + formatSelector(cl), false
	}
	var who string
	switch {
	case cl.node != "":
		who = "node " + string(cl.node)
	case len(cl.labels) > 0 || len(cl.sel) > 0:
		who = "no node with labels " + formatSelector(cl)
	default:
		who = "no node"
	}
	// Show the nodes that come closest: most demanded kinds satisfied first.
	score := func(n *node) int {
		s := 0
		d := cl.demand
		if d.CPU <= n.total.CPU {
			s++
		}
		if d.Memory <= n.total.Memory {
			s++
		}
		if d.GPU <= n.total.GPU {
			s++
		}
		for k, v := range d.Custom {
			if v <= n.total.Custom[k] {
				s++
			}
		}
		return s
	}
	sort.SliceStable(matching, func(i, j int) bool { return score(matching[i]) > score(matching[j]) })
	const shown = 3
	var b strings.Builder
	b.WriteString(needs)
	if cl.node != "" {
		b.WriteString(" but " + who + " can never provide it (nodes: ")
	} else {
		b.WriteString(" but " + who + " can ever provide it (nodes: ")
	}
	for i, n := range matching {
		if i == shown {
			b.WriteString("; and " + strconv.Itoa(len(matching)-shown) + " more")
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(string(n.id) + " has " + n.total.String())
	}
	b.WriteString(")")
	return b.String(), false
}

// appendClassKey appends the key of t's scheduling class to dst: tasks
// with equal demands, labels, node, preference and bundle share a class.
// Strings are length-prefixed, so any bytes are safe.
func appendClassKey(dst []byte, t *Task) []byte {
	str := func(s string) {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendVarint(dst, t.Demand.CPU)
	dst = binary.AppendVarint(dst, t.Demand.Memory)
	dst = binary.AppendVarint(dst, t.Demand.GPU)
	var small [4]string
	keys := small[:0]
	for k, v := range t.Demand.Custom {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		dst = binary.AppendVarint(dst, t.Demand.Custom[k])
	}
	keys = small[:0]
	for k := range t.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(t.Labels[k])
	}
	dst = binary.AppendUvarint(dst, uint64(len(t.Selector)))
	for _, term := range t.Selector {
		str(term.Key)
		dst = append(dst, byte(term.Op))
		dst = binary.AppendUvarint(dst, uint64(len(term.Values)))
		for _, v := range term.Values {
			str(v)
		}
	}
	if t.Spread {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	str(string(t.Node))
	str(string(t.Prefer))
	dst = append(dst, t.Group[:]...)
	dst = binary.AppendVarint(dst, int64(t.Bundle))
	str(t.Tenant)
	str(t.Job)
	if t.Uncharged {
		dst = append(dst, 1)
	}
	if t.Forwarded {
		dst = append(dst, 2)
	}
	if t.Actor {
		dst = append(dst, 3)
	}
	return dst
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func formatLabels(m map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func copySelector(sel []LabelTerm) []LabelTerm {
	if len(sel) == 0 {
		return nil
	}
	out := make([]LabelTerm, len(sel))
	for i, t := range sel {
		out[i] = LabelTerm{Key: t.Key, Op: t.Op, Values: slices.Clone(t.Values)}
	}
	return out
}

// formatSelector writes a class's label constraints for people.
func formatSelector(cl *class) string {
	var parts []string
	if len(cl.labels) > 0 {
		parts = append(parts, formatLabels(cl.labels))
	}
	for i := range cl.sel {
		parts = append(parts, cl.sel[i].String())
	}
	return strings.Join(parts, ",")
}

func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// push adds a task to the class's min-heap by sequence.
func (cl *class) push(ts *taskState) {
	ts.idx = len(cl.queue)
	cl.queue = append(cl.queue, ts)
	cl.up(ts.idx)
}

// remove deletes the task at heap index i.
func (cl *class) remove(i int) {
	q := cl.queue
	last := len(q) - 1
	removed := q[i]
	if i != last {
		q[i] = q[last]
		q[i].idx = i
	}
	q[last] = nil
	cl.queue = q[:last]
	if i != last {
		if !cl.down(i) {
			cl.up(i)
		}
	}
	removed.cls, removed.idx = nil, -1
}

func (cl *class) up(i int) {
	q := cl.queue
	for i > 0 {
		p := (i - 1) / 2
		if q[p].seq <= q[i].seq {
			break
		}
		q[p], q[i] = q[i], q[p]
		q[p].idx, q[i].idx = p, i
		i = p
	}
}

// down sifts the task at i down and reports whether it moved.
func (cl *class) down(i0 int) bool {
	q := cl.queue
	i := i0
	for {
		l := 2*i + 1
		if l >= len(q) {
			break
		}
		m := l
		if r := l + 1; r < len(q) && q[r].seq < q[l].seq {
			m = r
		}
		if q[i].seq <= q[m].seq {
			break
		}
		q[i], q[m] = q[m], q[i]
		q[i].idx, q[m].idx = i, m
		i = m
	}
	return i > i0
}

// classHeap is a min-heap of classes by their tenant's dominant share,
// then their job's, then the sequence of their head task.
type classHeap []*class

func (h classHeap) less(i, j int) bool {
	a, b := h[i], h[j]
	if a.tshare != b.tshare {
		return a.tshare < b.tshare
	}
	if a.jshare != b.jshare {
		return a.jshare < b.jshare
	}
	if a.job != b.job && a.served != b.served {
		return a.served < b.served // the job served longest ago
	}
	return a.queue[0].seq < b.queue[0].seq
}

func (h *classHeap) pop() {
	s := *h
	last := len(s) - 1
	s[0] = s[last]
	s[last] = nil
	*h = s[:last]
	if last > 0 {
		h.down(0)
	}
}

func (h classHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
