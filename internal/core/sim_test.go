package core

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
)

// The random test drives a cluster of cores through long, seeded event
// sequences: jobs come and go, guests submit, put, get, wait, cancel,
// release, make and call and kill actors and placement groups, workers
// start, fail and die, timers fire, messages between nodes arrive in
// their order at random times, and nodes are lost. After every step the
// invariants hold (CheckInvariants); at the end, once every job is
// cancelled and everything in flight has arrived, every surviving node is
// idle (CheckIdle): no reference, hold, export, reservation or worker of a
// job is left, and its resources are back to their totals.

func TestRandomEvents(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 10
	}
	for seed := range uint64(seeds) {
		if os.Getenv("SEED") != "" && fmt.Sprint(seed) != os.Getenv("SEED") { // SEED=n runs seed n alone
			continue
		}
		s := newSim(seed, 3)
		for range 1500 {
			s.step()
			if s.failed() {
				break
			}
		}
		s.settle()
		if s.failed() {
			t.Fatalf("seed %d: %s\nlast events:\n%s", seed, s.err, strings.Join(s.trail, "\n"))
		}
	}
}

// FuzzEvents drives the same simulation with choices from the fuzzer's
// bytes.
func FuzzEvents(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("a job, its workers, its tasks and a lost node"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := newSim(uint64(len(b)%2), 2) // even lengths: with leases
		s.script = b
		for len(s.script) > 0 && !s.failed() {
			s.step()
		}
		s.settle()
		if s.failed() {
			t.Fatalf("%s\nlast events:\n%s", s.err, strings.Join(s.trail, "\n"))
		}
	})
}

// trailLen is how many events a failure shows.
var trailLen = 60

type sim struct {
	leases bool // the nodes grant leases
	rng    *rand.Rand
	script []byte // when set, choices come from it
	nodes  []*simNode
	now    Time
	// net holds the messages on their way, a queue per pair of nodes.
	net   map[[2]NodeID][]peerwire.Message
	jobs  int
	trail []string
	err   error
}

type simNode struct {
	id      NodeID
	core    *Core
	store   *fakeStore
	alive   bool
	timers  map[TimerID]Time
	workers map[WorkerID]*simWorker
	// answers are effects waiting for the shell's answer.
	answers []Effect
	// ids are the object and actor IDs guests of each job know.
	ids    map[JobID][]objects.ID
	actors map[JobID][]objects.ID
	groups map[JobID][]objects.ID
	roots  []JobID // jobs whose driver runs here
}

type simWorker struct {
	id      WorkerID
	job     JobID
	started bool
	ready   bool
	// execs sent to it, in order: the first runs.
	execs []wire.Exec
	// waiting is the Seq of the request it waits on (0: none).
	waiting uint64
	seq     uint64
	// nret are the returns of each execution the guest knows of.
	rets map[objects.ID]int
	// process is the job's process it is in; leaseKey the lease it holds.
	process, leaseKey string
}

func newSim(seed uint64, nodes int) *sim {
	s := &sim{rng: rand.New(rand.NewPCG(seed, seed*7+1)), net: map[[2]NodeID][]peerwire.Message{}, leases: seed%2 == 0}
	for i := range nodes {
		id := NodeID(fmt.Sprintf("n%d", i+1))
		labels := map[string]string{"tier": "core"}
		if i > 0 {
			labels["tier"] = "edge"
		}
		n := &simNode{id: id, store: newFakeStore(), alive: true, timers: map[TimerID]Time{}, workers: map[WorkerID]*simWorker{},
			ids: map[JobID][]objects.ID{}, actors: map[JobID][]objects.ID{}, groups: map[JobID][]objects.ID{}}
		n.core = New(Config{Node: id, Resources: scheduler.Resources{CPU: 2 * scheduler.Unit, Memory: 1 << 30}, Labels: labels,
			MaxWorkers: 6, InlineMax: 100, HeapBudget: 1 << 20, Seed: seed*100 + uint64(i), Clustered: nodes > 1,
			Leases: s.leases}, n.store)
		s.nodes = append(s.nodes, n)
	}
	for _, n := range s.nodes {
		for _, p := range s.nodes {
			if p != n {
				s.apply(n, PeerUp{Node: p.id, Resources: scheduler.Resources{CPU: 2 * scheduler.Unit, Memory: 1 << 30},
					Labels: map[string]string{"tier": string(map[bool]string{true: "core", false: "edge"}[p.id == "n1"])}})
			}
		}
	}
	return s
}

