//go:build linux

package fabric

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/transport"
	"github.com/wasmfabric/fabric/internal/wire"
)

// The state API lists what the nodes' cores hold, cluster-wide: the
// agent a request reaches asks every alive node (msgTasks), relaying the
// caller's token, and each answers with the records of the tenants that
// token sees, its own tasks only (a task another node sent it is that
// node's to list).

// msgTasks asks a node for its task records (a taskQuery); answer: a
// taskReply.
const msgTasks transport.Type = 31

// Bounds of the state API: records one answer holds, listings in flight
// through one agent, and how long a node has to answer.
const (
	maxTaskList     = 10_000
	defaultTaskList = 100
	// maxObjectSummary bounds the object records a node sends for a
	// summary (which merges copies across nodes by ID, so needs them).
	maxObjectSummary = 200_000
	// restartsCount is the state of an actor summary's count of restarts.
	restartsCount    = "restarts"
	maxStateRequests = 4
	stateTimeout     = 5 * time.Second
	maxQueryRuns     = 64
)

// tenantSlots bounds work in flight: at most total at once, and at most
// per of them for one tenant, so that one tenant's flood of listings
// leaves room for the others'.
type tenantSlots struct {
	mu         sync.Mutex
	total, per int
	n          int
	by         map[string]int
}

func newTenantSlots(total, per int) *tenantSlots {
	return &tenantSlots{total: total, per: per, by: map[string]int{}}
}

// acquire takes a slot for tenant, or reports that none is free for it.
func (s *tenantSlots) acquire(tenant string) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= s.total || s.by[tenant] >= s.per {
		return nil, false
	}
	s.n++
	s.by[tenant]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.n--
		if s.by[tenant]--; s.by[tenant] == 0 {
			delete(s.by, tenant)
		}
	}, true
}

// busy is the error of a listing refused for want of a slot.
func (s *tenantSlots) busy(tenant string) error {
	return fmt.Errorf("%w: %d state listings are being answered through this agent (at most %d for one tenant, %d in all); try again later",
		ErrTooMany, s.total, s.per, s.total)
}

// boundedLimit is how many records a listing of limit answers: the
// default for none (or a negative one), at most maxTaskList.
func boundedLimit(limit int) int {
	if limit <= 0 {
		return defaultTaskList
	}
	return min(limit, maxTaskList)
}

// taskQuery is msgTasks's body.
type taskQuery struct {
	Runs    []string `cbor:"1,keyasint,omitempty"` // the jobs' runs (none: every job's)
	State   string   `cbor:"2,keyasint,omitempty"`
	Name    string   `cbor:"3,keyasint,omitempty"`
	Limit   int      `cbor:"4,keyasint,omitempty"`
	Summary bool     `cbor:"5,keyasint,omitempty"`
	Token   string   `cbor:"6,keyasint,omitempty"`  // the caller's, relayed
	Actors  bool     `cbor:"7,keyasint,omitempty"`  // actors (Name: their class), not tasks
	Objects bool     `cbor:"9,keyasint,omitempty"`  // objects, not tasks
	Groups  bool     `cbor:"10,keyasint,omitempty"` // placement groups, not tasks
	Workers bool     `cbor:"11,keyasint,omitempty"` // workers, not tasks
	// Sent asks for the tasks other nodes sent here too (a timeline's
	// spans: where they ran, they have their start and worker).
	Sent bool `cbor:"8,keyasint,omitempty"`
	// History asks for the node's samples from this Unix second on
	// (GET /v1/history), not tasks.
	History int64 `cbor:"12,keyasint,omitempty"`
}

// taskReply is msgTasks's answer.
type taskReply struct {
	Tasks   []taskWire   `cbor:"1,keyasint,omitempty"`
	Total   int          `cbor:"2,keyasint,omitempty"`
	Counts  []countWire  `cbor:"3,keyasint,omitempty"`
	Actors  []actorWire  `cbor:"4,keyasint,omitempty"`
	Objects []objectWire `cbor:"5,keyasint,omitempty"`
	Node    string       `cbor:"6,keyasint,omitempty"` // the answering node
	Groups  []groupWire  `cbor:"7,keyasint,omitempty"`
	Workers []workerWire `cbor:"8,keyasint,omitempty"`
	History []nodeSample `cbor:"9,keyasint,omitempty"`
}

