package fabric

import (
	"fmt"
	"math"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/wire"
	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/scheduler"
)

// maxBundles bounds the bundles of one placement group.
const maxBundles = 1000

// group is a placement group of a job.
type group struct {
	id      objects.ID
	job     *job
	placed  bool
	failed  string // why it will never be placed (or was removed)
	waiters []func()
}

func (g *group) schedID() scheduler.GroupID { return scheduler.GroupID(g.id[:]) }

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

// handleGroupCreate creates a group under the ID the worker made. An ID in
// use breaks the protocol; a spec the agent refuses makes a failed group,
// which pg_wait reports.
func (n *Node) handleGroupCreate(w *workerProc, m wire.GroupCreate) error {
	if _, err := n.current(w, m.Task); err != nil {
		return err
	}
	id := m.ID
	if id.IsNil() || n.groups[id] != nil || n.objs[id] != nil || n.tasks[id] != nil || n.actors[id] != nil {
		return fmt.Errorf("pg_create reuses ID %s", id.Short())
	}
	g := &group{id: id, job: w.job}
	n.groups[id] = g
	sg, err := groupSpec(m.Spec)
	if err != nil {
		g.failed = "was refused: " + err.Error()
		return nil
	}
	sg.ID = g.schedID()
	n.sched.CreateGroup(sg)
	n.schedule()
	return nil
}

// groupSpec decodes and checks a guest's GroupSpec.
func groupSpec(raw []byte) (scheduler.Group, error) {
	var spec abi.GroupSpec
	if err := wire.Unmarshal(raw, &spec); err != nil {
		return scheduler.Group{}, fmt.Errorf("malformed spec: %v", err)
	}
	if len(spec.Bundles) == 0 || len(spec.Bundles) > maxBundles {
		return scheduler.Group{}, fmt.Errorf("%d bundles; a placement group has 1 to %d", len(spec.Bundles), maxBundles)
	}
	sg := scheduler.Group{Strategy: scheduler.Pack}
	if spec.Strategy != "" {
		s, err := scheduler.ParseStrategy(spec.Strategy)
		if err != nil {
			return scheduler.Group{}, err
		}
		sg.Strategy = s
	}
	for i, b := range spec.Bundles {
		r, err := bundleResources(b)
		if err != nil {
			return scheduler.Group{}, fmt.Errorf("bundle %d: %v", i, err)
		}
		sg.Bundles = append(sg.Bundles, r)
	}
	return sg, nil
}

// jobGroup returns a group of w's job by ID.
func (n *Node) jobGroup(w *workerProc, id objects.ID) (*group, error) {
	g := n.groups[id]
	if g == nil || g.job != w.job {
		return nil, fmt.Errorf("no placement group %s in this job (it was removed or never existed)", id.Short())
	}
	return g, nil
}

func (n *Node) handleGroupWait(w *workerProc, m wire.GroupWait) {
	t, err := n.current(w, m.Task)
	if err != nil {
		n.reply(w, m.Seq, err, wire.Reply{})
		return
	}
	g, err := n.jobGroup(w, m.Group)
	if err != nil {
		n.reply(w, m.Seq, fmt.Errorf("pg_wait: %v", err), wire.Reply{})
		return
	}
	answer := func() {
		if g.failed != "" {
			n.reply(w, m.Seq, fmt.Errorf("placement group %s %s", g.id.Short(), g.failed), wire.Reply{})
			return
		}
		n.reply(w, m.Seq, nil, wire.Reply{})
	}
	if g.placed || g.failed != "" {
		answer()
		return
	}
	done := false
	var timer *time.Timer
	g.waiters = append(g.waiters, func() {
		if done || w.dead || w.task != t {
			return
		}
		done = true
		if timer != nil {
			timer.Stop()
		}
		answer()
	})
	if m.TimeoutMs >= 0 {
		timer = afterFunc(time.Duration(m.TimeoutMs)*time.Millisecond, func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if done || w.dead || w.task != t {
				return
			}
			done = true
			n.reply(w, m.Seq, nil, wire.Reply{Code: abi.TimedOut})
		})
	}
}

// handleGroupRemove removes a group of the worker's job; an unknown one
// (already removed) is ignored.
func (n *Node) handleGroupRemove(w *workerProc, m wire.GroupRemove) error {
	if _, err := n.current(w, m.Task); err != nil {
		return err
	}
	if g, err := n.jobGroup(w, m.Group); err == nil {
		n.removeGroup(g, "was removed")
		n.schedule()
	}
	return nil
}

// removeGroup frees a group's reservations and stops what runs in it, as
// Ray does. Caller holds n.mu.
func (n *Node) removeGroup(g *group, why string) {
	delete(n.groups, g.id)
	if g.failed == "" {
		g.failed = why
	}
	for _, tid := range n.sched.RemoveGroup(g.schedID()) {
		t := n.tasks[objects.ID([]byte(tid))]
		if t == nil || t.state == taskDone {
			continue
		}
		ev := abi.ErrorValue{Kind: "cancelled", Message: fmt.Sprintf("task %s stopped: its placement group %s", t.name, why), Task: t.name}
		switch {
		case t.kind == wire.ExecActorCreate:
			t.state = taskDone
			n.actorDead(t.actor, "its placement group "+why)
		case t.worker != nil:
			t.worker.killReason = &ev
			t.worker.kill()
		default:
			for i, q := range t.job.queue {
				if q == t {
					t.job.queue = append(t.job.queue[:i], t.job.queue[i+1:]...)
					break
				}
			}
			n.failTask(t, ev, false)
		}
	}
	g.fire()
}

// groupPlanned applies the groups part of a scheduling plan. Caller holds n.mu.
func (n *Node) groupPlanned(plan scheduler.Plan) {
	for _, p := range plan.Groups {
		if g := n.groups[objects.ID([]byte(p.Group))]; g != nil {
			g.placed = true
			g.fire()
		}
	}
	for _, inf := range plan.GroupsInfeasible {
		if g := n.groups[objects.ID([]byte(inf.Group))]; g != nil {
			g.failed = "can never be placed: " + inf.Reason
			g.fire()
		}
	}
}
