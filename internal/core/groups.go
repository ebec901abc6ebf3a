package core

import (
	"fmt"
	"math"
	"slices"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
)

// maxBundles bounds the bundles of one placement group.
const maxBundles = 1000

// group is a placement group of a job.
type group struct {
	id      objects.ID
	job     *job
	spec    abi.GroupSpec // as the guest gave it, for pg_table
	charge  int64         // what it counts against the heap budget
	placed  bool
	failed  string // why it will never be placed (or was removed)
	waiters []func()
}

// maxGroupName bounds a placement group's name.
const maxGroupName = 1024

// groupCharge is what a placement group's record counts against the heap
// budget beyond its spec's bytes.
const groupCharge = 256

func (g *group) schedID() scheduler.GroupID { return scheduler.GroupID(g.id) }

// fire wakes the waiters of a group that was placed or failed.
func (g *group) fire() {
	ws := g.waiters
	g.waiters = nil
	for _, f := range ws {
		f()
	}
}

// bundleResources converts a guest's bundle to scheduler resources.
func bundleResources(b map[string]float64) (scheduler.Resources, error) {
	var r scheduler.Resources
	for k, v := range b {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e12 || k == "" {
			return r, fmt.Errorf("bundle resource %q amount %v is not a non-negative amount", k, v)
		}
		switch k {
		case "CPU":
			r.CPU = scheduler.Quantity(v)
		case "GPU":
			r.GPU = scheduler.Quantity(v)
		case "memory":
			r.Memory = int64(v)
		default:
			if r.Custom == nil {
				r.Custom = map[string]int64{}
			}
			r.Custom[k] = scheduler.Quantity(v)
		}
	}
	return r, nil
}

// groupCreate creates a group under the ID the worker made. An ID in
// use breaks the protocol; a spec the agent refuses makes a failed group,
// which pg_wait reports.
func (c *Core) groupCreate(w *worker, m wire.GroupCreate) error {
	if _, err := c.current(w, m.Task); err != nil {
		return err
	}
	id := m.ID
	if id.IsNil() || c.groups[id] != nil || c.objs[id] != nil || c.tasks[id] != nil || c.actors[id] != nil {
		return fmt.Errorf("pg_create reuses ID %s", id.Short())
	}
	// A group's record counts against the heap budget, as values do: a
	// job cannot grow the agent without bound by creating groups. One that
	// does not fit is not kept (the job is told): pg_wait finds no group.
	n := groupCharge + int64(len(m.Spec))
	if c.full(w.job, n) {
		return nil
	}
	sg, spec, err := groupSpec(m.Spec)
	detached := err == nil && spec.Lifetime == abi.LifetimeDetached
	var key string
	if err == nil && spec.Name != "" {
		key = string(w.job.id) + "/" + spec.Name
		if detached {
			key = "\x00" + w.job.tenant + "\x00" + spec.Name // as groupKey
		}
		switch other, taken := c.groupNames[key]; {
		case len(spec.Name) > maxGroupName:
			err = fmt.Errorf("a name of %d bytes (at most %d)", len(spec.Name), maxGroupName)
		case c.cfg.Registry && len(spec.Name) > maxRegisteredName:
			err = fmt.Errorf("a name of %d bytes (at most %d in a cluster)", len(spec.Name), maxRegisteredName)
		case taken:
			err = fmt.Errorf("the name %q is taken by placement group %s in this job (or, detached, on this node)", spec.Name, other.Short())
		}
	}
	j := w.job
	if err == nil && detached {
		j = c.detachedJob(w.job, abi.DefaultNamespace) // outlives w's job
	}
	g := &group{id: id, job: j, charge: n}
	c.groups[id] = g
	c.chargeHeap(j, n)
	g.spec = spec
	if err == nil && key != "" {
		c.groupNames[key] = id
	}
	if err != nil {
		g.failed = "was refused: " + err.Error()
		g.spec.Name = "" // not its name: another group has it
		return nil
	}
	sg.ID = g.schedID()
	if c.cfg.Registry && spec.Name != "" {
		// Its name is the cluster's: placed once the registry has it.
		c.namingGroups[id] = &groupNaming{g: g, sg: sg}
		c.emit(c.proved(j, RegisterName{Group: true, Actor: id, Tenant: g.job.tenant, Namespace: groupSpace(g), Name: spec.Name, Job: j.id, Detached: detached}))
		return nil
	}
	c.sched.CreateGroup(sg)
	c.schedule()
	return nil
}