func (s *sim) failed() bool { return s.err != nil }

// intn chooses among n: from the script when there is one.
func (s *sim) intn(n int) int {
	if n <= 1 {
		return 0
	}
	if s.script != nil {
		if len(s.script) == 0 {
			return 0
		}
		b := s.script[0]
		s.script = s.script[1:]
		return int(b) % n
	}
	return s.rng.IntN(n)
}

func (s *sim) note(format string, args ...any) {
	s.trail = append(s.trail, fmt.Sprintf("%8s ", s.now)+fmt.Sprintf(format, args...))
	if len(s.trail) > trailLen {
		s.trail = s.trail[len(s.trail)-trailLen:]
	}
}

// apply steps a node with an event and handles its effects.
func (s *sim) apply(n *simNode, ev Event) {
	if !n.alive || s.err != nil {
		return
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.err = fmt.Errorf("node %s panicked on %T: %v", n.id, ev, r)
			}
		}()
		n.core.Step(s.now, ev)
	}()
	if s.err != nil {
		return
	}
	for _, e := range n.core.Effects() {
		s.effect(n, e)
	}
	if err := n.core.CheckInvariants(); err != nil && s.err == nil {
		s.err = fmt.Errorf("node %s after %T: %v", n.id, ev, err)
	}
}

func (s *sim) effect(n *simNode, e Effect) {
	switch e := e.(type) {
	case Log:
		// The simulated workers break the protocol on purpose in some
		// ways, never about leases or the order of a lane's executions: a
		// worker stopped for those is a bug of the core's (a lease lane the
		// core and its process disagree on, say).
		if strings.Contains(e.Text, "sent a bad") && s.err == nil &&
			(strings.Contains(e.Text, "lease") || strings.Contains(e.Text, "not running") || strings.Contains(e.Text, "not one of its process")) {
			s.err = fmt.Errorf("node %s: %s", n.id, e.Text)
		}
	case StartWorker:
		n.workers[e.Worker] = &simWorker{id: e.Worker, job: e.Job, rets: map[objects.ID]int{}, process: e.Process}
	case KillWorker:
		if w := n.workers[e.Worker]; w != nil && w.started {
			s.answerLater(n, WorkerExited{Worker: e.Worker, Cause: "killed"})
		}
	case SendWorker:
		w := n.workers[e.Worker]
		if w == nil {
			return
		}
		switch m := e.Msg.(type) {
		case wire.Exec:
			w.execs = append(w.execs, m)
		case wire.Lease:
			w.leaseKey = m.Fn + "\x00" + string(m.Opts)
		case wire.LeaseEnd:
			w.leaseKey = ""
			s.answerLater(n, WorkerMessage{Worker: w.id, Msg: wire.LeaseOver{}})
		case wire.Reply:
			if m.Seq == w.waiting {
				w.waiting = 0
				n.ids[w.job] = append(n.ids[w.job], m.IDs...)
			}
		case wire.Stop:
			// Most stops are answered; the others leave the agent to kill
			// the worker once its grace has passed.
			if len(w.execs) > 0 && w.execs[0].Task == m.Task && s.intn(4) != 0 {
				w.execs = w.execs[1:]
				w.waiting = 0
				s.answerLater(n, WorkerMessage{Worker: w.id, Msg: wire.Done{Task: m.Task, Kind: "interrupted", Error: "interrupted: stopped"}})
			}
		case wire.Drop:
			for i, ex := range w.execs {
				if i > 0 && ex.Task == m.Task {
					w.execs = slices.Delete(w.execs, i, i+1)
					s.answerLater(n, WorkerMessage{Worker: w.id, Msg: wire.Done{Task: m.Task, Dropped: true}})
					break
				}
			}
		}
	case SetTimer:
		n.timers[e.Timer] = e.At
	case StopTimer:
		delete(n.timers, e.Timer)
	case Reserve:
		n.store.sealed[e.ID] = false
		n.store.sizes[e.ID] = e.Size
		s.answerLater(n, e)
	case StoreValue:
		s.answerLater(n, e)
	case PeerSend:
		k := [2]NodeID{n.id, e.Node}
		s.net[k] = append(s.net[k], e.Msg)
	case FetchModule:
		s.answerLater(n, ModuleReady{Digest: e.Digest})
	case PullObject:
		s.answerLater(n, e)
	case Yield:
		s.answerLater(n, Continue{})
	case JobResult, JobEnded, JobOutput, TrimStore:
	default:
		s.err = fmt.Errorf("unknown effect %T", e)
	}
}

