package scheduler

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

func cpu(f float64) Resources { return Resources{CPU: Quantity(f)} }

// tid, okey and gid make IDs from short names, as the agent's are bytes.
func tid(s string) TaskID     { var id TaskID; copy(id[:], s); return id }
func okey(s string) ObjectKey { var k ObjectKey; copy(k[:], s); return k }
func gid(s string) GroupID    { var id GroupID; copy(id[:], s); return id }

// place returns the plan's placements as "task@node" strings.
func place(p Plan) []string {
	var out []string
	for _, pl := range p.Placements {
		out = append(out, pl.Task.String()+"@"+string(pl.Node))
	}
	return out
}

func mustPlace(t *testing.T, c *Core, want ...string) Plan {
	t.Helper()
	p := c.Schedule()
	if got := place(p); !reflect.DeepEqual(got, want) {
		t.Fatalf("placements = %v, want %v (infeasible %v)", got, want, p.Infeasible)
	}
	return p
}

func mustAvail(t *testing.T, c *Core, id NodeID, want Resources) {
	t.Helper()
	got, ok := c.Available(id)
	if !ok {
		t.Fatalf("Available(%s): unknown node", id)
	}
	if got.String() != want.String() {
		t.Fatalf("Available(%s) = %v, want %v", id, got, want)
	}
}

func TestQuantity(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want int64
	}{
		{0, 0}, {1, Unit}, {0.25, 2500}, {0.1, 1000}, {0.00005, 1}, {0.00004, 0}, {2.5, 25000}, {-0.5, -5000},
	} {
		if got := Quantity(tc.f); got != tc.want {
			t.Errorf("Quantity(%v) = %d, want %d", tc.f, got, tc.want)
		}
	}
}