// groupWire is a placement group's record on the wire.
type groupWire struct {
	_                                      struct{} `cbor:",toarray"`
	ID, Run, Tenant, Name, Strategy, State string
	Reason                                 string
	Bundles                                []map[string]float64
	Nodes                                  []string
	Detached                               bool
}

// workerWire is a worker's record on the wire.
type workerWire struct {
	_                    struct{} `cbor:",toarray"`
	ID                   uint64
	Run, Tenant          string
	Pid                  int
	State, Kind, Running string
	Leased               bool
}

// objectWire is a node's record of an object on the wire.
type objectWire struct {
	_                     struct{} `cbor:",toarray"`
	ID, Run, Tenant       string
	Size                  int64
	Ready, Error, Spilled bool
	Where, Remote         string
	Refs, Borrows         int
	Producer              string
	Copies                []string
}

// actorWire is an actor record on the wire.
type actorWire struct {
	_                            struct{} `cbor:",toarray"`
	ID, Run, Tenant, Class, Name string
	Namespace, State, Node       string
	Pid, Restarts                int
	Detached                     bool
	Cause                        string
	Created                      int64
}

// taskWire is a task record on the wire, its times in Unix nanoseconds
// (0: none).
type taskWire struct {
	_                                 struct{} `cbor:",toarray"`
	ID, Run, Tenant, Name, Kind       string
	Actor, State, Node                string
	Pid, Attempt                      int
	Error, ErrorKind                  string
	Submitted, Placed, Started, Ended int64
	For                               string // the node that sent it (Sent)
}

type countWire struct {
	_                 struct{} `cbor:",toarray"`
	Name, Kind, State string
	Count             int
}

// wall is the wall-clock time of a core time of this node (0: none).
func (n *Node) wall(t core.Time) int64 {
	if t == 0 {
		return 0
	}
	return n.start.Add(t).UnixNano()
}

// taskRecords answers a task query on this node for the tenants f
// selects: the records, sorted and cut outside the core's lock.
func (n *Node) taskRecords(f core.TaskFilter, q taskQuery) taskReply {
	f.State, f.Name, f.Own = q.State, q.Name, !q.Sent
	runs := q.Runs
	if len(runs) == 0 {
		runs = []string{""}
	}
	limit := boundedLimit(q.Limit)
	var recs []core.TaskRecord
	var counts []core.TaskCount
	var r taskReply
	n.mu.Lock()
	for _, run := range runs {
		f.Job = core.JobID(run)
		if q.Summary {
			counts = append(counts, n.core.TaskSummary(f)...)
		} else {
			some, total := n.core.TaskRecords(f, limit)
			recs, r.Total = append(recs, some...), r.Total+total
		}
	}
	n.mu.Unlock()
	for _, c := range counts {
		r.Counts = append(r.Counts, countWire{Name: c.Name, Kind: c.Kind, State: c.State, Count: c.Count})
	}
	for _, t := range core.NewestTasks(recs, limit) {
		w := taskWire{ID: hex.EncodeToString(t.ID[:]), Run: string(t.Job), Tenant: t.Tenant, Name: t.Name, Kind: t.Kind,
			State: t.State, Node: string(t.Node), Pid: t.Pid, Attempt: t.Attempt, Error: t.Error, ErrorKind: t.ErrorKind,
			Submitted: n.wall(t.Submitted), Placed: n.wall(t.Placed), Started: n.wall(t.Started), Ended: n.wall(t.Ended), For: string(t.For)}
		if t.Actor != (core.TaskRecord{}).Actor {
			w.Actor = hex.EncodeToString(t.Actor[:])
		}
		r.Tasks = append(r.Tasks, w)
	}
	return r
}

// filterFor is the tenants whose records the caller sees: the cluster's
// operator every tenant's, a tenant's token its own.
func (c caller) filterFor() core.TaskFilter {
	if c.cluster {
		return core.TaskFilter{AnyTenant: true}
	}
	return core.TaskFilter{Tenant: c.token.Tenant}
}

// relayedCaller authenticates a token another node relayed, on the
// leader.
func (a *Agent) relayedCaller(ctx context.Context, token string) (caller, bool) {
	if !wellFormedToken(token) {
		return caller{}, false
	}
	ans, err := a.control(ctx, controlRequest{Op: "authenticate", Command: tokenHash(token)})
	if err != nil || len(ans.Tokens) != 1 {
		return caller{}, false
	}
	t := ans.Tokens[0]
	return caller{cluster: t.Tenant == "", token: t}, true
}