// answerLater keeps an event (or an effect to answer) for a later step.
func (s *sim) answerLater(n *simNode, x any) {
	if ev, ok := x.(Event); ok {
		n.answers = append(n.answers, wrapEvent{ev})
		return
	}
	n.answers = append(n.answers, x.(Effect))
}

type wrapEvent struct{ ev Event }

func (wrapEvent) effect() {}

// answer handles one waiting answer of node n.
func (s *sim) answer(n *simNode, i int) {
	a := n.answers[i]
	n.answers = slices.Delete(n.answers, i, i+1)
	switch a := a.(type) {
	case wrapEvent:
		if ex, ok := a.ev.(WorkerExited); ok {
			delete(n.workers, ex.Worker)
		}
		s.note("%s: %T", n.id, a.ev)
		s.apply(n, a.ev)
	case Reserve:
		ev := Reserved{Worker: a.Worker, Seq: a.Seq, ID: a.ID, Off: 4096}
		if s.intn(5) == 0 {
			ev.Err = "no room"
			delete(n.store.sealed, a.ID)
		}
		s.note("%s: reserved %v", n.id, ev.Err)
		s.apply(n, ev)
	case StoreValue:
		ev := ValueStored{ID: a.ID}
		if s.intn(6) == 0 {
			ev.Err = "disk full"
		} else {
			n.store.sealed[a.ID] = true
			n.store.sizes[a.ID] = int64(len(a.Data))
		}
		s.note("%s: stored %v", n.id, ev.Err)
		s.apply(n, ev)
	case PullObject:
		ev := ObjectPulled{Job: a.Job, ID: a.ID, Size: a.Size}
		if s.intn(5) == 0 {
			ev.Err = "link broke"
		} else {
			n.store.sealed[a.ID] = true
			n.store.sizes[a.ID] = a.Size
		}
		s.note("%s: pulled %v", n.id, ev.Err)
		s.apply(n, ev)
	}
}

// step does one random thing.
func (s *sim) step() {
	alive := s.alive()
	n := alive[s.intn(len(alive))]
	switch s.intn(20) {
	case 0:
		if s.jobs < 40 {
			s.jobs++
			id := JobID(fmt.Sprintf("j%d", s.jobs))
			n.roots = append(n.roots, id)
			s.note("%s: submit job %s", n.id, id)
			s.apply(n, SubmitJob{Job: id, Digest: "mod", Args: []byte{0x81, 0x80}})
		}
	case 1:
		if len(n.roots) > 0 && s.intn(8) == 0 {
			i := s.intn(len(n.roots))
			j := n.roots[i]
			n.roots = slices.Delete(n.roots, i, i+1)
			s.note("%s: cancel job %s", n.id, j)
			s.apply(n, CancelJob{Job: j, Reason: "cancelled"})
		}
	case 2, 3:
		s.startWorker(n)
	case 4, 5, 6, 7, 8, 9:
		s.guest(n)
		s.guest(n)
	case 10, 11, 12:
		s.deliver()
	case 13, 14:
		if len(n.answers) > 0 {
			s.answer(n, s.intn(len(n.answers)))
		}
	case 15:
		if s.leases && s.intn(2) == 0 { // short steps: functions look short, leases are granted
			s.now += Time(s.intn(500)+1) * 1e3
		} else {
			s.now += Time(s.intn(50)+1) * 1e6
		}
		s.fireTimers()
	case 16:
		if ws := n.sortedWorkers(); len(ws) > 0 && s.intn(3) == 0 {
			w := ws[s.intn(len(ws))]
			if w.started {
				s.note("%s: worker %d dies", n.id, w.id)
				delete(n.workers, w.id)
				s.apply(n, WorkerExited{Worker: w.id, Cause: "crashed"})
			}
		}
	case 17:
		if len(alive) > 1 && s.intn(30) == 0 && n.id != "n1" {
			s.loseNode(n)
		}
	case 18:
		if len(alive) > 1 && s.intn(10) == 0 {
			other := alive[s.intn(len(alive))]
			if other != n {
				s.note("%s: %s unreachable", n.id, other.id)
				s.apply(n, PeerDown{Node: other.id})
				s.apply(n, PeerUp{Node: other.id, Resources: scheduler.Resources{CPU: 2 * scheduler.Unit, Memory: 1 << 30}, Labels: other.core.cfg.Labels})
			}
		}
	case 19:
		s.apply(n, AddObject{ID: s.newID(), Inline: []byte{1}})
	}
}