func TestResourcesString(t *testing.T) {
	for _, tc := range []struct {
		r    Resources
		want string
	}{
		{Resources{}, "nothing"},
		{Resources{Custom: map[string]int64{"TPU": 0}}, "nothing"},
		{cpu(0.25), "CPU: 0.25"},
		{cpu(2), "CPU: 2"},
		{Resources{CPU: 1}, "CPU: 0.0001"},
		{Resources{CPU: -2500}, "CPU: -0.25"},
		{Resources{CPU: 2500, Memory: 64 * mib, GPU: Unit, Custom: map[string]int64{"TPU": 2 * Unit}}, "CPU: 0.25, memory: 64MiB, GPU: 1, TPU: 2"},
		{Resources{Custom: map[string]int64{"zeta": Unit, "disk_ssd": 5000, "TPU": 3 * Unit}}, "TPU: 3, disk_ssd: 0.5, zeta: 1"},
		{Resources{Memory: 512}, "memory: 512B"},
		{Resources{Memory: 1023}, "memory: 1023B"},
		{Resources{Memory: kib}, "memory: 1KiB"},
		{Resources{Memory: 1536}, "memory: 1.5KiB"},
		{Resources{Memory: gib}, "memory: 1GiB"},
		{Resources{Memory: gib + gib/4}, "memory: 1.25GiB"},
		{Resources{Memory: gib + gib/3}, "memory: 1.33GiB"},
		{Resources{Memory: 2*mib - 1}, "memory: 2MiB"},
		{Resources{Memory: mib - 1}, "memory: 1MiB"},
		{Resources{Memory: 3000 * gib}, "memory: 3000GiB"},
		{Resources{GPU: 5000}, "GPU: 0.5"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestResourcesArithmetic(t *testing.T) {
	a := Resources{CPU: 3, Memory: 10, GPU: 1, Custom: map[string]int64{"TPU": 4, "x": 1}}
	b := Resources{CPU: 1, Memory: 10, Custom: map[string]int64{"TPU": 4, "y": 2}}
	sum := a.Add(b)
	want := Resources{CPU: 4, Memory: 20, GPU: 1, Custom: map[string]int64{"TPU": 8, "x": 1, "y": 2}}
	if !reflect.DeepEqual(sum, want) {
		t.Fatalf("Add = %#v, want %#v", sum, want)
	}
	sum.Custom["TPU"] = 99
	if a.Custom["TPU"] != 4 || b.Custom["TPU"] != 4 {
		t.Fatal("Add aliases an input map")
	}
	diff := a.Sub(b)
	want = Resources{CPU: 2, GPU: 1, Custom: map[string]int64{"x": 1, "y": -2}}
	if !reflect.DeepEqual(diff, want) {
		t.Fatalf("Sub = %#v, want %#v", diff, want)
	}
	if z := a.Sub(a); !z.IsZero() || z.Custom != nil {
		t.Fatalf("a-a = %#v, want zero with nil Custom", z)
	}
	if a.IsZero() || !(Resources{}).IsZero() {
		t.Fatal("IsZero wrong")
	}

	for _, tc := range []struct {
		name         string
		demand, have Resources
		want         bool
	}{
		{"zero fits nothing", Resources{}, Resources{}, true},
		{"zero fits negative", Resources{}, Resources{CPU: -1}, true},
		{"cpu equal", cpu(1), cpu(1), true},
		{"cpu over", cpu(1.0001), cpu(1), false},
		{"memory", Resources{Memory: 2}, Resources{Memory: 1}, false},
		{"gpu", Resources{GPU: Unit}, cpu(8), false},
		{"custom missing", Resources{Custom: map[string]int64{"TPU": 1}}, cpu(8), false},
		{"custom present", Resources{Custom: map[string]int64{"TPU": 1}}, Resources{Custom: map[string]int64{"TPU": 1}}, true},
	} {
		if got := tc.demand.Fits(tc.have); got != tc.want {
			t.Errorf("%s: Fits = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFractionalCPU(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(1), nil)
	for i := 1; i <= 5; i++ {
		c.Submit(Task{ID: tid(fmt.Sprint("t", i)), Demand: cpu(0.25)})
	}
	mustPlace(t, c, "t1@n1", "t2@n1", "t3@n1", "t4@n1")
	if c.Queued() != 1 || c.Running("n1") != 4 {
		t.Fatalf("queued %d running %d, want 1 and 4", c.Queued(), c.Running("n1"))
	}
	mustAvail(t, c, "n1", Resources{})
	mustPlace(t, c) // t5 waits
	c.Finished(tid("t2"))
	mustAvail(t, c, "n1", cpu(0.25))
	mustPlace(t, c, "t5@n1")
	if c.Queued() != 0 {
		t.Fatalf("queued %d, want 0", c.Queued())
	}
}

func TestResourceKinds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		total  Resources
		demand Resources
		fit    int // how many tasks fit at once
	}{
		{"memory", Resources{CPU: 8 * Unit, Memory: gib}, Resources{Memory: 300 * mib}, 3},
		{"gpu", Resources{CPU: 8 * Unit, GPU: 2 * Unit}, Resources{CPU: Unit, GPU: Unit}, 2},
		{"fractional gpu", Resources{GPU: Unit}, Resources{GPU: Quantity(0.3)}, 3},
		{"custom", Resources{CPU: 8 * Unit, Custom: map[string]int64{"TPU": 4 * Unit}}, Resources{Custom: map[string]int64{"TPU": Quantity(1.5)}}, 2},
		{"cpu bound with memory", Resources{CPU: 2 * Unit, Memory: gib}, Resources{CPU: Unit, Memory: mib}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			c.AddNode("n", tc.total, nil)
			for i := 0; i <= tc.fit; i++ {
				c.Submit(Task{ID: tid(fmt.Sprint("t", i)), Demand: tc.demand})
			}
			p := c.Schedule()
			if len(p.Placements) != tc.fit || len(p.Infeasible) != 0 {
				t.Fatalf("placed %v infeasible %v, want %d placed", place(p), p.Infeasible, tc.fit)
			}
			if c.Queued() != 1 {
				t.Fatalf("queued %d, want 1", c.Queued())
			}
			// Finishing one lets the last one in.
			c.Finished(p.Placements[0].Task)
			mustPlace(t, c, fmt.Sprintf("t%d@n", tc.fit))
			// Finishing all returns everything.
			for i := 1; i <= tc.fit; i++ {
				c.Finished(tid(fmt.Sprint("t", i)))
			}
			mustAvail(t, c, "n", tc.total)
		})
	}
}

func TestInfeasible(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes func(c *Core)
		task  Task
		want  string
	}{
		{
			name:  "gpu on gpu-less node",
			nodes: func(c *Core) { c.AddNode("node-a", Resources{CPU: 2 * Unit, Memory: gib}, nil) },
			task:  Task{ID: tid("t"), Demand: Resources{GPU: Unit}},
			want:  "task needs GPU: 1 but no node can ever provide it (nodes: node-a has CPU: 2, memory: 1GiB)",
		},
		{
			name:  "labels match nothing",
			nodes: func(c *Core) { c.AddNode("node-a", cpu(2), map[string]string{"tier": "core"}) },
			task:  Task{ID: tid("t"), Demand: cpu(1), Labels: map[string]string{"tier": "edge"}},
			want:  "task needs CPU: 1 but no node has labels tier=edge",
		},
		{
			name: "labelled nodes too small",
			nodes: func(c *Core) {
				c.AddNode("a", cpu(8), nil)
				c.AddNode("e1", cpu(1), map[string]string{"tier": "edge"})
				c.AddNode("e2", Resources{CPU: 2 * Unit, Custom: map[string]int64{"TPU": Unit}}, map[string]string{"tier": "edge"})
			},
			task: Task{ID: tid("t"), Demand: Resources{CPU: 4 * Unit, Custom: map[string]int64{"TPU": Unit}}, Labels: map[string]string{"tier": "edge"}},
			want: "task needs CPU: 4, TPU: 1 but no node with labels tier=edge can ever provide it (nodes: e2 has CPU: 2, TPU: 1; e1 has CPU: 1)",
		},
		{
			name:  "affinity to missing node",
			nodes: func(c *Core) { c.AddNode("a", cpu(8), nil) },
			task:  Task{ID: tid("t"), Demand: cpu(1), Node: "b"},
			want:  "task needs CPU: 1 on node b but that node is not in the cluster",
		},
		{
			name:  "affinity to small node",
			nodes: func(c *Core) { c.AddNode("a", cpu(8), nil); c.AddNode("b", cpu(1), nil) },
			task:  Task{ID: tid("t"), Demand: cpu(2), Node: "b"},
			want:  "task needs CPU: 2 but node b can never provide it (nodes: b has CPU: 1)",
		},
		{
			name: "many nodes",
			nodes: func(c *Core) {
				for i := 0; i < 5; i++ {
					c.AddNode(NodeID(fmt.Sprint("n", i)), cpu(1), nil)
				}
			},
			task: Task{ID: tid("t"), Demand: cpu(2)},
			want: "task needs CPU: 2 but no node can ever provide it (nodes: n0 has CPU: 1; n1 has CPU: 1; n2 has CPU: 1; and 2 more)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			tc.nodes(c)
			c.Submit(tc.task)
			c.Submit(Task{ID: tid("ok"), Demand: Resources{}})
			p := c.Schedule()
			want := []Infeasible{{Task: tid("t"), Reason: tc.want}}
			if !reflect.DeepEqual(p.Infeasible, want) {
				t.Fatalf("infeasible =\n  %v\nwant\n  %v", p.Infeasible, want)
			}
			if len(p.Placements) != 1 || p.Placements[0].Task != tid("ok") {
				t.Fatalf("placements %v, want ok placed", place(p))
			}
			if c.Queued() != 0 {
				t.Fatalf("queued %d, want 0: infeasible tasks leave the queue", c.Queued())
			}
			if p := c.Schedule(); len(p.Infeasible) != 0 {
				t.Fatalf("reported twice: %v", p.Infeasible)
			}
		})
	}
}

func TestInfeasibleCheckedAtSchedule(t *testing.T) {
	c := New()
	c.Submit(Task{ID: tid("g"), Demand: Resources{GPU: Unit}})
	// No nodes: the task stays queued, a node may join.
	p := c.Schedule()
	if len(p.Placements)+len(p.Infeasible) != 0 || c.Queued() != 1 {
		t.Fatalf("with no nodes: plan %+v queued %d", p, c.Queued())
	}
	// A GPU node joins between Submit and Schedule: placed, not infeasible.
	c.AddNode("cpu", cpu(4), nil)
	c.AddNode("gpu", Resources{CPU: Unit, GPU: Unit}, nil)
	mustPlace(t, c, "g@gpu")
	// The same class becomes infeasible once the GPU node leaves.
	c.Submit(Task{ID: tid("g2"), Demand: Resources{GPU: Unit}})
	c.Submit(Task{ID: tid("g3"), Demand: Resources{GPU: Unit}})
	if got := c.RemoveNode("gpu"); !reflect.DeepEqual(got, []TaskID{tid("g")}) {
		t.Fatalf("RemoveNode = %v", got)
	}
	p = c.Schedule()
	if len(p.Infeasible) != 2 || p.Infeasible[0].Task != tid("g2") || p.Infeasible[1].Task != tid("g3") {
		t.Fatalf("infeasible %v, want g2 and g3", p.Infeasible)
	}
}

func TestLabelSelector(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(4), map[string]string{"zone": "us", "tier": "core"})
	c.AddNode("b", cpu(4), map[string]string{"zone": "eu", "tier": "edge"})
	c.AddNode("c", cpu(4), map[string]string{"zone": "eu"})
	c.Submit(Task{ID: tid("edge"), Demand: cpu(1), Labels: map[string]string{"tier": "edge"}})
	c.Submit(Task{ID: tid("eu1"), Demand: cpu(3), Labels: map[string]string{"zone": "eu"}})
	c.Submit(Task{ID: tid("eu2"), Demand: cpu(3), Labels: map[string]string{"zone": "eu"}})
	c.Submit(Task{ID: tid("eu-edge"), Demand: cpu(1), Labels: map[string]string{"zone": "eu", "tier": "edge"}})
	c.Submit(Task{ID: tid("any"), Demand: cpu(1)})
	mustPlace(t, c, "edge@b", "eu1@c", "eu2@b", "any@a")
	// b is full (4 of 4), c has 1 but lacks tier=edge.
	if c.Queued() != 1 {
		t.Fatalf("queued %d, want eu-edge waiting", c.Queued())
	}
	c.Finished(tid("edge"))
	mustPlace(t, c, "eu-edge@b")
}