// handleTasksPeer answers another node's msgTasks.
func (a *Agent) handleTasksPeer(ctx context.Context, body []byte) ([]byte, error) {
	var q taskQuery
	if err := wire.Unmarshal(body, &q); err != nil {
		return nil, fmt.Errorf("a malformed task query: %v", err)
	}
	if len(q.Runs) > maxQueryRuns {
		return nil, fmt.Errorf("a task query of %d jobs' runs, at most %d", len(q.Runs), maxQueryRuns)
	}
	q.Limit = boundedLimit(q.Limit) // a member's query is bounded as a client's is
	c, ok := a.relayedCaller(ctx, q.Token)
	if !ok {
		return nil, fmt.Errorf("%w: the relayed token", ErrUnauthorized)
	}
	release, ok := a.stateServes.acquire(c.tenant())
	if !ok {
		return nil, a.stateServes.busy(c.tenant())
	}
	defer release()
	return wire.Marshal(a.node.stateRecords(c.filterFor(), q))
}

// stateRecords answers a state query on this node.
func (n *Node) stateRecords(f core.TaskFilter, q taskQuery) taskReply {
	var r taskReply
	switch {
	case q.History != 0:
		r.History = n.history.since(q.History, f)
	case q.Actors:
		r = n.actorRecords(f, q)
	case q.Objects:
		r = n.objectRecords(f, q)
	case q.Groups, q.Workers:
		r = n.groupsAndWorkers(f, q)
	default:
		r = n.taskRecords(f, q)
	}
	r.Node = n.cfg.NodeID
	return r
}

// objectRecords answers an object query on this node for the tenants f
// selects: its records of objects, with whether the store spilled them.
func (n *Node) objectRecords(tf core.TaskFilter, q taskQuery) taskReply {
	f := core.ObjectFilter{Tenant: tf.Tenant, AnyTenant: tf.AnyTenant}
	runs := q.Runs
	if len(runs) == 0 {
		runs = []string{""}
	}
	var recs []core.ObjectRecord
	n.mu.Lock()
	for _, run := range runs {
		f.Job = core.JobID(run)
		recs = append(recs, n.core.ObjectRecords(f)...)
	}
	n.mu.Unlock()
	slices.SortFunc(recs, func(a, b core.ObjectRecord) int { return slices.Compare(a.ID[:], b.ID[:]) })
	r := taskReply{Total: len(recs)}
	limit := maxTaskList
	if q.Summary { // every record: the summary counts each object once, merged across nodes
		limit = maxObjectSummary
	}
	if len(recs) > limit {
		recs = recs[:limit]
	}
	for _, o := range recs {
		w := objectWire{ID: hex.EncodeToString(o.ID[:]), Run: string(o.Job), Tenant: o.Tenant, Size: o.Size, Ready: o.Ready, Error: o.Error,
			Where: o.Where, Remote: string(o.Remote), Refs: o.Refs, Borrows: o.Borrows, Producer: o.Producer}
		if o.Where == "store" {
			w.Spilled = n.store.Spilled(o.ID)
		}
		for _, c := range o.Copies {
			w.Copies = append(w.Copies, string(c))
		}
		r.Objects = append(r.Objects, w)
	}
	return r
}

// groupsAndWorkers answers a query of placement groups or workers on
// this node for the tenants f selects.
func (n *Node) groupsAndWorkers(f core.TaskFilter, q taskQuery) taskReply {
	runs := q.Runs
	if len(runs) == 0 {
		runs = []string{""}
	}
	var r taskReply
	n.mu.Lock()
	for _, run := range runs {
		f.Job = core.JobID(run)
		if q.Groups {
			for _, g := range n.core.GroupRecords(f) {
				r.Groups = append(r.Groups, groupWire{ID: hex.EncodeToString(g.ID), Run: string(g.Job), Tenant: g.Tenant, Name: g.Name,
					Strategy: g.Strategy, State: g.State, Reason: g.Reason, Bundles: g.Bundles, Nodes: g.Nodes, Detached: g.Detached})
			}
		} else {
			for _, w := range n.core.WorkerRecords(f) {
				r.Workers = append(r.Workers, workerWire{ID: uint64(w.ID), Run: string(w.Job), Tenant: w.Tenant, Pid: w.Pid, State: w.State,
					Kind: w.Kind, Running: w.Running, Leased: w.Leased})
			}
		}
	}
	n.mu.Unlock()
	r.Total = len(r.Groups) + len(r.Workers)
	if len(r.Groups) > maxTaskList {
		r.Groups = r.Groups[:maxTaskList]
	}
	if len(r.Workers) > maxTaskList {
		r.Workers = r.Workers[:maxTaskList]
	}
	return r
}