func (s *sim) alive() []*simNode {
	var out []*simNode
	for _, n := range s.nodes {
		if n.alive {
			out = append(out, n)
		}
	}
	return out
}

func (n *simNode) sortedWorkers() []*simWorker {
	ws := make([]*simWorker, 0, len(n.workers))
	for _, w := range n.workers {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].id < ws[j].id })
	return ws
}

func (s *sim) newID() objects.ID {
	var id objects.ID
	for i := range 16 {
		id[i] = byte(s.rng.Uint32())
	}
	return id
}

// startWorker moves a worker of n one step through its start.
func (s *sim) startWorker(n *simNode) {
	for _, w := range n.sortedWorkers() {
		switch {
		case !w.started:
			w.started = true
			if s.intn(15) == 0 {
				delete(n.workers, w.id)
				s.note("%s: worker %d fails to start", n.id, w.id)
				s.apply(n, WorkerStartFailed{Worker: w.id, Err: "no memory"})
				return
			}
			s.note("%s: worker %d started", n.id, w.id)
			s.apply(n, WorkerStarted{Worker: w.id, Pid: 1000 + int(w.id)})
			return
		case !w.ready:
			w.ready = true
			if s.intn(25) == 0 {
				s.note("%s: worker %d fails to load", n.id, w.id)
				s.apply(n, WorkerLoadFailed{Worker: w.id, Err: "bad module"})
				return
			}
			s.note("%s: worker %d ready", n.id, w.id)
			s.apply(n, WorkerReady{Worker: w.id})
			return
		}
	}
}