func TestNodeAffinity(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(2), nil)
	c.AddNode("b", cpu(2), nil)
	c.Submit(Task{ID: tid("t1"), Demand: cpu(1), Node: "b"})
	c.Submit(Task{ID: tid("t2"), Demand: cpu(1), Node: "b"})
	c.Submit(Task{ID: tid("t3"), Demand: cpu(1), Node: "b"})
	c.Submit(Task{ID: tid("free"), Demand: cpu(1)})
	mustPlace(t, c, "t1@b", "t2@b", "free@a")
	// t3 waits for b even though a has room.
	mustPlace(t, c)
	c.Finished(tid("t1"))
	mustPlace(t, c, "t3@b")
	// Affinity plus a label the node lacks is infeasible.
	c.Submit(Task{ID: tid("x"), Demand: cpu(1), Node: "a", Labels: map[string]string{"gpu": "yes"}})
	p := c.Schedule()
	if len(p.Infeasible) != 1 || p.Infeasible[0].Reason != "task needs CPU: 1 but node a does not have labels gpu=yes" {
		t.Fatalf("infeasible %v", p.Infeasible)
	}
}

// TestPreferNode checks soft affinity (locality): a task goes to the node
// it prefers while that node has room, even past the packing threshold, and
// elsewhere by the hybrid policy when it has none; a preferred node that
// lacks the task's labels or is unknown is ignored.
func TestPreferNode(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(2), nil)
	c.AddNode("b", cpu(2), map[string]string{"tier": "edge"})
	c.Submit(Task{ID: tid("p1"), Demand: cpu(1), Prefer: "b"})
	c.Submit(Task{ID: tid("p2"), Demand: cpu(1), Prefer: "b"})
	c.Submit(Task{ID: tid("p3"), Demand: cpu(1), Prefer: "b"}) // b is full: hybrid
	c.Submit(Task{ID: tid("plain"), Demand: cpu(1)})
	mustPlace(t, c, "p1@b", "p2@b", "p3@a", "plain@a")
	c.Finished(tid("p1"))
	c.Finished(tid("p3"))
	c.Submit(Task{ID: tid("gone"), Demand: cpu(1), Prefer: "z"})                                             // unknown: hybrid
	c.Submit(Task{ID: tid("label"), Demand: cpu(1), Prefer: "a", Labels: map[string]string{"tier": "edge"}}) // a lacks the label
	mustPlace(t, c, "gone@a", "label@b")
}