// actorRecords answers an actor query on this node for the tenants f
// selects.
func (n *Node) actorRecords(tf core.TaskFilter, q taskQuery) taskReply {
	f := core.ActorFilter{Tenant: tf.Tenant, AnyTenant: tf.AnyTenant, State: q.State, Class: q.Name}
	runs := q.Runs
	if len(runs) == 0 {
		runs = []string{""}
	}
	var recs []core.ActorRecord
	n.mu.Lock()
	for _, run := range runs {
		f.Job = core.JobID(run)
		recs = append(recs, n.core.ActorRecords(f)...)
	}
	n.mu.Unlock()
	r := taskReply{Total: len(recs)}
	if q.Summary { // counts by class and state, and restarts by class
		type key struct{ class, state string }
		counts := map[key]int{}
		for _, a := range recs {
			counts[key{a.Class, a.State}]++
			if a.Restarts > 0 {
				counts[key{a.Class, restartsCount}] += a.Restarts
			}
		}
		for k, c := range counts {
			r.Counts = append(r.Counts, countWire{Name: k.class, Kind: "actor", State: k.state, Count: c})
		}
		return r
	}
	slices.SortFunc(recs, func(a, b core.ActorRecord) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), slices.Compare(a.ID[:], b.ID[:]))
	})
	if limit := boundedLimit(q.Limit); len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	for _, a := range recs {
		r.Actors = append(r.Actors, actorWire{ID: hex.EncodeToString(a.ID[:]), Run: string(a.Job), Tenant: a.Tenant, Class: a.Class, Name: a.Name,
			Namespace: a.Namespace, State: a.State, Node: string(a.Node), Pid: a.Pid, Restarts: a.Restarts, Detached: a.Detached,
			Cause: a.Cause, Created: n.wall(a.Created)})
	}
	return r
}

// aliveMembers lists the members gossip says are alive, sorted; this
// node among them when self.
func (a *Agent) aliveMembers(self bool) []string {
	var out []string
	a.tableMu.RLock()
	for id, m := range a.table {
		if m.Status == membership.Alive && (self || id != a.ID) {
			out = append(out, id)
		}
	}
	a.tableMu.RUnlock()
	slices.Sort(out)
	return out
}