// guest makes a running execution of n do something.
func (s *sim) guest(n *simNode) {
	var busy []*simWorker
	for _, w := range n.sortedWorkers() {
		if w.ready && len(w.execs) > 0 && w.waiting == 0 {
			busy = append(busy, w)
		}
	}
	if len(busy) == 0 {
		return
	}
	w := busy[s.intn(len(busy))]
	// What the worker answered before (a Dropped, an interrupted Done)
	// reaches the agent before anything it sends now: one connection.
	for i := 0; i < len(n.answers); {
		if a, ok := n.answers[i].(wrapEvent); ok {
			if m, ok := a.ev.(WorkerMessage); ok && m.Worker == w.id {
				s.answer(n, i)
				if s.failed() || n.workers[w.id] != w || len(w.execs) == 0 {
					return
				}
				continue
			}
		}
		i++
	}
	ex := w.execs[0]
	ids := n.ids[w.job]
	pick := func() objects.ID {
		if len(ids) == 0 || s.intn(12) == 0 {
			return s.newID() // one nobody made
		}
		return ids[s.intn(len(ids))]
	}
	send := func(msg any) {
		s.note("%s: w%d (%s %s) sends %T", n.id, w.id, ex.Name, ex.Task.Short(), msg)
		s.apply(n, WorkerMessage{Worker: w.id, Msg: msg})
	}
	rpc := func() uint64 {
		w.seq++
		w.waiting = w.seq
		return w.seq
	}
	choice := s.intn(16)
	if ex.Kind == wire.ExecMain && choice <= 2 && s.intn(10) != 0 {
		choice = 3 // drivers live long: they submit instead
	}
	switch choice {
	case 0, 1, 2: // done
		w.execs = w.execs[1:]
		d := wire.Done{Task: ex.Task, OK: s.intn(6) != 0}
		if !d.OK {
			d.Error, d.Kind = "boom", []string{"app", "trap"}[s.intn(2)]
		}
		nret := w.rets[ex.Task]
		if nret > 1 {
			items := make([]any, nret)
			for i := range items {
				items[i] = i
			}
			d.Value.Inline, _ = wire.Marshal(items)
		} else {
			d.Value.Inline = []byte{byte(s.intn(20))}
			if s.intn(4) == 0 {
				d.Value.Inline = make([]byte, 300) // past the inline limit
			}
		}
		if s.intn(4) == 0 {
			d.Refs = []objects.ID{pick()}
		}
		send(d)
	case 3, 4: // submit a task or a call
		id := s.newID()
		nret := 1 + s.intn(2)
		spec := abi.TaskSpec{Func: "f", NumReturns: nret}
		if s.intn(3) == 0 {
			r := pick()
			spec.Args = append(spec.Args, abi.Arg{Ref: r[:]})
		} else {
			spec.Args = append(spec.Args, abi.Arg{Value: []byte{0x01}})
		}
		if s.intn(4) == 0 {
			r := pick()
			spec.Refs = [][]byte{r[:]}
		}
		cpu := []float64{0, 0.5, 1, 2, 3}[s.intn(5)]
		spec.Options.CPU = &cpu
		if s.intn(3) == 0 {
			spec.Options.Labels = map[string]string{"tier": "edge"}
		}
		if s.intn(4) == 0 {
			r := s.intn(2)
			spec.Options.MaxRetries = &r
		}
		if s.intn(6) == 0 {
			spec.Options.TimeoutMs = int64(s.intn(100) + 1)
		}
		spec.Options.RetryExceptions = s.intn(5) == 0
		if actors := n.actors[w.job]; len(actors) > 0 && s.intn(3) == 0 {
			a := actors[s.intn(len(actors))]
			spec.Actor = a[:]
			spec.Func = "C.m"
		}
		if groups := n.groups[w.job]; len(groups) > 0 && s.intn(4) == 0 {
			g := groups[s.intn(len(groups))]
			spec.Options.Group = g[:]
			b := s.intn(3) - 1
			spec.Options.Bundle = &b
		}
		if s.leases && s.intn(2) == 0 { // one shape of task, so that leases cover it
			nret = 1
			one := 1.0
			spec = abi.TaskSpec{Func: "f", Args: []abi.Arg{{Value: []byte{0x01}}}, Options: abi.Options{CPU: &one}}
		}
		rets := make([]objects.ID, nret)
		for i := range rets {
			rets[i] = id.WithIndex(uint32(i + 1))
		}
		n.ids[w.job] = append(n.ids[w.job], rets...)
		w.rets[id] = nret
		sub := wire.Submit{Task: ex.Task, Spec: spec.AppendCBOR(nil), IDs: rets}
		// The process runs it itself on a lane of its own that holds a
		// lease for it, when one is idle.
		if l := s.leaseLane(n, w, spec); l != nil && s.intn(2) == 0 {
			l.execs = append(l.execs, wire.Exec{Task: id, Kind: wire.ExecTask, Name: spec.Func})
			sub.Lane = uint64(l.id)
		}
		send(sub)
	case 5: // create an actor
		id := s.newID()
		spec := abi.TaskSpec{Func: "C", Options: abi.Options{MaxRestarts: s.intn(3) - 1}}
		if s.intn(3) == 0 {
			spec.Options.Name = fmt.Sprintf("a%d", s.intn(3))
		}
		if s.intn(3) == 0 {
			spec.Options.Labels = map[string]string{"tier": "edge"}
		}
		n.actors[w.job] = append(n.actors[w.job], id)
		send(wire.Submit{Seq: rpc(), Task: ex.Task, Actor: true, Spec: spec.AppendCBOR(nil), IDs: []objects.ID{id}})
	case 6: // put
		id := s.newID()
		p := wire.Put{Task: ex.Task, ID: id, Data: []byte{0x05}}
		if s.intn(3) == 0 {
			p.Data = make([]byte, 500)
		}
		if s.intn(3) == 0 {
			p.Refs = []objects.ID{pick()}
		}
		n.ids[w.job] = append(n.ids[w.job], id)
		send(p)
	case 7: // get
		send(wire.Get{Seq: rpc(), Task: ex.Task, IDs: []objects.ID{pick(), pick()}, TimeoutMs: int64(s.intn(3)*40 - 1)})
	case 8: // wait
		send(wire.Wait{Seq: rpc(), Task: ex.Task, IDs: []objects.ID{pick(), pick(), pick()}, NumReady: s.intn(4), TimeoutMs: int64(s.intn(3)*40 - 1)})
	case 9: // cancel
		send(wire.Cancel{Seq: rpc(), Task: ex.Task, ID: pick(), Force: s.intn(2) == 0, Recursive: s.intn(2) == 0})
	case 10: // release
		send(wire.Release{Task: ex.Task, IDs: []objects.ID{pick()}})
	case 11: // actors by name, kill
		if s.intn(2) == 0 {
			send(wire.ActorLookup{Seq: rpc(), Task: ex.Task, Name: fmt.Sprintf("a%d", s.intn(3))})
		} else if actors := n.actors[w.job]; len(actors) > 0 {
			send(wire.ActorKill{Seq: rpc(), Task: ex.Task, Actor: actors[s.intn(len(actors))], NoRestart: s.intn(2) == 0})
		}
	case 12: // placement groups
		switch s.intn(4) {
		case 0:
			id := s.newID()
			n.groups[w.job] = append(n.groups[w.job], id)
			spec := abi.GroupSpec{Bundles: []map[string]float64{{"CPU": 1}, {"CPU": float64(s.intn(3))}}, Strategy: []string{"PACK", "SPREAD", "STRICT_SPREAD", "STRICT_PACK"}[s.intn(4)],
				Name: []string{"", "g1", "g2"}[s.intn(3)]}
			raw, _ := wire.Marshal(spec)
			send(wire.GroupCreate{Task: ex.Task, Spec: raw, ID: id})
		case 1:
			if gs := n.groups[w.job]; len(gs) > 0 {
				send(wire.GroupWait{Seq: rpc(), Task: ex.Task, Group: gs[s.intn(len(gs))], TimeoutMs: int64(s.intn(2)*30 - 1)})
			}
		case 2:
			if gs := n.groups[w.job]; len(gs) > 0 {
				send(wire.GroupRemove{Task: ex.Task, Group: gs[s.intn(len(gs))]})
			}
		case 3:
			send(wire.Groups{Seq: rpc(), Task: ex.Task})
		}
	case 13: // output
		send(wire.Output{Task: ex.Task, Stream: uint8(1 + s.intn(3)), Data: []byte("a line\npart")})
	case 14: // a large value through a reservation
		send(wire.Create{Seq: rpc(), Task: ex.Task, Size: 1000, Result: s.intn(2) == 0})
		// The reply's ID, when it comes, is put by a later step.
	case 15: // put what a reservation holds, or garbage
		for id, sealed := range n.store.sealed {
			if !sealed && s.intn(2) == 0 {
				n.ids[w.job] = append(n.ids[w.job], id)
				send(wire.Put{Task: ex.Task, ID: id, Created: id})
				return
			}
		}
		if s.intn(20) == 0 {
			send(struct{}{}) // breaks the protocol: the worker is stopped
		}
	}
}