func TestDeps(t *testing.T) {
	c := New()
	c.AddNode("n", cpu(1), nil)
	c.Submit(Task{ID: tid("t1"), Demand: cpu(0.5), Deps: []ObjectKey{okey("x"), okey("y"), okey("x")}})
	c.Submit(Task{ID: tid("t2"), Demand: cpu(0.5), Deps: []ObjectKey{okey("y")}})
	c.Submit(Task{ID: tid("t3"), Demand: cpu(0.5)})
	// Only t3 is ready.
	mustPlace(t, c, "t3@n")
	if c.Queued() != 2 {
		t.Fatalf("queued %d, want 2 (waiting on deps count)", c.Queued())
	}
	c.ObjectReady(okey("y")) // t2 ready; t1 still needs x
	c.ObjectReady(okey("y")) // idempotent
	c.Finished(tid("t3"))
	c.ObjectReady(okey("x")) // t1 ready too, and goes first: it was submitted first
	mustPlace(t, c, "t1@n", "t2@n")
	c.ObjectReady(okey("x")) // no waiters: no-op
	if c.Queued() != 0 {
		t.Fatalf("queued %d", c.Queued())
	}
}

func TestDepsKeepSubmissionOrder(t *testing.T) {
	c := New()
	c.AddNode("n", cpu(1), nil)
	c.Submit(Task{ID: tid("blocker"), Demand: cpu(1)})
	mustPlace(t, c, "blocker@n")
	c.Submit(Task{ID: tid("a"), Demand: cpu(1), Deps: []ObjectKey{okey("obj")}})
	c.Submit(Task{ID: tid("b"), Demand: cpu(1)})
	c.Submit(Task{ID: tid("c"), Demand: cpu(1)})
	c.ObjectReady(okey("obj")) // a joins the class ahead of b and c
	prev := tid("blocker")
	for _, want := range []TaskID{tid("a"), tid("b"), tid("c")} {
		c.Finished(prev)
		mustPlace(t, c, want.String()+"@n")
		prev = want
	}
}

func TestBlockedUnblocked(t *testing.T) {
	c := New()
	c.AddNode("n", Resources{CPU: Unit, Memory: gib}, nil)
	c.Submit(Task{ID: tid("parent"), Demand: Resources{CPU: Unit, Memory: 256 * mib}})
	c.Submit(Task{ID: tid("child"), Demand: Resources{CPU: Unit, Memory: 256 * mib}})
	mustPlace(t, c, "parent@n")
	mustPlace(t, c)

	// The parent blocks in get: its CPU (only) returns to the node.
	c.Blocked(tid("parent"))
	c.Blocked(tid("parent")) // idempotent
	mustAvail(t, c, "n", Resources{CPU: Unit, Memory: 768 * mib})
	mustPlace(t, c, "child@n")
	mustAvail(t, c, "n", Resources{Memory: 512 * mib})

	// Unblocked takes the CPU back, even past zero.
	c.Unblocked(tid("parent"))
	c.Unblocked(tid("parent")) // idempotent
	mustAvail(t, c, "n", Resources{CPU: -Unit, Memory: 512 * mib})

	c.Finished(tid("child"))
	mustAvail(t, c, "n", Resources{Memory: 768 * mib})
	// Finishing while blocked returns what it still holds, not its CPU twice.
	c.Blocked(tid("parent"))
	c.Finished(tid("parent"))
	mustAvail(t, c, "n", Resources{CPU: Unit, Memory: gib})

	// Unknown and unplaced tasks: no-ops.
	c.Submit(Task{ID: tid("q"), Demand: cpu(5)})
	c.Blocked(tid("q"))
	c.Unblocked(tid("nope"))
	c.Finished(tid("q"))
	mustAvail(t, c, "n", Resources{CPU: Unit, Memory: gib})
	if c.Queued() != 1 {
		t.Fatalf("queued %d", c.Queued())
	}
}