// groupSpace is the namespace of a group's name in the registry: the
// default one for a detached group, none (its job's own) otherwise.
func groupSpace(g *group) string {
	if g.job.detachedKey != "" {
		return abi.DefaultNamespace
	}
	return ""
}

// groupNaming is a named group waiting for the registry to record its
// name before it is placed.
type groupNaming struct {
	g         *group
	sg        scheduler.Group
	replacing bool
}

// groupNamed applies the registry's answer for a group's name.
func (c *Core) groupNamed(e NameRegistered, r *groupNaming) {
	g, h := r.g, e.Holder
	name := g.spec.Name
	if e.Err != "" && h != nil && h.Node == c.cfg.Node && !r.replacing && c.groups[h.Actor] == nil {
		// Held by a group of this node that is gone (the registry never
		// heard): take its place.
		r.replacing = true
		c.emit(c.proved(g.job, RegisterName{Group: true, Actor: g.id, Tenant: g.job.tenant, Namespace: groupSpace(g), Name: name, Job: g.job.id, Detached: g.job.detachedKey != "", Replaces: h.Actor}))
		return
	}
	delete(c.namingGroups, g.id)
	if c.groups[g.id] != g { // removed meanwhile
		if e.Err == "" {
			c.emit(UnregisterName{Group: true, Actor: g.id, Tenant: g.job.tenant, Namespace: groupSpace(g), Name: name, Job: g.job.id})
		}
		return
	}
	if e.Err == "" {
		c.sched.CreateGroup(r.sg)
		c.schedule()
		return
	}
	g.failed = "was refused: the cluster's registry could not record its name: " + e.Err
	if h != nil {
		g.failed = fmt.Sprintf("was refused: the name %q is taken by placement group %s on node %s", name, h.Actor.Short(), h.Node)
	}
	if key := groupKey(g.job, name); c.groupNames[key] == g.id {
		delete(c.groupNames, key)
	}
	g.spec.Name = "" // not its name
	g.fire()
}

// groupKey is a group's key in Core.groupNames: its job's ID and its
// name, or for a detached group its name alone.
func groupKey(j *job, name string) string {
	if j.detachedKey != "" {
		return "\x00" + j.tenant + "\x00" + name
	}
	return string(j.id) + "/" + name
}

// visible reports whether job j sees group g: its own, or detached.
func (g *group) visible(j *job) bool {
	return g.job == j || g.job.detachedKey != "" && g.job.tenant == j.tenant
}

// groupSpec decodes and checks a guest's GroupSpec.
func groupSpec(raw []byte) (scheduler.Group, abi.GroupSpec, error) {
	var spec abi.GroupSpec
	if err := wire.Unmarshal(raw, &spec); err != nil {
		return scheduler.Group{}, abi.GroupSpec{}, fmt.Errorf("malformed spec: %v", err)
	}
	if spec.Lifetime != "" && spec.Lifetime != abi.LifetimeDetached {
		return scheduler.Group{}, spec, fmt.Errorf("unknown lifetime %q (the default, or %q)", spec.Lifetime, abi.LifetimeDetached)
	}
	if len(spec.Bundles) == 0 || len(spec.Bundles) > maxBundles {
		return scheduler.Group{}, spec, fmt.Errorf("%d bundles; a placement group has 1 to %d", len(spec.Bundles), maxBundles)
	}
	sg := scheduler.Group{Strategy: scheduler.Pack}
	if spec.Strategy != "" {
		s, err := scheduler.ParseStrategy(spec.Strategy)
		if err != nil {
			return scheduler.Group{}, spec, err
		}
		sg.Strategy = s
	}
	for i, b := range spec.Bundles {
		r, err := bundleResources(b)
		if err != nil {
			return scheduler.Group{}, spec, fmt.Errorf("bundle %d: %v", i, err)
		}
		sg.Bundles = append(sg.Bundles, r)
	}
	return sg, spec, nil
}

// groupTable lists a job's placement groups (pg_table), by ID.
func (c *Core) groupTable(j *job) abi.GroupTable {
	tab := abi.GroupTable{Groups: []abi.GroupInfo{}}
	for _, id := range sortedIDs(c.groups) {
		g := c.groups[id]
		if !g.visible(j) {
			continue
		}
		gi := abi.GroupInfo{ID: append([]byte(nil), id[:]...), Name: g.spec.Name, Strategy: g.spec.Strategy, State: "pending",
			Bundles: g.spec.Bundles, Reason: g.failed, Detached: g.job.detachedKey != ""}
		if gi.Strategy == "" {
			gi.Strategy = "PACK"
		}
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
		tab.Groups = append(tab.Groups, gi)
	}
	return tab
}