// deliver hands one message on its way to its node, in order per pair.
func (s *sim) deliver() {
	keys := make([][2]NodeID, 0, len(s.net))
	for k, q := range s.net {
		if len(q) > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	k := keys[s.intn(len(keys))]
	m := s.net[k][0]
	s.net[k] = s.net[k][1:]
	to := s.node(k[1])
	if to == nil || !to.alive || !s.node(k[0]).alive {
		return
	}
	s.note("%s -> %s: %s %s", k[0], k[1], m.Kind(), m.JobID())
	s.apply(to, PeerMessage{From: k[0], Msg: m})
}

func (s *sim) node(id NodeID) *simNode {
	for _, n := range s.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

func (s *sim) fireTimers() {
	for _, n := range s.alive() {
		var due []TimerID
		for id, at := range n.timers {
			if at <= s.now {
				due = append(due, id)
			}
		}
		slices.Sort(due)
		for _, id := range due {
			delete(n.timers, id)
			s.apply(n, TimerFired{Timer: id})
		}
	}
}

// loseNode stops a node: the others see it gone.
func (s *sim) loseNode(n *simNode) {
	s.note("%s is lost", n.id)
	n.alive = false
	for k := range s.net {
		if k[0] == n.id || k[1] == n.id {
			delete(s.net, k)
		}
	}
	for _, o := range s.alive() {
		s.apply(o, PeerDown{Node: n.id, Gone: true})
	}
}

// settle cancels every job and lets everything in flight arrive, then
// checks that every node that is alive is idle.
func (s *sim) settle() {
	for round := 0; round < 200 && s.err == nil; round++ {
		for _, n := range s.alive() {
			for _, j := range n.roots {
				s.apply(n, CancelJob{Job: j, Reason: "settling"})
			}
			for _, w := range n.sortedWorkers() {
				if !w.started {
					w.started = true
					s.apply(n, WorkerStarted{Worker: w.id, Pid: 1})
				}
			}
			for len(n.answers) > 0 && s.err == nil {
				s.answer(n, 0)
			}
		}
		for delivered := 0; s.pending() && s.err == nil; delivered++ {
			if delivered > 100000 {
				s.err = fmt.Errorf("messages keep coming after every job was cancelled: a livelock")
				return
			}
			s.deliver()
		}
		quiet := !s.pending()
		for _, n := range s.alive() {
			quiet = quiet && len(n.answers) == 0 && n.core.CheckIdle() == nil
		}
		if quiet {
			break
		}
		s.now += 1e9
		s.fireTimers()
	}
	if s.err != nil {
		return
	}
	for _, n := range s.alive() {
		if err := n.core.CheckIdle(); err != nil {
			var lost []string
			for _, o := range s.nodes {
				if !o.alive {
					lost = append(lost, string(o.id))
				}
			}
			s.err = fmt.Errorf("node %s is not idle after every job ended (lost: %v): %v\n%s", n.id, lost, err, n.core.Describe())
			return
		}
		if len(n.store.pins) > 0 {
			s.err = fmt.Errorf("node %s: %d objects still pinned", n.id, len(n.store.pins))
			return
		}
		for id, sealed := range n.store.sealed {
			if !sealed {
				s.err = fmt.Errorf("node %s: reservation %s left", n.id, id.Short())
				return
			}
			if !n.core.HasObject(id) {
				s.err = fmt.Errorf("node %s: stored object %s left in the store", n.id, id.Short())
				return
			}
		}
	}
}

func (s *sim) pending() bool {
	for _, q := range s.net {
		if len(q) > 0 {
			return true
		}
	}
	return false
}

// leaseLane is an idle lane of w's process that holds a lease for spec.
func (s *sim) leaseLane(n *simNode, w *simWorker, spec abi.TaskSpec) *simWorker {
	if spec.NumReturns > 1 || spec.Actor != nil || len(spec.Refs) > 0 || len(spec.Options.Group) > 0 || len(spec.Options.Labels) > 0 {
		return nil
	}
	for _, a := range spec.Args {
		if a.Ref != nil {
			return nil
		}
	}
	key := abi.LeaseKey(spec.Func, &spec.Options)
	for _, id := range slices.Sorted(maps.Keys(n.workers)) {
		l := n.workers[id]
		if l != w && l.job == w.job && l.process == w.process && l.ready && l.leaseKey == key && len(l.execs) == 0 {
			return l
		}
	}
	return nil
}