func TestCancel(t *testing.T) {
	c := New()
	c.AddNode("n", cpu(1), nil)
	c.Submit(Task{ID: tid("run"), Demand: cpu(1)})
	mustPlace(t, c, "run@n")
	c.Submit(Task{ID: tid("q1"), Demand: cpu(1)})
	c.Submit(Task{ID: tid("q2"), Demand: cpu(1)})
	c.Submit(Task{ID: tid("q3"), Demand: cpu(1)})
	c.Submit(Task{ID: tid("dep"), Demand: cpu(1), Deps: []ObjectKey{okey("o")}})
	for _, tc := range []struct {
		id   TaskID
		want bool
	}{
		{tid("run"), false}, // placed
		{tid("nope"), false},
		{tid("q2"), true},
		{tid("q2"), false},
		{tid("dep"), true},
	} {
		if got := c.Cancel(tc.id); got != tc.want {
			t.Fatalf("Cancel(%s) = %v, want %v", tc.id, got, tc.want)
		}
	}
	if c.Queued() != 2 {
		t.Fatalf("queued %d, want 2", c.Queued())
	}
	c.ObjectReady(okey("o")) // the cancelled task must not come back
	c.Finished(tid("run"))
	mustPlace(t, c, "q1@n")
	c.Finished(tid("q1"))
	mustPlace(t, c, "q3@n")
	c.Finished(tid("q3"))
	mustPlace(t, c)
	// A cancelled ID can be submitted again.
	c.Submit(Task{ID: tid("q2"), Demand: cpu(1)})
	mustPlace(t, c, "q2@n")
}

func TestDuplicateSubmitIgnored(t *testing.T) {
	c := New()
	c.AddNode("n", cpu(4), nil)
	c.Submit(Task{ID: tid("t"), Demand: cpu(1)})
	c.Submit(Task{ID: tid("t"), Demand: cpu(2)})
	mustPlace(t, c, "t@n")
	c.Submit(Task{ID: tid("t"), Demand: cpu(1)}) // running: ignored
	mustPlace(t, c)
	mustAvail(t, c, "n", cpu(3))
}

func TestRemoveNode(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(1), nil)
	c.AddNode("b", cpu(4), nil)
	for _, id := range []TaskID{tid("t3"), tid("t1"), tid("t2"), tid("t4")} {
		c.Submit(Task{ID: id, Demand: cpu(1)})
	}
	// t3 packs on b (a would be full), then spread: b until it is as full as a.
	mustPlace(t, c, "t3@b", "t1@b", "t2@b", "t4@a")
	if got := c.RemoveNode("b"); !reflect.DeepEqual(got, []TaskID{tid("t1"), tid("t2"), tid("t3")}) {
		t.Fatalf("RemoveNode(b) = %v", got)
	}
	if got := c.Nodes(); !reflect.DeepEqual(got, []NodeID{"a"}) {
		t.Fatalf("Nodes = %v", got)
	}
	if _, ok := c.Available("b"); ok || c.Running("b") != 0 || c.RemoveNode("b") != nil {
		t.Fatal("b still known")
	}
	// Their IDs are free; the caller resubmits them.
	c.Finished(tid("t1")) // no-op: forgotten
	c.Submit(Task{ID: tid("t1"), Demand: cpu(1)})
	mustPlace(t, c)
	c.Finished(tid("t4"))
	mustPlace(t, c, "t1@a")
}

func TestAddNodeUpdateKeepsUsed(t *testing.T) {
	c := New()
	c.AddNode("n", cpu(2), map[string]string{"a": "1"})
	c.Submit(Task{ID: tid("t"), Demand: cpu(1.5)})
	mustPlace(t, c, "t@n")
	c.AddNode("n", cpu(4), map[string]string{"a": "2"})
	mustAvail(t, c, "n", cpu(2.5))
	if tot, _ := c.Total("n"); tot.String() != "CPU: 4" {
		t.Fatalf("Total = %v", tot)
	}
	if l, _ := c.Labels("n"); l["a"] != "2" {
		t.Fatalf("labels %v", l)
	}
	c.AddNode("m", cpu(1), nil)
	c.AddNode("l", cpu(1), nil)
	if got := c.Nodes(); !reflect.DeepEqual(got, []NodeID{"l", "m", "n"}) {
		t.Fatalf("Nodes = %v", got)
	}
	if c.Running("n") != 1 || !reflect.DeepEqual(c.RunningTasks("n"), []TaskID{tid("t")}) {
		t.Fatal("running lost")
	}
}