// gatherTasks asks this node and every other alive one, in parallel;
// missing are the nodes that did not answer in time.
func (a *Agent) gatherTasks(ctx context.Context, c caller, q taskQuery) (replies []taskReply, missing []string) {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	others := a.aliveMembers(false)
	var mu sync.Mutex
	var wg sync.WaitGroup
	q.Token = callerToken(ctx)
	body := mustMarshal(q)
	for _, id := range others {
		wg.Go(func() {
			var r taskReply
			addr, err := a.addrOf(id)
			if err == nil {
				var b []byte
				_, b, err = a.quic.Call(ctx, addr, msgTasks, body)
				if err == nil {
					err = wire.Unmarshal(b, &r)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				missing = append(missing, id)
				return
			}
			replies = append(replies, r)
		})
	}
	local := a.node.stateRecords(c.filterFor(), q)
	wg.Wait()
	replies = append(replies, local)
	slices.Sort(missing)
	return replies, missing
}

// taskQueryOf reads a task listing's query; runs come from its job.
func (a *Agent) taskQueryOf(r *http.Request) (taskQuery, error) {
	v := r.URL.Query()
	path := strings.TrimSuffix(r.URL.Path, "/summary")
	q := taskQuery{State: v.Get("state"), Name: v.Get("name"), Actors: path == "/v1/actors", Objects: path == "/v1/objects",
		Groups: r.URL.Path == "/v1/placement-groups", Workers: r.URL.Path == "/v1/workers"}
	switch {
	case q.Objects, q.Groups, q.Workers:
		q.State, q.Name = "", ""
	case q.Actors:
		q.Name = v.Get("class")
		if !slices.Contains([]string{"", "pending", "alive", "restarting", "dead"}, q.State) {
			return q, fmt.Errorf("%w: state %q: pending, alive, restarting or dead", ErrBadRequest, q.State)
		}
	case !slices.Contains([]string{"", core.TaskPending, core.TaskRunning, core.TaskFinished, core.TaskFailed}, q.State):
		return q, fmt.Errorf("%w: state %q: pending, running, finished or failed", ErrBadRequest, q.State)
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxTaskList {
			return q, fmt.Errorf("%w: limit %q: 1 to %d", ErrBadRequest, s, maxTaskList)
		}
		q.Limit = n
	}
	if id := v.Get("job"); id != "" {
		j, err := a.tenantJob(r, id, false)
		if err != nil {
			return q, err
		}
		if len(j.Runs) == 0 {
			q.Runs = []string{"-"} // no attempt has started: no tasks
		} else {
			q.Runs = j.Runs[max(0, len(j.Runs)-maxQueryRuns):] // the latest attempts'
		}
	}
	return q, nil
}

// jobNames maps runs to the IDs the caller knows their jobs by.
func (a *Agent) jobNames(ctx context.Context, c caller) map[string]string {
	names := map[string]string{}
	jobs, err := a.listJobs(ctx)
	if err != nil {
		return names
	}
	for _, j := range jobs {
		if c.sees(j) {
			for _, run := range j.Runs {
				names[run] = c.jobID(j.ID)
			}
		}
	}
	return names
}

func nanos(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

// stateListing is what a state API handler answers from: its query,
// every node's answer, the nodes that did not answer, and the IDs the
// caller knows the jobs of runs by.
type stateListing struct {
	q       taskQuery
	replies []taskReply
	missing []string
	names   map[string]string
}

// job is the ID the caller knows run's job by (the run's own for work of
// no job of the cluster's records).
func (l *stateListing) job(run string) string { return cmp.Or(l.names[run], run) }

// limit is how many the listing answers.
func (l *stateListing) limit() int { return boundedLimit(l.q.Limit) }

// listState takes one of the agent's listing slots for the caller's
// tenant, reads the request's query (a summary's: counts), and asks every
// node; when it cannot, it answers the request and reports false.
func (a *Agent) listState(w http.ResponseWriter, r *http.Request, summary bool) (stateListing, bool) {
	c := callerOf(r)
	release, ok := a.stateReads.acquire(c.tenant())
	if !ok {
		apiFail(w, a.stateReads.busy(c.tenant()))
		return stateListing{}, false
	}
	defer release()
	q, err := a.taskQueryOf(r)
	if err != nil {
		apiFail(w, err)
		return stateListing{}, false
	}
	q.Summary = summary
	l := stateListing{q: q}
	l.replies, l.missing = a.gatherTasks(r.Context(), c, q)
	if !summary {
		l.names = a.jobNames(r.Context(), c)
	}
	return l, true
}

func (a *Agent) handleTasks(w http.ResponseWriter, r *http.Request) {
	l, ok := a.listState(w, r, false)
	if !ok {
		return
	}
	replies, missing := l.replies, l.missing
	out := TaskList{Tasks: []TaskInfo{}, Missing: missing}
	for _, rep := range replies {
		out.Total += rep.Total
		for _, t := range rep.Tasks {
			out.Tasks = append(out.Tasks, TaskInfo{ID: t.ID, Job: l.job(t.Run), Tenant: t.Tenant, Name: t.Name, Kind: t.Kind,
				Actor: t.Actor, State: t.State, Node: t.Node, Pid: t.Pid, Attempt: t.Attempt, Error: t.Error, ErrorType: t.ErrorKind,
				Submitted: time.Unix(0, t.Submitted).UTC(), Placed: nanos(t.Placed), Started: nanos(t.Started), Ended: nanos(t.Ended)})
		}
	}
	slices.SortFunc(out.Tasks, func(a, b TaskInfo) int {
		return cmp.Or(a.Submitted.Compare(b.Submitted), cmp.Compare(a.ID, b.ID), cmp.Compare(a.Attempt, b.Attempt))
	})
	if limit := l.limit(); len(out.Tasks) > limit {
		out.Tasks = out.Tasks[len(out.Tasks)-limit:]
	}
	writeJSON(w, out)
}

func (a *Agent) handleActors(w http.ResponseWriter, r *http.Request) {
	l, ok := a.listState(w, r, false)
	if !ok {
		return
	}
	replies, missing := l.replies, l.missing
	out := ActorList{Actors: []ActorInfo{}, Missing: missing}
	for _, rep := range replies {
		out.Total += rep.Total
		for _, x := range rep.Actors {
			out.Actors = append(out.Actors, ActorInfo{ID: x.ID, Job: l.job(x.Run), Tenant: x.Tenant, Class: x.Class, Name: x.Name,
				Namespace: x.Namespace, State: x.State, Node: x.Node, Pid: x.Pid, Restarts: x.Restarts, Detached: x.Detached, DeathCause: x.Cause,
				Created: time.Unix(0, x.Created).UTC()})
		}
	}
	slices.SortFunc(out.Actors, func(a, b ActorInfo) int { return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID)) })
	if limit := l.limit(); len(out.Actors) > limit {
		out.Actors = out.Actors[len(out.Actors)-limit:]
	}
	writeJSON(w, out)
}