// jobGroup returns a group of w's job by ID.
func (c *Core) jobGroup(w *worker, id objects.ID) (*group, error) {
	g := c.groups[id]
	if g == nil || !g.visible(w.job) {
		return nil, fmt.Errorf("no placement group %s in this job (it was removed, never existed, or was refused because the node's memory for objects and arguments was full)", id.Short())
	}
	return g, nil
}

func (c *Core) groupWait(w *worker, m wire.GroupWait) {
	t, err := c.current(w, m.Task)
	if err != nil {
		c.reply(w, m.Seq, err, wire.Reply{})
		return
	}
	g, err := c.jobGroup(w, m.Group)
	if err != nil {
		c.reply(w, m.Seq, fmt.Errorf("pg_wait: %v", err), wire.Reply{})
		return
	}
	answer := func() {
		if g.failed != "" {
			c.reply(w, m.Seq, fmt.Errorf("placement group %s %s", g.id.Short(), g.failed), wire.Reply{})
			return
		}
		c.reply(w, m.Seq, nil, wire.Reply{})
	}
	if g.placed || g.failed != "" {
		answer()
		return
	}
	done := false
	var timer TimerID
	g.waiters = append(g.waiters, func() {
		if done || w.state == workerDead || !w.runs(t) {
			return
		}
		done = true
		c.stopTimer(timer)
		answer()
	})
	if m.TimeoutMs >= 0 {
		timer = c.setTimer(Time(m.TimeoutMs)*1e6, func() {
			if done || w.state == workerDead || !w.runs(t) {
				return
			}
			done = true
			c.reply(w, m.Seq, nil, wire.Reply{Code: abi.TimedOut})
		})
	}
}

// groupRemove removes a group of the worker's job; an unknown one
// (already removed) is ignored.
func (c *Core) groupRemove(w *worker, m wire.GroupRemove) error {
	if _, err := c.current(w, m.Task); err != nil {
		return err
	}
	if g, err := c.jobGroup(w, m.Group); err == nil {
		c.removeGroup(g, "was removed")
		c.schedule()
	}
	return nil
}

// removeGroup frees a group's reservations and stops what runs in it, as
// Ray does.
func (c *Core) removeGroup(g *group, why string) {
	delete(c.groups, g.id)
	c.chargeHeap(g.job, -g.charge)
	g.charge = 0
	if key := groupKey(g.job, g.spec.Name); g.spec.Name != "" && c.groupNames[key] == g.id {
		delete(c.groupNames, key)
		if c.cfg.Registry {
			c.emit(UnregisterName{Group: true, Actor: g.id, Tenant: g.job.tenant, Namespace: groupSpace(g), Name: g.spec.Name, Job: g.job.id})
		}
	}
	defer c.maybeEndDetached(g.job)
	if g.failed == "" {
		g.failed = why
	}
	for _, tid := range c.sched.RemoveGroup(g.schedID()) {
		t := c.tasks[objects.ID(tid)]
		if t == nil || t.state == taskDone {
			continue
		}
		ev := abi.ErrorValue{Kind: abi.KindCancelled, Message: fmt.Sprintf("task %s stopped: its placement group %s", t.name, why), Task: t.name}
		switch {
		case t.kind == wire.ExecActorCreate:
			t.state = taskDone
			c.actorDead(t.actor, "its placement group "+why)
		case t.worker != nil && t.worker.task == t && t.kind == wire.ExecTask:
			c.stopExecution(t.worker, t, ev)
		case t.worker != nil:
			t.worker.killReason = &ev
			c.killWorker(t.worker)
		default:
			if i := slices.Index(t.job.queue, t); i >= 0 {
				t.job.queue = slices.Delete(t.job.queue, i, i+1)
			}
			if t.remoteNode != "" {
				c.cancelRemote(t, true)
			}
			c.failTask(t, ev, false)
		}
	}
	g.fire()
}

// groupPlanned applies the groups part of a scheduling plan.
func (c *Core) groupPlanned(plan scheduler.Plan) {
	for _, p := range plan.Groups {
		if g := c.groups[objects.ID(p.Group)]; g != nil {
			g.placed = true
			g.fire()
		}
	}
	for _, inf := range plan.GroupsInfeasible {
		if g := c.groups[objects.ID(inf.Group)]; g != nil {
			g.failed = "can never be placed: " + inf.Reason
			g.fire()
		}
	}
}