func TestHybridPackThenSpread(t *testing.T) {
	c := New()
	for _, id := range []NodeID{"n3", "n1", "n2"} {
		c.AddNode(id, Resources{CPU: 4 * Unit, Memory: 4 * gib}, nil)
	}
	step := func(want ...string) {
		t.Helper()
		c.Submit(Task{ID: tid(fmt.Sprint("t", c.seq+1)), Demand: cpu(1)})
		mustPlace(t, c, want...)
	}
	// Pack: n1 stays below half with 1 of 4 CPUs.
	step("t1@n1")
	// n1 would be at 2 of 4, not below half: n2 is the first that stays below.
	step("t2@n2")
	step("t3@n3")
	// All at 25%; the next gives 50% anywhere: spread, ties by ID.
	step("t4@n1")
	step("t5@n2") // n1 would be at 75%, n2 at 50%
	step("t6@n3")
	// Finish on n3 so it is the least used.
	c.Finished(tid("t3"))
	c.Finished(tid("t6"))
	step("t7@n3") // 25% after: pack
	step("t8@n3") // spread: n3 at 50% after beats n1 and n2 at 75%
	step("t9@n1") // 75% anywhere: tie, n1 by ID

	// Utilization counts every kind: memory-heavy use on n1 pushes it out of pack.
	d := New()
	d.AddNode("a", Resources{CPU: 4 * Unit, Memory: 4 * gib}, nil)
	d.AddNode("b", Resources{CPU: 4 * Unit, Memory: 4 * gib}, nil)
	d.Submit(Task{ID: tid("mem"), Demand: Resources{Memory: 3 * gib}}) // 75% anywhere: a by ID
	d.Submit(Task{ID: tid("c1"), Demand: cpu(1)})                      // a is at 75% by memory: pack on b
	d.Submit(Task{ID: tid("c2"), Demand: cpu(1)})                      // spread: b at 50% beats a at 75%
	mustPlace(t, d, "mem@a", "c1@b", "c2@b")
}

func TestPackFillsFirstNodeBelowHalf(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(10), nil)
	c.AddNode("b", cpu(10), nil)
	for i := 0; i < 6; i++ {
		c.Submit(Task{ID: tid(fmt.Sprint("t", i)), Demand: cpu(1)})
	}
	// a takes 4 (40% after), the fifth would make it 50%: spread to b (10%),
	// then b packs again (20% < 50%) because b is the first below half.
	mustPlace(t, c, "t0@a", "t1@a", "t2@a", "t3@a", "t4@b", "t5@b")
}

func TestNoHeadOfLineBlocking(t *testing.T) {
	c := New()
	c.AddNode("n", cpu(4), nil)
	c.Submit(Task{ID: tid("s0"), Demand: cpu(2)})
	mustPlace(t, c, "s0@n")
	c.Submit(Task{ID: tid("big"), Demand: cpu(4)}) // feasible, but not now
	c.Submit(Task{ID: tid("big2"), Demand: cpu(4)})
	c.Submit(Task{ID: tid("s1"), Demand: cpu(1)})
	c.Submit(Task{ID: tid("s2"), Demand: cpu(1)})
	c.Submit(Task{ID: tid("s3"), Demand: cpu(1)})
	before := c.visits
	mustPlace(t, c, "s1@n", "s2@n")
	// big (once, then its class is skipped), s1, s2, s3 (fails, class skipped).
	if got := c.visits - before; got != 4 {
		t.Fatalf("visited %d tasks, want 4", got)
	}
	if c.Queued() != 3 {
		t.Fatalf("queued %d", c.Queued())
	}
	for _, id := range []TaskID{tid("s0"), tid("s1"), tid("s2")} {
		c.Finished(id)
	}
	mustPlace(t, c, "big@n")
}

func TestScheduleSkipsRestOfClass(t *testing.T) {
	c := New()
	c.AddNode("n", cpu(2), nil)
	const n = 100000
	for i := 0; i < n; i++ {
		c.Submit(Task{ID: tid(fmt.Sprint("t", i)), Demand: cpu(1)})
	}
	c.Submit(Task{ID: tid("other"), Demand: cpu(0)})
	before := c.visits
	mustPlace(t, c, "t0@n", "t1@n", "other@n")
	if got := c.visits - before; got > 4 {
		t.Fatalf("visited %d tasks for 2 free slots", got)
	}
	if c.Queued() != n-2 {
		t.Fatalf("queued %d", c.Queued())
	}
}