// handleObjects lists objects, cluster-wide: the records of each node
// merged by ID, with the nodes that hold its bytes.
func (a *Agent) handleObjects(w http.ResponseWriter, r *http.Request) {
	l, ok := a.listState(w, r, false)
	if !ok {
		return
	}
	replies, missing := l.replies, l.missing
	byID := map[string]*ObjectInfo{}
	for _, rep := range replies {
		for _, o := range rep.Objects {
			info := byID[o.ID]
			if info == nil {
				info = &ObjectInfo{ID: o.ID, Job: l.job(o.Run), Tenant: o.Tenant, State: "pending", Locations: []string{}}
				byID[o.ID] = info
			}
			info.Size = max(info.Size, o.Size)
			info.Refs += o.Refs
			info.Producer = cmp.Or(info.Producer, o.Producer)
			switch {
			case o.Error:
				info.State = "error"
			case o.Ready && info.State != "error":
				info.State = "ready"
			}
			if o.Where == "store" || o.Where == "inline" {
				info.Locations = append(info.Locations, rep.Node)
				info.Inline = info.Inline || o.Where == "inline"
				info.Spilled = info.Spilled || o.Spilled
			}
		}
	}
	out := ObjectList{Objects: []ObjectInfo{}, Missing: missing}
	for _, info := range byID {
		slices.Sort(info.Locations)
		info.Locations = slices.Compact(info.Locations)
		out.Objects = append(out.Objects, *info)
	}
	slices.SortFunc(out.Objects, func(a, b ObjectInfo) int { return cmp.Compare(a.ID, b.ID) })
	out.Total = len(out.Objects)
	if limit := l.limit(); len(out.Objects) > limit {
		out.Objects = out.Objects[:limit]
	}
	writeJSON(w, out)
}

// handleGroupsAndWorkers lists placement groups or workers, cluster-wide.
func (a *Agent) handleGroupsAndWorkers(w http.ResponseWriter, r *http.Request) {
	l, ok := a.listState(w, r, false)
	if !ok {
		return
	}
	replies, missing := l.replies, l.missing
	limit := l.limit()
	if l.q.Groups {
		out := PlacementGroupList{Groups: []PlacementGroupInfo{}, Missing: missing}
		for _, rep := range replies {
			for _, g := range rep.Groups {
				out.Groups = append(out.Groups, PlacementGroupInfo{ID: g.ID, Job: l.job(g.Run), Tenant: g.Tenant, Name: g.Name,
					Strategy: g.Strategy, State: g.State, Reason: g.Reason, Bundles: g.Bundles, Nodes: g.Nodes, Detached: g.Detached, Node: rep.Node})
			}
		}
		slices.SortFunc(out.Groups, func(a, b PlacementGroupInfo) int { return cmp.Compare(a.ID, b.ID) })
		out.Total = len(out.Groups)
		out.Groups = out.Groups[:min(limit, len(out.Groups))]
		writeJSON(w, out)
		return
	}
	out := WorkerList{Workers: []WorkerInfo{}, Missing: missing}
	for _, rep := range replies {
		for _, x := range rep.Workers {
			out.Workers = append(out.Workers, WorkerInfo{ID: x.ID, Node: rep.Node, Job: l.job(x.Run), Tenant: x.Tenant, Pid: x.Pid,
				State: x.State, Kind: x.Kind, Running: x.Running, Leased: x.Leased})
		}
	}
	slices.SortFunc(out.Workers, func(a, b WorkerInfo) int { return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID)) })
	out.Total = len(out.Workers)
	out.Workers = out.Workers[:min(limit, len(out.Workers))]
	writeJSON(w, out)
}