func TestDeterministic(t *testing.T) {
	run := func() string {
		c := New()
		for i := 0; i < 7; i++ {
			c.AddNode(NodeID(fmt.Sprint("n", i)), Resources{
				CPU: int64(i+1) * Unit, Memory: int64(i+1) * gib, GPU: int64(i%2) * Unit,
				Custom: map[string]int64{"TPU": int64(i%3) * Unit},
			}, map[string]string{"zone": fmt.Sprint("z", i%2)})
		}
		var b strings.Builder
		for round := 0; round < 20; round++ {
			for i := 0; i < 15; i++ {
				id := tid(fmt.Sprint("r", round, "t", i))
				tk := Task{ID: id, Demand: Resources{CPU: int64(i%4) * 2500, Memory: int64(i%3) * 100 * mib}}
				if i%5 == 0 {
					tk.Demand.GPU = Unit
				}
				if i%6 == 0 {
					tk.Demand.Custom = map[string]int64{"TPU": Unit}
				}
				if i%7 == 0 {
					tk.Labels = map[string]string{"zone": "z1"}
				}
				if i%4 == 0 {
					tk.Deps = []ObjectKey{okey(fmt.Sprint(okey("o"), round))}
				}
				c.Submit(tk)
			}
			c.ObjectReady(okey(fmt.Sprint("o", round-1)))
			p := c.Schedule()
			fmt.Fprintln(&b, place(p), p.Infeasible)
			for i, pl := range p.Placements {
				if i%2 == 0 {
					c.Finished(pl.Task)
				}
			}
		}
		return b.String()
	}
	first := run()
	for i := 0; i < 5; i++ {
		if got := run(); got != first {
			t.Fatalf("run %d differs:\n%s\nvs\n%s", i, got, first)
		}
	}
}

func TestNoAliasing(t *testing.T) {
	c := New()
	total := Resources{CPU: Unit, Custom: map[string]int64{"TPU": Unit}}
	labels := map[string]string{"k": "v"}
	c.AddNode("n", total, labels)
	total.Custom["TPU"] = 0
	labels["k"] = "w"
	demand := Resources{Custom: map[string]int64{"TPU": Unit}}
	c.Submit(Task{ID: tid("t"), Demand: demand, Labels: map[string]string{"k": "v"}})
	demand.Custom["TPU"] = 5 * Unit
	mustPlace(t, c, "t@n")
	av, _ := c.Available("n")
	av.Custom = map[string]int64{"x": 1}
	mustAvail(t, c, "n", Resources{CPU: Unit})
}

// ExampleCore submits five tasks to two nodes: prep packs on node-a, train
// needs node-b's GPU, eval waits for that GPU, report spreads to the less
// used node, and no node can ever run tpu.
func ExampleCore() {
	c := New()
	c.AddNode("node-a", Resources{CPU: 4 * Unit, Memory: 8 << 30}, nil)
	c.AddNode("node-b", Resources{CPU: 4 * Unit, Memory: 8 << 30, GPU: Unit}, nil)

	c.Submit(Task{ID: tid("prep"), Demand: Resources{CPU: Quantity(0.5), Memory: 1 << 30}})
	c.Submit(Task{ID: tid("train"), Demand: Resources{CPU: Unit, GPU: Unit}})
	c.Submit(Task{ID: tid("eval"), Demand: Resources{CPU: Unit, GPU: Unit}})
	c.Submit(Task{ID: tid("report"), Demand: Resources{CPU: 2 * Unit}})
	c.Submit(Task{ID: tid("tpu"), Demand: Resources{Custom: map[string]int64{"TPU": Unit}}})

	plan := c.Schedule()
	for _, p := range plan.Placements {
		fmt.Println(p.Task, "->", p.Node)
	}
	for _, inf := range plan.Infeasible {
		fmt.Println(inf.Task, "infeasible:", inf.Reason)
	}
	avail, _ := c.Available("node-a")
	fmt.Println("queued:", c.Queued(), "node-a free:", avail)
	// Output:
	// prep -> node-a
	// train -> node-b
	// report -> node-a
	// tpu infeasible: task needs TPU: 1 but no node can ever provide it (nodes: node-a has CPU: 4, memory: 8GiB; node-b has CPU: 4, memory: 8GiB, GPU: 1)
	// queued: 1 node-a free: CPU: 1.5, memory: 7GiB
}

// BenchmarkScheduleQueue measures one Schedule call against a queue of 100,000
// identical tasks with two free slots, then finishes the placed tasks and
// submits as many new ones so the queue stays full.
func BenchmarkScheduleQueue(b *testing.B) {
	c := New()
	c.AddNode("n", Resources{CPU: 2 * Unit, Memory: 4 * gib}, nil)
	demand := Resources{CPU: Unit, Memory: 64 * mib}
	const queue = 100000
	next := 0
	submit := func() {
		c.Submit(Task{ID: tid(fmt.Sprint("t", next)), Demand: demand})
		next++
	}
	for i := 0; i < queue; i++ {
		submit()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p := c.Schedule()
		if len(p.Placements) != 2 {
			b.Fatalf("placed %d", len(p.Placements))
		}
		for _, pl := range p.Placements {
			c.Finished(pl.Task)
			submit()
		}
	}
	if c.Queued() != queue {
		b.Fatalf("queued %d", c.Queued())
	}
}