func (a *Agent) handleTaskSummary(w http.ResponseWriter, r *http.Request) {
	l, ok := a.listState(w, r, true)
	if !ok {
		return
	}
	replies, missing := l.replies, l.missing
	type key struct{ name, kind string }
	rows := map[key]*TaskSummaryRow{}
	for _, rep := range replies {
		for _, c := range rep.Counts {
			k := key{c.Name, c.Kind}
			row := rows[k]
			if row == nil {
				row = &TaskSummaryRow{Name: c.Name, Kind: c.Kind, States: map[string]int{}}
				rows[k] = row
			}
			if c.State == core.TaskRetries {
				row.Retries += c.Count
				continue
			}
			row.States[c.State] += c.Count
			row.Total += c.Count
		}
	}
	out := TaskSummary{Rows: []TaskSummaryRow{}, Missing: missing}
	for _, row := range rows {
		out.Rows = append(out.Rows, *row)
		out.Total += row.Total
	}
	slices.SortFunc(out.Rows, func(a, b TaskSummaryRow) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Kind, b.Kind))
	})
	writeJSON(w, out)
}

// handleActorSummary counts the actors by class and state, cluster-wide.
func (a *Agent) handleActorSummary(w http.ResponseWriter, r *http.Request) {
	l, ok := a.listState(w, r, true)
	if !ok {
		return
	}
	rows := map[string]*ActorSummaryRow{}
	for _, rep := range l.replies {
		for _, c := range rep.Counts {
			row := rows[c.Name]
			if row == nil {
				row = &ActorSummaryRow{Class: c.Name, States: map[string]int{}}
				rows[c.Name] = row
			}
			if c.State == restartsCount {
				row.Restarts += c.Count
				continue
			}
			row.States[c.State] += c.Count
			row.Total += c.Count
		}
	}
	out := ActorSummary{Rows: []ActorSummaryRow{}, Missing: l.missing}
	for _, row := range rows {
		out.Rows = append(out.Rows, *row)
		out.Total += row.Total
	}
	slices.SortFunc(out.Rows, func(a, b ActorSummaryRow) int { return cmp.Compare(a.Class, b.Class) })
	writeJSON(w, out)
}

// handleObjectSummary counts the objects by job, each once however many
// nodes hold it: how many, their bytes, by state, and those spilled.
func (a *Agent) handleObjectSummary(w http.ResponseWriter, r *http.Request) {
	l, ok := a.listState(w, r, true)
	if !ok {
		return
	}
	names := a.jobNames(r.Context(), callerOf(r))
	type seen struct {
		run, tenant string
		size        int64
		state       string
		spilled     bool
	}
	objs := map[string]*seen{}
	var truncated []string
	for _, rep := range l.replies {
		for _, o := range rep.Objects {
			s := objs[o.ID]
			if s == nil {
				s = &seen{run: o.Run, tenant: o.Tenant, state: "pending"}
				objs[o.ID] = s
			}
			s.size = max(s.size, o.Size)
			switch {
			case o.Error:
				s.state = "error"
			case o.Ready && s.state != "error":
				s.state = "ready"
			}
			s.spilled = s.spilled || o.Spilled
		}
		if rep.Total > len(rep.Objects) {
			truncated = append(truncated, rep.Node)
		}
	}
	type key struct{ run, tenant string }
	rows := map[key]*ObjectSummaryRow{}
	out := ObjectSummary{Rows: []ObjectSummaryRow{}, Missing: l.missing, Truncated: truncated}
	for _, s := range objs {
		k := key{s.run, s.tenant}
		row := rows[k]
		if row == nil {
			row = &ObjectSummaryRow{Job: cmp.Or(names[s.run], s.run), Tenant: s.tenant, States: map[string]int{}}
			rows[k] = row
		}
		row.Objects++
		row.Bytes += s.size
		row.States[s.state]++
		if s.spilled {
			row.Spilled++
			row.SpilledBytes += s.size
		}
		out.Total++
		out.Bytes += s.size
	}
	for _, row := range rows {
		out.Rows = append(out.Rows, *row)
	}
	slices.SortFunc(out.Rows, func(a, b ObjectSummaryRow) int {
		return cmp.Or(cmp.Compare(a.Job, b.Job), cmp.Compare(a.Tenant, b.Tenant))
	})
	writeJSON(w, out)
}

// traceEvent is one event of a Chrome trace (the Trace Event Format's
// complete events), as `ray timeline` writes them.
type traceEvent struct {
	Name  string         `json:"name"`
	Cat   string         `json:"cat"`
	Ph    string         `json:"ph"`
	Scope string         `json:"s,omitempty"` // an instant event's: t (its thread)
	Ts    float64        `json:"ts"`          // µs
	Dur   float64        `json:"dur"`         // µs
	Pid   string         `json:"pid"`
	Tid   string         `json:"tid"`
	Cname string         `json:"cname,omitempty"`
	Args  map[string]any `json:"args,omitempty"`
}

// handleTimeline answers a job's task spans as a Chrome trace: one
// complete event per task attempt that started, on its node (pid) and
// worker process (tid), from where it ran.
func (a *Agent) handleTimeline(w http.ResponseWriter, r *http.Request) {
	release, ok := a.stateReads.acquire(callerOf(r).tenant())
	if !ok {
		apiFail(w, a.stateReads.busy(callerOf(r).tenant()))
		return
	}
	defer release()
	j, err := a.tenantJob(r, r.PathValue("id"), false)
	if err != nil {
		apiFail(w, err)
		return
	}
	q := taskQuery{Runs: j.Runs[max(0, len(j.Runs)-maxQueryRuns):], Limit: maxTaskList, Sent: true}
	if len(q.Runs) == 0 {
		writeJSON(w, []traceEvent{})
		return
	}
	replies, missing := a.gatherTasks(r.Context(), callerOf(r), q)
	if len(missing) > 0 {
		w.Header().Set("Fabric-Missing-Nodes", strings.Join(missing, ","))
	}
	// Where a task ran on another node, that node's record has its span;
	// the owner's only when and where it was sent.
	ranElsewhere := map[string]bool{}
	for _, rep := range replies {
		for _, t := range rep.Tasks {
			if t.For != "" {
				ranElsewhere[t.ID] = true
			}
		}
	}
	events := []traceEvent{}
	now := time.Now().UnixNano()
	for _, rep := range replies {
		for _, t := range rep.Tasks {
			start := cmp.Or(t.Started, t.Placed)
			if start == 0 || t.For == "" && ranElsewhere[t.ID] {
				continue
			}
			end := cmp.Or(t.Ended, now)
			ev := traceEvent{Name: t.Name, Cat: t.Kind, Ph: "X", Ts: float64(start) / 1e3, Dur: float64(max(0, end-start)) / 1e3,
				Pid: "Node " + t.Node, Tid: "Worker " + strconv.Itoa(t.Pid),
				Args: map[string]any{"task_id": t.ID, "state": t.State, "attempt": t.Attempt}}
			if t.Pid == 0 {
				ev.Tid = "Worker (not seen)"
			}
			if t.Error != "" {
				ev.Args["error"], ev.Cname = t.Error, "terrible"
			}
			if t.Actor != "" {
				ev.Args["actor_id"] = t.Actor
			}
			events = append(events, ev)
		}
	}
	// The job's actors: an instant event where and when each was made,
	// on its worker's track (its calls' spans are above, as methods).
	q.Actors, q.Sent = true, false
	actors, _ := a.gatherTasks(r.Context(), callerOf(r), q)
	for _, rep := range actors {
		for _, x := range rep.Actors {
			ev := traceEvent{Name: x.Class + " created", Cat: "actor", Ph: "i", Scope: "t", Ts: float64(x.Created) / 1e3,
				Pid: "Node " + x.Node, Tid: "Worker " + strconv.Itoa(x.Pid),
				Args: map[string]any{"actor_id": x.ID, "state": x.State, "restarts": x.Restarts}}
			if x.Pid == 0 {
				ev.Tid = "Worker (not seen)"
			}
			if x.Name != "" {
				ev.Args["name"] = x.Name
			}
			if x.Cause != "" {
				ev.Args["death_cause"] = x.Cause
			}
			events = append(events, ev)
		}
	}
	slices.SortFunc(events, func(a, b traceEvent) int { return cmp.Or(cmp.Compare(a.Ts, b.Ts), cmp.Compare(a.Name, b.Name)) })
	writeJSON(w, events)
}