// TestObserveFree: what a node said it has free counts against its room
// (beyond this Core's own placements there) until ClearObserved.
func TestObserveFree(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(2), nil)
	c.AddNode("n2", cpu(2), nil)
	c.Submit(Task{ID: tid("a"), Demand: cpu(1), Node: "n1"})
	mustPlace(t, c, "a@n1")
	// n1 says 0.5 free: others use 0.5 of the 1 this Core thought free.
	c.ObserveFree("n1", cpu(0.5))
	mustAvail(t, c, "n1", cpu(0.5))
	c.Submit(Task{ID: tid("b"), Demand: cpu(1)})
	mustPlace(t, c, "b@n2")
	c.Submit(Task{ID: tid("c"), Demand: cpu(1), Node: "n1"})
	mustPlace(t, c)               // waits: n1 has no room as observed
	c.ObserveFree("n1", cpu(5))   // more than this Core's view: nothing foreign
	mustAvail(t, c, "n1", cpu(1)) // never above total - used
	c.ObserveFree("n1", cpu(0))
	c.ObserveFree("nope", cpu(0)) // unknown: ignored
	c.ClearObserved("n1")
	mustPlace(t, c, "c@n1")
	mustAvail(t, c, "n1", Resources{})
}

// TestLabelOperators: each operator picks the nodes it should, and a
// selector no node satisfies makes the task infeasible with the
// selector in the reason.
func TestLabelOperators(t *testing.T) {
	zone := func(z string) map[string]string { return map[string]string{"zone": z} }
	cases := []struct {
		name string
		sel  []LabelTerm
		want string // the node, or "" for infeasible
	}{
		{"equals", []LabelTerm{{Key: "zone", Op: LabelIn, Values: []string{"b"}}}, "n2"},
		{"in", []LabelTerm{{Key: "zone", Op: LabelIn, Values: []string{"x", "c"}}}, "n3"},
		{"not equals", []LabelTerm{{Key: "zone", Op: LabelNotIn, Values: []string{"a"}}}, "n2"},
		{"not in, or no key", []LabelTerm{{Key: "zone", Op: LabelNotIn, Values: []string{"a", "b", "c"}}}, "n4"},
		{"exists", []LabelTerm{{Key: "gpu", Op: LabelExists}}, "n3"},
		{"does not exist", []LabelTerm{{Key: "zone", Op: LabelNotExists}}, "n4"},
		{"all terms", []LabelTerm{{Key: "zone", Op: LabelExists}, {Key: "gpu", Op: LabelNotExists}, {Key: "zone", Op: LabelNotIn, Values: []string{"a"}}}, "n2"},
		{"none", []LabelTerm{{Key: "zone", Op: LabelIn, Values: []string{"z"}}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			c.AddNode("n1", cpu(1), zone("a"))
			c.AddNode("n2", cpu(1), zone("b"))
			c.AddNode("n3", cpu(1), map[string]string{"zone": "c", "gpu": "h100"})
			c.AddNode("n4", cpu(1), nil)
			c.Submit(Task{ID: tid("t"), Demand: cpu(1), Selector: tc.sel})
			p := c.Schedule()
			if tc.want == "" {
				if len(p.Infeasible) != 1 || !strings.Contains(p.Infeasible[0].Reason, "no node has labels zone in (z)") && !strings.Contains(p.Infeasible[0].Reason, "zone=z") {
					t.Fatalf("plan %+v, want infeasible naming the selector", p)
				}
				return
			}
			if got := place(p); len(got) != 1 || got[0] != "t@"+tc.want {
				t.Fatalf("placed %v, want t@%s", got, tc.want)
			}
		})
	}
}

// TestSpread: SPREAD tasks take the nodes with room in turn, whatever
// their load, where the default packs them.
func TestSpread(t *testing.T) {
	c := New()
	for _, n := range []NodeID{"n1", "n2", "n3"} {
		c.AddNode(n, cpu(4), nil)
	}
	for i := range 6 {
		c.Submit(Task{ID: tid(fmt.Sprint("s", i)), Demand: cpu(1), Spread: true})
	}
	mustPlace(t, c, "s0@n1", "s1@n2", "s2@n3", "s3@n1", "s4@n2", "s5@n3")
	for i := range 2 {
		c.Submit(Task{ID: tid(fmt.Sprint("p", i)), Demand: cpu(1)})
	}
	mustPlace(t, c, "p0@n1", "p1@n2") // pack: the first node below half after placing, else the least used
	c.Submit(Task{ID: tid("s6"), Demand: cpu(2), Spread: true})
	c.Submit(Task{ID: tid("s7"), Demand: cpu(1), Spread: true})
	mustPlace(t, c, "s6@n3", "s7@n1") // the turn passes n1 and n2, which lack the room for s6
}
